/**
 * Delivers the callback outbox. One loop per node ("pump"), never two at once:
 *
 *   1. write the results of finished attempts (one statement per batch); this is what lets
 *      the next event of those jobs become due, so it always comes first;
 *   2. claim as many due events as there are free delivery slots (oldest pending event per
 *      job only; locked in the DB so other nodes skip them);
 *   3. start their HTTP attempts without waiting for them; each one, when it ends, queues its
 *      result and wakes the loop.
 *
 * The loop sleeps until woken by: a job change committed in this process (JobEvents), a
 * finished attempt, the due time of a rate-limited or retried event, or the poll interval
 * (events written by other nodes, locks of a node that died). A receiver that hangs holds one
 * slot until CALLBACK_TIMEOUT_SECONDS, never the loop, never training: the job transaction
 * only writes a row.
 */
import { setMaxListeners } from 'node:events';
import type { Dispatcher } from 'undici';
import type { Config } from '../core/config.js';
import type { Db } from '../db/client.js';
import type { JobEvents } from '../jobs/events.js';
import type { Logger } from '../core/logger.js';
import { attemptDelivery, type AttemptAnswer } from './deliver.js';
import type { CallbackMetrics } from './metrics.js';
import { retryDelayMs } from './schedule.js';
import { claimCallbacks, releaseLocks, type ClaimedCallback } from './sql/claim.js';
import { completeAttempts, type AttemptResult } from './sql/complete.js';

export interface DispatcherOptions {
  db: Db;
  config: Config;
  nodeId: string;
  logger: Logger;
  dispatcher: Dispatcher;
  userAgent: string;
  metrics?: CallbackMetrics;
  /** In-flight attempts at once (each job has at most one). */
  concurrency?: number;
  /** Most events claimed by one statement. */
  batchSize?: number;
  pollMs?: number;
}

/** Time a claimed event stays locked beyond the HTTP timeout before another node may take it. */
const LOCK_MARGIN_SECONDS = 30;
/** How long stop() lets attempts in flight finish before aborting them. */
const STOP_GRACE_MS = 1000;

export class CallbackDispatcher {
  private readonly inFlight = new Map<string, Promise<void>>();
  private results: AttemptResult[] = [];
  private pumping: Promise<void> | null = null;
  private again = false;
  /** Something may have become due: the next pass claims (a finished attempt alone does not). */
  private claimWanted = false;
  private stopped = true;
  private readonly abort = new AbortController();
  private pollTimer: NodeJS.Timeout | null = null;
  private wakeTimer: NodeJS.Timeout | null = null;
  private wakeTimerAt = Infinity;
  private unsubscribe: (() => void) | null = null;
  private readonly concurrency: number;
  private readonly batchSize: number;
  private readonly log: Logger;

  constructor(private readonly opts: DispatcherOptions) {
    this.concurrency = opts.concurrency ?? opts.config.callbacks.concurrency;
    this.batchSize = opts.batchSize ?? 200;
    this.log = opts.logger.child({ component: 'callbacks' });
    // Every attempt in flight listens for the stop.
    setMaxListeners(this.concurrency + 16, this.abort.signal);
  }

  async start(events?: JobEvents): Promise<void> {
    const released = await releaseLocks(this.opts.db, this.opts.nodeId);
    if (released) this.log.info({ released }, 'callbacks taken before a restart are free again');
    this.stopped = false;
    const pollMs = this.opts.pollMs ?? this.opts.config.callbacks.pollIntervalMs;
    this.pollTimer = setInterval(() => this.wake(), pollMs);
    this.pollTimer.unref();
    if (events) this.unsubscribe = events.on((e) => e.job.callbackUrl && this.wake());
    this.wake();
  }

  /** Something may be due now. Cheap; many calls in one tick make one pass. */
  wake(): void {
    this.claimWanted = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = this.pump().finally(() => {
      this.pumping = null;
      if (this.again) this.schedule();
    });
  }

  /** Something becomes due at this time (epoch ms): a rate-limited progress event, a retry. */
  wakeAt(atMs: number): void {
    if (this.stopped) return;
    const at = Math.max(atMs, Date.now());
    if (at >= this.wakeTimerAt) return;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimerAt = at;
    // +5 ms: the database's now() must have passed the due time when the claim runs.
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = null;
      this.wakeTimerAt = Infinity;
      this.wake();
    }, at - Date.now() + 5);
    this.wakeTimer.unref();
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  private async pump(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.flush();
        const free = this.concurrency - this.inFlight.size;
        if (!this.claimWanted || free <= 0 || this.stopped) continue;
        this.claimWanted = false;
        const limit = Math.min(free, this.batchSize);
        const claimed = await claimCallbacks(this.opts.db, {
          nodeId: this.opts.nodeId,
          limit,
          lockSeconds: this.opts.config.callbacks.timeoutMs / 1000 + LOCK_MARGIN_SECONDS,
          progressMinIntervalMs: this.opts.config.callbacks.progressMinIntervalMs,
        });
        for (const event of claimed) this.launch(event);
        // A full batch: there may be more due right now.
        if (claimed.length === limit) this.again = this.claimWanted = true;
      } catch (err) {
        if (this.stopped) return;
        this.claimWanted = true;
        this.log.error({ err }, 'callback dispatch failed; retrying at the next poll');
        return;
      }
      // PGlite answers in-process, without a socket: yield, or the sockets of the attempts in
      // flight would wait for a busy loop of microtasks to end.
      if (this.again) await new Promise((r) => setImmediate(r));
    } while (this.again && !this.stopped);
  }

  private launch(event: ClaimedCallback): void {
    const run = attemptDelivery(event, {
      dispatcher: this.opts.dispatcher,
      timeoutMs: this.opts.config.callbacks.timeoutMs,
      sendSecretHeader: this.opts.config.callbacks.sendSecretHeader,
      userAgent: this.opts.userAgent,
      signal: this.abort.signal,
    }).then((answer) => {
      this.results.push(this.toResult(event, answer));
      this.inFlight.delete(event.id);
      // A freed slot matters only when the last claim left due events behind.
      if (answer.aborted) this.claimWanted = true;
      this.schedule();
    });
    this.inFlight.set(event.id, run);
  }

  private toResult(event: ClaimedCallback, a: AttemptAnswer): AttemptResult {
    const base = {
      id: event.id,
      attemptedAt: a.attemptedAt,
      statusCode: a.statusCode,
      latencyMs: a.latencyMs,
      error: a.error,
      manual: event.manual,
      delayMs: null,
    };
    this.opts.metrics?.attemptSeconds.observe(a.latencyMs / 1000);
    if (a.aborted) return { ...base, outcome: 'aborted' };
    const fields = { job_id: event.jobId, event_id: event.id, type: event.type, status: a.statusCode };
    if (a.ok) {
      this.opts.metrics?.deliveries.inc({ outcome: 'delivered' });
      if (this.log.isLevelEnabled('debug')) this.log.debug({ ...fields, ms: Math.round(a.latencyMs) }, 'callback delivered');
      return { ...base, outcome: 'delivered' };
    }
    const log = this.log.child(fields);
    if (a.gone) {
      this.opts.metrics?.deliveries.inc({ outcome: 'gone' });
      log.warn('callback receiver answered 410 Gone: no more callbacks for this job');
      return { ...base, outcome: 'gone' };
    }
    const attemptsMade = event.attempts + 1;
    const delay = a.permanent ? null : retryDelayMs(this.opts.config.callbacks.retryScheduleSeconds, attemptsMade, a.retryAfterMs);
    if (delay === null) {
      this.opts.metrics?.deliveries.inc({ outcome: 'dead' });
      log.warn({ attempts: attemptsMade, error: a.error }, 'callback dead: no attempt left');
      return { ...base, outcome: 'dead' };
    }
    this.opts.metrics?.deliveries.inc({ outcome: 'failed' });
    log.info({ attempts: attemptsMade, retry_in_ms: delay, error: a.error }, 'callback attempt failed');
    return { ...base, outcome: 'retry', delayMs: delay };
  }

  private async flush(): Promise<void> {
    if (this.results.length === 0) return;
    const batch = this.results;
    this.results = [];
    try {
      const { recorded, waiting } = await completeAttempts(this.opts.db, this.opts.nodeId, batch);
      if (waiting > 0) this.claimWanted = true;
      // Retries are due `delay` after the statement's now(), which is behind us now.
      for (const r of batch) if (r.outcome === 'retry' && recorded.has(r.id)) this.wakeAt(Date.now() + r.delayMs!);
      if (recorded.size < batch.length) {
        const lost = batch.filter((r) => !recorded.has(r.id)).map((r) => r.id);
        this.log.warn({ event_ids: lost }, 'callback results not recorded: their lock had passed to another node');
      }
    } catch (err) {
      // Keep them for the next pass; their locks still hold.
      this.results.unshift(...batch);
      throw err;
    }
  }

  /** Stops claiming, lets attempts in flight end (briefly), records their results. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.unsubscribe?.();
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    await this.pumping;
    const all = Promise.all(this.inFlight.values());
    const grace = new Promise<void>((resolve) => setTimeout(resolve, STOP_GRACE_MS).unref());
    await Promise.race([all, grace]);
    this.abort.abort();
    await all;
    try {
      await this.flush();
    } catch (err) {
      this.log.error({ err }, 'could not record the last callback results; they are retried after the lock expires');
    }
  }
}
