/**
 * The model registry over HTTP:
 *
 *   GET    /api/v1/models                 registered models, newest first (?task=, ?framework=, ?job_id=)
 *   GET    /api/v1/models/{id}            one model, its exports, signed download links
 *   DELETE /api/v1/models/{id}            removes the model and its files (409 while a job trains from it)
 *   POST   /api/v1/models/{id}/export     {format: onnx | torchscript | …} → the checked export and its link
 *   POST   /api/v1/models/{id}/predict    multipart images → detections as json, csv or coco
 *   POST   /api/v1/models/{id}/generate   {prompt, image?, max_new_tokens?, temperature?, do_sample?, seed?} → text (text models;
 *                                         image: base64, required by vision-language models)
 *   GET    /downloads/models/{id}/{name}  a registry file through a signed link (no token)
 *
 * Prediction uploads and generate requests (an image in base64) have their own body limit
 * (PREDICT_MAX_BYTES): app.ts leaves these routes out of the MAX_BODY_BYTES limit and each
 * applies its own after authentication.
 */
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { imageSize } from 'image-size';
import type { ModelRow } from '../../db/schema.js';
import { HttpError } from '../../core/errors.js';
import { openableModelFile } from '../../registry/files.js';
import { PREDICT_FORMATS, toCoco, toCsv, toJsonResults } from '../../registry/formats.js';
import { verifyModelLink } from '../../registry/links.js';
import { ToolError } from '../../worker/tool.js';
import { listModels } from '../../registry/queries.js';
import type { UploadedImage } from '../../registry/service.js';
import { exportView, modelView, type LinkSigner } from '../../registry/view.js';
import type { AppDeps } from '../../http/deps.js';
import { requireBody } from '../../http/body.js';
import { UUID_RE, errorResponses, intQuery, limitQuery, numberQuery, offsetQuery } from '../../http/schemas.js';
import { requestLog } from '../../http/context.js';

const ModelIdParam = z.object({
  id: z.string().openapi({ param: { name: 'id', in: 'path' }, example: '6f1c2b1e-4c1a-4f57-9a55-0d3f2a1b7c9e' }),
});

const LinkSchema = z.object({ url: z.string(), expires_at: z.string() });
const ExportSchema = z
  .object({
    model_id: z.string(),
    format: z.string(),
    file_name: z.string(),
    size_bytes: z.number(),
    sha256: z.string(),
    created_at: z.string(),
    check: z.unknown().openapi({ description: 'Load-and-predict check of the exported file against the .pt' }),
    download: LinkSchema,
  })
  .openapi('ModelExport');
const ModelSchema = z
  .object({
    model_id: z.string(),
    name: z.string(),
    framework: z.string(),
    task: z.string(),
    format: z.string(),
    classes: z.array(z.string()),
    num_classes: z.number(),
    imgsz: z.number().nullable().openapi({ description: 'The input size the model expects, when its engine has one' }),
    metrics: z.record(z.string(), z.number().nullable()).nullable(),
    size_bytes: z.number(),
    size_mb: z.number(),
    sha256: z.string(),
    source_job_id: z.string().nullable(),
    base_model: z.string().nullable(),
    base_model_ref: z.string().openapi({ description: 'Use as base_model (or config.model) of a new job to fine-tune' }),
    created_at: z.string(),
    download: LinkSchema,
    exports: z.array(ExportSchema),
    links: z.object({ self: z.string(), export: z.string(), predict: z.string(), source_job: z.string().nullable() }),
  })
  .openapi('Model');

const listRoute = createRoute({
  method: 'get',
  path: '/api/v1/models',
  summary: 'Registered models, newest first',
  security: [{ bearer: [] }],
  request: {
    query: z
      .object({
        task: z.string().max(50).optional(),
        framework: z.string().max(50).optional().openapi({ description: 'Models of this engine' }),
        job_id: z.string().uuid().optional().openapi({ description: 'The model of this job' }),
        limit: limitQuery(500, 50),
        offset: offsetQuery(),
      })
      .strict(),
  },
  responses: {
    200: {
      description: 'A page of models',
      content: {
        'application/json': {
          schema: z.object({ total: z.number(), limit: z.number(), offset: z.number(), models: z.array(ModelSchema) }),
        },
      },
    },
    ...errorResponses(400, 401),
  },
});

const getRoute = createRoute({
  method: 'get',
  path: '/api/v1/models/{id}',
  summary: 'One registered model with its exports and signed download links',
  security: [{ bearer: [] }],
  request: { params: ModelIdParam },
  responses: {
    200: { description: 'The model', content: { 'application/json': { schema: ModelSchema } } },
    ...errorResponses(401, 404),
  },
});

const deleteRoute = createRoute({
  method: 'delete',
  path: '/api/v1/models/{id}',
  summary: 'Delete a model and its files',
  security: [{ bearer: [] }],
  request: { params: ModelIdParam },
  responses: {
    200: {
      description: 'Deleted',
      content: { 'application/json': { schema: z.object({ model_id: z.string(), success: z.literal(true) }) } },
    },
    ...errorResponses(401, 404, 409),
  },
});

const PredictQuery = z
  .object({
    format: z.enum(PREDICT_FORMATS).default('json'),
    conf: numberQuery(0, 1).optional().transform((v) => v ?? 0.25).openapi({ type: 'number', minimum: 0, maximum: 1, default: 0.25 }),
    iou: numberQuery(0, 1).optional().transform((v) => v ?? 0.7).openapi({ type: 'number', minimum: 0, maximum: 1, default: 0.7 }),
    imgsz: intQuery(32, 4096)
      .pipe(z.number().multipleOf(32))
      .optional()
      .openapi({ type: 'integer', minimum: 32, maximum: 4096, multipleOf: 32 }),
    max_det: intQuery(1, 10_000).optional().transform((v) => v ?? 300).openapi({ type: 'integer', minimum: 1, maximum: 10_000, default: 300 }),
  })
  .strict();

const downloadRoute = createRoute({
  method: 'get',
  path: '/downloads/models/{id}/{name}',
  summary: 'Download a registry file (weights or export) through a signed link (no token)',
  request: {
    params: ModelIdParam.extend({ name: z.string().openapi({ param: { name: 'name', in: 'path' }, example: 'best.onnx' }) }),
    query: z.object({ exp: z.string().optional(), sig: z.string().optional() }),
  },
  responses: {
    200: { description: 'The file', content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) } } },
    403: errorResponses(403)[403]!,
    404: errorResponses(404)[404]!,
  },
});

const UPLOAD_PATH_RE = /^\/api\/v1\/models\/[^/]+\/(predict|generate)\/?$/;
/**
 * app.ts: this request carries images, a prediction upload or a generate body with its image in
 * base64, and gets its own body limit (PREDICT_MAX_BYTES), not MAX_BODY_BYTES.
 */
export function isModelUpload(method: string, path: string): boolean {
  return method === 'POST' && UPLOAD_PATH_RE.test(path);
}

/** The body limit of the image-carrying routes, applied after authentication. */
function uploadLimit(maxSize: number, what: string) {
  return bodyLimit({
    maxSize,
    onError: () => {
      throw new HttpError(413, 'PAYLOAD_TOO_LARGE', `${what} over ${maxSize} bytes (PREDICT_MAX_BYTES)`);
    },
  });
}

const MAX_IMAGES = 100;
/** image-size's names for what predict.py (OpenCV / PIL) reads. */
const READABLE = new Set(['jpg', 'png', 'bmp', 'tiff', 'webp']);

const exportRoute = (formats: [string, ...string[]]) =>
  createRoute({
  method: 'post',
  path: '/api/v1/models/{id}/export',
  summary: 'Export a model (ONNX, TorchScript… as its engine offers) offline in a worker process, checked by predicting one image',
  description:
    "Answers when the export is done (typically seconds). The exported file is loaded and run on one image (the first validation image of the source dataset) next to the original: every original detection with confidence ≥ 0.001 (top 20) must have an exported detection of the same class with box IoU ≥ 0.9 and confidence within 0.05, else 500 EXPORT_CHECK_FAILED. An existing export is returned (200) unless force is true. The format list is every engine's; a format this model's engine does not export to (or, for a transformers model trained in full, adapter) is 409 EXPORT_UNSUPPORTED; a transformers adapter whose base model folder is not in HF_MODELS_DIR on this server is 409 MODEL_DOWNLOAD_FAILED.",
  security: [{ bearer: [] }],
  middleware: [requireBody] as const,
  request: {
    params: ModelIdParam,
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z.object({ format: z.enum(formats), force: z.boolean().default(false) }).strict(),
        },
      },
    },
  },
  responses: {
    200: { description: 'The export already made', content: { 'application/json': { schema: ExportSchema } } },
    201: { description: 'Exported and checked', content: { 'application/json': { schema: ExportSchema } } },
    ...errorResponses(400, 401, 404, 409, 413, 415, 500, 504),
  },
});

/** Standard base64 (padding optional), or a data: URL holding it. */
const BASE64_IMAGE = /^(?:data:[\w.+/-]{1,100};base64,)?[A-Za-z0-9+/]+={0,2}$/;

const GenerateBody = z
  .object({
    prompt: z.string().min(1).max(20_000).openapi({ description: 'The text to continue (encoded as the model trained: BOS, then the prompt)' }),
    image: z
      .string()
      .min(1)
      .regex(BASE64_IMAGE, 'base64 of the image file (optionally a data: URL)')
      .optional()
      .openapi({
        description:
          'The image a vision-language model (transformers vision-lm) answers about: the file (JPEG, PNG, BMP, TIFF or WebP) in base64, or a data: URL; required by those models, refused (400 IMAGE_UNSUPPORTED) by text-only ones. The whole body must fit PREDICT_MAX_BYTES (413 PAYLOAD_TOO_LARGE), the limit of prediction uploads, not MAX_BODY_BYTES.',
      }),
    max_new_tokens: z.number().int().min(1).max(512).default(32),
    temperature: z.number().positive().max(10).default(1).openapi({ description: 'Used when do_sample is true' }),
    do_sample: z.boolean().default(false).openapi({ description: 'false: greedy decoding (deterministic)' }),
    seed: z.number().int().min(0).max(2 ** 31 - 1).optional().openapi({ description: 'Seeds the sampling: the same seed and body give the same text' }),
  })
  .strict()
  .openapi('GenerateRequest');

const GenerationSchema = z
  .object({
    model_id: z.string(),
    text: z.string().openapi({ description: 'The generated continuation alone (special tokens left out)' }),
    tokens: z.number().openapi({ description: 'Tokens generated' }),
    token_ids: z.array(z.number()),
    prompt_tokens: z.number(),
    finish_reason: z.string().openapi({ description: 'eos: the model ended it; length: max_new_tokens reached' }),
    seconds: z.number(),
    max_new_tokens: z.number(),
    do_sample: z.boolean(),
    temperature: z.number(),
    seed: z.number().nullable(),
  })
  .openapi('Generation');

const generateRoute = createRoute({
  method: 'post',
  path: '/api/v1/models/{id}/generate',
  summary: 'Generate text with a text model (transformers engine) in a worker process, offline',
  description:
    "Runs in the model's engine's prediction worker (the process POST …/predict uses for image models), which keeps the model loaded. A model whose engine does not generate text is 409 GENERATE_UNSUPPORTED (use …/predict); an adapter whose base model folder is missing from HF_MODELS_DIR is 409 MODEL_DOWNLOAD_FAILED. A vision-language model (transformers vision-lm) needs `image` (base64; 400 IMAGE_REQUIRED without it, 422 INVALID_IMAGE when it does not read as an image); a text model refuses one (400 IMAGE_UNSUPPORTED). The body limit is PREDICT_MAX_BYTES (the limit of prediction uploads, 64 MiB by default; 413 PAYLOAD_TOO_LARGE above), not MAX_BODY_BYTES.",
  security: [{ bearer: [] }],
  middleware: [requireBody] as const,
  request: {
    params: ModelIdParam,
    body: { required: true, content: { 'application/json': { schema: GenerateBody } } },
  },
  responses: {
    200: { description: 'The generated text', content: { 'application/json': { schema: GenerationSchema } } },
    ...errorResponses(400, 401, 404, 409, 413, 415, 422, 500, 504),
  },
});

function toolHttpError(err: unknown): unknown {
  if (!(err instanceof ToolError)) return err;
  const status: Record<string, number> = {
    INVALID_IMAGE: 422,
    // A generate body that does not fit the model: an image missing, or one it cannot take.
    IMAGE_REQUIRED: 400,
    IMAGE_UNSUPPORTED: 400,
    MODEL_NOT_FOUND: 404,
    TIMEOUT: 504,
    // A well-formed request this model cannot serve (the format or operation belongs to other
    // engines' models: the documented enum is the union of every engine's): 409.
    EXPORT_UNSUPPORTED: 409,
    PREDICT_UNSUPPORTED: 409,
    GENERATE_UNSUPPORTED: 409,
    ENGINE_UNAVAILABLE: 409,
    // The base model folder an adapter loads on is not on this server (placed by hand, so it
    // can be placed again): a conflict with the server's state, not a failure of the request.
    MODEL_DOWNLOAD_FAILED: 409,
  };
  return new HttpError(status[err.code] ?? 500, err.code, err.message, err.details);
}

export function registerModels(app: OpenAPIHono, deps: AppDeps): void {
  const registry = deps.registry;
  const signer = (c: Context): LinkSigner => ({
    key: deps.secrets.linkSigningKey,
    baseUrl: deps.baseUrl(c.req.url),
    ttlSeconds: deps.config.downloadLinkTtlSeconds,
  });
  const load = async (id: string): Promise<ModelRow> => {
    const row = UUID_RE.test(id) ? await registry.get(id) : undefined;
    if (!row) throw new HttpError(404, 'MODEL_NOT_FOUND', `no model ${id}`);
    return row;
  };

  app.openapi(listRoute, async (c) => {
    const q = c.req.valid('query');
    const { total, rows } = await listModels(deps.database.db, { task: q.task, framework: q.framework, jobId: q.job_id, limit: q.limit, offset: q.offset });
    const exports = await registry.exports(rows.map((r) => r.id));
    const s = signer(c);
    return c.json({ total, limit: q.limit, offset: q.offset, models: rows.map((r) => modelView(r, exports, s)) }, 200);
  });

  app.openapi(getRoute, async (c) => {
    const row = await load(c.req.valid('param').id);
    return c.json(modelView(row, await registry.exports([row.id]), signer(c)), 200);
  });

  app.openapi(deleteRoute, async (c) => {
    const { id } = c.req.valid('param');
    await load(id);
    const outcome = await registry.delete(id);
    if (outcome === 'not_found') throw new HttpError(404, 'MODEL_NOT_FOUND', `no model ${id}`);
    if ('inUse' in outcome) {
      throw new HttpError(409, 'MODEL_IN_USE', `model ${id} is the base model of unfinished jobs`, { jobs: outcome.inUse });
    }
    requestLog(c).info({ model_id: id }, 'model deleted');
    return c.json({ model_id: id, success: true as const }, 200);
  });

  const formats = [...new Set(deps.engines.list().flatMap((e) => e.tasks.flatMap((t) => e.exportFormats(t))))];
  app.openapi(exportRoute(formats as [string, ...string[]]), async (c) => {
    const row = await load(c.req.valid('param').id);
    const { format, force } = c.req.valid('json');
    try {
      const { row: exported, created } = await registry.export(row, format, force);
      requestLog(c).info({ model_id: row.id, format, created }, 'model exported');
      return c.json(exportView(exported, signer(c)), created ? 201 : 200);
    } catch (err) {
      throw toolHttpError(err);
    }
  });

  // Ahead of the route's JSON validator: an image in base64 does not fit MAX_BODY_BYTES.
  app.post('/api/v1/models/:id/generate', uploadLimit(deps.config.predictMaxBytes, 'generate request'));
  app.openapi(generateRoute, async (c) => {
    const row = await load(c.req.valid('param').id);
    const body = c.req.valid('json');
    const seed = body.seed ?? null;
    try {
      const out = await registry.generate(row, {
        prompt: body.prompt,
        maxNewTokens: body.max_new_tokens,
        temperature: body.temperature,
        doSample: body.do_sample,
        seed,
        image: body.image ? Buffer.from(body.image.slice(body.image.indexOf(',') + 1), 'base64') : null,
      });
      requestLog(c).info({ model_id: row.id, tokens: out.tokens }, 'generation');
      return c.json(
        {
          model_id: row.id,
          text: out.text,
          tokens: out.tokens,
          token_ids: out.token_ids,
          prompt_tokens: out.prompt_tokens,
          finish_reason: out.finish_reason,
          seconds: out.seconds,
          max_new_tokens: body.max_new_tokens,
          do_sample: body.do_sample,
          temperature: body.temperature,
          seed,
        },
        200,
      );
    } catch (err) {
      throw toolHttpError(err);
    }
  });

  // Documented here, handled below with a plain handler: the body is multipart with any number
  // of files, read once with parseBody after its own size limit.
  app.openAPIRegistry.registerPath({
    method: 'post',
    path: '/api/v1/models/{id}/predict',
    summary: 'Predict on uploaded images (multipart/form-data) in a worker process',
    description:
      'Every file field of the form is an image (any field name, e.g. images). Options (format, conf, iou, imgsz, max_det) come from the query string, or as form fields. json: one record per image (bbox = [x1, y1, x2, y2] in pixels; polygon for segment, keypoints for pose, corners for obb, top-5 classifications for classify); csv: one row per detection (per class for classify); coco: images/annotations/categories. The body limit is PREDICT_MAX_BYTES.',
    security: [{ bearer: [] }],
    request: {
      params: ModelIdParam,
      query: PredictQuery,
      body: {
        required: true,
        content: {
          'multipart/form-data': {
            // The options may come as form fields too; no other field is accepted.
            schema: z
              .object({ images: z.array(z.string().openapi({ format: 'binary' })).min(1).max(MAX_IMAGES), ...PredictQuery.shape })
              .strict(),
          },
        },
      },
    },
    responses: {
      200: {
        description: 'Detections',
        content: {
          'application/json': {
            schema: z.union([
              z.object({ model_id: z.string(), task: z.string(), results: z.array(z.unknown()) }).openapi({ title: 'json' }),
              z
                .object({ info: z.unknown(), images: z.array(z.unknown()), annotations: z.array(z.unknown()), categories: z.array(z.unknown()) })
                .openapi({ title: 'coco', description: 'With format=coco: COCO detection results' }),
            ]),
          },
          'text/csv': { schema: z.string() },
        },
      },
      ...errorResponses(400, 401, 404, 409, 413, 415, 422, 500, 504),
    },
  });

  app.post(
    '/api/v1/models/:id/predict',
    uploadLimit(deps.config.predictMaxBytes, 'prediction upload'),
    async (c) => {
      const model = await load(c.req.param('id'));
      if (!/^multipart\/form-data/i.test(c.req.header('content-type') ?? '')) {
        throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', 'send the images as multipart/form-data');
      }
      let form: Record<string, string | File | (string | File)[]>;
      try {
        form = await c.req.parseBody({ all: true });
      } catch (err) {
        if (err instanceof HttpError) throw err;
        throw new HttpError(400, 'INVALID_MULTIPART', 'the multipart body could not be read');
      }
      const files: File[] = [];
      const fields: Record<string, string> = {};
      for (const [key, value] of Object.entries(form)) {
        for (const v of Array.isArray(value) ? value : [value]) {
          if (typeof v === 'string') fields[key.replace(/\[\]$/, '')] = v;
          else files.push(v);
        }
      }
      // Each source checked on its own (a bad form field is refused even when the query string
      // sets the same option); the query string wins where both set one.
      const sources = { form: PredictQuery.safeParse(fields), query: PredictQuery.safeParse(c.req.query()) };
      const issues = Object.entries(sources).flatMap(([where, r]) =>
        r.success ? [] : r.error.issues.map((i) => ({ path: [where, ...i.path.map(String)], message: i.message, code: i.code })),
      );
      if (issues.length) throw new HttpError(400, 'VALIDATION_ERROR', `invalid prediction options: ${issues.length} problem(s)`, issues);
      const parsed = PredictQuery.safeParse({ ...fields, ...c.req.query() });
      if (!parsed.success) throw new HttpError(400, 'VALIDATION_ERROR', 'invalid prediction options');
      if (files.length === 0) throw new HttpError(400, 'NO_IMAGES', 'no image files in the form (send them as file fields, e.g. images)');
      if (files.length > MAX_IMAGES) throw new HttpError(400, 'TOO_MANY_IMAGES', `at most ${MAX_IMAGES} images per request`);

      const images: UploadedImage[] = [];
      const problems: { name: string; error: string }[] = [];
      for (const [i, file] of files.entries()) {
        const name = (file.name || `image-${i}`).replace(/[\\/]/g, '_').slice(0, 200);
        const data = new Uint8Array(await file.arrayBuffer());
        try {
          const size = imageSize(data);
          if (!READABLE.has(size.type ?? '')) problems.push({ name, error: `unsupported image type ${size.type}` });
          else images.push({ name, data });
        } catch {
          problems.push({ name, error: 'not an image (unrecognized header)' });
        }
      }
      if (problems.length) throw new HttpError(422, 'INVALID_IMAGE', `${problems.length} upload(s) are not readable images`, problems);

      const opts = parsed.data;
      let run;
      try {
        run = await registry.predict(model, images, {
          conf: opts.conf,
          iou: opts.iou,
          imgsz: opts.imgsz ?? model.imgsz,
          maxDet: opts.max_det,
        });
      } catch (err) {
        throw toolHttpError(err);
      }
      requestLog(c).info({ model_id: model.id, images: images.length, format: opts.format }, 'prediction');
      if (opts.format === 'csv') {
        return c.body(toCsv(run), 200, {
          'Content-Type': 'text/csv; charset=utf-8',
          'Content-Disposition': 'attachment; filename="predictions.csv"',
        });
      }
      if (opts.format === 'coco') return c.json(toCoco(run), 200);
      return c.json(
        {
          model_id: model.id,
          model_name: model.name,
          task: run.task,
          conf: opts.conf,
          iou: opts.iou,
          imgsz: opts.imgsz ?? model.imgsz,
          results: toJsonResults(run),
        },
        200,
      );
    },
  );

  app.openapi(downloadRoute, async (c) => {
    const { id, name } = c.req.valid('param');
    const { exp, sig } = c.req.valid('query');
    const check = verifyModelLink({ key: deps.secrets.linkSigningKey, modelId: id, fileName: name, exp, sig });
    if (!check.ok) {
      if (check.reason === 'expired') throw new HttpError(403, 'LINK_EXPIRED', 'this download link has expired; ask the API for a new one');
      throw new HttpError(403, 'LINK_INVALID', 'this download link is not valid (missing, malformed or altered signature)');
    }
    const row = await load(id);
    const names = new Set([row.fileName, ...(await registry.exports([row.id])).map((e) => e.fileName)]);
    if (!names.has(name)) throw new HttpError(404, 'FILE_NOT_FOUND', `model ${id} has no file ${name}`);
    const local = openableModelFile(registry.workdir, row.id, name);
    // Not on this node: a presigned bucket URL when clients can reach the bucket, else fetched here first.
    const direct = local ? null : await registry.remoteLink(row.id, name, deps.config.downloadLinkTtlSeconds);
    if (direct) return c.redirect(direct, 302) as never;
    const file = local ?? (await registry.modelFile(row.id, name));
    if (!file) throw new HttpError(404, 'FILE_NOT_FOUND', `model ${id} has no file ${name}`);
    const body =
      file.size === 0 ? '' : (Readable.toWeb(fs.createReadStream(file.path, { start: 0, end: file.size - 1 })) as unknown as ReadableStream);
    return c.body(body, 200, {
      'Content-Type': 'application/octet-stream',
      'Content-Length': String(file.size),
      'Content-Disposition': `attachment; filename="${name}"`,
      'Cache-Control': 'private, no-store',
      'X-Content-Type-Options': 'nosniff',
    }) as never;
  });
}
