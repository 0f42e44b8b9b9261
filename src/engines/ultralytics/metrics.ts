/**
 * Ultralytics' metrics per task, under the names the worker reports them (worker/engines/
 * ultralytics/events.py portable_metrics: train/box_loss → box_loss, val/box_loss →
 * val_box_loss, metrics/mAP50(B) → mAP50, metrics/mAP50(M) → mAP50(M), lr/pg0 → lr).
 *
 * "Best" follows what Ultralytics saves best.pt by: its fitness is 0.1·mAP50 + 0.9·mAP50-95 for
 * boxes, so mAP50-95 is the metric that picks the best epoch; top-1 accuracy for classify.
 * The callback blocks keep the keys upstream apps already store for detection (box, cls and dfl
 * losses, precision, recall, mAP50, mAP50-95) for every box task.
 */
import type { MetricField, MetricsSpec } from '../types.js';

const LABELS: Record<string, string> = {
  precision: 'Precision',
  recall: 'Recall',
  box_loss: 'Box loss',
  cls_loss: 'Cls loss',
  dfl_loss: 'DFL loss',
  seg_loss: 'Seg loss',
  pose_loss: 'Pose loss',
  kobj_loss: 'Kobj loss',
  angle_loss: 'Angle loss',
  loss: 'Loss',
};
const label = (key: string) => LABELS[key] ?? key;
const q = (key: string, text = label(key)): MetricField => ({ key, label: text, goal: 'max', kind: 'quality' });
const loss = (key: string): MetricField => ({ key, label: label(key), goal: 'min', kind: 'loss' });
const valLoss = (key: string): MetricField => ({ key: `val_${key}`, label: `Val ${label(key).toLowerCase()}`, goal: 'min', kind: 'val_loss' });
const LR: MetricField = { key: 'lr', label: 'Learning rate', goal: 'min', kind: 'lr' };

const BOX_CALLBACK = {
  current: ['box_loss', 'cls_loss', 'dfl_loss', 'precision', 'recall', 'mAP50', 'mAP50-95'],
  best: ['mAP50', 'mAP50-95'],
  final: ['mAP50', 'mAP50-95', 'precision', 'recall', 'box_loss', 'cls_loss', 'dfl_loss'],
};

function boxTask(losses: string[], extraQuality: MetricField[]): MetricsSpec {
  return {
    fields: [
      ...losses.map(loss),
      q('precision'),
      q('recall'),
      q('mAP50'),
      q('mAP50-95'),
      ...extraQuality,
      ...losses.map(valLoss),
      LR,
    ],
    best: { key: 'mAP50-95', goal: 'max' },
    headline: ['mAP50', 'mAP50-95'],
    losses,
    callback: BOX_CALLBACK,
    charts: [
      { id: 'map', title: 'mAP50 and mAP50-95 by epoch', keys: ['mAP50', 'mAP50-95'] },
      { id: 'loss', title: `Training loss by epoch (${losses.map((l) => l.replace(/_loss$/, '')).join(', ')})`, keys: losses },
    ],
  };
}

const SPECS: Record<string, MetricsSpec> = {
  detect: boxTask(['box_loss', 'cls_loss', 'dfl_loss'], []),
  segment: boxTask(
    ['box_loss', 'seg_loss', 'cls_loss', 'dfl_loss'],
    [q('precision(M)'), q('recall(M)'), q('mAP50(M)'), q('mAP50-95(M)')],
  ),
  obb: boxTask(['box_loss', 'cls_loss', 'dfl_loss', 'angle_loss'], []),
  pose: boxTask(
    ['box_loss', 'pose_loss', 'kobj_loss', 'cls_loss', 'dfl_loss'],
    [q('precision(P)'), q('recall(P)'), q('mAP50(P)'), q('mAP50-95(P)')],
  ),
  classify: {
    fields: [loss('loss'), q('accuracy_top1', 'Top-1 accuracy'), q('accuracy_top5', 'Top-5 accuracy'), valLoss('loss'), LR],
    best: { key: 'accuracy_top1', goal: 'max' },
    headline: ['accuracy_top1', 'accuracy_top5'],
    losses: ['loss'],
    callback: {
      current: ['loss', 'accuracy_top1', 'accuracy_top5'],
      best: ['accuracy_top1', 'accuracy_top5'],
      final: ['accuracy_top1', 'accuracy_top5', 'loss'],
    },
    charts: [
      { id: 'accuracy', title: 'Top-1 and top-5 accuracy by epoch', keys: ['accuracy_top1', 'accuracy_top5'] },
      { id: 'loss', title: 'Training loss by epoch', keys: ['loss'] },
    ],
  },
};

export function ultralyticsMetrics(task: string): MetricsSpec {
  return SPECS[task] ?? SPECS['detect']!;
}
