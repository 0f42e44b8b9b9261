/**
 * The body of POST /api/v1/train (SPEC §2, seed 003 §4.1). Strict: unknown keys are errors,
 * so a typo in a hyperparameter never trains silently with a default.
 */
import { z } from '@hono/zod-openapi';

export const AugmentationSchema = z
  .object({
    hsv_h: z.number().min(0).max(1),
    hsv_s: z.number().min(0).max(1),
    hsv_v: z.number().min(0).max(1),
    degrees: z.number().min(-180).max(180),
    translate: z.number().min(0).max(1),
    scale: z.number().min(0).max(10),
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

export const TrainRequestSchema = z
  .object({
    job_id: z.string().uuid().optional(),
    callback_url: z
      .string()
      .url()
      .max(2000)
      .refine((u) => /^https?:\/\//.test(u), 'must be an http(s) URL')
      .optional(),
    callback_secret: z.string().min(1).max(500).optional(),
    model_config: ModelConfigSchema,
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
  })
  .openapi('TrainRequest');

export type TrainRequest = z.infer<typeof TrainRequestSchema>;
export type ModelConfig = z.infer<typeof ModelConfigSchema>;
