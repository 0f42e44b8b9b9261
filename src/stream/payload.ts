/**
 * What the streams say about a job: `progress` with epoch, progress, the engine's headline
 * metrics (mAP50 and mAP50-95 for detection), the summed loss and ETA, then one of `completed`,
 * `failed`, `cancelled`. The status page and the dashboard read the same headline numbers.
 */
import type { JobRow } from '../db/schema.js';
import type { MetricsSpec } from '../engines/types.js';
import type { JobChange, JobChangeEvent } from '../jobs/events.js';
import { headline, lossLabel } from '../jobs/metrics.js';
import { apiStatus, shownProgress } from '../jobs/view.js';

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

export function progressData(spec: MetricsSpec, row: JobRow, change: JobChange | 'snapshot', epoch?: JobChangeEvent['epoch']) {
  return {
    job_id: row.id,
    change,
    ...standing(row),
    ...headline(spec, row),
    headline_keys: spec.headline,
    loss_label: lossLabel(spec),
    eta_seconds: row.etaSeconds,
    started_at: row.startedAt?.toISOString() ?? null,
    finished_at: row.finishedAt?.toISOString() ?? null,
    metrics: { current: row.metricsCurrent ?? null, best: row.metricsBest ?? null },
    resources: row.resources ?? null,
    ...(epoch ? { epoch_metrics: { epoch: epoch.epoch, metrics: epoch.metrics, epoch_seconds: epoch.epochSeconds } } : {}),
    timestamp: new Date().toISOString(),
  };
}

/**
 * A completed job's model as a signed download link (null before completion or without a
 * model). Async: the model may be on this disk or, when another node trained the job, only in
 * remote storage.
 */
export type ModelUrl = (row: JobRow) => Promise<string | null>;

/** `modelUrl` is the link ModelUrl gave for this row (only a completed frame carries one). */
export function terminalData(spec: MetricsSpec, row: JobRow, modelUrl?: string | null) {
  const best = row.metricsBest ?? null;
  const current = row.metricsCurrent ?? null;
  const finals: Record<string, number | null> = {};
  for (const key of spec.headline) finals[`final_${key}`] = current?.[key] ?? best?.[key] ?? null;
  return {
    job_id: row.id,
    ...standing(row),
    ...finals,
    ...(row.state === 'completed' ? { model_url: modelUrl ?? null } : {}),
    metrics: { current, best },
    error: row.error ?? null,
    finished_at: row.finishedAt?.toISOString() ?? null,
    timestamp: new Date().toISOString(),
  };
}

/** The one frame a job change becomes on its job's stream. */
export function jobStreamEvent(spec: MetricsSpec, e: JobChangeEvent, modelUrl?: string | null): { event: StreamEventName; data: unknown } {
  const event = streamEventName(e.change);
  return { event, data: event === 'progress' ? progressData(spec, e.job, e.change, e.epoch) : terminalData(spec, e.job, modelUrl) };
}

/** The dashboard's line about a job (event `job`). */
export function dashboardJobData(spec: MetricsSpec, row: JobRow, change: JobChange) {
  return {
    job_id: row.id,
    name: row.name,
    change,
    ...standing(row),
    ...headline(spec, row),
    headline_keys: spec.headline,
    eta_seconds: row.etaSeconds,
    timestamp: new Date().toISOString(),
  };
}
