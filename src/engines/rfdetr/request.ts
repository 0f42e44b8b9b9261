/**
 * The RF-DETR part of POST /api/v1/train:
 *
 *   {"framework": "rfdetr", "name": "…", "task": "detect", "base_model": "rfdetr-nano",
 *    "pretrained": true, "epochs": 50, "batch_size": 4, "image_size": 384, …}
 *
 * base_model names a published checkpoint (rfdetr-nano … rfdetr-large, rfdetr-seg-nano …):
 * its size, and with `pretrained` its weights; `"pretrained": false` trains that size from
 * random initialisation. `model:<id>` fine-tunes a registered RF-DETR model of the same size.
 * image_size is RF-DETR's resolution: a multiple of the size's block (32 for most detection
 * sizes), checked here so a bad value never reaches the worker.
 */
import { z } from '@hono/zod-openapi';
import { publishedWeight, variant, variants } from './catalog.js';

export const RFDETR_TASKS = ['detect', 'segment'] as const;

export const RfdetrModelConfigSchema = z
  .object({
    framework: z.literal('rfdetr'),
    name: z.string().min(1).max(200),
    task: z.enum(RFDETR_TASKS).default('detect'),
    base_model: z
      .string()
      .min(1)
      .max(200)
      .regex(/^(rfdetr-[\w-]+|model:[\w-]+)$/, 'must be a published RF-DETR name (rfdetr-nano, rfdetr-seg-small…) or model:<id>')
      .default('rfdetr-nano')
      .openapi({ description: 'A published checkpoint by name (its size and, with pretrained, its weights), or model:<id>' }),
    /** The size of a model:<id> base (a name already says it). */
    model_size: z.string().min(1).max(20).optional().openapi({ description: 'With model:<id>: the registered model\'s size (nano, small…)' }),
    pretrained: z.boolean().default(true).openapi({ description: 'false: random initialisation (nothing is downloaded)' }),
    base_model_sha256: z
      .string()
      .regex(/^[a-fA-F0-9]{64}$/, 'must be 64 hex characters')
      .transform((s) => s.toLowerCase())
      .optional(),
    epochs: z.number().int().min(1).max(10_000).default(50),
    batch_size: z.number().int().min(1).max(1024).default(4),
    image_size: z.number().int().min(12).max(2048).optional().openapi({ description: "Resolution; default: the size's own" }),
    learning_rate: z.number().positive().max(1).default(1e-4),
    learning_rate_encoder: z.number().positive().max(1).default(1.5e-4),
    grad_accum_steps: z.number().int().min(1).max(256).default(4),
    weight_decay: z.number().min(0).max(1).default(1e-4),
    warmup_epochs: z.number().min(0).max(1000).default(0),
    ema: z.boolean().default(true).openapi({ description: 'Keep an exponential moving average of the weights (what validation scores)' }),
    early_stopping: z.boolean().default(false),
    patience: z.number().int().min(1).max(10_000).default(10).openapi({ description: 'With early_stopping: epochs without improvement' }),
    multi_scale: z.boolean().default(true),
    amp: z.boolean().default(true).openapi({ description: 'Mixed precision on CUDA (the CPU always trains in fp32)' }),
    seed: z.number().int().min(0).max(2 ** 31 - 1).default(0),
    num_queries: z.number().int().min(1).max(3000).optional().openapi({ description: 'Object queries (default 300); fewer train faster' }),
    group_detr: z.number().int().min(1).max(64).optional().openapi({ description: 'Query groups in training (default 13)' }),
  })
  .strict()
  .superRefine((mc, ctx) => {
    const size = modelSize(mc);
    if (mc.base_model.startsWith('model:')) {
      if (!mc.model_size) ctx.addIssue({ code: 'custom', path: ['model_size'], message: 'required with base_model model:<id>: the size of that model' });
    } else {
      const w = publishedWeight(mc.base_model);
      if (!w) {
        const names = variants(mc.task).map((v) => (mc.task === 'segment' ? `rfdetr-seg-${v.size}` : `rfdetr-${v.size}`));
        ctx.addIssue({ code: 'custom', path: ['base_model'], message: `unknown RF-DETR model ${mc.base_model}; ${mc.task}: ${names.join(', ')}` });
        return;
      }
      if (w.task !== mc.task) ctx.addIssue({ code: 'custom', path: ['base_model'], message: `${mc.base_model} is a ${w.task} model; this job's task is ${mc.task}` });
    }
    const v = size ? variant(mc.task, size) : undefined;
    if (size && !v) {
      ctx.addIssue({ code: 'custom', path: ['model_size'], message: `RF-DETR has no ${mc.task} size ${size} (${variants(mc.task).map((x) => x.size).join(', ')})` });
      return;
    }
    if (v && mc.image_size !== undefined && mc.image_size % v.block !== 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['image_size'],
        message: `RF-DETR ${v.size} (${mc.task}) needs a resolution that is a multiple of ${v.block}, e.g. ${v.block * Math.max(2, Math.floor(v.defaultResolution / v.block / 2))} or ${v.defaultResolution}`,
      });
    }
  })
  .openapi('RfdetrModelConfig');

export type RfdetrModelConfig = z.infer<typeof RfdetrModelConfigSchema>;

/** The size a job trains: from its base model's name, or model_size for a registered base. */
export function modelSize(mc: Pick<RfdetrModelConfig, 'base_model' | 'model_size'>): string | undefined {
  return mc.model_size ?? publishedWeight(mc.base_model)?.size;
}
