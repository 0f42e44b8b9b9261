/**
 * What the API asks of jobs: submit, read, list, cancel. Each change is one transaction that
 * also writes what must go out because of it (the callback outbox, through the hook), and is
 * announced on the in-process event bus only after it commits.
 */
import crypto from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Database, Tx } from '../db/client.js';
import { jobs, type JobRow } from '../db/schema.js';
import { HttpError } from '../errors.js';
import type { JobChange, JobEvents } from './events.js';
import { getJob, getJobFast, queuePosition, recentMeanDurationSeconds } from './queries.js';
import { QueueIndex } from './queue-index.js';
import type { TrainRequest } from './request.js';
import { cancelJob, insertJob } from './transitions.js';

/** Called inside the transaction of every job change: the callback outbox hangs here. */
export type TransitionHook = (tx: Tx, job: JobRow, change: JobChange) => Promise<void>;

export interface SlotInfo {
  devices: string[];
  activeCount: number;
  wake(): void;
  abort(jobId: string, reason: 'cancelled'): boolean;
}

/** Changes that move other jobs' queue positions. */
const QUEUE_CHANGES = new Set<JobChange>(['queued', 'claimed', 'started', 'cancelled', 'requeued']);
const READ_CACHE_MAX = 10_000;

export class JobService {
  /**
   * Recent reads of GET /jobs/{id} (row + queue position). A change made on this node evicts
   * the job at once (and every queued job's position when the queue moved); changes made by
   * other nodes sharing PostgreSQL show within readCacheMs. Status polling is the hot path:
   * bench/api.ts measured a queued job's read at 3.4 ms of CPU without it.
   */
  readonly queue = new QueueIndex();
  private readonly readCache = new Map<string, { at: number; row: JobRow; position: number | undefined }>();

  constructor(
    private readonly opts: {
      database: Database;
      slots: SlotInfo;
      events: JobEvents;
      hook: TransitionHook;
      maxQueueLength: number;
      readCacheMs?: number;
    },
  ) {
    opts.events.on((e) => {
      this.queue.apply(e);
      this.readCache.delete(e.job.id);
      if (QUEUE_CHANGES.has(e.change)) {
        for (const [id, entry] of this.readCache) if (entry.row.state === 'queued') this.readCache.delete(id);
      }
    });
  }

  /** Refreshes the queue index from the database (at start, and on each scheduler sweep). */
  async reloadQueue(): Promise<void> {
    await this.queue.reload(this.opts.database.db);
  }

  private async position(job: JobRow): Promise<number> {
    return this.queue.position(job.seq) ?? (await queuePosition(this.opts.database.db, job));
  }

  /** A job and its place in line, for status reads. */
  async read(id: string): Promise<{ row: JobRow; position: number | undefined } | undefined> {
    const ttl = this.opts.readCacheMs ?? 0;
    const hit = this.readCache.get(id);
    if (hit && Date.now() - hit.at < ttl) return hit;
    const { db } = this.opts.database;
    const row = await getJobFast(db, id);
    if (!row) return undefined;
    const entry = { at: Date.now(), row, position: row.state === 'queued' ? await this.position(row) : undefined };
    if (ttl > 0) {
      if (this.readCache.size >= READ_CACHE_MAX) this.readCache.delete(this.readCache.keys().next().value!);
      this.readCache.set(id, entry);
    }
    return entry;
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
    const id = req.job_id ?? crypto.randomUUID();
    const { callback_secret: callbackSecret, ...stored } = req;
    const { db } = this.opts.database;
    const result = await db.transaction(async (tx) => {
      const existing = await getJob(tx, id);
      if (existing) return { job: existing, created: false, position: 0 };
      // Counts no further than the limit: a full queue costs the same as an empty one.
      const [queued] = await this.opts.database.rows<{ n: number }>(
        sql`select count(*)::int as n from (select 1 from ${jobs} where ${jobs.state} = 'queued' limit ${this.opts.maxQueueLength}) q`,
        tx,
      );
      const ahead = Number(queued?.n ?? 0);
      if (ahead >= this.opts.maxQueueLength) {
        throw new HttpError(503, 'QUEUE_FULL', `the queue holds ${ahead} jobs, its limit`, null, {
          'Retry-After': '60',
        });
      }
      const job = await insertJob(tx, {
        id,
        name: req.model_config.name,
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
   * When a queued job should start: now when a slot is free, else after the jobs ahead of it
   * have run, at the mean duration of recent jobs. Null when there is no history to go on.
   */
  async estimatedStart(job: JobRow, knownPosition?: number): Promise<{ position: number; at: Date | null }> {
    const { db } = this.opts.database;
    const position = knownPosition ?? (job.state === 'queued' ? await this.position(job) : 0);
    if (position === 0) return { position, at: job.startedAt ?? new Date() };
    const slots = Math.max(1, this.opts.slots.devices.length);
    const free = slots - this.opts.slots.activeCount;
    if (position <= free) return { position, at: new Date() };
    const mean = await recentMeanDurationSeconds(db);
    if (mean === null) return { position, at: null };
    const rounds = Math.ceil((position - Math.max(0, free)) / slots);
    return { position, at: new Date(Date.now() + rounds * mean * 1000) };
  }
}

export function normalizeDevice(device: string): string {
  return /^\d+$/.test(device) ? `cuda:${device}` : device;
}
