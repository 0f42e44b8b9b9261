/**
 * What the API says about a job. status is what the upstream app stores; the
 * internal states claimed and running both read as "training". Secrets never appear here.
 */
import type { AttemptEntry, JobRow, JobState } from '../db/schema.js';

export type ApiStatus = 'queued' | 'training' | 'completed' | 'failed' | 'cancelled';

export function apiStatus(state: JobState): ApiStatus {
  return state === 'claimed' || state === 'running' ? 'training' : state;
}

export function statesFor(status: ApiStatus): JobState[] {
  return status === 'training' ? ['claimed', 'running'] : [status];
}

export interface JobLinks {
  self: string;
  status_page: string;
  stream: string;
}

export function jobLinks(baseUrl: string, id: string): JobLinks {
  return {
    self: `${baseUrl}/api/v1/jobs/${id}`,
    status_page: `${baseUrl}/jobs/${id}`,
    stream: `${baseUrl}/stream/progress/${id}`,
  };
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);
/** Times in the attempt log are written by the database; shown in the same form as the others. */
const isoText = (s: string | null) => (s ? new Date(s).toISOString() : null);

/** The job's attempts as the API and the pages show them. */
export function attemptsView(log: readonly AttemptEntry[]) {
  return log.map((a) => ({
    attempt: a.attempt,
    started_at: isoText(a.started_at)!,
    ended_at: isoText(a.ended_at),
    outcome: a.outcome,
    start_epoch: a.start_epoch,
    end_epoch: a.end_epoch,
    error: a.error,
  }));
}

/** Progress as every view shows it: percent, two decimals. */
export function shownProgress(row: Pick<JobRow, 'progress'>): number {
  return Math.round(row.progress * 100) / 100;
}

export function jobView(row: JobRow, extra: { baseUrl: string; queuePosition?: number }) {
  const request = row.request as { model_config?: { base_model?: string | null } };
  return {
    job_id: row.id,
    name: row.name,
    status: apiStatus(row.state),
    phase: row.phase,
    progress: shownProgress(row),
    current_epoch: row.currentEpoch,
    total_epochs: row.totalEpochs,
    queue_position: extra.queuePosition ?? null,
    device: row.device,
    metrics: { current: row.metricsCurrent ?? null, best: row.metricsBest ?? null },
    created_at: row.createdAt.toISOString(),
    started_at: iso(row.startedAt),
    finished_at: iso(row.finishedAt),
    eta_seconds: row.etaSeconds,
    error: row.error ?? null,
    dataset_info: row.datasetInfo ?? null,
    model: row.model ?? null,
    artifacts: row.artifacts?.map((a) => ({ name: a.name, size: a.size })) ?? [],
    config: {
      framework: row.engine,
      task: row.task,
      base_model: request.model_config?.base_model ?? null,
      /** Where the base model file came from and its sha256, once the job has fetched it. */
      base_model_source: row.baseModel?.source ?? null,
      base_model_sha256: row.baseModel?.sha256 ?? null,
    },
    callback_url: row.callbackUrl,
    /** Bytes of the job's folder (its dataset in the shared store not counted), measured when it finished and when its files were removed; null before. */
    disk_bytes: row.diskBytes ?? null,
    /** When retention or a purge removed its dataset, checkpoints and plots (its row, log and registered model stay). */
    files_removed_at: iso(row.filesRemovedAt ?? null),
    links: jobLinks(extra.baseUrl, row.id),
    attempts: attemptsView(row.attemptLog),
    retry_at: row.state === 'queued' ? iso(row.retryAt) : null,
  };
}
export type JobView = ReturnType<typeof jobView>;

/** The short form in lists. */
export function jobSummary(row: JobRow, baseUrl: string) {
  return {
    job_id: row.id,
    name: row.name,
    model_name: row.name,
    status: apiStatus(row.state),
    phase: row.phase,
    progress: shownProgress(row),
    current_epoch: row.currentEpoch,
    total_epochs: row.totalEpochs,
    created_at: row.createdAt.toISOString(),
    started_at: iso(row.startedAt),
    finished_at: iso(row.finishedAt),
    error: row.error ? { code: row.error.code, message: row.error.message } : null,
    links: jobLinks(baseUrl, row.id),
  };
}
