/**
 * GET /api/v1/jobs/compare?ids=a,b[,…] — experiments side by side (jobs/compare.ts): the full
 * training arguments of each job (its engine's defaults under what the job trained with, however
 * it was submitted), with the framework among them, which of them differ, the final and best
 * metrics, and the best job by its engine's best metric with a one-sentence recommendation.
 *
 * Registered before /api/v1/jobs/{id} (app.ts): Hono runs matching handlers in registration
 * order, and {id} would otherwise take "compare" for a job id and answer 404.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { HttpError } from '../../core/errors.js';
import { COMPARE_MAX_IDS, loadComparison } from '../../jobs/compare.js';
import type { AppDeps } from '../../http/deps.js';
import { UUID_RE, errorResponses } from '../../http/schemas.js';

const MAX_IDS = COMPARE_MAX_IDS;

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
            recommendation: z
              .object({
                metric: z.string(),
                goal: z.enum(['min', 'max']),
                best_job_id: z.string(),
                best_value: z.number(),
                runner_up_job_id: z.string().nullable(),
                runner_up_value: z.number().nullable(),
                relative_difference: z.number().nullable(),
                main_difference: z.object({ key: z.string(), best: z.unknown(), runner_up: z.unknown() }).nullable(),
                text: z.string(),
              })
              .nullable()
              .openapi({
                description:
                  "The best job by the first job's engine's best metric (lowest val_loss, highest mAP…), the runner-up, the argument that differs most between them, and a sentence saying so; null while no job has that metric",
              }),
          }),
        },
      },
    },
    ...errorResponses(400, 401, 404),
  },
});

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
    const loaded = await loadComparison(deps.database, deps.engines, ids);
    if (!loaded.ok) throw new HttpError(404, 'JOB_NOT_FOUND', `no job ${loaded.missing.join(', ')}`, { missing: loaded.missing });
    return c.json(loaded.comparison, 200);
  });
}
