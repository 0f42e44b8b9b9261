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
      .object({
        code: z.string(),
        message: z.string(),
        details: z.unknown(),
        phase: z.string().openapi({ description: "The job's phase when it failed; `checking` for a dataset that failed its checks (DATASET_INVALID)" }),
        epoch: z.number().nullable(),
      })
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
    attempts: z
      .array(
        z.object({
          attempt: z.number(),
          started_at: z.string(),
          ended_at: z.string().nullable(),
          outcome: z.enum(['completed', 'failed', 'retrying', 'interrupted', 'cancelled']).nullable(),
          start_epoch: z.number(),
          end_epoch: z.number().nullable(),
          error: z.object({ code: z.string(), message: z.string() }).nullable(),
        }),
      )
      .openapi({ description: 'Every start of the job, oldest first; outcome is null while the attempt runs' }),
    retry_at: z
      .string()
      .nullable()
      .openapi({ description: 'A queued job that failed for a transient reason starts again, from its last checkpoint, at this time' }),
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
  403: 'Link expired or not valid',
  404: 'Not found',
  409: 'Conflict',
  413: 'Body too large',
  415: 'Body not sent as Content-Type: application/json',
  422: 'Unreadable upload',
  429: 'Rate limited (see Retry-After)',
  500: 'The worker failed',
  503: 'Queue full (see Retry-After)',
};

/** The largest paging offset accepted, stated in the document as every other limit is. */
export const MAX_OFFSET = 1_000_000_000;

/**
 * An integer query parameter. Only digits (with an optional minus) are accepted, not whatever
 * Number() reads ("", "0x10", "1e3"), and the document states the limits the server checks (a
 * plain z.coerce.number() would be documented as also accepting null).
 */
export function intQuery(min: number, max: number) {
  return z
    .string()
    .max(40)
    .regex(/^-?\d+$/, 'must be an integer')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max))
    .openapi({ type: 'integer', minimum: min, maximum: max });
}

/** A decimal number query parameter, read as strictly as intQuery. */
export function numberQuery(min: number, max: number) {
  return z
    .string()
    .max(40)
    .regex(/^-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/, 'must be a number')
    .transform(Number)
    .pipe(z.number().min(min).max(max))
    .openapi({ type: 'number', minimum: min, maximum: max });
}

/** `?offset=`: where a page starts. */
export const offsetQuery = () => intQuery(0, MAX_OFFSET).optional().transform((v) => v ?? 0).openapi({ type: 'integer', minimum: 0, maximum: MAX_OFFSET, default: 0 });

/** `?limit=`: how many a page holds. */
export const limitQuery = (max: number, fallback: number) =>
  intQuery(1, max).optional().transform((v) => v ?? fallback).openapi({ type: 'integer', minimum: 1, maximum: max, default: fallback });

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
