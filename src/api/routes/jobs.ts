import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { HttpError } from '../../core/errors.js';
import { jobEpochRows, listJobs } from '../../jobs/queries.js';
import { apiStatus, jobSummary, jobView, statesFor } from '../../jobs/view.js';
import type { AppDeps } from '../../http/deps.js';
import { JobIdParam, JobSchema, UUID_RE, errorResponses, jobIdPathParameter, limitQuery, offsetQuery } from '../../http/schemas.js';
import { requestLog } from '../../http/context.js';

const getRoute = createRoute({
  method: 'get',
  path: '/api/v1/jobs/{id}',
  summary: 'One job: status, phase, progress, metrics, error, dataset info, model and artifacts',
  security: [{ bearer: [] }],
  parameters: [jobIdPathParameter],
  responses: {
    200: { description: 'The job', content: { 'application/json': { schema: JobSchema } } },
    ...errorResponses(401, 404),
  },
});

const listRoute = createRoute({
  method: 'get',
  path: '/api/v1/jobs',
  summary: 'Jobs, newest first',
  security: [{ bearer: [] }],
  request: {
    query: z
      .object({
        status: z.enum(['queued', 'training', 'completed', 'failed', 'cancelled']).optional(),
        limit: limitQuery(500, 50),
        offset: offsetQuery(),
      })
      .strict(),
  },
  responses: {
    200: {
      description: 'A page of jobs',
      content: {
        'application/json': { schema: z.object({ total: z.number(), limit: z.number(), offset: z.number(), jobs: z.array(z.unknown()) }) },
      },
    },
    ...errorResponses(400, 401),
  },
});

const cancelRoute = createRoute({
  method: 'delete',
  path: '/api/v1/jobs/{id}',
  summary: 'Cancel a job (the worker stops at the next batch, last.pt and partial metrics are kept); with ?purge=true, remove a finished job\'s files',
  description:
    "purge=true removes a finished job's dataset reference, checkpoints and plots now, as retention (RETENTION_DAYS) does later: its row, log and registered model stay. 409 while the job is queued or running.",
  security: [{ bearer: [] }],
  request: {
    params: JobIdParam,
    query: z.object({ purge: z.enum(['true', 'false']).default('false') }).strict(),
  },
  responses: {
    200: {
      description: 'Cancelled, or (purge=true) its files removed',
      content: {
        'application/json': {
          schema: z.union([
            z.object({ job_id: z.string(), status: z.literal('cancelled'), message: z.string() }),
            z.object({
              job_id: z.string(),
              status: z.enum(['completed', 'failed', 'cancelled']),
              purged: z.literal(true),
              disk_bytes: z.number().nullable(),
              files_removed_at: z.string().nullable(),
            }),
          ]),
        },
      },
    },
    ...errorResponses(400, 401, 404, 409),
  },
});

const retryRoute = createRoute({
  method: 'post',
  path: '/api/v1/jobs/{id}/retry',
  summary: 'Start a failed or cancelled job again: same id, a new attempt, from its last checkpoint when it has one',
  security: [{ bearer: [] }],
  request: { params: JobIdParam },
  responses: {
    202: {
      description: 'Queued again',
      content: {
        'application/json': {
          schema: z.object({ job_id: z.string(), status: z.literal('queued'), attempts: z.number(), message: z.string() }),
        },
      },
    },
    ...errorResponses(401, 404, 409),
  },
});

const metricsRoute = createRoute({
  method: 'get',
  path: '/api/v1/jobs/{id}/metrics',
  summary: 'Per-epoch metrics of a job',
  security: [{ bearer: [] }],
  request: { params: JobIdParam },
  responses: {
    200: {
      description: 'One row per finished epoch',
      content: {
        'application/json': {
          schema: z.object({
            job_id: z.string(),
            epochs: z.array(z.object({ epoch: z.number(), epoch_seconds: z.number().nullable(), metrics: z.record(z.string(), z.number().nullable()) })),
          }),
        },
      },
    },
    ...errorResponses(401, 404),
  },
});

const checkpointsRoute = createRoute({
  method: 'get',
  path: '/api/v1/jobs/{id}/checkpoints',
  summary: 'Checkpoints written so far (last.pt, best.pt, epochN.pt)',
  security: [{ bearer: [] }],
  request: { params: JobIdParam },
  responses: {
    200: {
      description: 'Checkpoint files of the job, newest first',
      content: {
        'application/json': {
          schema: z.object({
            job_id: z.string(),
            checkpoints: z.array(z.object({ name: z.string(), size: z.number(), modified_at: z.string() })),
          }),
        },
      },
    },
    ...errorResponses(401, 404),
  },
});

function notFound(id: string): HttpError {
  return new HttpError(404, 'JOB_NOT_FOUND', `no job ${id}`);
}

export function registerJobs(app: OpenAPIHono, deps: AppDeps): void {
  app.openapi(checkpointsRoute, async (c) => {
    const { id } = c.req.valid('param');
    const job = UUID_RE.test(id) ? await deps.jobs.get(id) : undefined;
    if (!job) throw notFound(id);
    return c.json({ job_id: id, checkpoints: await deps.files.listCheckpoints(job) }, 200);
  });

  app.openapi(getRoute, async (c) => {
    const id = c.req.param('id');
    if (!UUID_RE.test(id)) throw notFound(id);
    const body = await deps.jobs.readJson(id, deps.baseUrl(c.req.url));
    if (body === undefined) throw notFound(id);
    // Already JSON, rendered by the service once per change of the job (JobService.readJson);
    // the route's declared schema still documents it.
    return c.body(body, 200, { 'content-type': 'application/json' }) as never;
  });

  app.openapi(listRoute, async (c) => {
    const q = c.req.valid('query');
    const { total, rows } = await listJobs(deps.database.db, {
      states: q.status ? statesFor(q.status) : undefined,
      limit: q.limit,
      offset: q.offset,
    });
    const baseUrl = deps.baseUrl(c.req.url);
    return c.json({ total, limit: q.limit, offset: q.offset, jobs: rows.map((r) => jobSummary(r, baseUrl)) }, 200);
  });

  app.openapi(cancelRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!UUID_RE.test(id)) throw notFound(id);
    if (c.req.valid('query').purge === 'true') {
      const purged = await deps.retention.purge(id);
      if (purged === 'not_found') throw notFound(id);
      if ('unfinished' in purged) {
        throw new HttpError(409, 'JOB_NOT_FINISHED', `job ${id} is ${apiStatus(purged.unfinished.state)}: cancel it first, or wait until it finishes`, {
          job: jobView(purged.unfinished, { baseUrl: deps.baseUrl(c.req.url) }),
        });
      }
      requestLog(c).info({ job_id: id, disk_bytes: purged.diskBytes }, 'job files removed');
      return c.json(
        {
          job_id: id,
          status: apiStatus(purged.state) as 'completed' | 'failed' | 'cancelled',
          purged: true as const,
          disk_bytes: purged.diskBytes ?? null,
          files_removed_at: purged.filesRemovedAt?.toISOString() ?? null,
        },
        200,
      );
    }
    const outcome = await deps.jobs.cancel(id);
    if (outcome === 'not_found') throw notFound(id);
    if ('finished' in outcome) {
      throw new HttpError(409, 'JOB_FINISHED', `job ${id} has already finished (${outcome.finished.state})`, {
        job: jobView(outcome.finished, { baseUrl: deps.baseUrl(c.req.url) }),
      });
    }
    requestLog(c).info({ job_id: id }, 'job cancelled');
    return c.json({ job_id: id, status: 'cancelled' as const, message: 'Job cancelled successfully' }, 200);
  });

  app.openapi(retryRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!UUID_RE.test(id)) throw notFound(id);
    const outcome = await deps.jobs.retry(id);
    if (outcome === 'not_found') throw notFound(id);
    if (outcome === 'stopping') {
      throw new HttpError(409, 'JOB_STOPPING', `job ${id} is still stopping its worker; retry in a few seconds`, null, {
        'Retry-After': '5',
      });
    }
    if ('notRetryable' in outcome) {
      const status = jobView(outcome.notRetryable, { baseUrl: deps.baseUrl(c.req.url) }).status;
      throw new HttpError(409, 'JOB_NOT_RETRYABLE', `only a failed or cancelled job can be retried; job ${id} is ${status}`, {
        status,
      });
    }
    requestLog(c).info({ job_id: id }, 'job queued again by request');
    return c.json(
      { job_id: id, status: 'queued' as const, attempts: outcome.attempts, message: 'Job queued again; it resumes from its last checkpoint' },
      202,
    );
  });

  app.openapi(metricsRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!UUID_RE.test(id)) throw notFound(id);
    const job = await deps.jobs.get(id);
    if (!job) throw notFound(id);
    const rows = await jobEpochRows(deps.database.db, id);
    return c.json(
      { job_id: id, epochs: rows.map((r) => ({ epoch: r.epoch, epoch_seconds: r.epochSeconds, metrics: r.metrics })) },
      200,
    );
  });
}
