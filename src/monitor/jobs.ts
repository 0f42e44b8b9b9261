/**
 * Binds the monitor to the database: the jobs this node runs, their `resources` column (written
 * through the job store, so only while this node holds the job) and their log file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { and, eq, inArray, sql, type SQL } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { jobs } from '../db/schema.js';
import type { JobFiles } from '../jobs/files.js';
import type { JobStore } from '../jobs/store.js';
import type { JobActivity } from './activity.js';
import type { JobProgressSource } from './metrics.js';
import type { JobResourceSink } from './monitor.js';

/** `store` is read when a sample arrives: the monitor starts before the store is built. */
export function jobResourceSink(database: Database, nodeId: string, store: () => JobStore, files: JobFiles): JobResourceSink {
  return {
    running: () =>
      database.db
        .select({ id: jobs.id, device: jobs.device, resources: jobs.resources })
        .from(jobs)
        .where(and(eq(jobs.nodeId, nodeId), inArray(jobs.state, ['claimed', 'running']))),
    attach: async (jobId, resources) => {
      await store().setResources(jobId, { ...resources });
    },
    // The worker's log; appends are O_APPEND, so lines do not interleave with the worker's.
    log: async (jobId, line) => {
      const file = files.logFile(jobId);
      await fs.promises.mkdir(path.dirname(file), { recursive: true });
      await fs.promises.appendFile(file, line);
    },
  };
}

/**
 * Jobs that ever reached each status, from the database (training_jobs_total). Monotonic as a
 * counter must be: finished states are final and rows are not deleted; "queued" counts every
 * accepted job and "training" every job that ever started. The same on every node of a shared
 * database and across restarts, so aggregate with max(), not sum().
 */
export async function jobTotals(database: Database): Promise<Record<string, number>> {
  return countJobs(database, sql`true`, sql`started_at is not null`);
}

/**
 * Jobs in each status now, from the database (the training_jobs gauge): every status is
 * present, 0 when no job is in it. "training" covers claimed and running jobs.
 */
export async function jobsByStatus(database: Database): Promise<Record<string, number>> {
  return countJobs(database, sql`state = 'queued'`, sql`state in ('claimed', 'running')`);
}

/** Jobs counted by status in one query: what "queued" and "training" mean is the caller's. */
async function countJobs(database: Database, queued: SQL, training: SQL): Promise<Record<string, number>> {
  const [row] = await database.rows<Record<string, unknown>>(sql`
    select count(*) filter (where ${queued})::int as queued,
           count(*) filter (where ${training})::int as training,
           count(*) filter (where state = 'completed')::int as completed,
           count(*) filter (where state = 'failed')::int as failed,
           count(*) filter (where state = 'cancelled')::int as cancelled
      from jobs`);
  const n = (k: string) => Number(row?.[k] ?? 0);
  return { queued: n('queued'), training: n('training'), completed: n('completed'), failed: n('failed'), cancelled: n('cancelled') };
}

/** The jobs this node runs, for the per-job gauges. */
export async function runningJobProgress(database: Database, nodeId: string, activity: JobActivity): Promise<JobProgressSource[]> {
  const rows = await database.db
    .select({ id: jobs.id, name: jobs.name, engine: jobs.engine, task: jobs.task, progress: jobs.progress, startedAt: jobs.startedAt })
    .from(jobs)
    .where(and(eq(jobs.nodeId, nodeId), inArray(jobs.state, ['claimed', 'running'])));
  return rows.map((r) => ({ ...r, lastChangeMs: activity.lastChange(r.id) }));
}
