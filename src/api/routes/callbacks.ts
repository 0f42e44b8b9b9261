/** The callback deliveries of a job, with every attempt, and the redeliver action. */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { listCallbackEvents, redeliverCallback } from '../../callbacks/sql/read.js';
import { OUTBOX_STATES } from '../../db/schema.js';
import { HttpError } from '../../core/errors.js';
import type { AppDeps } from '../../http/deps.js';
import { JobIdParam, UUID_RE, errorResponses, limitQuery, offsetQuery } from '../../http/schemas.js';
import { requestLog } from '../../http/context.js';

const AttemptSchema = z.object({
  attempted_at: z.string(),
  status_code: z.number().nullable(),
  latency_ms: z.number().nullable(),
  error: z.string().nullable(),
  manual: z.boolean(),
});

const EventSchema = z
  .object({
    event_id: z.string().openapi({ description: 'The Standard Webhooks webhook-id, the same on every retry' }),
    type: z.enum(['training_progress', 'training_completed', 'training_failed']),
    state: z.enum(OUTBOX_STATES),
    in_flight: z.boolean(),
    attempts: z.number(),
    created_at: z.string(),
    next_attempt_at: z.string().nullable(),
    delivered_at: z.string().nullable(),
    last_status_code: z.number().nullable(),
    last_error: z.string().nullable(),
    payload: z.unknown(),
    attempt_log: z.array(AttemptSchema),
  })
  .openapi('CallbackEvent');

const listRoute = createRoute({
  method: 'get',
  path: '/api/v1/jobs/{id}/callbacks',
  summary: "A job's callback events, newest first, each with its delivery attempts",
  description:
    'States: pending (waiting or in flight), delivered (a 2xx came back), superseded (a newer progress event replaced it before it went out), dead (no attempt left, or the receiver answered 410 Gone).',
  security: [{ bearer: [] }],
  request: {
    params: JobIdParam,
    query: z
      .object({
        state: z.enum(OUTBOX_STATES).optional(),
        limit: limitQuery(500, 100),
        offset: offsetQuery(),
      })
      .strict(),
  },
  responses: {
    200: {
      description: 'Callback events',
      content: {
        'application/json': {
          schema: z.object({
            job_id: z.string(),
            callback_url: z.string().nullable(),
            total: z.number(),
            counts: z.record(z.string(), z.number()),
            limit: z.number(),
            offset: z.number(),
            events: z.array(EventSchema),
          }),
        },
      },
    },
    ...errorResponses(400, 401, 404),
  },
});

const redeliverRoute = createRoute({
  method: 'post',
  path: '/api/v1/jobs/{id}/callbacks/{event_id}/redeliver',
  summary: 'Send a callback event again now (recorded as a manual attempt)',
  description:
    'Puts the event back in line for an immediate attempt with the same webhook-id and body. It still waits for older pending events of the same job (delivery stays in order). 409 while it is in flight.',
  security: [{ bearer: [] }],
  request: {
    params: JobIdParam.extend({
      event_id: z.string().openapi({ param: { name: 'event_id', in: 'path' }, example: 'msg_2hV0vQq9b0mD3tWcC1xR1w' }),
    }),
  },
  responses: {
    202: {
      description: 'Queued for an immediate attempt',
      content: {
        'application/json': {
          schema: z.object({ job_id: z.string(), event_id: z.string(), state: z.literal('pending'), next_attempt_at: z.string() }),
        },
      },
    },
    ...errorResponses(401, 404, 409),
  },
});

export function registerCallbacks(app: OpenAPIHono, deps: AppDeps): void {
  app.openapi(listRoute, async (c) => {
    const { id } = c.req.valid('param');
    const q = c.req.valid('query');
    const job = UUID_RE.test(id) ? await deps.jobs.get(id) : undefined;
    if (!job) throw new HttpError(404, 'JOB_NOT_FOUND', `no job ${id}`);
    const { total, counts, events } = await listCallbackEvents(deps.database.db, id, {
      limit: q.limit,
      offset: q.offset,
      states: q.state ? [q.state] : undefined,
    });
    return c.json(
      { job_id: id, callback_url: job.callbackUrl, total, counts, limit: q.limit, offset: q.offset, events } as never,
      200,
    );
  });

  app.openapi(redeliverRoute, async (c) => {
    const { id, event_id: eventId } = c.req.valid('param');
    if (!UUID_RE.test(id) || !(await deps.jobs.get(id))) throw new HttpError(404, 'JOB_NOT_FOUND', `no job ${id}`);
    const outcome = await redeliverCallback(deps.database.db, id, eventId);
    if (!outcome.ok) {
      if (outcome.reason === 'in_flight') {
        throw new HttpError(409, 'CALLBACK_IN_FLIGHT', `callback ${eventId} is being delivered right now`);
      }
      throw new HttpError(404, 'CALLBACK_NOT_FOUND', `no callback event ${eventId} for job ${id}`);
    }
    deps.callbacks.wake();
    requestLog(c).info({ job_id: id, event_id: eventId }, 'callback redelivery requested');
    return c.json(
      { job_id: id, event_id: eventId, state: 'pending' as const, next_attempt_at: outcome.nextAttemptAt.toISOString() },
      202,
    );
  });
}
