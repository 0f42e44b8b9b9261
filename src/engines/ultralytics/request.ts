/**
 * The Ultralytics part of POST /api/v1/train: `model_config` in the request shape upstream apps
 * send (name, task, base model, epochs, batch, image size, learning rate, optimizer, patience,
 * seed, augmentation). Strict: a typo in a hyperparameter never trains silently with a default.
 * `framework` defaults to ultralytics, the engine of every request that does not name one.
 */
import { z } from '@hono/zod-openapi';
import { OPTIMIZERS } from './catalog.js';

export const ULTRALYTICS_TASKS = ['detect', 'segment', 'classify', 'pose', 'obb'] as const;
export type UltralyticsTask = (typeof ULTRALYTICS_TASKS)[number];

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

/** What base_model may be: an official weight name, a model .yaml, an https URL or a registered model. */
export const BASE_MODEL_RE = /^https:\/\/\S+$|^[\w.-]+\.(pt|ya?ml)$|^model:[\w-]+$/;

export const UltralyticsModelConfigSchema = z
  .object({
    framework: z.literal('ultralytics').default('ultralytics'),
    name: z.string().min(1).max(200),
    task: z.enum(ULTRALYTICS_TASKS).default('detect'),
    base_model: z
      .string()
      .min(1)
      .max(2000)
      .refine(
        (s) => BASE_MODEL_RE.test(s),
        'must be an Ultralytics weight name (yolo11n.pt), a file name under workdir/base-models/, a model .yaml, an https URL or model:<id>',
      )
      .default('yolo11n.yaml'),
    /** Pins the base model file: a download whose sha256 differs is refused. */
    base_model_sha256: z
      .string()
      .regex(/^[a-fA-F0-9]{64}$/, 'must be 64 hex characters')
      .transform((s) => s.toLowerCase())
      .optional(),
    epochs: z.number().int().min(1).max(10_000).default(100),
    batch_size: z.number().int().min(1).max(1024).default(16),
    image_size: z.number().int().min(32).max(4096).multipleOf(32).default(640),
    learning_rate: z.number().positive().max(1).default(0.01),
    optimizer: z.enum(OPTIMIZERS).default('auto'),
    patience: z.number().int().min(0).max(10_000).default(50),
    seed: z.number().int().min(0).max(2 ** 31 - 1).default(0),
    augmentation: AugmentationSchema.default({}),
  })
  .strict()
  .openapi('UltralyticsModelConfig');

export type UltralyticsModelConfig = z.infer<typeof UltralyticsModelConfigSchema>;
