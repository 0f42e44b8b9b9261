/**
 * The job loop of one node.
 *
 * One p-queue of concurrency 1 per device is that device's slot. The database decides which job
 * runs: a free slot claims the oldest queued job (FOR UPDATE SKIP LOCKED) and holds a lease it
 * renews while the job runs. A job whose lease expires (its node died) is put back in the
 * queue by any node's sweep; on start, a node first takes back the jobs it held before it
 * was restarted. So no job stays "running" with no process behind it, and several nodes on one
 * PostgreSQL can share the queue.
 *
 * A run stops early for three reasons, passed as the AbortSignal's reason:
 * 'cancelled' (DELETE), 'shutdown' (this server stops: the job is re-queued to resume), and
 * 'lease_lost' (another node took it over, or it was cancelled on another node).
 */
import PQueue from 'p-queue';
import type { JobRow } from '../db/schema.js';
import type { Logger } from '../core/logger.js';
import type { JobStore } from '../jobs/store.js';

export type StopReason = 'cancelled' | 'shutdown' | 'lease_lost';

/** Runs one claimed job to its end, recording every transition itself. */
export type Executor = (job: JobRow, ctx: { device: string; signal: AbortSignal }) => Promise<void>;

interface Running {
  controller: AbortController;
  device: string;
  done: Promise<void>;
}

export interface SchedulerOptions {
  store: JobStore;
  devices: string[];
  /** Leases are renewed three times per lease period. */
  leaseSeconds: number;
  executor: Executor;
  logger: Logger;
  /** How often to look for work from other nodes and for expired leases. */
  pollMs?: number;
  /** Runs at each lease-renewal tick, jobs or none: the node registry's heartbeat. */
  heartbeat?: () => Promise<void>;
}

export class Scheduler {
  private readonly slots = new Map<string, PQueue>();
  private readonly running = new Map<string, Running>();
  private timers: NodeJS.Timeout[] = [];
  private filling: Promise<void> | null = null;
  private refill = false;
  private stopped = false;

  constructor(private readonly opts: SchedulerOptions) {
    for (const device of opts.devices) this.slots.set(device, new PQueue({ concurrency: 1 }));
  }

  get devices(): string[] {
    return [...this.slots.keys()];
  }

  get activeCount(): number {
    return this.running.size;
  }

  isRunningHere(jobId: string): boolean {
    return this.running.has(jobId);
  }

  async start(): Promise<void> {
    const orphans = await this.opts.store.recover();
    for (const job of orphans) {
      this.opts.logger.warn({ job_id: job.id }, 'job re-queued after restart; it resumes from its last checkpoint');
    }
    const pollMs = this.opts.pollMs ?? 2000;
    const leaseMs = this.opts.leaseSeconds * 1000;
    this.timers.push(setInterval(() => void this.sweep(), pollMs));
    this.timers.push(setInterval(() => void this.renew(), Math.max(1000, Math.floor(leaseMs / 3))));
    for (const t of this.timers) t.unref();
    this.wake();
  }

  /** Fill free slots now: called on submit, on job end and on each poll. */
  wake(): void {
    if (this.stopped) return;
    if (this.filling) {
      this.refill = true;
      return;
    }
    this.filling = this.fill()
      .catch((err) => this.opts.logger.error({ err }, 'scheduler fill failed'))
      .finally(() => {
        this.filling = null;
        if (this.refill) {
          this.refill = false;
          this.wake();
        }
      });
  }

  private async fill(): Promise<void> {
    for (const [device, slot] of this.slots) {
      if (this.stopped) return;
      if (slot.size + slot.pending > 0) continue;
      const job = await this.opts.store.claim(device);
      if (!job) continue;
      const controller = new AbortController();
      const done = slot.add(() => this.execute(job, device, controller.signal));
      this.running.set(job.id, { controller, device, done: done.then(() => undefined) });
    }
  }

  private async execute(job: JobRow, device: string, signal: AbortSignal): Promise<void> {
    const log = this.opts.logger.child({ job_id: job.id, device });
    log.info({ attempt: job.attempts }, 'job claimed');
    try {
      await this.opts.executor(job, { device, signal });
    } catch (err) {
      // The executor records failures itself; reaching here is a bug, not a job failure.
      log.error({ err }, 'executor threw');
    } finally {
      // A job retried at once may already run again in another slot: leave its entry alone.
      if (this.running.get(job.id)?.controller.signal === signal) this.running.delete(job.id);
      this.wake();
    }
  }

  /** Stops a job running on this node (the caller already changed its state). */
  abort(jobId: string, reason: StopReason): boolean {
    const run = this.running.get(jobId);
    if (!run) return false;
    run.controller.abort(reason);
    return true;
  }

  private async sweep(): Promise<void> {
    if (this.stopped) return;
    try {
      // Only expired leases here: our own jobs are alive (their leases are being renewed).
      const orphans = await this.opts.store.sweep();
      for (const job of orphans) {
        this.opts.logger.warn({ job_id: job.id }, 'lease expired; job re-queued');
      }
    } catch (err) {
      this.opts.logger.error({ err }, 'lease sweep failed');
    }
    this.wake();
  }

  private async renew(): Promise<void> {
    if (this.stopped) return;
    const ids = [...this.running.keys()];
    if (ids.length > 0) {
      try {
        const held = await this.opts.store.renew(ids);
        for (const id of ids) {
          // Cancelled on another node, or taken over: stop our worker.
          if (!held.has(id)) this.abort(id, 'lease_lost');
        }
      } catch (err) {
        this.opts.logger.error({ err }, 'lease renewal failed');
      }
    }
    await this.opts.heartbeat?.();
  }

  /**
   * Stops taking work, asks running jobs to stop (each is re-queued from its checkpoint as its
   * worker stops), waits for them, then hands back whatever this node still holds: a claim no
   * run took up goes back to the queue at once, not when its lease expires.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.filling;
    const runs = [...this.running.values()];
    for (const run of runs) run.controller.abort('shutdown' satisfies StopReason);
    await Promise.all(runs.map((r) => r.done));
    try {
      for (const job of await this.opts.store.handBack()) {
        this.opts.logger.info({ job_id: job.id }, 'claim handed back to the queue on shutdown');
      }
    } catch (err) {
      this.opts.logger.error({ err }, 'claims not handed back; their leases expire instead');
    }
  }
}
