/**
 * GET /api/v1/nodes: every node sharing this database (API-only ones too), with its devices,
 * the jobs it holds and when it last renewed its leases; alive, stale (no heartbeat within its
 * lease period: it died or lost the database) or left (it stopped gracefully).
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { AppDeps } from '../../http/deps.js';
import { errorResponses } from '../../http/schemas.js';
import { nodeView } from '../../nodes/view.js';

const NodeSchema = z
  .object({
    node_id: z.string(),
    self: z.boolean().openapi({ description: 'The node that answered this request' }),
    status: z.enum(['alive', 'stale', 'left']),
    hostname: z.string(),
    pid: z.number().int(),
    version: z.string(),
    run_jobs: z.boolean().openapi({ description: 'false for an API-only node (RUN_JOBS=false)' }),
    lease_seconds: z.number().int(),
    started_at: z.string(),
    last_seen_at: z.string().openapi({ description: 'Its last lease-renewal tick (every LEASE_SECONDS/3)' }),
    last_seen_seconds: z.number().openapi({ description: 'Seconds since last_seen_at, by the database clock' }),
    left_at: z.string().nullable(),
    devices: z.array(
      z.object({ device: z.string(), slots: z.number().int(), job_ids: z.array(z.string()).openapi({ description: 'The jobs it holds on this device' }) }),
    ),
    jobs: z.array(
      z.object({
        job_id: z.string(),
        name: z.string(),
        state: z.enum(['claimed', 'running']).openapi({ description: 'claimed: not started yet; running: its run started' }),
        phase: z.string(),
        device: z.string().nullable(),
        progress: z.number(),
        epoch: z.number().int(),
        total_epochs: z.number().int(),
        lease_expires_at: z.string().nullable(),
      }),
    ),
  })
  .openapi('Node');

const route = createRoute({
  method: 'get',
  path: '/api/v1/nodes',
  summary: 'The nodes sharing this database: status, devices, jobs held and last lease renewal',
  security: [{ bearer: [] }],
  responses: {
    200: { description: 'The nodes, live ones first', content: { 'application/json': { schema: z.object({ nodes: z.array(NodeSchema) }) } } },
    ...errorResponses(401),
  },
});

export function registerNodes(app: OpenAPIHono, deps: AppDeps): void {
  app.openapi(route, async (c) => {
    const nodes = await deps.nodes();
    return c.json({ nodes: nodes.map((n) => nodeView(n, deps.nodeId)) }, 200);
  });
}
