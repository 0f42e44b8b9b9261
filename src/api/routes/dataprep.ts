/**
 * Data preparation: convert a SAM2 annotation export into a vision-language dataset, validate
 * a jsonl dataset, split one into train/val(/test). Each result is a dataset like an upload
 * (listed, deleted and trained on by id through routes/datasets.ts).
 *
 * Refusals answer 400 with a code: SAM2_INVALID (details name the file and the field),
 * DATASET_CORRUPTED / DATASET_INVALID (the ZIP guards), SPLIT_IMPOSSIBLE, DATASET_NOT_JSONL,
 * BASE_MODEL_NOT_FOUND.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { HttpError, JobError } from '../../core/errors.js';
import type { DatasetFormat } from '../../datasets/formats.js';
import { PrepareError } from '../../datasets/prepare/errors.js';
import { SPLIT_STRATEGIES } from '../../datasets/prepare/split.js';
import type { PreparedTarget } from '../../datasets/prepared.js';
import { TEMPLATES, type Template } from '../../datasets/sam2/templates.js';
import { TooLargeError } from '../../datasets/store.js';
import type { Engines } from '../../engines/index.js';
import { requireBody } from '../../http/body.js';
import { requestLog } from '../../http/context.js';
import type { AppDeps } from '../../http/deps.js';
import { UUID_RE, errorResponses } from '../../http/schemas.js';
import { CONVERT_PATH, DatasetSchema, IdParam, ZIP_BODY, datasetView, notFound, zipBodyStream } from './datasets.js';


/** The task a converted dataset is checked for: vision-lm where an engine has it, else the first task trained on jsonl. */
function jsonlTarget(engines: Engines): PreparedTarget | null {
  const candidates = engines.list().flatMap((e) => e.tasks.map((task) => ({ task, formats: e.datasetFormats(task) })));
  const jsonl = candidates.filter((c) => c.formats.includes('jsonl'));
  return jsonl.find((c) => c.task === 'vision-lm') ?? jsonl[0] ?? null;
}

/** PrepareError and the ZIP guards' JobErrors are the caller's to fix: 400 with their code. */
function refusal(err: unknown, maxBytes: number): never {
  if (err instanceof PrepareError) throw new HttpError(400, err.code, err.message, err.details);
  if (err instanceof TooLargeError) throw new HttpError(413, 'PAYLOAD_TOO_LARGE', `the upload passed DATASET_MAX_DOWNLOAD_BYTES (${maxBytes})`);
  if (err instanceof JobError && err.code !== 'CANCELLED' && err.code !== 'UNKNOWN_ERROR' && err.code !== 'INSUFFICIENT_DISK') {
    throw new HttpError(400, err.code, err.message, err.details ?? null);
  }
  throw err;
}

const ConvertQuery = z
  .object({
    name: z.string().min(1).max(200).optional().openapi({ description: 'A name to list the dataset by' }),
    templates: z
      .string()
      .max(200)
      .optional()
      .openapi({ description: `Comma-separated question templates (default all): ${TEMPLATES.join(', ')}` }),
  })
  .strict();

const Stats = z.record(z.string(), z.unknown()).openapi('PreparedDatasetStats', { description: 'samples, classes, class_distribution and more' });

const ConvertResponse = z.object({ dataset: DatasetSchema, statistics: Stats }).openapi('ConvertedDataset');

const CheckSchema = z.object({
  name: z.string(),
  status: z.enum(['passed', 'warning', 'error']),
  message: z.string(),
  details: z.record(z.string(), z.unknown()).optional(),
});

const ValidationSchema = z
  .object({
    dataset_id: z.string(),
    status: z.enum(['passed', 'passed_with_warnings', 'failed']),
    level: z.enum(['basic', 'strict']),
    checked_at: z.string(),
    context: z.object({ max_tokens: z.number(), source: z.string(), tokens: z.enum(['estimated', 'measured']), image_tokens: z.number() }),
    report: z.object({
      summary: z.object({ total_samples: z.number(), issues_found: z.number(), warnings: z.number(), errors: z.number() }),
      checks: z.array(CheckSchema),
      recommendations: z.array(z.string()),
    }),
  })
  .openapi('DatasetValidation');

const validateRoute = createRoute({
  method: 'post',
  path: '/api/v1/datasets/{id}/validate',
  summary: 'Check a jsonl dataset before training: images, token lengths, duplicates, class balance, answer consistency',
  description:
    'basic reports most findings as warnings; strict makes over-long samples, train/validation leaks and inconsistent answers errors. strict with base_model counts tokens with that folder\'s tokenizer; otherwise they are estimated (characters / 4); an image adds image_tokens. The context is max_tokens, else the base model folder\'s declared length, else 2048. The report is kept on the dataset (its `validation`).',
  security: [{ bearer: [] }],
  middleware: [requireBody] as const,
  request: {
    params: IdParam,
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z
            .object({
              level: z.enum(['basic', 'strict']).default('basic'),
              base_model: z.string().min(1).max(200).optional().openapi({ description: 'A base model folder under HF_MODELS_DIR, whose config gives the context length' }),
              max_tokens: z.number().int().min(16).max(1_048_576).optional().openapi({ description: 'The context length to fit (default: the base model\'s, else 2048)' }),
              image_tokens: z.number().int().min(0).max(65_536).optional().openapi({ description: 'Tokens an image takes (default 576, LLaVA-1.5)' }),
            })
            .strict(),
        },
      },
    },
  },
  responses: {
    200: { description: 'The report (status passed, passed_with_warnings or failed)', content: { 'application/json': { schema: ValidationSchema } } },
    ...errorResponses(400, 401, 404),
  },
});

const Ratio = z.number().min(0).max(1);

const splitRoute = createRoute({
  method: 'post',
  path: '/api/v1/datasets/{id}/split',
  summary: 'Split a jsonl dataset into a new dataset of train/val(/test) files with the same images',
  description:
    'random shuffles samples; stratified spreads each class (its first class in meta.classes) in the ratios; temporal keeps every sample of one video (meta.video, else the image\'s folder) in one split, so validation never sees a training video. The same dataset, strategy, ratios and seed give the same dataset (200 the second time).',
  security: [{ bearer: [] }],
  middleware: [requireBody] as const,
  request: {
    params: IdParam,
    body: {
      required: true,
      content: {
        'application/json': {
          schema: z
            .object({
              strategy: z.enum(SPLIT_STRATEGIES),
              ratios: z
                .object({ train: Ratio.refine((v) => v > 0, 'train must be above 0'), val: Ratio.refine((v) => v > 0, 'val must be above 0'), test: Ratio.default(0) })
                .strict()
                .refine((r) => Math.abs(r.train + r.val + r.test - 1) < 1e-6, { message: 'the ratios must add up to 1' }),
              seed: z.number().int().min(0).max(2_147_483_647).default(0),
              name: z.string().min(1).max(200).optional(),
            })
            .strict(),
        },
      },
    },
  },
  responses: {
    201: { description: 'The new dataset and its statistics', content: { 'application/json': { schema: ConvertResponse } } },
    200: { description: 'This split was made before: the existing dataset', content: { 'application/json': { schema: ConvertResponse } } },
    ...errorResponses(400, 401, 404),
    422: { description: 'The split dataset failed its check (DATASET_INVALID)', content: errorResponses(400)[400]!.content },
  },
});

function parseTemplates(raw: string | undefined): Template[] | undefined {
  if (raw === undefined) return undefined;
  const names = raw.split(',').map((t) => t.trim()).filter(Boolean);
  const unknown = names.filter((t) => !(TEMPLATES as readonly string[]).includes(t));
  if (unknown.length || names.length === 0) {
    throw new HttpError(400, 'VALIDATION_ERROR', `templates must name some of ${TEMPLATES.join(', ')}${unknown.length ? ` (unknown: ${unknown.join(', ')})` : ''}`);
  }
  return names as Template[];
}

export function registerDataPrep(app: OpenAPIHono, deps: AppDeps): void {
  const maxBytes = deps.config.dataset.maxDownloadBytes;

  app.openAPIRegistry.registerPath({
    method: 'post',
    path: CONVERT_PATH,
    summary: 'Convert a SAM2 annotation export ZIP (the raw request body) into a vision-language dataset',
    description: `Send the export itself as the body with Content-Type: application/zip: annotations.json and the video frames it names (docs/SAM2-EXPORT.md). Masks are COCO RLE, counts as an array or COCO's compressed string. The answer is a stored jsonl dataset (data.jsonl of {"image", "prompt", "completion", "meta"} lines, llava.json, images/) with its statistics; split it with POST /api/v1/datasets/{id}/split. At most DATASET_MAX_DOWNLOAD_BYTES (${maxBytes} bytes here).`,
    security: [{ bearer: [] }],
    request: {
      query: ConvertQuery,
      body: ZIP_BODY,
    },
    responses: {
      201: { description: 'Converted and stored', content: { 'application/json': { schema: ConvertResponse } } },
      200: { description: 'This export was converted before: the existing dataset', content: { 'application/json': { schema: ConvertResponse } } },
      ...errorResponses(400, 401, 413),
      415: { description: 'The body was not sent as application/zip', content: errorResponses(400)[400]!.content },
    },
  });

  app.post(CONVERT_PATH, async (c) => {
    const parsed = ConvertQuery.safeParse(c.req.query());
    if (!parsed.success) {
      throw new HttpError(400, 'VALIDATION_ERROR', `invalid request query: ${parsed.error.issues.length} problem(s)`, parsed.error.issues.map((i) => ({ path: i.path, message: i.message, code: i.code })));
    }
    const templates = parseTemplates(parsed.data.templates);
    const target = jsonlTarget(deps.engines);
    if (!target) throw new HttpError(400, 'VALIDATION_ERROR', 'no engine of this server trains on jsonl datasets');
    const result = await deps.prepared
      .convert(zipBodyStream(c, maxBytes, 'export ZIP'), { ...target, name: parsed.data.name ?? null, templates, signal: c.req.raw.signal })
      .catch((err: unknown) => refusal(err, maxBytes));
    requestLog(c).info({ dataset_id: result.row.id, samples: result.stats['samples'], created: result.created }, 'SAM2 export converted');
    return c.json({ dataset: datasetView(result.row), statistics: result.stats }, result.created ? 201 : 200);
  });

  app.openapi(validateRoute, async (c) => {
    const { id } = c.req.valid('param');
    const body = c.req.valid('json');
    const row = UUID_RE.test(id) ? await deps.datasets.get(id) : undefined;
    if (!row) throw notFound(id);
    const report = await deps.prepared
      .validate(row, { level: body.level, baseModel: body.base_model, maxTokens: body.max_tokens, imageTokens: body.image_tokens })
      .catch((err: unknown) => refusal(err, maxBytes));
    requestLog(c).info({ dataset_id: id, status: report.status }, 'dataset validated');
    return c.json({ dataset_id: id, ...report }, 200);
  });

  app.openapi(splitRoute, async (c) => {
    const { id } = c.req.valid('param');
    const body = c.req.valid('json');
    const row = UUID_RE.test(id) ? await deps.datasets.get(id) : undefined;
    if (!row) throw notFound(id);
    const formats: readonly DatasetFormat[] = ['jsonl'];
    let result;
    try {
      result = await deps.prepared.split(row, { task: row.task, formats, strategy: body.strategy, ratios: body.ratios, seed: body.seed, name: body.name ?? null });
    } catch (err) {
      // A split whose check fails is a dataset problem of the parent, like a refused upload.
      if (err instanceof JobError && err.code === 'DATASET_INVALID') throw new HttpError(422, err.code, err.message, err.details ?? null);
      refusal(err, maxBytes);
    }
    requestLog(c).info({ dataset_id: result.row.id, parent_id: id, strategy: body.strategy }, 'dataset split');
    return c.json({ dataset: datasetView(result.row), statistics: result.stats }, result.created ? 201 : 200);
  });
}
