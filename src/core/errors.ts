/**
 * The two error shapes of trainhook.
 *
 * JobError is what a job fails with: a code upstream apps know, a message a user can
 * act on, and structured details. It crosses the Python boundary as the same schema.
 * HttpError is what a request fails with; app.onError maps both to
 * `{"error": {"code", "message", "details"}}`.
 */

export const JOB_ERROR_CODES = [
  'DATASET_DOWNLOAD_FAILED',
  'DATASET_INVALID',
  'DATASET_CORRUPTED',
  'MODEL_DOWNLOAD_FAILED',
  'INSUFFICIENT_MEMORY',
  'INSUFFICIENT_DISK',
  'TRAINING_DIVERGED',
  'CANCELLED',
  'WORKER_CRASHED',
  'WORKER_STALLED',
  'JOB_TIMEOUT',
  /** Remote storage (STORAGE_URL) could not be read or written: transient, the job is retried. */
  'STORAGE_UNAVAILABLE',
  'UNKNOWN_ERROR',
] as const;
export type JobErrorCode = (typeof JOB_ERROR_CODES)[number];

export class JobError extends Error {
  override readonly name = 'JobError';
  constructor(
    readonly code: JobErrorCode,
    message: string,
    readonly details: unknown = null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: unknown = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** Turns anything thrown into a JobError without rewriting the original message. */
export function toJobError(err: unknown): JobError {
  if (err instanceof JobError) return err;
  // A full disk (or quota) is the host's state, not a bug: say so with the code upstream apps act on.
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    const message = err instanceof Error ? err.message : String(err);
    return new JobError('INSUFFICIENT_DISK', `the disk is full: ${message}`, { errno: code }, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new JobError('UNKNOWN_ERROR', message, null, { cause: err });
}
