/**
 * The body of POST /api/v1/train (SPEC §2, seed 003 §4.1). Strict: unknown keys are errors,
 * so a typo in a hyperparameter never trains silently with a default.
 *
 * Two ways to say what to train: seed 003's `model_config`, or `config`, a config resolved by
 * POST /api/v1/config/resolve (any Ultralytics training arguments, checked by src/configs)
 * with `name` and `task` beside it. Either way the parsed request carries a model_config (the
 * job row, callbacks and pages read it); a config request's model_config also carries the
 * resolved config as `resolved_config`, which the worker's arguments come from.
 */
import { z } from '@hono/zod-openapi';
import { resolveConfig } from '../configs/resolver.js';
import { modelConfigView } from '../configs/train-args.js';
import { CALLBACK_SECRET_PATTERN, VALID_CALLBACK_SECRET, newCallbackSecretProblem } from '../security/callback-secret.js';

export const AugmentationSchema = z
  .object({
    hsv_h: z.number().min(0).max(1),
    hsv_s: z.number().min(0).max(1),
    hsv_v: z.number().min(0).max(1),
    degrees: z.number().min(-180).max(180),
    translate: z.number().min(0).max(1),
    scale: z.number().min(0).max(1),
    shear: z.number().min(-180).max(180),
    perspective: z.number().min(0).max(0.001),
    flipud: z.number().min(0).max(1),
    fliplr: z.number().min(0).max(1),
    mosaic: z.number().min(0).max(1),
    mixup: z.number().min(0).max(1),
  })
  .partial()
  .strict()
  .openapi('Augmentation');

export const ModelConfigSchema = z
  .object({
    name: z.string().min(1).max(200),
    task: z.enum(['detect', 'segment']).default('detect'),
    base_model: z
      .string()
      .min(1)
      .max(2000)
      .refine(
        (s) => /^https:\/\//.test(s) || /^[\w.-]+\.(pt|ya?ml)$/.test(s) || /^model:[\w-]+$/.test(s),
        'must be a file name under workdir/base-models/ (e.g. yolo11n.pt), a model .yaml, or an https URL',
      )
      .default('yolo11n.yaml'),
    epochs: z.number().int().min(1).max(10_000).default(100),
    batch_size: z.number().int().min(1).max(1024).default(16),
    image_size: z.number().int().min(32).max(4096).multipleOf(32).default(640),
    learning_rate: z.number().positive().max(1).default(0.01),
    optimizer: z.enum(['auto', 'SGD', 'Adam', 'Adamax', 'AdamW', 'NAdam', 'RAdam', 'RMSProp', 'MuSGD']).default('auto'),
    patience: z.number().int().min(0).max(10_000).default(50),
    seed: z.number().int().min(0).max(2 ** 31 - 1).default(0),
    augmentation: AugmentationSchema.default({}),
  })
  .strict()
  .openapi('ModelConfig');

export const DatasetSchema = z
  .object({
    url: z.string().url().max(8000).refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL'),
    format: z.literal('yolo').default('yolo'),
    sha256: z
      .string()
      .regex(/^[a-fA-F0-9]{64}$/, 'must be 64 hex characters')
      .transform((s) => s.toLowerCase())
      .optional(),
    /** Accepted for seed 003 compatibility; the layout is detected, not declared. */
    expected_structure: z.record(z.string(), z.boolean()).optional(),
  })
  .strict()
  .openapi('Dataset');

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

export const TrainRequestSchema = z
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
    framework: z.literal('ultralytics').optional().openapi({ description: 'With config (default ultralytics)' }),
    task: z.enum(['detect', 'segment']).optional().openapi({ description: 'With config (default detect)' }),
    config: z
      .record(z.string(), z.unknown())
      .optional()
      .openapi({
        description:
          'Instead of model_config: Ultralytics training arguments as POST /api/v1/config/resolve returns them (developer mode; omitted keys take the base config). model is the base model.',
        example: { model: 'yolo11n.yaml', epochs: 50, imgsz: 640, batch: 16, lr0: 0.01, cos_lr: true },
      }),
    dataset: DatasetSchema,
    resources: ResourcesSchema.default({ device: 'auto', workers: 8 }),
  })
  .strict()
  .superRefine((body, ctx) => {
    if (body.callback_url && !body.callback_secret) {
      ctx.addIssue({
        code: 'custom',
        path: ['callback_secret'],
        message: 'callback_secret is required when callback_url is set',
      });
    }
    if (body.model_config && body.config) {
      ctx.addIssue({ code: 'custom', path: ['config'], message: 'send model_config or config, not both' });
    } else if (!body.model_config && !body.config) {
      ctx.addIssue({ code: 'custom', path: ['model_config'], message: 'model_config (or a resolved config) is required' });
    }
    for (const key of ['name', 'framework', 'task'] as const) {
      if (body.model_config && body[key] !== undefined) {
        ctx.addIssue({ code: 'custom', path: [key], message: `goes with config; with model_config, ${key === 'framework' ? 'leave it out' : `set model_config.${key}`}` });
      }
    }
    if (body.config && !body.name) {
      ctx.addIssue({ code: 'custom', path: ['name'], message: 'name is required with config' });
    }
  })
  .transform((body, ctx) => {
    const { model_config: modelConfig, name, framework, task, config, ...rest } = body;
    if (modelConfig) return { ...rest, model_config: modelConfig as ModelConfig };
    const resolved = resolveConfig({ framework, task, mode: 'developer', overrides: config });
    if (!resolved.ok) {
      for (const issue of resolved.issues) {
        ctx.addIssue({ code: 'custom', path: ['config', ...issue.path.slice(1)], message: issue.message });
      }
      return z.NEVER;
    }
    const { config: resolvedConfig, task: resolvedTask } = resolved.value;
    // The config's device chooses the slot unless resources.device does.
    const configDevice = resolvedConfig['device'];
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
      model_config: { ...modelConfigView(name!, resolvedTask, resolvedConfig), resolved_config: resolvedConfig } as ModelConfig,
    };
  })
  .openapi('TrainRequest');

export type ModelConfig = z.infer<typeof ModelConfigSchema> & {
  /** Set when the request came as a resolved config: the worker's arguments come from it. */
  resolved_config?: Record<string, unknown>;
};
export type TrainRequest = z.infer<typeof TrainRequestSchema>;
