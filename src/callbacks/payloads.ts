/**
 * The bodies of the three callbacks, built from the job row as committed in the transaction
 * that causes them. The envelope (key order included) is what upstream apps store; the metric
 * blocks are the ones the job's engine declares for its task. Pure functions: what a body says
 * is decided here, when and how it is sent is the outbox's business.
 */
import fs from 'node:fs';
import type { JobRow } from '../db/schema.js';
import type { Engines } from '../engines/index.js';
import type { JobFiles } from '../jobs/files.js';
import { LOG_FILE } from '../jobs/files.js';
import { jobMetrics, num, pick } from '../jobs/metrics.js';
import type { SignedLink } from '../security/links.js';

export const CALLBACK_TYPES = ['training_progress', 'training_completed', 'training_failed'] as const;
export type CallbackType = (typeof CALLBACK_TYPES)[number];

export interface PayloadContext {
  files: JobFiles;
  engines: Engines;
  /** A signed download link for one file of a job. */
  link(jobId: string, name: string): SignedLink;
  now?: Date;
}

/** Seconds precision, as upstream apps' examples write timestamps. */
export const isoSeconds = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
const round = (n: number, digits: number) => Math.round(n * 10 ** digits) / 10 ** digits;
/** A metric block with its epoch last. */
const withEpoch = (m: Record<string, number | null>, epoch: number | null): Record<string, number | null> => ({ ...m, epoch });

export function progressPayload(job: JobRow, ctx: PayloadContext) {
  const spec = jobMetrics(ctx.engines, job);
  return {
    type: 'training_progress' as const,
    job_id: job.id,
    timestamp: isoSeconds(ctx.now ?? new Date()),
    progress: {
      percentage: round(job.progress, 2),
      current_epoch: job.currentEpoch,
      total_epochs: job.totalEpochs,
      phase: job.phase,
      eta_seconds: job.etaSeconds,
    },
    metrics: {
      current: pick(job.metricsCurrent, spec.callback.current),
      best: withEpoch(pick(job.metricsBest, spec.callback.best), num(job.metricsBest, 'epoch')),
    },
    // Filled by the resource monitor (gpu_utilization, memory_used_gb, temperature_c); null before.
    resources: job.resources ?? null,
  };
}

export function completedPayload(job: JobRow, ctx: PayloadContext) {
  const spec = jobMetrics(ctx.engines, job);
  const files = ctx.files.downloadable(job);
  const model = (job.model ?? {}) as { size_bytes?: unknown; best_epoch?: unknown; format?: unknown };
  const modelName = ctx.files.modelName(job);
  const modelLink = modelName && files.has(modelName) ? ctx.link(job.id, modelName) : null;
  const sizeBytes = typeof model.size_bytes === 'number' ? model.size_bytes : null;
  const bestEpoch = num(model as Record<string, unknown>, 'best_epoch') ?? num(job.metricsBest, 'epoch');
  const started = job.startedAt ?? job.createdAt;
  const finished = job.finishedAt ?? ctx.now ?? new Date();
  const artifacts: Record<string, string | null> = {};
  for (const [key, candidates] of Object.entries(ctx.files.artifactKeys(job))) {
    const name = candidates.find((n) => files.has(n) && (n !== LOG_FILE || fs.existsSync(files.get(n)!)));
    artifacts[key] = name ? ctx.link(job.id, name).url : null;
  }
  return {
    type: 'training_completed' as const,
    job_id: job.id,
    timestamp: isoSeconds(ctx.now ?? new Date()),
    status: 'completed' as const,
    duration_seconds: Math.max(0, Math.round((finished.getTime() - started.getTime()) / 1000)),
    model: {
      name: job.name,
      download_url: modelLink?.url ?? null,
      size_mb: sizeBytes === null ? null : round(sizeBytes / 1024 ** 2, 2),
      format: typeof model.format === 'string' ? model.format : 'pytorch',
      expires_at: modelLink?.expires_at ?? null,
    },
    final_metrics: {
      ...pick(job.metricsCurrent, spec.callback.final),
      best_epoch: bestEpoch,
      // Epochs actually trained (early stopping by `patience` may end before the configured count).
      total_epochs: job.currentEpoch > 0 ? job.currentEpoch : job.totalEpochs,
    },
    artifacts,
    dataset_info: datasetInfo(job.datasetInfo),
  };
}

function datasetInfo(info: Record<string, unknown> | null | undefined) {
  if (!info) return null;
  return {
    total_images: num(info, 'total_images'),
    train_images: num(info, 'train_images'),
    val_images: num(info, 'val_images'),
    classes: Array.isArray(info['classes']) ? (info['classes'] as string[]) : [],
    class_distribution: (info['class_distribution'] as Record<string, number> | undefined) ?? {},
  };
}

/**
 * What a cancellation's training_failed says as its status: the request's
 * callback_options.cancelled_status, "failed" by default (the original contract: a cancel is a
 * failure with code CANCELLED, and upstream tables may accept no other status from it).
 */
export function cancelledStatus(job: Pick<JobRow, 'request'>): 'failed' | 'cancelled' {
  const options = (job.request as { callback_options?: { cancelled_status?: unknown } }).callback_options;
  return options?.cancelled_status === 'cancelled' ? 'cancelled' : 'failed';
}

/** training_failed: failures, and cancellations (error code CANCELLED; status as the job asked). */
export function failedPayload(job: JobRow, ctx: PayloadContext) {
  const spec = jobMetrics(ctx.engines, job);
  const e = job.error;
  const cancelled = job.state === 'cancelled';
  return {
    type: 'training_failed' as const,
    job_id: job.id,
    timestamp: isoSeconds(ctx.now ?? new Date()),
    status: cancelled ? cancelledStatus(job) : ('failed' as const),
    error: {
      code: e?.code ?? (cancelled ? 'CANCELLED' : 'UNKNOWN_ERROR'),
      message: e?.message ?? (cancelled ? 'Job cancelled by request' : 'The job failed'),
      details: e?.details ?? null,
      phase: e?.phase ?? job.phase,
      epoch: e?.epoch ?? null,
    },
    partial_metrics: job.metricsCurrent ? withEpoch(pick(job.metricsCurrent, spec.callback.current), num(job.metricsCurrent, 'epoch')) : null,
  };
}

export type CallbackPayload =
  | ReturnType<typeof progressPayload>
  | ReturnType<typeof completedPayload>
  | ReturnType<typeof failedPayload>;
