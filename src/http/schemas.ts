/** Response and parameter schemas shared by routes and the OpenAPI document. */
import { z } from '@hono/zod-openapi';

export const ErrorSchema = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: 'VALIDATION_ERROR' }),
      message: z.string(),
      details: z.unknown().optional(),
    }),
  })
  .openapi('Error');

export const LinksSchema = z.object({ self: z.string(), status_page: z.string(), stream: z.string() });

export const JobSchema = z
  .object({
    job_id: z.string().uuid(),
    name: z.string(),
    status: z.enum(['queued', 'training', 'completed', 'failed', 'cancelled']),
    phase: z.enum(['queued', 'downloading', 'preparing', 'training', 'validating', 'finalizing', 'done']),
    progress: z.number(),
    current_epoch: z.number(),
    total_epochs: z.number(),
    queue_position: z.number().nullable(),
    device: z.string().nullable(),
    metrics: z.object({ current: z.unknown(), best: z.unknown() }),
    created_at: z.string(),
    started_at: z.string().nullable(),
    finished_at: z.string().nullable(),
    eta_seconds: z.number().nullable(),
    error: z
      .object({ code: z.string(), message: z.string(), details: z.unknown(), phase: z.string(), epoch: z.number().nullable() })
      .nullable(),
    dataset_info: z.unknown(),
    model: z.unknown(),
    artifacts: z.array(z.object({ name: z.string(), size: z.number() })),
    config: z.object({
      framework: z.string(),
      task: z.string(),
      base_model: z.string().nullable(),
      base_model_source: z.string().nullable().openapi({ description: 'Where the base model file came from (a URL, model:<id>, a placed file)' }),
      base_model_sha256: z.string().nullable(),
    }),
    disk_bytes: z.number().nullable().openapi({ description: "Bytes of the job's folder, measured when it finished and when its files were removed" }),
    files_removed_at: z.string().nullable().openapi({ description: 'When retention or DELETE ?purge=true removed its dataset, checkpoints and plots' }),
    links: LinksSchema,
  })
  .passthrough()
  .openapi('Job');

export const JobIdParam = z.object({
  id: z.string().openapi({ param: { name: 'id', in: 'path' }, example: '550e8400-e29b-41d4-a716-446655440000' }),
});

/**
 * JobIdParam as a plain OpenAPI parameter, for the status read: documented the same, but with
 * no zod validator run per request (a path parameter is always a string; handlers check the
 * UUID themselves), which is a few µs on the API's hottest route.
 */
export const jobIdPathParameter = {
  name: 'id',
  in: 'path' as const,
  required: true,
  schema: { type: 'string' as const, example: '550e8400-e29b-41d4-a716-446655440000' },
};

export const errorResponses = (...codes: number[]) =>
  Object.fromEntries(
    codes.map((code) => [
      code,
      { description: HTTP_REASONS[code] ?? 'Error', content: { 'application/json': { schema: ErrorSchema } } },
    ]),
  );

const HTTP_REASONS: Record<number, string> = {
  400: 'Invalid request',
  401: 'Missing or invalid credentials or signature',
  404: 'Not found',
  409: 'Conflict',
  413: 'Body too large',
  429: 'Rate limited (see Retry-After)',
  503: 'Queue full (see Retry-After)',
};

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
