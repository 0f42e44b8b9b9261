/**
 * How a running job's changes are recorded: one transaction that writes the change and runs
 * the transition hook (the callback outbox) with it, then the announcement on the event bus
 * once committed. The pipeline (execute.ts) records through this, and so do the tests that
 * script a training run without Python, so both record alike.
 */
import type { Database } from '../db/client.js';
import type { JobRow } from '../db/schema.js';
import type { JobChange, JobChangeEvent, JobEvents } from './events.js';
import type { TransitionHook } from './service.js';
import { finishJob, recordEpoch, updateActiveJob, type JobPatch } from './transitions.js';

export interface RecorderContext {
  database: Database;
  hook: TransitionHook;
  events: JobEvents;
  nodeId: string;
}

export interface JobRecorder {
  /** Undefined when this node no longer holds the job (cancelled, or taken over). */
  change(patch: JobPatch, change: JobChange, epoch?: JobChangeEvent['epoch']): Promise<JobRow | undefined>;
  finish(state: 'completed' | 'failed', patch: JobPatch): Promise<JobRow | undefined>;
}

export function jobRecorder(ctx: RecorderContext, jobId: string): JobRecorder {
  const { database, hook, events, nodeId } = ctx;
  return {
    async change(patch, change, epoch) {
      const row = await database.db.transaction(async (tx) => {
        if (epoch) await recordEpoch(tx, { jobId, ...epoch });
        const updated = await updateActiveJob(tx, jobId, nodeId, patch);
        if (updated) await hook(tx, updated, change);
        return updated;
      });
      if (row) events.emit({ job: row, change, ...(epoch ? { epoch } : {}) });
      return row;
    },
    async finish(state, patch) {
      const row = await database.db.transaction(async (tx) => {
        const updated = await finishJob(tx, jobId, nodeId, state, patch);
        if (updated) await hook(tx, updated, state);
        return updated;
      });
      if (row) events.emit({ job: row, change: state });
      return row;
    },
  };
}
