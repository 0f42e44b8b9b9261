/**
 * What the API asks of jobs: submit, read, list, cancel. Each change is one transaction that
 * also writes what must go out because of it (the callback outbox, through the hook), and is
 * announced on the in-process event bus only after it commits.
 */
import crypto from 'node:crypto';
import type { Database, Tx } from '../db/client.js';
import type { Engines } from '../engines/index.js';
import type { JobRow } from '../db/schema.js';
import { HttpError } from '../core/errors.js';
import type { JobChange, JobEvents } from './events.js';
import { getJob, getJobFast, jobsAfter, queuePosition, recentMeanDurationSeconds, warmStart } from './queries.js';
import type { Logger } from '../core/logger.js';
import { QueueIndex } from './queue-index.js';
import { JobReadCache, type CachedJob } from './read-cache.js';
import { jobView } from './view.js';
import type { TrainRequest } from './request.js';
import { cancelJob, insertJob, restartJob } from './transitions.js';
import { lockUploadedDataset } from '../datasets/uploads.js';

/** Called inside the transaction of every job change: the callback outbox hangs here. */
export type TransitionHook = (tx: Tx, job: JobRow, change: JobChange) => Promise<void>;

export interface SlotInfo {
  devices: string[];
  activeCount: number;
  wake(): void;
  abort(jobId: string, reason: 'cancelled'): boolean;
  /** Whether this node's run of the job has not ended yet (its worker may still be stopping). */
  isRunningHere(jobId: string): boolean;
}

/** The channel of the jobs table's trigger (migrations/0003_job_change_notify.sql). */
const JOB_CHANNEL = 'trainhook_jobs';
const WARM_PAGE = 500;

export class JobService {
  /** Queued jobs' order, for queue positions without a COUNT per read. */
  readonly queue = new QueueIndex();
  readonly cache: JobReadCache;
  private polling: NodeJS.Timeout | null = null;
  private unlisten: (() => Promise<void>) | null = null;
  private warming: Promise<void> | null = null;
  private stopped = false;

  constructor(
    private readonly opts: {
      database: Database;
      slots: SlotInfo;
      events: JobEvents;
      hook: TransitionHook;
      engines: Engines;
      /** Whether this node trains on a GPU (an engine may refuse GPU-only requests otherwise). */
      gpuAvailable: boolean;
      /** HF_MODELS_DIR, for engines that judge a local base model folder at submit. */
      modelsDir: string;
      maxQueueLength: number;
      /** Jobs kept in memory for status reads (0: none). */
      cacheSize: number;
      logger: Logger;
    },
  ) {
    this.cache = new JobReadCache(opts.cacheSize);
    // This node's changes apply at once; the trigger's notification of the same change follows.
    opts.events.on((e) => this.changed(e.job.id, e.job.seq, e.job.state));
  }

  private changed(id: string, seq: number, state: string): void {
    this.queue.apply(seq, state === 'queued');
    this.cache.evict(id);
  }

  /**
   * Follows job changes made anywhere (LISTEN), loads the queue index and, in the background,
   * the most recent jobs into the read cache. Without a notification channel (a pooler that
   * refuses LISTEN, say) nothing would tell this node of other nodes' changes, so reads then go
   * to the database and the queue index reloads every 2 s.
   */
  async start(): Promise<void> {
    const { database, logger } = this.opts;
    try {
      this.unlisten = await database.listen(
        JOB_CHANNEL,
        (payload) => {
          const change = parseChange(payload);
          if (change) this.changed(change.id, change.seq, change.state);
        },
        () => {
          this.cache.clear();
          void this.queue.reload(database.db).catch((err) => logger.warn({ err }, 'queue reload failed'));
        },
      );
    } catch (err) {
      logger.warn({ err }, 'cannot LISTEN for job changes: status reads go to the database');
      this.cache.disable();
      this.polling = setInterval(
        () => void this.queue.reload(database.db).catch((e) => logger.warn({ err: e }, 'queue reload failed')),
        2000,
      );
      this.polling.unref();
    }
    await this.queue.reload(database.db);
    this.warming = this.warm().catch((err) => {
      if (!this.stopped) logger.warn({ err }, 'warming the job cache failed');
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.polling) clearInterval(this.polling);
    await this.warming;
    await this.unlisten?.().catch(() => {});
  }

  /** Loads the newest jobs, oldest of them first (the cache drops its oldest entries first). */
  private async warm(): Promise<void> {
    const limit = this.opts.cacheSize;
    if (limit === 0) return;
    const { db } = this.opts.database;
    let after = await warmStart(db, limit);
    while (!this.stopped) {
      const ticket = this.cache.ticket();
      const rows = await jobsAfter(db, after, WARM_PAGE);
      for (const row of rows) if (!this.cache.get(row.id)) this.cache.put(row, ticket);
      if (rows.length < WARM_PAGE) return;
      after = rows[rows.length - 1]!.seq;
      // Pages, not one query: requests are served between them.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /**
   * A queued job's place in line: from the index, at once; counted in the database for a job
   * the index does not know yet (submitted on another node a moment ago).
   */
  private position(job: JobRow): number | Promise<number> {
    return this.queue.position(job.seq) ?? queuePosition(this.opts.database.db, job);
  }

  private async load(id: string): Promise<CachedJob | undefined> {
    const ticket = this.cache.ticket();
    const row = await getJobFast(this.opts.database.db, id);
    return row && this.cache.put(row, ticket);
  }

  /**
   * GET /jobs/{id}'s body: the job view as JSON, rendered once per change of the job or of its
   * place in line, not once per poll.
   */
  async readJson(id: string, baseUrl: string): Promise<string | undefined> {
    // On a hit nothing is awaited: one microtask less per poll.
    const entry = this.cache.get(id) ?? (await this.load(id));
    if (!entry) return undefined;
    const { row } = entry;
    const known = row.state === 'queued' ? this.position(row) : undefined;
    const position = typeof known === 'object' ? await known : known;
    const last = entry.rendered;
    if (last && last.position === position && last.baseUrl === baseUrl) return last.body;
    const body = JSON.stringify(jobView(row, { baseUrl, queuePosition: position }));
    entry.rendered = { position, baseUrl, body };
    return body;
  }

  /** position: the new job's place in line (0 when it was not created). */
  async submit(req: TrainRequest): Promise<{ job: JobRow; created: boolean; position: number }> {
    const device = req.resources.device === 'auto' ? 'auto' : normalizeDevice(req.resources.device);
    // A node that runs no jobs cannot tell which devices the others serve.
    const served = this.opts.slots.devices;
    if (device !== 'auto' && served.length > 0 && !served.includes(device)) {
      throw new HttpError(400, 'VALIDATION_ERROR', `device ${device} is not served by this server`, [
        { path: ['resources', 'device'], message: `available: auto, ${this.opts.slots.devices.join(', ')}` },
      ]);
    }
    const engine = this.opts.engines.require(req.model_config.framework);
    const refusal = await engine.refuse?.(req.model_config, { gpuAvailable: this.opts.gpuAvailable, modelsDir: this.opts.modelsDir });
    if (refusal) {
      const { code, message } = typeof refusal === 'string' ? { code: 'VALIDATION_ERROR', message: refusal } : refusal;
      throw new HttpError(400, code, message, [{ path: ['model_config'], message }]);
    }
    const id = req.job_id ?? crypto.randomUUID();
    const { callback_secret: callbackSecret, ...stored } = req;
    const { db } = this.opts.database;
    const result = await db.transaction(async (tx) => {
      const existing = await getJob(tx, id);
      if (existing) return { job: existing, created: false, position: 0 };
      // Held until commit: a concurrent DELETE of the dataset waits, then sees this job.
      if ('id' in req.dataset && !(await lockUploadedDataset(tx, req.dataset.id))) {
        throw new HttpError(400, 'DATASET_NOT_FOUND', `no uploaded dataset ${req.dataset.id} (POST /api/v1/datasets uploads one)`, [
          { path: ['dataset', 'id'], message: 'no such dataset' },
        ]);
      }
      // The queue index, not a COUNT: it follows every node's changes (start()), and a COUNT
      // in this transaction would not see concurrent submits either. With a long queue the
      // COUNT was most of a submit's cost (bench/api.ts, 10,000 queued: 13 ms on PGlite).
      const ahead = this.queue.length;
      if (ahead >= this.opts.maxQueueLength) {
        throw new HttpError(503, 'QUEUE_FULL', `the queue holds ${ahead} jobs, its limit`, null, {
          'Retry-After': '60',
        });
      }
      const job = await insertJob(tx, {
        id,
        name: req.model_config.name,
        engine: engine.name,
        task: req.model_config.task,
        totalEpochs: req.model_config.epochs,
        request: { ...stored, job_id: id },
        callbackUrl: req.callback_url ?? null,
        callbackSecret: callbackSecret ?? null,
        requestedDevice: device,
      });
      // Lost a race with a concurrent submit of the same id.
      if (!job) return { job: (await getJob(tx, id))!, created: false, position: 0 };
      await this.opts.hook(tx, job, 'queued');
      return { job, created: true, position: ahead + 1 };
    });
    if (result.created) {
      this.opts.events.emit({ job: result.job, change: 'queued' });
      this.opts.slots.wake();
      // Now in the index: exact even when other submits committed meanwhile.
      result.position = this.queue.position(result.job.seq) ?? result.position;
    }
    return result;
  }

  async get(id: string): Promise<JobRow | undefined> {
    return getJob(this.opts.database.db, id);
  }

  /** 'not_found' | 'finished' (409) | the cancelled job. */
  async cancel(id: string): Promise<JobRow | 'not_found' | { finished: JobRow }> {
    const { db } = this.opts.database;
    const outcome = await db.transaction(async (tx) => {
      const row = await cancelJob(tx, id);
      if (row) {
        await this.opts.hook(tx, row, 'cancelled');
        return row;
      }
      const existing = await getJob(tx, id);
      return existing ? { finished: existing } : ('not_found' as const);
    });
    if (typeof outcome === 'object' && 'state' in outcome) {
      this.opts.slots.abort(id, 'cancelled');
      this.opts.events.emit({ job: outcome, change: 'cancelled' });
    }
    return outcome;
  }

  /**
   * Queues a failed or cancelled job again (POST /jobs/{id}/retry): same id, a new attempt, its
   * history kept, resuming from its last checkpoint. 'not_found' | { state } (409) | the job.
   */
  async retry(id: string): Promise<JobRow | 'not_found' | { notRetryable: JobRow } | 'stopping'> {
    // A cancelled run whose worker is still stopping keeps its run folder: the next one waits.
    if (this.opts.slots.isRunningHere(id)) return 'stopping';
    const { db } = this.opts.database;
    const outcome = await db.transaction(async (tx) => {
      const row = await restartJob(tx, id);
      if (row) {
        await this.opts.hook(tx, row, 'requeued');
        return row;
      }
      const existing = await getJob(tx, id);
      return existing ? { notRetryable: existing } : ('not_found' as const);
    });
    if (typeof outcome === 'object' && 'state' in outcome) {
      this.opts.events.emit({ job: outcome, change: 'requeued' });
      this.opts.slots.wake();
    }
    return outcome;
  }

  /**
   * When a queued job should start: now when a slot is free, else after the jobs ahead of it
   * have run, at the mean duration of recent jobs. Null when there is no history to go on.
   */
  async estimatedStart(job: JobRow, knownPosition?: number): Promise<{ position: number; at: Date | null }> {
    const { db } = this.opts.database;
    const position = knownPosition ?? (job.state === 'queued' ? await this.position(job) : 0);
    if (position === 0) return { position, at: job.startedAt ?? new Date() };
    const slots = Math.max(1, this.opts.slots.devices.length);
    const free = slots - this.opts.slots.activeCount;
    // A job waiting to be retried starts no sooner than its retry time.
    if (position <= free) return { position, at: job.retryAt && job.retryAt > new Date() ? job.retryAt : new Date() };
    const mean = await recentMeanDurationSeconds(db);
    if (mean === null) return { position, at: null };
    const rounds = Math.ceil((position - Math.max(0, free)) / slots);
    return { position, at: new Date(Date.now() + rounds * mean * 1000) };
  }
}

export function normalizeDevice(device: string): string {
  return /^\d+$/.test(device) ? `cuda:${device}` : device;
}

function parseChange(payload: string): { id: string; seq: number; state: string } | null {
  try {
    const c = JSON.parse(payload) as { id?: unknown; seq?: unknown; state?: unknown };
    return typeof c.id === 'string' && typeof c.seq === 'number' && typeof c.state === 'string'
      ? { id: c.id, seq: c.seq, state: c.state }
      : null;
  } catch {
    return null;
  }
}
