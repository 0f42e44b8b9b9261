/**
 * GET /api/v1/jobs/compare?ids=a,b[,…] — experiments side by side: the full training arguments
 * of each job (its engine's defaults under what the job trained with, however it was
 * submitted), with the framework among them, which of them differ, and the final and best
 * metrics.
 *
 * Registered before /api/v1/jobs/{id} (app.ts): Hono runs matching handlers in registration
 * order, and {id} would otherwise take "compare" for a job id and answer 404.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { inArray } from 'drizzle-orm';
import { jobs, models, type JobRow } from '../../db/schema.js';
import { HttpError } from '../../core/errors.js';
import type { Engines } from '../../engines/index.js';
import { better, jobMetrics } from '../../jobs/metrics.js';
import { jobRequest } from '../../jobs/request.js';
import { apiStatus } from '../../jobs/view.js';
import type { AppDeps } from '../../http/deps.js';
import { UUID_RE, errorResponses } from '../../http/schemas.js';

const MAX_IDS = 20;

const route = createRoute({
  method: 'get',
  path: '/api/v1/jobs/compare',
  summary: 'Compare jobs: configuration differences and final metrics side by side',
  security: [{ bearer: [] }],
  request: {
    query: z
      .object({
        // Read as one string and split here; documented as what it is, a comma-separated list.
        ids: z.string().openapi({
          param: { style: 'form', explode: false },
          type: 'array',
          items: { type: 'string', format: 'uuid' },
          minItems: 2,
          maxItems: MAX_IDS,
          uniqueItems: true,
          description: `2 to ${MAX_IDS} distinct job ids, comma-separated`,
          example: ['550e8400-e29b-41d4-a716-446655440000', '6ba7b810-9dad-11d1-80b4-00c04fd430c8'],
        } as object),
      })
      .strict(),
  },
  responses: {
    200: {
      description: 'The comparison',
      content: {
        'application/json': {
          schema: z.object({
            job_ids: z.array(z.string()),
            jobs: z.array(z.unknown()),
            config: z.object({
              differences: z.record(z.string(), z.record(z.string(), z.unknown())),
              same: z.record(z.string(), z.unknown()),
            }),
            metrics: z.object({
              final: z.record(z.string(), z.record(z.string(), z.number().nullable())),
              best: z.record(z.string(), z.record(z.string(), z.number().nullable())),
              leader: z.record(z.string(), z.string().nullable()),
            }),
          }),
        },
      },
    },
    ...errorResponses(400, 401, 404),
  },
});

/**
 * The arguments a job trained with, as stored when it started (a job that never started: what
 * its engine would give it), its engine's defaults filled in, and its framework.
 */
export function jobTrainArgs(job: JobRow, engines: Engines): Record<string, unknown> {
  const request = jobRequest(job, engines);
  const { engine, modelConfig } = request;
  const device = job.device ?? (request.resources.device !== 'auto' ? request.resources.device : 'cpu');
  const args = job.trainArgs ?? engine.trainArgs(modelConfig, { device, resources: request.resources, resolvedConfig: request.resolvedConfig });
  const full = engine.effectiveArgs ? engine.effectiveArgs(job.task, args, modelConfig.base_model) : { ...args };
  return { framework: engine.name, ...full };
}

const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

export function registerCompare(app: OpenAPIHono, deps: AppDeps): void {
  app.openapi(route, async (c) => {
    const ids = [...new Set(c.req.valid('query').ids.split(',').map((s) => s.trim()).filter(Boolean))];
    if (ids.length < 2 || ids.length > MAX_IDS) {
      throw new HttpError(400, 'VALIDATION_ERROR', `ids: give 2 to ${MAX_IDS} distinct job ids, comma-separated`, [
        { path: ['ids'], message: `${ids.length} id(s)` },
      ]);
    }
    const malformed = ids.filter((id) => !UUID_RE.test(id));
    if (malformed.length) throw new HttpError(404, 'JOB_NOT_FOUND', `no job ${malformed.join(', ')}`, { missing: malformed });
    const { db } = deps.database;
    const rows = await db.select().from(jobs).where(inArray(jobs.id, ids));
    const byId = new Map(rows.map((r) => [r.id, r]));
    const missing = ids.filter((id) => !byId.has(id));
    if (missing.length) throw new HttpError(404, 'JOB_NOT_FOUND', `no job ${missing.join(', ')}`, { missing });
    const registered = await db
      .select({ id: models.id, jobId: models.sourceJobId })
      .from(models)
      .where(inArray(models.sourceJobId, ids));
    const modelOf = new Map(registered.map((m) => [m.jobId, m.id]));

    const ordered = ids.map((id) => byId.get(id)!);
    const args = new Map(ordered.map((j) => [j.id, jobTrainArgs(j, deps.engines)]));
    const keys = [...new Set(ordered.flatMap((j) => Object.keys(args.get(j.id)!)))];
    const differences: Record<string, Record<string, unknown>> = {};
    const common: Record<string, unknown> = {};
    for (const key of keys) {
      const values = ordered.map((j) => args.get(j.id)![key] ?? null);
      if (values.every((v) => same(v, values[0]))) common[key] = values[0];
      else differences[key] = Object.fromEntries(ordered.map((j, i) => [j.id, values[i]]));
    }
    // The dataset is part of an experiment too.
    const datasets = ordered.map((j) => (j.request as { dataset?: { url?: string } }).dataset?.url ?? null);
    if (datasets.some((d) => !same(d, datasets[0]))) differences['dataset.url'] = Object.fromEntries(ordered.map((j, i) => [j.id, datasets[i]]));
    else common['dataset.url'] = datasets[0];

    const table = (pick: (j: JobRow) => Record<string, number | null> | null | undefined) => {
      const out: Record<string, Record<string, number | null>> = {};
      for (const j of ordered) {
        for (const [name, value] of Object.entries(pick(j) ?? {})) {
          if (name === 'epoch') continue;
          (out[name] ??= {})[j.id] = typeof value === 'number' ? value : null;
        }
      }
      for (const row of Object.values(out)) for (const j of ordered) if (!(j.id in row)) row[j.id] = null;
      return out;
    };
    const final = table((j) => j.metricsCurrent);
    const best = table((j) => j.metricsBest);
    const leader: Record<string, string | null> = {};
    for (const [name, row] of Object.entries(final)) {
      const scored = Object.entries(row).filter((e): e is [string, number] => typeof e[1] === 'number');
      if (scored.length < 2) {
        leader[name] = scored[0]?.[0] ?? null;
        continue;
      }
      // Each metric's direction comes from the first job's engine that declares it.
      const spec = ordered.map((j) => jobMetrics(deps.engines, j)).find((m) => m.fields.some((f) => f.key === name)) ?? jobMetrics(deps.engines, ordered[0]!);
      scored.sort((a, b) => (better(spec, name, a[1], b[1]) ? -1 : better(spec, name, b[1], a[1]) ? 1 : 0));
      leader[name] = scored[0]![1] === scored[1]![1] ? null : scored[0]![0];
    }

    return c.json(
      {
        job_ids: ids,
        jobs: ordered.map((j) => ({
          job_id: j.id,
          name: j.name,
          status: apiStatus(j.state),
          framework: j.engine,
          task: j.task,
          base_model: args.get(j.id)!['model'] ?? null,
          device: j.device,
          epochs_completed: j.currentEpoch,
          total_epochs: j.totalEpochs,
          created_at: j.createdAt.toISOString(),
          started_at: j.startedAt?.toISOString() ?? null,
          finished_at: j.finishedAt?.toISOString() ?? null,
          duration_seconds: j.startedAt && j.finishedAt ? (j.finishedAt.getTime() - j.startedAt.getTime()) / 1000 : null,
          model_id: modelOf.get(j.id) ?? null,
          error: j.error ? { code: j.error.code, message: j.error.message } : null,
        })),
        config: { differences, same: common },
        metrics: { final, best, leader },
      },
      200,
    );
  });
}
