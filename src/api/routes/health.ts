import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { AppDeps } from '../../http/deps.js';

const HealthSchema = z.object({
  status: z.enum(['healthy', 'unhealthy']),
  timestamp: z.string(),
  version: z.string(),
  gpu_available: z.boolean(),
  active_jobs: z.number(),
  queue_size: z.number().nullable(),
  database: z.object({ kind: z.string(), ok: z.boolean() }),
});

const route = createRoute({
  method: 'get',
  path: '/health',
  summary: 'Liveness and readiness: 200 when the database answers, 503 otherwise',
  responses: {
    200: { description: 'Healthy', content: { 'application/json': { schema: HealthSchema } } },
    503: { description: 'Unhealthy (database unreachable)', content: { 'application/json': { schema: HealthSchema } } },
  },
});

export function registerHealth(app: OpenAPIHono, deps: AppDeps): void {
  app.openapi(route, async (c) => {
    const ok = await deps.database.ping();
    const body = {
      status: ok ? ('healthy' as const) : ('unhealthy' as const),
      timestamp: new Date().toISOString(),
      version: deps.version,
      gpu_available: deps.gpuAvailable,
      active_jobs: deps.activeJobs(),
      queue_size: ok ? await deps.queueSize() : null,
      database: { kind: deps.database.kind, ok },
    };
    return c.json(body, ok ? 200 : (503 as 200));
  });
}
