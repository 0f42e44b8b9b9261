/**
 * The database is the truth about every job: nodes share it, and a job's state never lives in
 * memory alone. One drizzle schema for PGlite and PostgreSQL; migrations in migrations/ are
 * generated from it with drizzle-kit.
 */
import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  doublePrecision,
  index,
  integer,
  json,
  jsonb,
  pgEnum,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uuid,
} from 'drizzle-orm/pg-core';

/**
 * Job states in a deliberate order (pg-boss): SQL may ask `state < 'completed'` for "not
 * finished". claimed = a node took the job and holds its lease; running = its worker started.
 */
export const JOB_STATES = ['queued', 'claimed', 'running', 'completed', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];
export const jobState = pgEnum('job_state', JOB_STATES);

export const PHASES = ['queued', 'downloading', 'preparing', 'training', 'validating', 'finalizing', 'done'] as const;
export type Phase = (typeof PHASES)[number];

const tstz = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

/**
 * One start of a job by a node, as the job's attempt history keeps it. outcome is null while it
 * runs; 'retrying' is a failure that the job retries; 'interrupted' is a stop that is no failure
 * (the server stopped or died, a lease expired) and resumes without counting against the limit.
 */
export type AttemptOutcome = 'completed' | 'failed' | 'retrying' | 'interrupted' | 'cancelled';
export interface AttemptEntry {
  attempt: number;
  started_at: string;
  ended_at: string | null;
  outcome: AttemptOutcome | null;
  node_id: string | null;
  device: string | null;
  /** The epochs completed when it started (it resumed after them) and when it ended. */
  start_epoch: number;
  end_epoch: number | null;
  error: { code: string; message: string } | null;
}

export const jobs = pgTable(
  'jobs',
  {
    id: uuid('id').primaryKey(),
    /** Submission order: the queue is served by seq, and a re-queued job keeps its place. */
    seq: bigserial('seq', { mode: 'number' }).notNull().unique(),
    name: text('name').notNull(),
    /** The engine that trains it (its model_config's framework) and the task. */
    engine: text('engine').notNull(),
    task: text('task').notNull(),
    state: jobState('state').notNull().default('queued'),
    phase: text('phase').$type<Phase>().notNull().default('queued'),
    progress: doublePrecision('progress').notNull().default(0),
    currentEpoch: integer('current_epoch').notNull().default(0),
    totalEpochs: integer('total_epochs').notNull(),
    /** The request as accepted, without callback_secret (kept in its own column); jobs/request.ts reads it back typed. */
    request: jsonb('request').$type<Record<string, unknown>>().notNull(),
    /** The worker's arguments as the job was trained with them (its engine built them at start). */
    trainArgs: jsonb('train_args').$type<Record<string, unknown>>(),
    /** The base model the job trained from: the request's name, where the file came from, its sha256. */
    baseModel: jsonb('base_model').$type<{ name: string | null; source: string | null; sha256: string | null }>(),
    callbackUrl: text('callback_url'),
    callbackSecret: text('callback_secret'),
    requestedDevice: text('requested_device').notNull().default('auto'),
    device: text('device'),
    nodeId: text('node_id'),
    leaseExpiresAt: tstz('lease_expires_at'),
    /** How many times a node started this job (a resume after a crash counts). */
    attempts: integer('attempts').notNull().default(0),
    /** Every start of the job, oldest first (see AttemptEntry). */
    attemptLog: jsonb('attempt_log').$type<AttemptEntry[]>().notNull().default(sql`'[]'::jsonb`),
    /** A queued job waiting to be retried is not claimed before this time. */
    retryAt: tstz('retry_at'),
    etaSeconds: integer('eta_seconds'),
    metricsCurrent: jsonb('metrics_current').$type<Record<string, number | null>>(),
    metricsBest: jsonb('metrics_best').$type<Record<string, number | null>>(),
    error: jsonb('error').$type<{ code: string; message: string; details: unknown; phase: string; epoch: number | null }>(),
    datasetInfo: jsonb('dataset_info').$type<Record<string, unknown>>(),
    model: jsonb('model').$type<Record<string, unknown>>(),
    artifacts: jsonb('artifacts').$type<Array<{ name: string; path: string; size: number }>>(),
    resources: jsonb('resources').$type<Record<string, unknown>>(),
    createdAt: tstz('created_at').notNull().defaultNow(),
    updatedAt: tstz('updated_at').notNull().defaultNow(),
    startedAt: tstz('started_at'),
    finishedAt: tstz('finished_at'),
    /** The sha256 of the dataset archive the job trains on (its folder in the shared store, workdir/datasets/). */
    datasetSha256: text('dataset_sha256'),
    /** Bytes of the job's folder, measured when it finished and when its files were removed. */
    diskBytes: bigint('disk_bytes', { mode: 'number' }),
    /** When its dataset, checkpoints and plots were removed (retention or purge); the row and its registered model stay. */
    filesRemovedAt: tstz('files_removed_at'),
  },
  (t) => [
    index('jobs_state_seq_idx').on(t.state, t.seq),
    index('jobs_dataset_sha256_idx').on(t.datasetSha256),
    index('jobs_created_at_idx').on(t.createdAt.desc()),
    index('jobs_lease_idx').on(t.leaseExpiresAt).where(sql`state in ('claimed', 'running')`),
  ],
);
export type JobRow = typeof jobs.$inferSelect;

/** One row per finished epoch; the primary key makes a resumed epoch overwrite, never double. */
export const jobEpochs = pgTable(
  'job_epochs',
  {
    jobId: uuid('job_id')
      .notNull()
      .references(() => jobs.id, { onDelete: 'cascade' }),
    epoch: integer('epoch').notNull(),
    metrics: jsonb('metrics').$type<Record<string, number | null>>().notNull(),
    epochSeconds: doublePrecision('epoch_seconds'),
    createdAt: tstz('created_at').notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.jobId, t.epoch] })],
);

/**
 * Callback outbox: written in the same transaction as the job change that caused it.
 * id is the Standard Webhooks webhook-id, stable across retries. payload is `json`, not
 * `jsonb`: json keeps the text as written (the bodies' key order), and the dispatcher
 * sends `payload::text` byte for byte on every retry.
 */
export const OUTBOX_STATES = ['pending', 'delivered', 'superseded', 'dead'] as const;
export type OutboxState = (typeof OUTBOX_STATES)[number];
export const callbackEvents = pgTable(
  'callback_events',
  {
    id: text('id').primaryKey(),
    seq: bigserial('seq', { mode: 'number' }).notNull().unique(),
    jobId: uuid('job_id')
      .notNull()
      .references(() => jobs.id, { onDelete: 'cascade' }),
    type: text('type').notNull(),
    payload: json('payload').$type<Record<string, unknown>>().notNull(),
    state: text('state').$type<OutboxState>().notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: tstz('next_attempt_at').notNull().defaultNow(),
    lockedBy: text('locked_by'),
    lockedUntil: tstz('locked_until'),
    lastError: text('last_error'),
    /** HTTP status of the last attempt; 410 on a dead event means the receiver is gone for this job. */
    lastStatusCode: integer('last_status_code'),
    /** Re-queued by hand (POST …/redeliver): its next attempt is recorded as manual. */
    manual: boolean('manual').notNull().default(false),
    createdAt: tstz('created_at').notNull().defaultNow(),
    deliveredAt: tstz('delivered_at'),
  },
  (t) => [
    index('callback_events_pending_idx').on(t.jobId, t.seq).where(sql`state = 'pending'`),
    index('callback_events_due_idx').on(t.nextAttemptAt).where(sql`state = 'pending'`),
    index('callback_events_job_idx').on(t.jobId, t.seq),
  ],
);

export const callbackAttempts = pgTable(
  'callback_attempts',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    eventId: text('event_id')
      .notNull()
      .references(() => callbackEvents.id, { onDelete: 'cascade' }),
    attemptedAt: tstz('attempted_at').notNull().defaultNow(),
    statusCode: integer('status_code'),
    latencyMs: doublePrecision('latency_ms'),
    error: text('error'),
    manual: boolean('manual').notNull().default(false),
  },
  (t) => [index('callback_attempts_event_idx').on(t.eventId)],
);

/** Request signatures seen within the tolerance window: a replay is refused on every node. */
export const seenSignatures = pgTable('seen_signatures', {
  signature: text('signature').primaryKey(),
  expiresAt: tstz('expires_at').notNull(),
});

/**
 * Model registry: every completed job registers its best model; a model can be
 * exported (ONNX, TorchScript…), used for predictions and as the base of a new job
 * (`base_model: "model:<id>"`). Files live under workdir/models/<id>/ (src/registry/files.ts),
 * copied out of the job's folder so a model outlives its job's files. One model per source job
 * (the unique key makes registering idempotent across restarts).
 */
export const models = pgTable(
  'models',
  {
    id: uuid('id').primaryKey(),
    name: text('name').notNull(),
    framework: text('framework').notNull(),
    task: text('task').notNull(),
    format: text('format').notNull().default('pytorch'),
    /** File name inside workdir/models/<id>/. */
    fileName: text('file_name').notNull(),
    classes: jsonb('classes').$type<string[]>().notNull(),
    /** The input size the model expects, when its engine has one. */
    imgsz: integer('imgsz'),
    metrics: jsonb('metrics').$type<Record<string, number | null>>(),
    sizeBytes: integer('size_bytes').notNull(),
    sha256: text('sha256').notNull(),
    sourceJobId: uuid('source_job_id')
      .unique()
      .references(() => jobs.id, { onDelete: 'set null' }),
    /** The arguments its source job trained with: what export and prediction need to rebuild it. */
    trainArgs: jsonb('train_args').$type<Record<string, unknown>>(),
    /** What the source job trained from (a base model name, URL or model:<id>): fine-tuning chains. */
    baseModel: text('base_model'),
    createdAt: tstz('created_at').notNull().defaultNow(),
  },
  (t) => [index('models_created_at_idx').on(t.createdAt.desc())],
);
export type ModelRow = typeof models.$inferSelect;

/** Exported files of a model, one per format; `check` is the load-and-predict verification. */
export const modelExports = pgTable(
  'model_exports',
  {
    modelId: uuid('model_id')
      .notNull()
      .references(() => models.id, { onDelete: 'cascade' }),
    format: text('format').notNull(),
    fileName: text('file_name').notNull(),
    sizeBytes: integer('size_bytes').notNull(),
    sha256: text('sha256').notNull(),
    check: jsonb('check').$type<Record<string, unknown>>(),
    createdAt: tstz('created_at').notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.modelId, t.format] })],
);
export type ModelExportRow = typeof modelExports.$inferSelect;

/**
 * Uploaded datasets (POST /api/v1/datasets): a name for an archive in the shared store
 * (workdir/datasets/<sha256>/), checked at upload for one task. One row per archive: the same
 * bytes uploaded twice are the same dataset. A job names it with `"dataset": {"id": …}`.
 */
export const datasets = pgTable(
  'datasets',
  {
    id: uuid('id').primaryKey(),
    sha256: text('sha256').notNull().unique(),
    name: text('name'),
    format: text('format').notNull(),
    task: text('task').notNull(),
    info: jsonb('info').$type<Record<string, unknown>>().notNull(),
    /** The uploaded ZIP's size, and what its extraction holds on disk. */
    archiveBytes: bigint('archive_bytes', { mode: 'number' }).notNull(),
    diskBytes: bigint('disk_bytes', { mode: 'number' }).notNull(),
    createdAt: tstz('created_at').notNull().defaultNow(),
    /** How it came to be: uploaded, converted from a SAM2 export, or split from another dataset. */
    origin: text('origin').$type<'upload' | 'convert' | 'split'>().notNull().default('upload'),
    /** The dataset a split was made from (no foreign key: a split is self-contained and outlives its parent). */
    parentId: uuid('parent_id'),
    /** What convert or split counted: samples, classes, class distribution, per split. */
    stats: jsonb('stats').$type<Record<string, unknown>>(),
    /** The last POST /datasets/{id}/validate report. */
    validation: jsonb('validation').$type<Record<string, unknown>>(),
  },
  (t) => [index('datasets_created_at_idx').on(t.createdAt.desc())],
);
export type DatasetRow = typeof datasets.$inferSelect;

/** A device of a node and its training slots (one per device today). */
export interface NodeDevice {
  device: string;
  slots: number;
}

/**
 * Every node sharing this database, API-only ones too, so that any node can show the whole
 * cluster (its devices, its jobs, who stopped renewing): written at start, touched at
 * each lease-renewal tick (last_seen_at), and marked left on a graceful stop. A node whose
 * last_seen_at is older than its own lease period is stale: it died or lost the database. The
 * migration is hand-written (migrations/0007_nodes.sql).
 */
export const nodes = pgTable('nodes', {
  id: text('id').primaryKey(),
  hostname: text('hostname').notNull(),
  pid: integer('pid').notNull(),
  version: text('version').notNull(),
  runJobs: boolean('run_jobs').notNull(),
  devices: jsonb('devices').$type<NodeDevice[]>().notNull(),
  leaseSeconds: integer('lease_seconds').notNull(),
  startedAt: tstz('started_at').notNull().defaultNow(),
  lastSeenAt: tstz('last_seen_at').notNull().defaultNow(),
  leftAt: tstz('left_at'),
});
export type NodeRow = typeof nodes.$inferSelect;
