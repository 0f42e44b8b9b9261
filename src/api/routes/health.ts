import { performance } from 'node:perf_hooks';
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { AppDeps } from '../../http/deps.js';
import { readDisk } from '../../monitor/system.js';

const ReasonSchema = z.object({
  code: z.enum(['DATABASE_UNREACHABLE', 'DATABASE_SLOW', 'DISK_LOW', 'GPU_HOT']),
  message: z.string(),
});
type Reason = z.infer<typeof ReasonSchema>;

const HealthSchema = z.object({
  status: z.enum(['healthy', 'degraded', 'unhealthy']),
  /** Why the status is not healthy; empty when it is. */
  reasons: z.array(ReasonSchema),
  timestamp: z.string(),
  version: z.string(),
  node_id: z.string().openapi({ description: 'The node that answered (NODE_ID)' }),
  nodes: z
    .array(
      z.object({
        node_id: z.string(),
        status: z.enum(['alive', 'stale', 'left']),
        last_seen_seconds: z.number(),
        jobs: z.number().int(),
      }),
    )
    .nullable()
    .openapi({ description: 'Every node sharing the database (GET /api/v1/nodes has the details); null when the database does not answer' }),
  gpu_available: z.boolean(),
  active_jobs: z.number(),
  queue_size: z.number().nullable(),
  database: z.object({ kind: z.string(), ok: z.boolean(), latency_ms: z.number().nullable() }),
  disk: z.object({ path: z.string(), free_bytes: z.number(), total_bytes: z.number(), min_free_bytes: z.number() }).nullable(),
});

const route = createRoute({
  method: 'get',
  path: '/health',
  summary: 'Liveness and readiness: healthy, degraded (serving, with reasons) or unhealthy (503)',
  description:
    'degraded: the database answered `select 1` slower than DB_SLOW_MS, free disk in the work directory is under MIN_FREE_DISK_GB (new jobs get 503), or a GPU is at GPU_TEMP_WARN_C or hotter. unhealthy: the database does not answer.',
  responses: {
    200: { description: 'Healthy or degraded', content: { 'application/json': { schema: HealthSchema } } },
    503: { description: 'Unhealthy (database unreachable)', content: { 'application/json': { schema: HealthSchema } } },
  },
});

/** `select 1`, timed; a database that does not answer within the timeout counts as unreachable. */
async function timedPing(deps: AppDeps, timeoutMs: number): Promise<{ ok: boolean; ms: number | null }> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs).unref();
  });
  const ok = await Promise.race([deps.database.ping().catch(() => false), timeout]);
  clearTimeout(timer);
  return { ok, ms: ok ? Math.round((performance.now() - started) * 10) / 10 : null };
}

export function registerHealth(app: OpenAPIHono, deps: AppDeps): void {
  app.openapi(route, async (c) => {
    const guard = deps.config.resourceGuard;
    const reasons: Reason[] = [];
    const [db, disk] = await Promise.all([timedPing(deps, Math.max(5000, 2 * guard.dbSlowMs)), readDisk(deps.config.workdir)]);
    if (!db.ok) {
      reasons.push({ code: 'DATABASE_UNREACHABLE', message: `the ${deps.database.kind} database does not answer` });
    } else if (db.ms !== null && db.ms > guard.dbSlowMs) {
      reasons.push({ code: 'DATABASE_SLOW', message: `the database took ${db.ms} ms to answer select 1 (DB_SLOW_MS ${guard.dbSlowMs})` });
    }
    if (disk && guard.minFreeDiskBytes > 0 && disk.freeBytes < guard.minFreeDiskBytes) {
      const gib = (n: number) => `${(n / 1024 ** 3).toFixed(2)} GiB`;
      reasons.push({
        code: 'DISK_LOW',
        message: `${gib(disk.freeBytes)} free in ${disk.path}, under MIN_FREE_DISK_GB (${gib(guard.minFreeDiskBytes)}): new jobs are refused`,
      });
    }
    // From the monitor's latest sample: /health never waits on nvidia-smi.
    for (const g of deps.monitor.latest()?.gpus ?? []) {
      if (g.temperatureC !== null && g.temperatureC >= deps.config.monitor.gpuTempWarnC) {
        reasons.push({ code: 'GPU_HOT', message: `${g.device} (${g.name}) is at ${g.temperatureC} °C (GPU_TEMP_WARN_C ${deps.config.monitor.gpuTempWarnC})` });
      }
    }
    const nodes = db.ok
      ? await deps
          .nodes()
          .then((all) =>
            all.map((n) => ({ node_id: n.id, status: n.status, last_seen_seconds: Math.round(n.lastSeenSeconds * 10) / 10, jobs: n.jobs.length })),
          )
          .catch(() => null)
      : null;
    const status = !db.ok ? 'unhealthy' : reasons.length ? 'degraded' : 'healthy';
    const body = {
      status,
      reasons,
      timestamp: new Date().toISOString(),
      version: deps.version,
      node_id: deps.nodeId,
      nodes,
      gpu_available: deps.gpuAvailable,
      active_jobs: deps.activeJobs(),
      queue_size: db.ok ? await deps.queueSize().catch(() => null) : null,
      database: { kind: deps.database.kind, ok: db.ok, latency_ms: db.ms },
      disk: disk ? { path: disk.path, free_bytes: disk.freeBytes, total_bytes: disk.totalBytes, min_free_bytes: guard.minFreeDiskBytes } : null,
    } as const;
    return c.json(body, status === 'unhealthy' ? 503 : 200);
  });
}
