/**
 * RF-DETR (Roboflow's real-time detection transformer) as a trainhook engine: detect and
 * segment, trained by worker/engines/rfdetr/ in its own venv through rfdetr's own model.train().
 */
import { JobError } from '../../core/errors.js';
import { schemaPresets } from '../presets.js';
import type { Engine, MetricField, MetricsSpec } from '../types.js';
import { RFDETR_VERSION, WORKER, publishedWeight, publishedWeights, variant } from './catalog.js';
import { RFDETR_TASKS, RfdetrModelConfigSchema, modelSize, type RfdetrModelConfig } from './request.js';

const q = (key: string, label = key): MetricField => ({ key, label, goal: 'max', kind: 'quality' });
const loss = (key: string, label: string): MetricField => ({ key, label, goal: 'min', kind: 'loss' });

/** The worker's metric names (worker/engines/rfdetr/metrics.py). */
function metrics(task: string): MetricsSpec {
  const segment = task === 'segment';
  const best = segment ? 'mAP50-95(M)' : 'mAP50-95';
  return {
    fields: [
      loss('total_loss', 'Total loss'),
      loss('cls_loss', 'Cls loss'),
      loss('box_loss', 'Box L1 loss'),
      loss('giou_loss', 'GIoU loss'),
      ...(segment ? [loss('mask_ce_loss', 'Mask CE loss'), loss('mask_dice_loss', 'Mask Dice loss')] : []),
      q('precision', 'Precision'),
      q('recall', 'Recall'),
      q('F1'),
      q('mAP50'),
      q('mAP50-95'),
      q('mAP75'),
      q('mAR'),
      ...(segment ? [q('mAP50(M)'), q('mAP50-95(M)')] : []),
      { key: 'lr', label: 'Learning rate', goal: 'min', kind: 'lr' },
    ],
    best: { key: best, goal: 'max' },
    headline: segment ? ['mAP50(M)', 'mAP50-95(M)'] : ['mAP50', 'mAP50-95'],
    // total_loss is the weighted sum rfdetr optimises: its parts would count twice.
    losses: ['total_loss'],
    callback: {
      current: ['total_loss', 'cls_loss', 'box_loss', 'giou_loss', 'precision', 'recall', 'mAP50', 'mAP50-95', ...(segment ? ['mAP50-95(M)'] : [])],
      best: ['mAP50', 'mAP50-95', ...(segment ? ['mAP50(M)', 'mAP50-95(M)'] : [])],
      final: ['mAP50', 'mAP50-95', 'mAP75', 'mAR', 'precision', 'recall', 'F1', 'total_loss', ...(segment ? ['mAP50(M)', 'mAP50-95(M)'] : [])],
    },
    charts: [
      segment
        ? { id: 'map', title: 'Box and mask mAP50-95 by epoch', keys: ['mAP50-95', 'mAP50-95(M)'] }
        : { id: 'map', title: 'mAP50 and mAP50-95 by epoch', keys: ['mAP50', 'mAP50-95'] },
      {
        id: 'loss',
        title: 'Training loss by epoch (total, cls, box L1, GIoU)',
        keys: ['total_loss', 'cls_loss', 'box_loss', 'giou_loss'],
      },
    ],
  };
}

/** The worker's spec.args for a job: rfdetr's own names (worker/engines/rfdetr/train.py). */
function trainArgs(mc: RfdetrModelConfig, resources: { workers?: number | undefined }): Record<string, unknown> {
  const size = modelSize(mc) ?? 'nano';
  const v = variant(mc.task, size);
  const out: Record<string, unknown> = {
    model_size: size,
    resolution: mc.image_size ?? v?.defaultResolution,
    epochs: mc.epochs,
    batch_size: mc.batch_size,
    lr: mc.learning_rate,
    lr_encoder: mc.learning_rate_encoder,
    grad_accum_steps: mc.grad_accum_steps,
    use_ema: mc.ema,
    weight_decay: mc.weight_decay,
    warmup_epochs: mc.warmup_epochs,
    multi_scale: mc.multi_scale,
    early_stopping: mc.early_stopping,
    patience: mc.patience,
    amp: mc.amp,
    seed: mc.seed,
  };
  if (resources.workers !== undefined) out['num_workers'] = resources.workers;
  if (mc.num_queries !== undefined) out['num_queries'] = mc.num_queries;
  if (mc.group_detr !== undefined) out['group_detr'] = mc.group_detr;
  return out;
}

export const rfdetrEngine: Engine<RfdetrModelConfig> = {
  name: 'rfdetr',
  label: 'RF-DETR',
  license: 'Apache-2.0',
  version: RFDETR_VERSION(),
  tasks: RFDETR_TASKS,
  modelConfig: RfdetrModelConfigSchema,
  presets: schemaPresets({
    framework: 'rfdetr',
    schema: RfdetrModelConfigSchema,
    tasks: [...RFDETR_TASKS],
    userKeys: ['base_model', 'pretrained', 'epochs', 'batch_size', 'image_size', 'early_stopping', 'patience'],
    notes: {
      image_size: "RF-DETR's resolution: a multiple of the size's block (32 for most detection sizes)",
      num_queries: 'fewer queries train much faster on a CPU',
    },
  }),
  models: (task) => publishedWeights(task).map((w) => w.name),
  baseModel(mc) {
    const registered = /^model:([\w-]{1,100})$/.exec(mc.base_model);
    if (registered) return { kind: 'registered', id: registered[1]! };
    if (!mc.pretrained) return { kind: 'none' };
    const w = publishedWeight(mc.base_model);
    if (!w) throw new JobError('MODEL_DOWNLOAD_FAILED', `unknown RF-DETR model ${mc.base_model}`);
    return { kind: 'file', file: w.file, url: w.url, sha256: mc.base_model_sha256, mirrorName: w.file };
  },
  datasetFormats: () => ['yolo', 'coco'],
  trainArgs: (mc, ctx) => trainArgs(mc, ctx.resources),
  metrics,
  imageSize: (mc, args) => (typeof args['resolution'] === 'number' ? args['resolution'] : (mc.image_size ?? null)),
  python: {
    requirements: `${WORKER}requirements.txt`,
    train: `${WORKER}train.py`,
    export: `${WORKER}export.py`,
    predict: `${WORKER}predict.py`,
  },
  files: {
    checkpoints: ['*.pth', '*.ckpt'],
    callbackArtifacts: { results_csv: ['metrics.csv'], results_png: ['results.png'] },
    modelFormat: 'pytorch',
  },
  exportFormats: () => ['onnx'],
};
