/**
 * The transformers part of POST /api/v1/train: a causal language model (task causal-lm, text →
 * text) or a vision-language model (task vision-lm, image + text → text, LLaVA-style: a config
 * with vision_config and a processor) fine-tuned with Hugging Face transformers, with a LoRA
 * adapter (peft) or in full:
 *
 *   {"framework": "transformers", "name": "…", "task": "causal-lm", "base_model": "tiny-llama",
 *    "method": "lora", "lora_r": 8, "epochs": 3, "learning_rate": 2e-4, "max_length": 512, …}
 *
 * base_model names either a folder the operator placed under the server's HF_MODELS_DIR (default
 * WORKDIR/hf-models/): a `save_pretrained` directory with config.json, the weights and the
 * tokenizer, by its one-segment name, never a path (a request cannot name a file of the
 * server's disk); or a Hugging Face Hub model id, owner/name[@revision], which the service
 * downloads once into WORKDIR/hf-cache/ (the worker itself never downloads).
 */
import { z } from '@hono/zod-openapi';
import { HUB_ID_SOURCE } from '../hub.js';

export const TRANSFORMERS_TASKS = ['causal-lm', 'vision-lm'] as const;
export const METHODS = ['lora', 'qlora', 'full'] as const;
export const MIXED_PRECISION = ['no', 'fp16', 'bf16'] as const;

/**
 * One path segment (letters, digits, _ . -, not starting with a dot, no ..), or a Hub id: one
 * pattern, so the OpenAPI document says exactly what is accepted.
 */
const BASE_MODEL = new RegExp(`^(?:(?!.*\\.\\.)[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}|${HUB_ID_SOURCE})$`);

export const BASE_MODEL_HINT =
  "must be the name of a model folder on this server (place the model's save_pretrained folder (config.json, weights, tokenizer) " +
  'under HF_MODELS_DIR (default <WORKDIR>/hf-models/) and give its folder name) or a Hugging Face Hub model id owner/name[@revision] ' +
  '(letters, digits, - _ . in each part); absolute paths and paths with .. are refused';

export const TransformersModelConfigSchema = z
  .object({
    framework: z.literal('transformers'),
    name: z.string().min(1).max(200),
    task: z
      .enum(TRANSFORMERS_TASKS)
      .default('causal-lm')
      .openapi({ description: 'causal-lm: text → text; vision-lm: image + text → text (the base model folder must hold a vision-language model and its processor)' }),
    base_model: z
      .string()
      .min(1)
      .max(250)
      .regex(BASE_MODEL, BASE_MODEL_HINT)
      .openapi({
        description:
          "The name of a model folder under the server's HF_MODELS_DIR (default <WORKDIR>/hf-models/), or a Hugging Face Hub model id owner/name[@revision] that the server downloads once (HF_ENDPOINT, HF_TOKEN)",
      }),
    method: z.enum(METHODS).default('lora').openapi({ description: 'lora: a LoRA adapter (peft); qlora: a LoRA adapter on the base model quantized to 4-bit (bitsandbytes nf4), needs CUDA (refused on a CPU-only server); full: every weight' }),
    lora_r: z.number().int().min(1).max(1024).default(8),
    lora_alpha: z.number().positive().max(4096).default(16),
    lora_dropout: z.number().min(0).max(0.9).default(0.05),
    target_modules: z
      .array(z.string().regex(/^[A-Za-z_][\w.]{0,99}$/, 'a module name such as q_proj'))
      .min(1)
      .max(64)
      .optional()
      .openapi({
        description:
          "Modules LoRA adapts (causal-lm default: peft's choice for the model type, q_proj and v_proj for LLaMA; vision-lm: these names in the language model and projector only, default q_proj, k_proj, v_proj, o_proj; the vision tower stays frozen)",
      }),
    learning_rate: z.number().positive().max(1).default(2e-4),
    weight_decay: z.number().min(0).max(1).default(0),
    batch_size: z.number().int().min(1).max(1024).default(4),
    grad_accum_steps: z.number().int().min(1).max(1024).default(1),
    epochs: z.number().int().min(1).max(1000).default(3),
    warmup_ratio: z.number().min(0).max(0.5).default(0.03),
    mixed_precision: z.enum(MIXED_PRECISION).default('no').openapi({ description: 'fp16 needs CUDA; bf16 runs on CPU too' }),
    gradient_checkpointing: z.boolean().default(false),
    max_length: z.number().int().min(8).max(32_768).default(512).openapi({ description: 'Tokens per sample; longer samples are cut (the worker warns)' }),
    seed: z.number().int().min(0).max(2 ** 31 - 1).default(0),
    save_total_limit: z.number().int().min(1).max(100).default(2).openapi({ description: 'Per-epoch checkpoints kept (the best and the last are kept besides)' }),
    save_steps: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .optional()
      .openapi({ description: 'Also save the resumable state (last.pt) every this many optimizer steps within an epoch: a crash or restart resumes from that step (default: at each epoch end and on a stop only)' }),
  })
  .strict()
  .openapi('TransformersModelConfig');

export type TransformersModelConfig = z.infer<typeof TransformersModelConfigSchema>;
