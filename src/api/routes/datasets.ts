/**
 * Uploaded datasets: POST a ZIP as the raw request body (Content-Type: application/zip), get
 * an id to train on with `"dataset": {"id": …}`; list and delete them.
 *
 * The body is streamed to disk, hashed and capped (DATASET_MAX_DOWNLOAD_BYTES, as a download
 * is), extracted into the shared store with the zip-slip and bomb guards, and checked for the
 * task given in the query (default detect) like a downloaded dataset. A refused archive
 * answers 422 with the code a job would fail with (DATASET_INVALID, DATASET_CORRUPTED).
 */
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { HttpError, JobError } from '../../core/errors.js';
import type { DatasetRow } from '../../db/schema.js';
import { DATASET_FORMATS } from '../../datasets/formats.js';
import type { Engines } from '../../engines/index.js';
import { TooLargeError } from '../../datasets/store.js';
import type { AppDeps } from '../../http/deps.js';
import { requestLog } from '../../http/context.js';
import { UUID_RE, errorResponses } from '../../http/schemas.js';

const UPLOAD_PATH = '/api/v1/datasets';
/** POST /api/v1/datasets/convert (routes/dataprep.ts) takes a raw ZIP body too. */
export const CONVERT_PATH = '/api/v1/datasets/convert';
const ZIP_TYPES = /^(application\/zip|application\/x-zip-compressed|application\/octet-stream)\s*(;|$)/i;

/** The OpenAPI body of a route that takes a ZIP as its raw body (an upload, a SAM2 export). */
export const ZIP_BODY = {
  required: true,
  content: {
    'application/zip': { schema: z.string().openapi({ format: 'binary' }) },
    'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) },
  },
};

/**
 * A raw ZIP body as a stream, refused before a byte is read when it is sent as another type
 * (415), announces more than maxBytes (413) or is missing (400). What the stream then carries
 * is capped again by its reader, which cannot trust Content-Length.
 */
export function zipBodyStream(c: Context, maxBytes: number, what: string): Readable {
  if (!ZIP_TYPES.test(c.req.header('content-type') ?? '')) {
    throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', `send the ${what} as the raw body with Content-Type: application/zip (curl --data-binary @file.zip)`);
  }
  const declared = Number(c.req.header('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) {
    throw new HttpError(413, 'PAYLOAD_TOO_LARGE', `the upload is ${declared} bytes, over DATASET_MAX_DOWNLOAD_BYTES (${maxBytes})`);
  }
  const raw = c.req.raw.body;
  if (!raw) throw new HttpError(400, 'VALIDATION_ERROR', `the body is empty: send the ${what}`);
  return Readable.fromWeb(raw as unknown as WebReadableStream<Uint8Array>);
}

/** app.ts: this request is a dataset upload (its own body limit applies, not MAX_BODY_BYTES). */
export function isDatasetUpload(method: string, path: string): boolean {
  return method === 'POST' && (path === UPLOAD_PATH || path === `${UPLOAD_PATH}/` || path === CONVERT_PATH);
}

export const DatasetSchema = z
  .object({
    dataset_id: z.string().uuid(),
    name: z.string().nullable(),
    sha256: z.string(),
    format: z.enum(DATASET_FORMATS),
    task: z.string().openapi({ description: 'The task it was checked for at upload (a job of another task checks it again for its own)' }),
    info: z.unknown().openapi({ description: 'What the check found: images per split, classes, instances per class, warnings' }),
    archive_bytes: z.number(),
    disk_bytes: z.number().openapi({ description: 'What its extraction holds on disk' }),
    created_at: z.string(),
    origin: z.enum(['upload', 'convert', 'split']).openapi({ description: 'Uploaded, converted from a SAM2 export, or split from another dataset' }),
    parent_id: z.string().nullable().openapi({ description: 'The dataset a split was made from' }),
    stats: z.unknown().openapi({ description: 'What convert or split counted: samples, classes, class distribution (null for uploads)' }),
    validation: z.unknown().openapi({ description: 'The last POST /datasets/{id}/validate report, or null' }),
  })
  .openapi('UploadedDataset');

export function datasetView(row: DatasetRow) {
  return {
    dataset_id: row.id,
    name: row.name,
    sha256: row.sha256,
    format: row.format as (typeof DATASET_FORMATS)[number],
    task: row.task,
    info: row.info,
    archive_bytes: row.archiveBytes,
    disk_bytes: row.diskBytes,
    created_at: row.createdAt.toISOString(),
    origin: row.origin,
    parent_id: row.parentId,
    stats: row.stats,
    validation: row.validation,
  };
}

/** The upload's query: engines and tasks are this server's (which task goes with which engine is checked in the handler). */
function uploadQuery(engines: Engines) {
  const names = engines.names() as [string, ...string[]];
  const tasks = [...new Set(engines.list().flatMap((e) => [...e.tasks]))] as [string, ...string[]];
  return z
    .object({
      task: z.enum(tasks).default('detect').openapi({ description: "The task to check the dataset for (default detect); one of the engine's tasks" }),
      framework: z.enum(names).optional().openapi({ description: 'The engine whose formats to check it in (default: the first engine)' }),
      format: z.enum(DATASET_FORMATS).optional().openapi({ description: 'The archive layout; detected when left out' }),
      name: z.string().min(1).max(200).optional().openapi({ description: 'A name to list it by' }),
    })
    .strict();
}

export const IdParam = z.object({
  id: z.string().openapi({ param: { name: 'id', in: 'path' }, example: '550e8400-e29b-41d4-a716-446655440000' }),
});

const listRoute = createRoute({
  method: 'get',
  path: '/api/v1/datasets',
  summary: 'Uploaded datasets, newest first',
  security: [{ bearer: [] }],
  request: {
    query: z
      .object({
        limit: z.coerce.number().int().min(1).max(500).default(50),
        offset: z.coerce.number().int().min(0).max(1_000_000_000).default(0),
      })
      .strict(),
  },
  responses: {
    200: {
      description: 'A page of datasets',
      content: {
        'application/json': {
          schema: z.object({ total: z.number(), limit: z.number(), offset: z.number(), datasets: z.array(DatasetSchema) }),
        },
      },
    },
    ...errorResponses(400, 401),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/api/v1/datasets/{id}',
  summary: 'One uploaded dataset',
  security: [{ bearer: [] }],
  request: { params: IdParam },
  responses: {
    200: { description: 'The dataset', content: { 'application/json': { schema: DatasetSchema } } },
    ...errorResponses(401, 404),
  },
});

const deleteRoute = createRoute({
  method: 'delete',
  path: '/api/v1/datasets/{id}',
  summary: 'Delete an uploaded dataset and its files (409 while a queued or running job trains on it)',
  security: [{ bearer: [] }],
  request: { params: IdParam },
  responses: {
    200: {
      description: 'Deleted',
      content: { 'application/json': { schema: z.object({ dataset_id: z.string(), deleted: z.literal(true) }) } },
    },
    ...errorResponses(401, 404, 409),
  },
});

export function notFound(id: string): HttpError {
  return new HttpError(404, 'DATASET_NOT_FOUND', `no uploaded dataset ${id}`);
}

export function registerDatasets(app: OpenAPIHono, deps: AppDeps): void {
  const maxBytes = deps.config.dataset.maxDownloadBytes;
  const UploadQuery = uploadQuery(deps.engines);

  // Documented here, handled below with a plain handler: the body is a raw stream, never
  // parsed or buffered, under its own size limit.
  app.openAPIRegistry.registerPath({
    method: 'post',
    path: UPLOAD_PATH,
    summary: 'Upload a dataset ZIP (the raw request body), checked like a downloaded one',
    description: `Send the ZIP itself as the body with Content-Type: application/zip (curl --data-binary @dataset.zip). At most DATASET_MAX_DOWNLOAD_BYTES (${maxBytes} bytes here). It is extracted with the same guards as a download and checked for the task in the query; train on it with "dataset": {"id": "<dataset_id>"} in POST /api/v1/train. The same bytes uploaded again answer 200 with the existing dataset.`,
    security: [{ bearer: [] }],
    request: {
      query: UploadQuery,
      body: ZIP_BODY,
    },
    responses: {
      201: { description: 'Stored and checked', content: { 'application/json': { schema: DatasetSchema } } },
      200: { description: 'These bytes were uploaded before: the existing dataset', content: { 'application/json': { schema: DatasetSchema } } },
      422: { description: 'The archive was refused (DATASET_INVALID, DATASET_CORRUPTED), with the details a job would fail with', content: errorResponses(400)[400]!.content },
      ...errorResponses(400, 401, 413),
      415: { description: 'The body was not sent as application/zip', content: errorResponses(400)[400]!.content },
      503: { description: 'Remote storage (STORAGE_URL) could not keep the archive (STORAGE_UNAVAILABLE): try again', content: errorResponses(400)[400]!.content },
    },
  });

  app.post(UPLOAD_PATH, async (c) => {
    const parsed = UploadQuery.safeParse(c.req.query());
    if (!parsed.success) {
      throw new HttpError(
        400,
        'VALIDATION_ERROR',
        `invalid request query: ${parsed.error.issues.length} problem(s)`,
        parsed.error.issues.map((i) => ({ path: i.path, message: i.message, code: i.code })),
      );
    }
    const q = parsed.data;
    const engine = q.framework ? deps.engines.get(q.framework) : deps.engines.default;
    if (!engine) throw new HttpError(400, 'VALIDATION_ERROR', `unknown framework ${q.framework} (${deps.engines.names().join(', ')})`);
    if (!engine.tasks.includes(q.task)) {
      throw new HttpError(400, 'VALIDATION_ERROR', `task ${q.task} is not one of ${engine.name}'s: ${engine.tasks.join(', ')}`);
    }
    const body = zipBodyStream(c, maxBytes, 'ZIP');
    let result;
    try {
      result = await deps.datasets.upload(body, {
        name: q.name ?? null,
        task: q.task,
        formats: engine.datasetFormats(q.task),
        requested: q.format,
        signal: c.req.raw.signal,
      });
    } catch (err) {
      if (err instanceof TooLargeError) {
        throw new HttpError(413, 'PAYLOAD_TOO_LARGE', `the upload passed DATASET_MAX_DOWNLOAD_BYTES (${maxBytes})`);
      }
      if (err instanceof JobError && err.code === 'STORAGE_UNAVAILABLE') throw new HttpError(503, err.code, err.message, err.details ?? null);
      if (err instanceof JobError && err.code !== 'CANCELLED' && err.code !== 'UNKNOWN_ERROR') {
        throw new HttpError(422, err.code, err.message, err.details ?? null);
      }
      throw err;
    }
    requestLog(c).info({ dataset_id: result.row.id, sha256: result.row.sha256, created: result.created }, 'dataset uploaded');
    return c.json(datasetView(result.row), result.created ? 201 : 200);
  });

  app.openapi(listRoute, async (c) => {
    const q = c.req.valid('query');
    const { total, rows } = await deps.datasets.list(q.limit, q.offset);
    return c.json({ total, limit: q.limit, offset: q.offset, datasets: rows.map(datasetView) }, 200);
  });

  app.openapi(getRoute, async (c) => {
    const { id } = c.req.valid('param');
    const row = UUID_RE.test(id) ? await deps.datasets.get(id) : undefined;
    if (!row) throw notFound(id);
    return c.json(datasetView(row), 200);
  });

  app.openapi(deleteRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!UUID_RE.test(id)) throw notFound(id);
    const outcome = await deps.datasets.delete(id);
    if (outcome === 'not_found') throw notFound(id);
    if (outcome !== 'deleted') {
      throw new HttpError(409, 'DATASET_IN_USE', `dataset ${id} is used by ${outcome.inUse.length} queued or running job(s); cancel them or wait until they finish`, {
        jobs: outcome.inUse,
      });
    }
    requestLog(c).info({ dataset_id: id }, 'dataset deleted');
    return c.json({ dataset_id: id, deleted: true as const }, 200);
  });
}
