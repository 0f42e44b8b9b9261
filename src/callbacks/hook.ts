/**
 * The TransitionHook of the job service and the training pipeline: inside the transaction of
 * every job change, it turns the change into a callback event in the outbox (or into nothing).
 *
 *   phase, progress, epoch  → training_progress (coalesced, see sql/enqueue.ts)
 *   completed               → training_completed
 *   failed, cancelled       → training_failed (cancelled: error code CANCELLED)
 *   queued, started, requeued → nothing (the 202 answered the submit; a restart is internal)
 *   retrying                → nothing: a failed attempt that is retried is no failure of the job
 *
 * Only jobs with a callback_url get events. The body is built now, from the row as this
 * transaction leaves it, and stored; every retry sends the same bytes.
 */
import crypto from 'node:crypto';
import type { Config } from '../core/config.js';
import type { DbOrTx } from '../db/client.js';
import type { JobRow } from '../db/schema.js';
import type { Engines } from '../engines/index.js';
import type { JobChange } from '../jobs/events.js';
import type { JobFiles } from '../jobs/files.js';
import { signDownloadLink } from '../security/links.js';
import { completedPayload, failedPayload, progressPayload, type CallbackType, type PayloadContext } from './payloads.js';
import { enqueueCallback } from './sql/enqueue.js';

/** Same shape as jobs/service.ts TransitionHook (kept structural: callbacks never import jobs' service). */
export type CallbackHook = (tx: DbOrTx, job: JobRow, change: JobChange) => Promise<void>;

export function callbackTypeFor(change: JobChange): CallbackType | null {
  switch (change) {
    case 'phase':
    case 'progress':
    case 'epoch':
      return 'training_progress';
    case 'completed':
      return 'training_completed';
    case 'failed':
    case 'cancelled':
      return 'training_failed';
    default:
      return null;
  }
}

/** Standard Webhooks message id: unique per event, the same on every retry. */
export function newEventId(): string {
  return `msg_${crypto.randomBytes(16).toString('base64url')}`;
}

export function createCallbackHook(opts: {
  config: Config;
  files: JobFiles;
  engines: Engines;
  linkSigningKey: string;
  /** Base of download links: PUBLIC_URL, else the URL this server listens on. */
  baseUrl: () => string;
  /** Told when a written event becomes due (epoch ms), so the dispatcher can wake then. */
  onEnqueued?: (dueAtMs: number) => void;
}): CallbackHook {
  const { config } = opts;
  const ctx = (): PayloadContext => ({
    files: opts.files,
    engines: opts.engines,
    link: (jobId, name) =>
      signDownloadLink({
        key: opts.linkSigningKey,
        baseUrl: opts.baseUrl(),
        jobId,
        name,
        ttlSeconds: config.downloadLinkTtlSeconds,
      }),
  });

  return async function callbackHook(tx, job, change) {
    if (!job.callbackUrl) return;
    const type = callbackTypeFor(change);
    if (!type) return;
    const payload =
      type === 'training_progress'
        ? progressPayload(job, ctx())
        : type === 'training_completed'
          ? completedPayload(job, ctx())
          : failedPayload(job, ctx());
    const { dueAt, state } = await enqueueCallback(tx, {
      id: newEventId(),
      jobId: job.id,
      type,
      body: JSON.stringify(payload),
      minIntervalMs: config.callbacks.progressMinIntervalMs,
    });
    // The commit is still ahead; the dispatcher is also woken by the job event after it.
    if (state === 'pending') opts.onEnqueued?.(dueAt.getTime());
  };
}
