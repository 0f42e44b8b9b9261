/** What the two pages show, read from the database, the monitor and the job's run folder. */
import fs from 'node:fs';
import { asc, desc, eq, inArray } from 'drizzle-orm';
import type { AppDeps } from '../http/deps.js';
import { callbackAttempts, callbackEvents, type JobRow } from '../db/schema.js';
import type { Engines } from '../engines/index.js';
import type { MetricsSpec } from '../engines/types.js';
import { headline, jobMetrics, lossLabel } from '../jobs/metrics.js';
import { countByState, jobEpochRows, listJobs, queuedJobs } from '../jobs/queries.js';
import { apiStatus } from '../jobs/view.js';
import { resourcesView } from '../monitor/view.js';

const metricLabel = (spec: MetricsSpec, key: string) => spec.fields.find((f) => f.key === key)?.label ?? key;

/** How the job page shows an engine's metrics: charts, the current values, the epoch table, the best. */
export function metricsView(spec: MetricsSpec) {
  const named = (key: string) => ({ key, label: metricLabel(spec, key) });
  const quality = new Set(spec.fields.filter((f) => f.kind === 'quality').map((f) => f.key));
  return {
    charts: spec.charts.map((c) => ({
      id: c.id,
      title: c.title,
      series: c.keys.map(named),
      // Scores live in [0, 1]; losses get their own scale.
      range: c.keys.every((k) => quality.has(k)) ? { yMin: 0, yMax: 1 } : { yMin: 0, digits: 2 },
    })),
    current: spec.callback.current.map(named),
    table: spec.callback.current.map(named),
    // The first headline metric is the one a reader compares epochs by.
    best: named(spec.headline[0] ?? spec.best.key),
  };
}
export type MetricsView = ReturnType<typeof metricsView>;

export function jobCard(engines: Engines, row: JobRow) {
  const spec = jobMetrics(engines, row);
  const values = headline(spec, row);
  const key = spec.headline[0] ?? spec.best.key;
  return {
    id: row.id,
    name: row.name,
    status: apiStatus(row.state),
    phase: row.phase,
    progress: Math.round(row.progress * 10) / 10,
    epoch: row.currentEpoch,
    totalEpochs: row.totalEpochs,
    etaSeconds: row.etaSeconds,
    device: row.device,
    startedAt: row.startedAt,
    finishedAt: row.finishedAt,
    createdAt: row.createdAt,
    error: row.error ?? null,
    headlineLabel: metricLabel(spec, key),
    headline: values[key] ?? null,
    lossLabel: lossLabel(spec),
    loss: values['loss'] ?? null,
  };
}
export type JobCard = ReturnType<typeof jobCard>;

export async function dashboardData(deps: AppDeps) {
  const { db } = deps.database;
  const [byState, active, queued, recent, dbOk] = await Promise.all([
    countByState(db),
    listJobs(db, { states: ['claimed', 'running'], limit: 50, offset: 0 }),
    queuedJobs(db),
    listJobs(db, { states: ['completed', 'failed', 'cancelled'], limit: 10, offset: 0 }),
    deps.database.ping(),
  ]);
  return {
    counts: {
      training: byState.claimed + byState.running,
      queued: byState.queued,
      completed: byState.completed,
      failed: byState.failed,
      cancelled: byState.cancelled,
    },
    active: active.rows.map((r) => jobCard(deps.engines, r)).reverse(),
    activeTotal: active.total,
    queued: queued.slice(0, 50).map((q, i) => ({ id: q.id, name: q.name, position: i + 1, createdAt: q.createdAt })),
    queuedTotal: queued.length,
    recent: recent.rows.map((r) => jobCard(deps.engines, r)),
    resources: resourcesView(deps.monitor.latest()),
    health: { ok: dbOk, database: deps.database.kind, version: deps.version, gpuAvailable: deps.gpuAvailable },
  };
}
export type DashboardData = Awaited<ReturnType<typeof dashboardData>>;

export interface CallbackRow {
  id: string;
  type: string;
  state: string;
  attempts: number;
  createdAt: Date;
  deliveredAt: Date | null;
  nextAttemptAt: Date;
  lastError: string | null;
  lastStatus: number | null;
  lastLatencyMs: number | null;
}

/** The job's callback events and their last attempts; empty (never an error) when there are none. */
export async function callbackDeliveries(deps: AppDeps, jobId: string, limit = 50): Promise<{ total: number; rows: CallbackRow[] }> {
  const { db } = deps.database;
  try {
    const all = await db
      .select({
        id: callbackEvents.id,
        type: callbackEvents.type,
        state: callbackEvents.state,
        attempts: callbackEvents.attempts,
        createdAt: callbackEvents.createdAt,
        deliveredAt: callbackEvents.deliveredAt,
        nextAttemptAt: callbackEvents.nextAttemptAt,
        lastError: callbackEvents.lastError,
      })
      .from(callbackEvents)
      .where(eq(callbackEvents.jobId, jobId))
      .orderBy(desc(callbackEvents.seq));
    const shown = all.slice(0, limit);
    const attempts = shown.length
      ? await db
          .select({ eventId: callbackAttempts.eventId, statusCode: callbackAttempts.statusCode, latencyMs: callbackAttempts.latencyMs })
          .from(callbackAttempts)
          .where(inArray(callbackAttempts.eventId, shown.map((e) => e.id)))
          .orderBy(asc(callbackAttempts.id))
      : [];
    const last = new Map(attempts.map((a) => [a.eventId, a]));
    return {
      total: all.length,
      rows: shown.map((e) => ({ ...e, lastStatus: last.get(e.id)?.statusCode ?? null, lastLatencyMs: last.get(e.id)?.latencyMs ?? null })),
    };
  } catch (err) {
    deps.logger.warn({ err, job_id: jobId }, 'reading callback deliveries failed');
    return { total: 0, rows: [] };
  }
}

export async function jobPageData(deps: AppDeps, row: JobRow) {
  const request = row.request as {
    model_config?: Record<string, unknown>;
    dataset?: { url?: string; id?: string; format?: string; sha256?: string };
    resources?: Record<string, unknown>;
  };
  const [epochs, callbacks, start] = await Promise.all([
    jobEpochRows(deps.database.db, row.id),
    callbackDeliveries(deps, row.id),
    row.state === 'queued' ? deps.jobs.estimatedStart(row) : Promise.resolve(null),
  ]);
  const logFile = deps.files.logFile(row.id);
  const logSize = fs.existsSync(logFile) ? fs.statSync(logFile).size : null;
  const engine = deps.engines.get(row.engine);
  return {
    job: jobCard(deps.engines, row),
    engine: { name: row.engine, label: engine?.label ?? row.engine, task: row.task },
    metricsView: metricsView(jobMetrics(deps.engines, row)),
    trainArgs: row.trainArgs ?? null,
    baseModel: row.baseModel ?? null,
    row,
    modelConfig: request.model_config ?? {},
    dataset: request.dataset ?? {},
    requestedResources: request.resources ?? {},
    datasetInfo: (row.datasetInfo ?? null) as Record<string, unknown> | null,
    metricsCurrent: row.metricsCurrent ?? null,
    metricsBest: row.metricsBest ?? null,
    resources: (row.resources ?? null) as Record<string, unknown> | null,
    model: (row.model ?? null) as Record<string, unknown> | null,
    artifacts: row.artifacts?.map((a) => ({ name: a.name, size: a.size })) ?? [],
    checkpoints: deps.files.checkpoints(row),
    epochs: epochs.map((e) => ({ epoch: e.epoch, metrics: e.metrics, epoch_seconds: e.epochSeconds })),
    callbacks,
    callbackUrl: row.callbackUrl,
    queue: start ? { position: start.position, estimatedStart: start.at } : null,
    logSize,
  };
}
export type JobPageData = Awaited<ReturnType<typeof jobPageData>>;
