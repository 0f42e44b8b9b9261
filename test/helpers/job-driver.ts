/**
 * Drives queued jobs as the executor does, without Python: claim, start, then each change
 * recorded through a job store (jobs/store.ts: its transaction, the server's transition hook,
 * the announcement), so pages, streams and metrics see exactly what a real run produces.
 */
import assert from 'node:assert/strict';
import type { JobRow } from '../../src/db/schema.js';
import type { JobChange, JobChangeEvent } from '../../src/jobs/events.js';
import { createJobStore, type JobPatch } from '../../src/jobs/store.js';
import type { ServerHandle } from '../../src/server.js';

export function jobDriver(server: ServerHandle, nodeId: string) {
  const { database, events } = server.deps;
  const store = createJobStore({ database, events, hook: server.hook, nodeId, leaseSeconds: 600 });
  return {
    /** Claims the oldest queued job and starts it. */
    async start(): Promise<JobRow> {
      const claimed = await store.claim('cpu');
      assert.ok(claimed, 'a queued job to claim');
      const running = await store.start(claimed.id);
      assert.ok(running, 'the claimed job starts');
      return running;
    },
    async record(id: string, patch: JobPatch, change: JobChange, epoch?: JobChangeEvent['epoch']): Promise<JobRow> {
      const row = await store.record(id, patch, change, epoch);
      assert.ok(row, 'job still held');
      return row;
    },
    async finish(id: string, state: 'completed' | 'failed', patch: JobPatch = {}): Promise<JobRow> {
      const row = await store.finish(id, state, patch);
      assert.ok(row, 'job still held');
      return row;
    },
  };
}
