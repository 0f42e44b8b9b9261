/**
 * The one door through which a running job changes: claim, start, record, finish, requeue,
 * renew, recover. The scheduler and the pipeline are handed this store and hold no SQL (as
 * graphile-worker hands its loop getJob/completeJob/failJob).
 *
 * Each change is one transaction that checks the state it leaves (transitions.ts), runs the
 * transition hook with it (the callback outbox), and is announced on the event bus once it has
 * committed. A method answers undefined when this node no longer holds the job (cancelled, or
 * taken over after its lease expired): the caller then stops.
 */
import type { Database } from '../db/client.js';
import type { JobRow } from '../db/schema.js';
import type { JobChange, JobChangeEvent, JobEvents } from './events.js';
import { jobEpochRows } from './queries.js';
import type { TransitionHook } from './service.js';
import {
  claimNextJob,
  finishJob,
  markRunning,
  recordEpoch,
  renewLeases,
  requeueJob,
  requeueNodeJobs,
  requeueOrphans,
  retryJobLater,
  setDiskUsage,
  updateActiveJob,
  type JobPatch,
} from './transitions.js';

export type { JobPatch } from './transitions.js';

export interface JobStore {
  readonly nodeId: string;
  /** Takes the oldest queued job this device may run, with a lease. */
  claim(device: string): Promise<JobRow | undefined>;
  /** claimed → running. */
  start(id: string): Promise<JobRow | undefined>;
  /** Progress, phase, metrics (and an epoch's row) of a running job. */
  record(id: string, patch: JobPatch, change: JobChange, epoch?: JobChangeEvent['epoch']): Promise<JobRow | undefined>;
  finish(id: string, state: 'completed' | 'failed', patch: JobPatch): Promise<JobRow | undefined>;
  /** Back to the queue (this node stops): it resumes from its checkpoint wherever it runs next. */
  requeue(id: string): Promise<JobRow | undefined>;
  /** A transient failure: back to the queue, claimed again after delayMs, from its checkpoint. */
  retryLater(id: string, error: { code: string; message: string }, delayMs: number): Promise<JobRow | undefined>;
  /** Extends the leases of these jobs; answers the ids this node still holds. */
  renew(ids: string[]): Promise<Set<string>>;
  /** At start: this node's own jobs from before its restart, and every expired lease, back to the queue. */
  recover(): Promise<JobRow[]>;
  /** Expired leases (their nodes died) back to the queue. */
  sweep(): Promise<JobRow[]>;
  /** This node stops: every job it still holds back to the queue now, its lease released. */
  handBack(): Promise<JobRow[]>;
  /** The resource sample of a job this node runs (no callback, no announcement: it rides on the next change). */
  setResources(id: string, resources: Record<string, unknown>): Promise<void>;
  /** The dataset archive a running job uses (no callback, no announcement). */
  setDatasetArchive(id: string, sha256: string): Promise<void>;
  /** Bytes of a job's folder, whatever its state (no callback, no announcement). */
  setDiskUsage(id: string, bytes: number): Promise<void>;
  /** The epochs recorded for a job so far, in order. */
  recordedEpochs(id: string): Promise<number[]>;
}

export function createJobStore(opts: {
  database: Database;
  hook: TransitionHook;
  events: JobEvents;
  nodeId: string;
  leaseSeconds: number;
}): JobStore {
  const { database, hook, events, nodeId, leaseSeconds } = opts;
  const { db } = database;
  const announce = (job: JobRow | undefined, change: JobChange, epoch?: JobChangeEvent['epoch']) => {
    if (job) events.emit({ job, change, ...(epoch ? { epoch } : {}) });
    return job;
  };
  const requeued = (rows: JobRow[]) => {
    for (const job of rows) events.emit({ job, change: 'requeued' });
    return rows;
  };
  return {
    nodeId,
    claim: async (device) => announce(await claimNextJob(db, { nodeId, device, leaseSeconds }), 'claimed'),
    start: async (id) => announce(await markRunning(db, id, nodeId), 'started'),
    async record(id, patch, change, epoch) {
      const row = await db.transaction(async (tx) => {
        if (epoch) await recordEpoch(tx, { jobId: id, ...epoch });
        const updated = await updateActiveJob(tx, id, nodeId, patch);
        if (updated) await hook(tx, updated, change);
        return updated;
      });
      return announce(row, change, epoch);
    },
    async finish(id, state, patch) {
      const row = await db.transaction(async (tx) => {
        const updated = await finishJob(tx, id, nodeId, state, patch);
        if (updated) await hook(tx, updated, state);
        return updated;
      });
      return announce(row, state);
    },
    requeue: async (id) => announce(await requeueJob(db, id, nodeId), 'requeued'),
    async retryLater(id, error, delayMs) {
      const row = await db.transaction(async (tx) => {
        const updated = await retryJobLater(tx, id, nodeId, error, delayMs);
        if (updated) await hook(tx, updated, 'retrying');
        return updated;
      });
      return announce(row, 'retrying');
    },
    renew: (ids) => renewLeases(db, nodeId, ids, leaseSeconds),
    recover: async () => requeued(await requeueOrphans(db, nodeId)),
    sweep: async () => requeued(await requeueOrphans(db, null)),
    handBack: async () => requeued(await requeueNodeJobs(db, nodeId)),
    async setResources(id, resources) {
      await updateActiveJob(db, id, nodeId, { resources });
    },
    async setDatasetArchive(id, sha256) {
      await updateActiveJob(db, id, nodeId, { datasetSha256: sha256 });
    },
    async setDiskUsage(id, bytes) {
      await setDiskUsage(db, id, bytes);
    },
    async recordedEpochs(id) {
      return (await jobEpochRows(db, id)).map((r) => r.epoch);
    },
  };
}
