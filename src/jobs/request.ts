/**
 * The body of POST /api/v1/train, built from the engines this server runs. Strict: unknown
 * keys are errors, so a typo in a hyperparameter never trains silently with a default.
 *
 * Two ways to say what to train: `model_config` (each engine's own schema, told apart by its
 * `framework`; a body without one is for the default engine), or `config`, a config resolved
 * by POST /api/v1/config/resolve, with `name`, `task` and `framework` beside it. Either way the
 * parsed request carries a typed model_config (the job row, callbacks and pages read it); a
 * config request also keeps the resolved config as `resolved_config`, which the worker's
 * arguments come from.
 *
 * What is stored with a job is this parsed request (without callback_secret); jobRequest()
 * reads it back through the engine's schema, so code past the API never casts a blob.
 */
import { z } from '@hono/zod-openapi';
import { DATASET_FORMATS } from '../datasets/formats.js';
import type { JobRow } from '../db/schema.js';
import type { Engines } from '../engines/index.js';
import type { AnyEngine, ModelConfigBase } from '../engines/types.js';
import { CALLBACK_SECRET_PATTERN, VALID_CALLBACK_SECRET, newCallbackSecretProblem } from '../security/callback-secret.js';

const DatasetFormatSchema = z.enum(DATASET_FORMATS).optional().openapi({
  description: 'The archive layout; detected when left out. Each engine accepts its own formats (GET /api/v1/engines).',
});

export const DatasetUrlSchema = z
  .object({
    url: z.string().url().max(8000).refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL'),
    format: DatasetFormatSchema,
    sha256: z
      .string()
      .regex(/^[a-fA-F0-9]{64}$/, 'must be 64 hex characters')
      .transform((s) => s.toLowerCase())
      .optional()
      .openapi({ description: 'The ZIP\'s sha256: checked after download, and an archive already stored under it is used without downloading' }),
    /** Accepted for compatibility with upstream apps that send it; the layout is detected, not declared. */
    expected_structure: z.record(z.string(), z.boolean()).optional(),
  })
  .strict()
  .openapi('DatasetUrl');

export const DatasetIdSchema = z
  .object({
    id: z.string().uuid().openapi({ description: 'An uploaded dataset (POST /api/v1/datasets)' }),
    format: DatasetFormatSchema,
  })
  .strict()
  .openapi('DatasetId');

export const DatasetSchema = z.union([DatasetUrlSchema, DatasetIdSchema]).openapi('Dataset', {
  description: 'Where the training data comes from: a ZIP at a URL, or a ZIP uploaded before by POST /api/v1/datasets',
});

export const ResourcesSchema = z
  .object({
    device: z
      .string()
      .regex(/^(auto|cpu|cuda:\d+|\d+)$/, 'must be auto, cpu or cuda:N')
      .default('auto'),
    workers: z.number().int().min(0).max(64).default(8),
    max_memory_gb: z.number().positive().max(4096).optional(),
  })
  .strict()
  .openapi('Resources');
export type Resources = z.infer<typeof ResourcesSchema>;

export const CallbackSecretSchema = z
  .string()
  .superRefine((secret, ctx) => {
    const problem = newCallbackSecretProblem(secret);
    if (problem) ctx.addIssue({ code: 'custom', message: `${problem}; ${VALID_CALLBACK_SECRET}` });
  })
  .openapi({
    description:
      'Signs the callbacks (Standard Webhooks webhook-signature) and is sent as X-Callback-Secret. Either "whsec_" + standard base64 of 24 to 64 random bytes (the Standard Webhooks format; the key is the decoded bytes), or a plain string of 24 to 500 printable ASCII characters without spaces (the key is the string\'s bytes).',
    pattern: CALLBACK_SECRET_PATTERN,
    example: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwQv0ncKBH3Vc=',
  });

export const CallbackOptionsSchema = z
  .object({
    cancelled_status: z
      .enum(['failed', 'cancelled'])
      .default('failed')
      .openapi({
        description:
          'The "status" of the training_failed callback sent when the job is cancelled: "failed" (the default, as upstream tables built to the original contract expect) or "cancelled". The error code is CANCELLED either way.',
      }),
  })
  .strict()
  .openapi('CallbackOptions');

/** The request as parsed and stored: what the rest of trainhook reads. */
export interface TrainRequest {
  job_id?: string | undefined;
  callback_url?: string | undefined;
  callback_secret?: string | undefined;
  callback_options?: z.infer<typeof CallbackOptionsSchema> | undefined;
  model_config: ModelConfigBase & Record<string, unknown>;
  /** Set when the request came as a resolved config: the worker's arguments come from it. */
  resolved_config?: Record<string, unknown> | undefined;
  dataset: z.infer<typeof DatasetSchema>;
  resources: Resources;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Which tasks go with which framework, for the OpenAPI document (a refinement the schema
 * cannot show otherwise): one branch per engine, its framework (optional for the default
 * engine) with its tasks.
 */
export function frameworkTaskBranches(engines: Engines, tasksOf: (e: AnyEngine) => readonly string[]) {
  return engines.list().map((e) => ({
    title: e.name,
    properties: { framework: { const: e.name }, task: { enum: [...tasksOf(e)] } },
    ...(e === engines.default ? {} : { required: ['framework'] }),
  }));
}

export function trainRequestSchema(engines: Engines) {
  const all = engines.list();
  const modelConfigs = all.map((e) => e.modelConfig) as unknown as [z.ZodObject, ...z.ZodObject[]];
  const ModelConfigSchema = (
    modelConfigs.length === 1 ? modelConfigs[0] : z.discriminatedUnion('framework', modelConfigs as [z.ZodObject, z.ZodObject, ...z.ZodObject[]])
  ).openapi('ModelConfig', {
    description: `One engine's model_config, chosen by framework (${all.map((e) => e.name).join(', ')}; default ${engines.default.name}).`,
  });
  return z
    .object({
      job_id: z.string().uuid().optional(),
      callback_url: z
        .string()
        .url()
        .max(2000)
        .refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL')
        .optional(),
      callback_secret: CallbackSecretSchema.optional(),
      callback_options: CallbackOptionsSchema.optional(),
      model_config: ModelConfigSchema.optional(),
      /** The alternative to model_config: a resolved config and what it does not say. */
      name: z.string().min(1).max(200).optional().openapi({ description: 'With config: the model name (required)' }),
      framework: z
        .enum(engines.names() as [string, ...string[]])
        .optional()
        .openapi({ description: `With config (default ${engines.default.name})` }),
      task: z.string().min(1).max(50).optional().openapi({ description: "With config (default: the engine's first task)" }),
      config: z
        .record(z.string(), z.unknown())
        .optional()
        .openapi({
          description:
            "Instead of model_config: the engine's training arguments as POST /api/v1/config/resolve returns them (developer mode; omitted keys take the base config).",
          example: { model: 'yolo11n.yaml', epochs: 50, imgsz: 640, batch: 16, lr0: 0.01, cos_lr: true },
        }),
      dataset: DatasetSchema,
      resources: ResourcesSchema.default({ device: 'auto', workers: 8 }),
    })
    .strict()
    .superRefine((body, ctx) => {
      if (body.callback_url && !body.callback_secret) {
        ctx.addIssue({ code: 'custom', path: ['callback_secret'], message: 'callback_secret is required when callback_url is set' });
      }
      if (body.model_config && body.config) {
        ctx.addIssue({ code: 'custom', path: ['config'], message: 'send model_config or config, not both' });
      } else if (!body.model_config && !body.config) {
        ctx.addIssue({ code: 'custom', path: ['model_config'], message: 'model_config (or a resolved config) is required' });
      }
      for (const key of ['name', 'framework', 'task'] as const) {
        if (body.model_config && body[key] !== undefined) {
          ctx.addIssue({ code: 'custom', path: [key], message: `goes with config; with model_config, set model_config.${key}` });
        }
      }
      if (body.config && !body.name) ctx.addIssue({ code: 'custom', path: ['name'], message: 'name is required with config' });
    })
    .transform((body, ctx): TrainRequest => {
      const { model_config: modelConfig, name, framework, task, config, ...rest } = body;
      if (modelConfig) return { ...rest, model_config: modelConfig as TrainRequest['model_config'] };
      const engine = framework ? engines.require(framework) : engines.default;
      const chosenTask = task ?? engine.presets.tasks[0]!;
      // A config is the engine's arguments over a task's base config: tasks without one take model_config.
      if (!engine.presets.tasks.includes(chosenTask)) {
        ctx.addIssue({ code: 'custom', path: ['task'], message: `${engine.name} takes a config for ${engine.presets.tasks.join(', ')}` });
        return z.NEVER;
      }
      const submitted = engine.presets.submission(name!, chosenTask, config!);
      if (!submitted.ok) {
        for (const issue of submitted.issues) {
          ctx.addIssue({ code: 'custom', path: ['config', ...issue.path.slice(1)], message: issue.message });
        }
        return z.NEVER;
      }
      const resolved = submitted.resolvedConfig;
      // The config's device chooses the slot unless resources.device does.
      const configDevice = resolved?.['device'];
      let resources = rest.resources;
      if (typeof configDevice === 'string') {
        if (resources.device === 'auto') resources = { ...resources, device: configDevice };
        else if (resources.device.replace(/^(\d+)$/, 'cuda:$1') !== configDevice) {
          ctx.addIssue({
            code: 'custom',
            path: ['config', 'device'],
            message: `config.device ${configDevice} contradicts resources.device ${resources.device}`,
          });
          return z.NEVER;
        }
      }
      return {
        ...rest,
        resources,
        model_config: submitted.modelConfig as TrainRequest['model_config'],
        ...(resolved ? { resolved_config: resolved } : {}),
      };
    })
    .openapi('TrainRequest', {
      // What the refinements above check, stated for clients: model_config or config (with its
      // name), exactly one; a callback_url needs its secret.
      oneOf: [
        {
          title: 'model_config',
          required: ['model_config'],
          not: { anyOf: [{ required: ['config'] }, { required: ['name'] }, { required: ['framework'] }, { required: ['task'] }] },
        },
        {
          title: 'config',
          required: ['config', 'name'],
          not: { required: ['model_config'] },
          anyOf: frameworkTaskBranches(engines, (e) => e.presets.tasks),
        },
      ],
      dependentRequired: { callback_url: ['callback_secret'] },
    } as object);
}

/** A stored job's request, read back typed through its engine. */
export interface JobRequest<MC extends ModelConfigBase = ModelConfigBase & Record<string, unknown>> {
  engine: AnyEngine;
  modelConfig: MC;
  resolvedConfig: Record<string, unknown> | null;
  dataset: TrainRequest['dataset'];
  resources: Resources;
}

/**
 * The request a job was submitted with. Rows written before requests carried a framework are
 * the default engine's, and kept a resolved config inside model_config.
 */
export function jobRequest(row: Pick<JobRow, 'request' | 'engine'>, engines: Engines): JobRequest {
  const stored = row.request;
  const engine = engines.require(row.engine);
  const raw = isRecord(stored['model_config']) ? { ...stored['model_config'] } : {};
  let resolved = isRecord(stored['resolved_config']) ? stored['resolved_config'] : null;
  if (isRecord(raw['resolved_config'])) {
    resolved ??= raw['resolved_config'];
    delete raw['resolved_config'];
  }
  raw['framework'] ??= engine.name;
  const modelConfig = engine.modelConfig.parse(raw) as JobRequest['modelConfig'];
  return {
    engine,
    modelConfig,
    resolvedConfig: resolved,
    dataset: DatasetSchema.parse(stored['dataset'] ?? {}),
    resources: ResourcesSchema.parse(stored['resources'] ?? {}),
  };
}
