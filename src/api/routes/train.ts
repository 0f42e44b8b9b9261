import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { trainRequestSchema } from '../../jobs/request.js';
import type { Engines } from '../../engines/index.js';
import { jobView } from '../../jobs/view.js';
import type { AppDeps } from '../../http/deps.js';
import { HttpError } from '../../core/errors.js';
import { requireBody } from '../../http/body.js';
import { JobSchema, LinksSchema, errorResponses } from '../../http/schemas.js';
import { requestLog } from '../../http/context.js';
import { readDisk } from '../../monitor/system.js';

/**
 * Under MIN_FREE_DISK_GB, a new job is refused now (503, INSUFFICIENT_DISK) rather than failing
 * later on a full disk; the jobs already queued keep their place.
 */
async function refuseWhenDiskLow(deps: AppDeps): Promise<void> {
  const min = deps.config.resourceGuard.minFreeDiskBytes;
  if (min <= 0) return;
  const disk = await readDisk(deps.config.workdir);
  if (!disk || disk.freeBytes >= min) return;
  const gib = (n: number) => `${(n / 1024 ** 3).toFixed(2)} GiB`;
  throw new HttpError(
    503,
    'INSUFFICIENT_DISK',
    `the server is low on disk: ${gib(disk.freeBytes)} free in its work directory, under MIN_FREE_DISK_GB (${gib(min)}); try again once space is freed`,
    { free_bytes: disk.freeBytes, required_bytes: min },
    { 'retry-after': '300' },
  );
}

const route = (engines: Engines) =>
  createRoute({
  method: 'post',
  path: '/api/v1/train',
  summary: 'Submit a training job',
  description:
    'Queues a training job. When REQUEST_SIGNING_SECRET is set, the request must carry X-Trainhook-Timestamp and X-Trainhook-Signature (v1=hex HMAC-SHA256 of "timestamp.body").',
  security: [{ bearer: [] }],
  middleware: [requireBody] as const,
  request: { body: { required: true, content: { 'application/json': { schema: trainRequestSchema(engines) } } } },
  responses: {
    202: {
      description: 'Job queued',
      content: {
        'application/json': {
          schema: z.object({
            job_id: z.string(),
            status: z.literal('queued'),
            message: z.string(),
            queue_position: z.number(),
            estimated_start_time: z.string().nullable(),
            links: LinksSchema,
          }),
        },
      },
    },
    409: {
      description: 'job_id exists; the body carries the existing job',
      content: {
        'application/json': {
          schema: z.object({ error: z.object({ code: z.string(), message: z.string(), details: z.unknown() }), job: JobSchema }),
        },
      },
    },
    ...errorResponses(400, 401, 413, 415, 429, 503),
  },
});

export function registerTrain(app: OpenAPIHono, deps: AppDeps): void {
  app.openapi(route(deps.engines), async (c) => {
    const body = c.req.valid('json');
    await refuseWhenDiskLow(deps);
    const { job, created, position: placed } = await deps.jobs.submit(body);
    const baseUrl = deps.baseUrl(c.req.url);
    if (!created) {
      const existing = jobView(job, { baseUrl });
      throw new HttpError(409, 'JOB_EXISTS', `job ${job.id} already exists`, { job: existing });
    }
    const { position, at } = await deps.jobs.estimatedStart(job, placed);
    requestLog(c).info({ job_id: job.id, queue_position: position }, 'job queued');
    const view = jobView(job, { baseUrl });
    return c.json(
      {
        job_id: job.id,
        status: 'queued' as const,
        message: 'Training job queued successfully',
        queue_position: position,
        estimated_start_time: at?.toISOString() ?? null,
        links: view.links,
      },
      202,
    );
  });
}
