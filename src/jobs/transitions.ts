/**
 * Every change of a job's state, each one UPDATE that checks the state it leaves, so two
 * nodes (or a node and a DELETE) can never both win. The job loop is handed these functions
 * and holds no SQL itself.
 *
 *   queued ──claim──▶ claimed ──start──▶ running ──complete──▶ completed
 *     ▲                  │                  │ ──fail──────▶ failed
 *     └──requeue (lease expired / node restarted)┘
 *   any unfinished state ──cancel──▶ cancelled
 *   running ──retry later (a transient failure)──▶ queued, not claimed before retry_at
 *   failed, cancelled ──restart (by request)──▶ queued
 *
 * Each start and end of an attempt is written to the job's attempt log in the same UPDATE.
 * Why these are not a job-queue library's (pg-boss, graphile-worker): docs/QUEUE.md.
 */
import { and, eq, inArray, isNull, lt, lte, or, sql, type SQL } from 'drizzle-orm';
import type { Db, DbOrTx, Tx } from '../db/client.js';
import { jobEpochs, jobs, type AttemptOutcome, type JobRow, type Phase } from '../db/schema.js';

const UNFINISHED = ['queued', 'claimed', 'running'] as const;
const ACTIVE = ['claimed', 'running'] as const;

export type JobPatch = Partial<
  Pick<
    JobRow,
    | 'phase'
    | 'progress'
    | 'currentEpoch'
    | 'totalEpochs'
    | 'etaSeconds'
    | 'metricsCurrent'
    | 'metricsBest'
    | 'datasetInfo'
    | 'model'
    | 'artifacts'
    | 'resources'
    | 'error'
    | 'trainArgs'
    | 'baseModel'
    | 'datasetSha256'
    | 'diskBytes'
  >
>;

type AttemptError = { code: string; message: string } | null;

/**
 * The attempt log with its open entry (the last one, while it has no end) closed with this
 * outcome; unchanged when no attempt is open.
 */
function closeAttempt(outcome: AttemptOutcome, error: AttemptError): SQL {
  const log = sql`${jobs.attemptLog}`;
  return sql`case when jsonb_array_length(${log}) > 0 and (${log} -> -1 ->> 'ended_at') is null
    then jsonb_set(${log}, '{-1}', (${log} -> -1) || jsonb_build_object(
      'ended_at', now(), 'outcome', ${outcome}::text, 'end_epoch', ${jobs.currentEpoch},
      'error', ${error ? JSON.stringify(error) : null}::jsonb))
    else ${log} end`;
}

/**
 * An active job back in the queue (seq, run folder and checkpoint kept), its open attempt
 * closed with this outcome: what a lost node, a stopping node and a retry have in common.
 */
function backInQueue(outcome: AttemptOutcome, error: AttemptError) {
  return {
    state: 'queued',
    phase: 'queued',
    nodeId: null,
    device: null,
    leaseExpiresAt: null,
    etaSeconds: null,
    attemptLog: closeAttempt(outcome, error),
    updatedAt: sql`now()`,
  } as const;
}

/**
 * What a job's files hold on disk, whatever its state (measured once it finished, and after
 * its files were removed): no callback, no announcement.
 */
export async function setDiskUsage(db: DbOrTx, id: string, diskBytes: number, filesRemoved = false): Promise<JobRow | undefined> {
  const [row] = await db
    .update(jobs)
    .set({ diskBytes, ...(filesRemoved ? { filesRemovedAt: sql`now()` } : {}) })
    .where(eq(jobs.id, id))
    .returning();
  return row;
}

export async function insertJob(
  db: DbOrTx,
  values: typeof jobs.$inferInsert,
): Promise<JobRow | undefined> {
  const [row] = await db.insert(jobs).values(values).onConflictDoNothing({ target: jobs.id }).returning();
  return row;
}

/**
 * Takes the oldest queued job this device may run. SKIP LOCKED lets several nodes claim at
 * once without waiting on each other's rows.
 */
export async function claimNextJob(
  db: Db,
  opts: { nodeId: string; device: string; leaseSeconds: number },
): Promise<JobRow | undefined> {
  return db.transaction(async (tx) => {
    const [next] = await tx
      .select({ id: jobs.id })
      .from(jobs)
      .where(
        and(
          eq(jobs.state, 'queued'),
          or(eq(jobs.requestedDevice, 'auto'), eq(jobs.requestedDevice, opts.device)),
          // A job waiting to be retried keeps its place in line but is skipped until its time.
          or(isNull(jobs.retryAt), lte(jobs.retryAt, sql`now()`)),
        ),
      )
      .orderBy(jobs.seq)
      .limit(1)
      .for('update', { skipLocked: true });
    if (!next) return undefined;
    const [row] = await tx
      .update(jobs)
      .set({
        state: 'claimed',
        nodeId: opts.nodeId,
        device: opts.device,
        leaseExpiresAt: sql`now() + make_interval(secs => ${opts.leaseSeconds})`,
        attempts: sql`${jobs.attempts} + 1`,
        retryAt: null,
        // An attempt still open here ended without a word (its node died): it was interrupted.
        attemptLog: sql`(${closeAttempt('interrupted', null)}) || jsonb_build_array(jsonb_build_object(
          'attempt', ${jobs.attempts} + 1, 'started_at', now(), 'ended_at', null, 'outcome', null,
          'node_id', ${opts.nodeId}::text, 'device', ${opts.device}::text,
          'start_epoch', ${jobs.currentEpoch}, 'end_epoch', null, 'error', null))`,
        updatedAt: sql`now()`,
      })
      .where(and(eq(jobs.id, next.id), eq(jobs.state, 'queued')))
      .returning();
    return row;
  });
}

export async function markRunning(db: DbOrTx, id: string, nodeId: string): Promise<JobRow | undefined> {
  const [row] = await db
    .update(jobs)
    .set({ state: 'running', startedAt: sql`coalesce(${jobs.startedAt}, now())`, updatedAt: sql`now()` })
    .where(and(eq(jobs.id, id), eq(jobs.nodeId, nodeId), inArray(jobs.state, ACTIVE)))
    .returning();
  return row;
}

/** Progress, phase and metrics of a job this node holds; undefined when it no longer holds it. */
export async function updateActiveJob(
  db: DbOrTx,
  id: string,
  nodeId: string,
  patch: JobPatch,
): Promise<JobRow | undefined> {
  const [row] = await db
    .update(jobs)
    .set({ ...patch, updatedAt: sql`now()` })
    .where(and(eq(jobs.id, id), eq(jobs.nodeId, nodeId), inArray(jobs.state, ACTIVE)))
    .returning();
  return row;
}

/** Upsert: an epoch repeated after a resume replaces its row instead of counting twice. */
export async function recordEpoch(
  db: DbOrTx,
  row: { jobId: string; epoch: number; metrics: Record<string, number | null>; epochSeconds: number | null },
): Promise<void> {
  await db
    .insert(jobEpochs)
    .values(row)
    .onConflictDoUpdate({
      target: [jobEpochs.jobId, jobEpochs.epoch],
      set: { metrics: row.metrics, epochSeconds: row.epochSeconds, createdAt: sql`now()` },
    });
}

export async function finishJob(
  db: DbOrTx,
  id: string,
  nodeId: string,
  state: 'completed' | 'failed',
  patch: JobPatch,
): Promise<JobRow | undefined> {
  const [row] = await db
    .update(jobs)
    .set({
      ...patch,
      state,
      phase: 'done' satisfies Phase,
      ...(state === 'completed' ? { progress: 100, etaSeconds: 0 } : { etaSeconds: null }),
      attemptLog: closeAttempt(state, patch.error ? { code: patch.error.code, message: patch.error.message } : null),
      retryAt: null,
      leaseExpiresAt: null,
      finishedAt: sql`now()`,
      updatedAt: sql`now()`,
    })
    .where(and(eq(jobs.id, id), eq(jobs.nodeId, nodeId), inArray(jobs.state, ACTIVE)))
    .returning();
  return row;
}

/** Cancels an unfinished job; undefined when it does not exist or has already finished. */
export async function cancelJob(tx: Tx, id: string): Promise<JobRow | undefined> {
  const [row] = await tx
    .update(jobs)
    .set({
      state: 'cancelled',
      phase: 'done',
      etaSeconds: null,
      leaseExpiresAt: null,
      retryAt: null,
      attemptLog: closeAttempt('cancelled', { code: 'CANCELLED', message: 'Job cancelled by request' }),
      finishedAt: sql`now()`,
      updatedAt: sql`now()`,
      error: sql`jsonb_build_object('code', 'CANCELLED', 'message', 'Job cancelled by request',
        'details', null, 'phase', ${jobs.phase}::text,
        'epoch', case when ${jobs.currentEpoch} > 0 then ${jobs.currentEpoch} end)`,
    })
    .where(and(eq(jobs.id, id), inArray(jobs.state, UNFINISHED)))
    .returning();
  return row;
}

/** Extends the leases of the jobs this node runs; returns the ids it still holds. */
export async function renewLeases(db: Db, nodeId: string, ids: string[], leaseSeconds: number): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await db
    .update(jobs)
    .set({ leaseExpiresAt: sql`now() + make_interval(secs => ${leaseSeconds})` })
    .where(and(inArray(jobs.id, ids), eq(jobs.nodeId, nodeId), inArray(jobs.state, ACTIVE)))
    .returning({ id: jobs.id });
  return new Set(rows.map((r) => r.id));
}

/**
 * Puts back in the queue every job whose node is gone: a lease that expired, or this very node
 * before its restart (same NODE_ID, so nothing of it can still be running). The job keeps its
 * seq, so it goes back to its place in line, and its run directory, so it resumes from last.pt.
 */
export async function requeueOrphans(db: Db, restartedNodeId: string | null): Promise<JobRow[]> {
  const orphaned = restartedNodeId
    ? or(lt(jobs.leaseExpiresAt, sql`now()`), eq(jobs.nodeId, restartedNodeId))
    : lt(jobs.leaseExpiresAt, sql`now()`);
  return db
    .update(jobs)
    .set(backInQueue('interrupted', null))
    .where(and(inArray(jobs.state, ACTIVE), orphaned))
    .returning();
}

/**
 * This node stops: every job it still holds goes back to the queue now, its lease released, so
 * another node claims it at its next poll instead of after the lease expires. After the
 * scheduler stopped, what is left is a claim no run took up (or one whose run could not record
 * its own requeue).
 */
export async function requeueNodeJobs(db: Db, nodeId: string): Promise<JobRow[]> {
  return db
    .update(jobs)
    .set(backInQueue('interrupted', null))
    .where(and(inArray(jobs.state, ACTIVE), eq(jobs.nodeId, nodeId)))
    .returning();
}

/** This node stops (graceful shutdown): its job goes back to the queue and resumes later. */
export async function requeueJob(db: DbOrTx, id: string, nodeId: string): Promise<JobRow | undefined> {
  const [row] = await db
    .update(jobs)
    .set(backInQueue('interrupted', null))
    .where(and(eq(jobs.id, id), eq(jobs.nodeId, nodeId), inArray(jobs.state, ACTIVE)))
    .returning();
  return row;
}

/**
 * A transient failure of a job this node runs: back to the queue, its place in line kept, not
 * claimed again before `delayMs` has passed; it resumes from its checkpoint.
 */
export async function retryJobLater(
  db: DbOrTx,
  id: string,
  nodeId: string,
  error: { code: string; message: string },
  delayMs: number,
): Promise<JobRow | undefined> {
  const [row] = await db
    .update(jobs)
    .set({ ...backInQueue('retrying', error), retryAt: sql`now() + make_interval(secs => ${delayMs / 1000})` })
    .where(and(eq(jobs.id, id), eq(jobs.nodeId, nodeId), inArray(jobs.state, ACTIVE)))
    .returning();
  return row;
}

/**
 * A failed or cancelled job queued again by request: same id, its attempt log and run folder
 * kept, so it resumes from its last checkpoint. Its clock (started_at, which JOB_MAX_HOURS
 * counts from) starts over; undefined when the job is not failed or cancelled.
 */
export async function restartJob(db: DbOrTx, id: string): Promise<JobRow | undefined> {
  const [row] = await db
    .update(jobs)
    .set({
      state: 'queued',
      phase: 'queued',
      error: null,
      etaSeconds: null,
      retryAt: null,
      startedAt: null,
      finishedAt: null,
      updatedAt: sql`now()`,
    })
    .where(and(eq(jobs.id, id), inArray(jobs.state, ['failed', 'cancelled'])))
    .returning();
  return row;
}
