/**
 * What the API asks of jobs: submit, read, list, cancel. Each change is one transaction that
 * also writes what must go out because of it (the callback outbox, through the hook), and is
 * announced on the in-process event bus only after it commits.
 */
import crypto from 'node:crypto';
import { count, eq } from 'drizzle-orm';
import type { Database, Tx } from '../db/client.js';
import { jobs, type JobRow } from '../db/schema.js';
import { HttpError } from '../errors.js';
import type { JobChange, JobEvents } from './events.js';
import { getJob, queuePosition, recentMeanDurationSeconds } from './queries.js';
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

export class JobService {
  constructor(
    private readonly opts: {
      database: Database;
      slots: SlotInfo;
      events: JobEvents;
      hook: TransitionHook;
      maxQueueLength: number;
    },
  ) {}

  async submit(req: TrainRequest): Promise<{ job: JobRow; created: boolean }> {
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
      const [queued] = await tx.select({ n: count() }).from(jobs).where(eq(jobs.state, 'queued'));
      const existing = await getJob(tx, id);
      if (existing) return { job: existing, created: false };
      if ((queued?.n ?? 0) >= this.opts.maxQueueLength) {
        throw new HttpError(503, 'QUEUE_FULL', `the queue holds ${queued?.n} jobs, its limit`, null, {
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
      if (!job) return { job: (await getJob(tx, id))!, created: false };
      await this.opts.hook(tx, job, 'queued');
      return { job, created: true };
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
  async estimatedStart(job: JobRow): Promise<{ position: number; at: Date | null }> {
    const { db } = this.opts.database;
    const position = await queuePosition(db, job);
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
