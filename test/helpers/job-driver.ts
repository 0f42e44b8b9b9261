/**
 * Drives queued jobs as the executor does, without Python: claim, start, then each change
 * recorded through jobs/recorder.ts (its transaction, the server's transition hook, the
 * announcement), so pages, streams and metrics see exactly what a real run produces.
 */
import assert from 'node:assert/strict';
import type { JobRow } from '../../src/db/schema.js';
import type { JobChange, JobChangeEvent } from '../../src/jobs/events.js';
import { jobRecorder } from '../../src/jobs/recorder.js';
import { claimNextJob, markRunning, type JobPatch } from '../../src/jobs/transitions.js';
import type { ServerHandle } from '../../src/server.js';

export function jobDriver(server: ServerHandle, nodeId: string) {
  const { database, events } = server.deps;
  const recorder = (id: string) => jobRecorder({ database, events, hook: server.hook, nodeId }, id);
  return {
    /** Claims the oldest queued job and starts it. */
    async start(): Promise<JobRow> {
      const claimed = await claimNextJob(database.db, { nodeId, device: 'cpu', leaseSeconds: 600 });
      assert.ok(claimed, 'a queued job to claim');
      events.emit({ job: claimed, change: 'claimed' });
      const running = await markRunning(database.db, claimed.id, nodeId);
      assert.ok(running, 'the claimed job starts');
      events.emit({ job: running, change: 'started' });
      return running;
    },
    async record(id: string, patch: JobPatch, change: JobChange, epoch?: JobChangeEvent['epoch']): Promise<JobRow> {
      const row = await recorder(id).change(patch, change, epoch);
      assert.ok(row, 'job still held');
      return row;
    },
    async finish(id: string, state: 'completed' | 'failed', patch: JobPatch = {}): Promise<JobRow> {
      const row = await recorder(id).finish(state, patch);
      assert.ok(row, 'job still held');
      return row;
    },
  };
}
