/**
 * A toy engine, registered by a test only: a few lines of torch that learn to tell the classes
 * of a classify dataset apart. It proves the seam: an engine is this object and its Python
 * module, handed to the server, and nothing outside this folder knows it.
 */
import { fileURLToPath } from 'node:url';
import { z } from '@hono/zod-openapi';
import { schemaPresets } from '../../../src/engines/presets.js';
import type { Engine, MetricsSpec } from '../../../src/engines/types.js';
import { ultralyticsEngine } from '../../../src/engines/ultralytics/index.js';

const ToyConfig = z
  .object({
    framework: z.literal('toy'),
    name: z.string().min(1).max(200),
    task: z.literal('classify').default('classify'),
    base_model: z.null().default(null),
    epochs: z.number().int().min(1).max(50).default(3),
    learning_rate: z.number().positive().max(1).default(0.05),
    image_size: z.number().int().min(8).max(64).default(32),
    /** For watchdog tests: a first attempt goes silent for good after this epoch (a hung worker). */
    hang_after_epoch: z.number().int().min(1).nullable().default(null),
  })
  .strict();
type ToyConfig = z.infer<typeof ToyConfig>;

const METRICS: MetricsSpec = {
  fields: [
    { key: 'loss', label: 'Loss', goal: 'min', kind: 'loss' },
    { key: 'accuracy', label: 'Accuracy', goal: 'max', kind: 'quality' },
  ],
  best: { key: 'accuracy', goal: 'max' },
  headline: ['accuracy'],
  losses: ['loss'],
  callback: { current: ['loss', 'accuracy'], best: ['accuracy'], final: ['accuracy', 'loss'] },
  charts: [
    { id: 'accuracy', title: 'Validation accuracy by epoch', keys: ['accuracy'] },
    { id: 'loss', title: 'Training loss by epoch', keys: ['loss'] },
  ],
};

export const toyEngine: Engine<ToyConfig> = {
  name: 'toy',
  label: 'Toy classifier',
  license: 'AGPL-3.0',
  version: '1',
  tasks: ['classify'],
  modelConfig: ToyConfig,
  presets: schemaPresets({ framework: 'toy', schema: ToyConfig, tasks: ['classify'], userKeys: ['epochs'] }),
  models: () => [],
  baseModel: () => ({ kind: 'none' }),
  datasetFormats: () => ['classify'],
  trainArgs: (mc) => ({ epochs: mc.epochs, lr: mc.learning_rate, imgsz: mc.image_size, hang_after_epoch: mc.hang_after_epoch }),
  metrics: () => METRICS,
  imageSize: (mc) => mc.image_size,
  // Any python with torch and PIL will do: the Ultralytics engine's has both.
  python: { requirements: ultralyticsEngine.python.requirements, train: fileURLToPath(new URL('./train.py', import.meta.url)) },
  files: { checkpoints: ['*.pt'], callbackArtifacts: { metrics_csv: ['metrics.csv'] }, modelFormat: 'pytorch' },
  exportFormats: () => [],
};
