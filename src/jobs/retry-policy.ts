/**
 * Which failures a job retries, and when. A transient failure (the worker crashed or was
 * killed, it stalled, a download met a network error or a 5xx) may not happen again, so the job
 * is queued again and resumes from its checkpoint after a growing wait. A permanent one (an
 * invalid dataset or config, divergence, a cancel, the time limit) would, so the job fails.
 */
import type { JobError } from '../core/errors.js';
import type { AttemptEntry } from '../db/schema.js';

function flagged(details: unknown): boolean {
  if (!details || typeof details !== 'object') return false;
  const d = details as { transient?: unknown; cause?: unknown };
  // A base-model download failure carries the download's own details as its cause.
  return d.transient === true || flagged(d.cause);
}

export function isTransient(err: JobError): boolean {
  switch (err.code) {
    case 'WORKER_CRASHED':
    case 'WORKER_STALLED':
    case 'STORAGE_UNAVAILABLE':
      return true;
    case 'DATASET_DOWNLOAD_FAILED':
    case 'MODEL_DOWNLOAD_FAILED':
      return flagged(err.details);
    default:
      return false;
  }
}

/**
 * Failed attempts of the job's current run: those retried since it was submitted or last
 * restarted by request (an attempt that failed or was cancelled for good ends a run; a request
 * to retry starts the next one with a full allowance). Interrupted attempts do not count.
 */
export function failuresInRun(log: readonly AttemptEntry[]): number {
  let n = 0;
  for (let i = log.length - 1; i >= 0; i--) {
    const outcome = log[i]!.outcome;
    if (outcome === 'failed' || outcome === 'cancelled' || outcome === 'completed') break;
    if (outcome === 'retrying') n++;
  }
  return n;
}

/** What to do with a failed attempt, the failures of the run counting this one. */
export function retryDecision(
  err: JobError,
  log: readonly AttemptEntry[],
  opts: { maxAttempts: number; backoffMs: number },
): { retry: false } | { retry: true; delayMs: number; failures: number } {
  if (!isTransient(err)) return { retry: false };
  const failures = failuresInRun(log) + 1;
  if (failures >= opts.maxAttempts) return { retry: false };
  return { retry: true, failures, delayMs: opts.backoffMs * 2 ** (failures - 1) };
}
