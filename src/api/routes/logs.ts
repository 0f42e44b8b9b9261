/**
 * A job's log (workdir/jobs/{id}/worker.log: the worker's stderr and everything it prints that
 * is not an event, plus the monitor's warnings): GET /api/v1/jobs/{id}/logs pages it by line,
 * GET /api/v1/jobs/{id}/logs/download sends the file as it is. The status page's Download logs
 * uses the same reader (jobs/files.ts) behind its own (cookie) auth.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { HttpError } from '../../core/errors.js';
import type { AppDeps } from '../../http/deps.js';
import { JobIdParam, UUID_RE, errorResponses, limitQuery, offsetQuery } from '../../http/schemas.js';

const pageRoute = createRoute({
  method: 'get',
  path: '/api/v1/jobs/{id}/logs',
  summary: "Lines of a job's log, paged: ?offset= (first line, 0-based) and ?limit=",
  security: [{ bearer: [] }],
  request: {
    params: JobIdParam,
    query: z
      .object({
        offset: offsetQuery(),
        limit: limitQuery(5000, 500),
      })
      .strict(),
  },
  responses: {
    200: {
      description: 'A page of log lines',
      content: {
        'application/json': {
          schema: z.object({
            job_id: z.string(),
            offset: z.number(),
            limit: z.number(),
            total_lines: z.number(),
            next_offset: z.number().nullable(),
            lines: z.array(z.string()),
          }),
        },
      },
    },
    ...errorResponses(400, 401, 404),
  },
});

const downloadRoute = createRoute({
  method: 'get',
  path: '/api/v1/jobs/{id}/logs/download',
  summary: "A job's whole log as a text file",
  security: [{ bearer: [] }],
  request: { params: JobIdParam },
  responses: {
    200: { description: 'The log file', content: { 'text/plain': { schema: z.string() } } },
    ...errorResponses(401, 404),
  },
});

export async function requireJob(deps: AppDeps, id: string): Promise<void> {
  if (!UUID_RE.test(id) || !(await deps.jobs.get(id))) throw new HttpError(404, 'JOB_NOT_FOUND', `no job ${id}`);
}

export function registerLogs(app: OpenAPIHono, deps: AppDeps): void {
  app.openapi(pageRoute, async (c) => {
    const { id } = c.req.valid('param');
    const { offset, limit } = c.req.valid('query');
    await requireJob(deps, id);
    const page = await deps.files.readLog(id, offset, limit);
    return c.json({ job_id: id, ...page }, 200);
  });

  app.openapi(downloadRoute, async (c) => {
    const { id } = c.req.valid('param');
    await requireJob(deps, id);
    return deps.files.logDownload(id) as never;
  });
}
