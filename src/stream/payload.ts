/**
 * What the streams say about a job (seed 003 §5.3): `progress` with epoch, progress, mAP50, loss
 * and ETA, then one of `completed`, `failed`, `cancelled`. The status page and the dashboard
 * read the same headline numbers (mAP50, loss) from here.
 */
import type { JobRow } from '../db/schema.js';
import type { JobChange, JobChangeEvent } from '../jobs/events.js';
import { apiStatus, shownProgress } from '../jobs/view.js';

type Metrics = Record<string, number | null> | null | undefined;

const TRAIN_LOSSES = ['box_loss', 'cls_loss', 'dfl_loss', 'seg_loss'] as const;

/** Training loss as Ultralytics totals it: box + cls + dfl (+ seg); null before the first epoch. */
export function totalLoss(metrics: Metrics): number | null {
  if (!metrics) return null;
  let sum = 0;
  let any = false;
  for (const k of TRAIN_LOSSES) {
    const v = metrics[k];
    if (typeof v === 'number' && Number.isFinite(v)) {
      sum += v;
      any = true;
    }
  }
  return any ? Math.round(sum * 1e5) / 1e5 : null;
}

export function headline(row: Pick<JobRow, 'metricsCurrent' | 'metricsBest'>) {
  const m = row.metricsCurrent ?? null;
  return {
    mAP50: m?.['mAP50'] ?? null,
    'mAP50-95': m?.['mAP50-95'] ?? null,
    loss: totalLoss(m),
  };
}

/** Where the job stands: the fields every stream frame about a job starts with. */
function standing(row: JobRow) {
  return {
    status: apiStatus(row.state),
    phase: row.phase,
    progress: shownProgress(row),
    epoch: row.currentEpoch,
    total_epochs: row.totalEpochs,
  };
}

export type StreamEventName = 'progress' | 'completed' | 'failed' | 'cancelled';

export function streamEventName(change: JobChange): StreamEventName {
  return change === 'completed' || change === 'failed' || change === 'cancelled' ? change : 'progress';
}

export function progressData(row: JobRow, change: JobChange | 'snapshot', epoch?: JobChangeEvent['epoch']) {
  return {
    job_id: row.id,
    change,
    ...standing(row),
    ...headline(row),
    eta_seconds: row.etaSeconds,
    started_at: row.startedAt?.toISOString() ?? null,
    finished_at: row.finishedAt?.toISOString() ?? null,
    metrics: { current: row.metricsCurrent ?? null, best: row.metricsBest ?? null },
    resources: row.resources ?? null,
    ...(epoch ? { epoch_metrics: { epoch: epoch.epoch, metrics: epoch.metrics, epoch_seconds: epoch.epochSeconds } } : {}),
    timestamp: new Date().toISOString(),
  };
}

export function terminalData(row: JobRow) {
  const best = row.metricsBest ?? null;
  const current = row.metricsCurrent ?? null;
  return {
    job_id: row.id,
    ...standing(row),
    final_mAP50: current?.['mAP50'] ?? best?.['mAP50'] ?? null,
    'final_mAP50-95': current?.['mAP50-95'] ?? best?.['mAP50-95'] ?? null,
    metrics: { current, best },
    error: row.error ?? null,
    finished_at: row.finishedAt?.toISOString() ?? null,
    timestamp: new Date().toISOString(),
  };
}

/** The one frame a job change becomes on its job's stream. */
export function jobStreamEvent(e: JobChangeEvent): { event: StreamEventName; data: unknown } {
  const event = streamEventName(e.change);
  return { event, data: event === 'progress' ? progressData(e.job, e.change, e.epoch) : terminalData(e.job) };
}

/** The dashboard's line about a job (event `job`). */
export function dashboardJobData(row: JobRow, change: JobChange) {
  return {
    job_id: row.id,
    name: row.name,
    change,
    ...standing(row),
    ...headline(row),
    eta_seconds: row.etaSeconds,
    timestamp: new Date().toISOString(),
  };
}
