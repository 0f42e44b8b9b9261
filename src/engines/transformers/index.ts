/**
 * Hugging Face transformers (+ peft) as a trainhook engine: causal language models (causal-lm)
 * and LLaVA-style vision-language models (vision-lm: image + text → text) fine-tuned with a LoRA
 * adapter or in full, trained by worker/engines/transformers/ in its own venv with one plain
 * PyTorch loop (train.py) and a module per task (text.py, vlm.py). The trained model is a ZIP of a save_pretrained folder: adapter.zip (the
 * LoRA adapter: adapter_model.safetensors + adapter_config.json) or model.zip (method full).
 * A registered model exports to adapter, merged or int8 (worker/engines/transformers/export.py:
 * a ZIP with a model card and a deployment package) and generates text through
 * POST /api/v1/models/{id}/generate (predict.py in the registry's prediction worker); a vision-lm
 * model takes an image with the prompt there (takesImage).
 */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseHubId } from '../hub.js';
import { modelFolder } from '../model-folder.js';
import { schemaPresets } from '../presets.js';
import type { BaseModelSource, Engine, MetricsSpec } from '../types.js';
import { folderTask } from './base-folder.js';
import { TRANSFORMERS_TASKS, TransformersModelConfigSchema, type TransformersModelConfig } from './request.js';

function engineBase(mc: TransformersModelConfig): BaseModelSource {
  const hub = parseHubId(mc.base_model);
  return hub ? { kind: 'hub', ...hub } : { kind: 'directory', name: mc.base_model };
}

const WORKER = fileURLToPath(new URL('../../../worker/engines/transformers/', import.meta.url));

/** The pinned transformers version, read from the engine's requirements (one place to change it). */
function pinnedVersion(): string {
  const text = fs.readFileSync(`${WORKER}requirements.txt`, 'utf8');
  return /^transformers==(\S+)$/m.exec(text)?.[1] ?? 'unknown';
}

/** The worker's metric names (worker/engines/transformers/train.py, for both tasks). */
const METRICS: MetricsSpec = {
  fields: [
    { key: 'train_loss', label: 'Train loss', goal: 'min', kind: 'loss' },
    { key: 'val_loss', label: 'Validation loss', goal: 'min', kind: 'val_loss' },
    { key: 'val_token_accuracy', label: 'Validation token accuracy', goal: 'max', kind: 'quality' },
    { key: 'learning_rate', label: 'Learning rate', goal: 'min', kind: 'lr' },
  ],
  // The checkpoint kept as best is the one of the lowest validation loss.
  best: { key: 'val_loss', goal: 'min' },
  headline: ['val_loss', 'val_token_accuracy'],
  losses: ['train_loss'],
  callback: {
    current: ['train_loss', 'val_loss', 'val_token_accuracy', 'learning_rate'],
    best: ['val_loss', 'val_token_accuracy'],
    final: ['val_loss', 'val_token_accuracy', 'train_loss'],
  },
  charts: [
    { id: 'loss', title: 'Train and validation loss by epoch', keys: ['train_loss', 'val_loss'] },
    { id: 'accuracy', title: 'Validation token accuracy by epoch', keys: ['val_token_accuracy'] },
  ],
};

/** The worker's spec.args: the model_config's training fields, as they are. */
function trainArgs(mc: TransformersModelConfig): Record<string, unknown> {
  const { framework: _f, name: _n, task: _t, base_model: _b, ...args } = mc;
  return args;
}

export const transformersEngine: Engine<TransformersModelConfig> = {
  name: 'transformers',
  label: 'Hugging Face transformers (LoRA, QLoRA)',
  license: 'Apache-2.0',
  version: pinnedVersion(),
  tasks: TRANSFORMERS_TASKS,
  modelConfig: TransformersModelConfigSchema,
  presets: schemaPresets({
    framework: 'transformers',
    schema: TransformersModelConfigSchema,
    tasks: [...TRANSFORMERS_TASKS],
    baseFile: () => `${WORKER}base-config.yaml`,
    userKeys: ['base_model', 'method', 'epochs', 'learning_rate', 'batch_size', 'max_length'],
    notes: {
      base_model: 'a folder name under HF_MODELS_DIR (default <WORKDIR>/hf-models/), or a Hub model id owner/name[@revision]',
      method: 'qlora: LoRA on the base quantized to 4-bit (bitsandbytes nf4); needs CUDA (refused on a CPU-only server)',
    },
  }),
  models: () => [],
  baseModel: (mc) => engineBase(mc),
  datasetFormats: () => ['jsonl'],
  async refuse(mc, { gpuAvailable, modelsDir }) {
    // QLoRA is a GPU method (4-bit weights to fit a large base in GPU memory). The worker's
    // bitsandbytes also runs on the CPU, which its tests use on a tiny model, but a CPU-only server
    // refuses qlora at submit: lora trains there without quantization's dequantize-per-matmul cost.
    if (mc.method === 'qlora' && !gpuAvailable) {
      return { code: 'QLORA_NEEDS_CUDA', message: 'method qlora needs a CUDA GPU (bitsandbytes 4-bit) and this server has none: use method lora' };
    }
    if (mc.mixed_precision === 'fp16' && !gpuAvailable) {
      return { code: 'FP16_NEEDS_CUDA', message: 'mixed_precision fp16 needs a CUDA GPU and this server has none: use bf16 or no' };
    }
    // A folder on this node is judged now; a Hub model, or a folder only the training node has,
    // when the worker loads it (the same check, failing the job).
    const base = engineBase(mc);
    // A name that is no single folder is refused by the pipeline, with its own message.
    const dir = base.kind === 'directory' ? modelFolder(modelsDir, base.name) : null;
    if (dir) {
      const found = await folderTask(dir);
      if (found && found !== mc.task) {
        return {
          code: 'BASE_MODEL_TASK_MISMATCH',
          message: `base model ${mc.base_model} is a ${found === 'vision-lm' ? 'vision-language' : 'causal language'} model, and task ${mc.task} needs ${mc.task === 'vision-lm' ? 'a vision-language' : 'a causal language'} one: use task ${found} with it, or name another base_model`,
        };
      }
    }
    return null;
  },
  trainArgs: (mc) => trainArgs(mc),
  metrics: () => METRICS,
  imageSize: () => null,
  python: {
    requirements: `${WORKER}requirements.txt`,
    train: `${WORKER}train.py`,
    export: `${WORKER}export.py`,
    predict: `${WORKER}predict.py`,
    tokens: `${WORKER}tokens.py`,
  },
  files: {
    checkpoints: ['last.pt', 'adapter.zip', 'model.zip', 'checkpoint-*.zip'],
    callbackArtifacts: {
      adapter: ['adapter.zip'],
      metrics_csv: ['metrics.csv'],
      training_config: ['training_config.json'],
      // The TensorBoard events files of the run (worker/engines/transformers/tensorboard_log.py).
      tensorboard: ['tensorboard.zip'],
    },
    modelFormat: 'huggingface-zip',
  },
  // adapter: the LoRA adapter alone; merged: merged into the base (safetensors); int8: merged, then
  // dynamically quantized for the CPU. A model trained in full has no adapter.
  exportFormats: (_task, args) => (args?.['method'] === 'full' ? ['merged', 'int8'] : ['adapter', 'merged', 'int8']),
  generates: () => true,
  takesImage: (task) => task === 'vision-lm',
};
