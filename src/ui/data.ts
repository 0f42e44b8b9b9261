/** What the two pages show, read from the database, the monitor and the job's run folder. */
import fs from 'node:fs';
import { asc, desc, eq, inArray } from 'drizzle-orm';
import type { AppDeps } from '../http/deps.js';
import { callbackAttempts, callbackEvents, type JobRow } from '../db/schema.js';
import type { Engines } from '../engines/index.js';
import type { MetricsSpec } from '../engines/types.js';
import { headline, jobMetrics } from '../jobs/metrics.js';
import { countByState, jobEpochRows, listJobs, queuedJobs } from '../jobs/queries.js';
import { apiStatus, attemptsView, statesFor } from '../jobs/view.js';
import { resourcesView } from '../monitor/view.js';
import { listModels } from '../registry/queries.js';
import { modelView, type LinkSigner } from '../registry/view.js';
import { signDownloadLink } from '../security/links.js';

const metricLabel = (spec: MetricsSpec, key: string) => spec.fields.find((f) => f.key === key)?.label ?? key;

/** The headline loss's label, naming the engine's losses it adds up when there is more than one. */
export function lossText(spec: MetricsSpec): string {
  return spec.losses.length > 1 ? `Loss (${spec.losses.map((k) => metricLabel(spec, k)).join(' + ')})` : 'Loss';
}

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
    /** "Loss (Box loss + Class loss + DFL loss)": the summed loss says what it sums. */
    lossLabel: lossText(spec),
    loss: values['loss'] ?? null,
  };
}
export type JobCard = ReturnType<typeof jobCard>;

export async function dashboardData(deps: AppDeps) {
  const { db } = deps.database;
  const [byState, active, queued, recent, dbOk, nodes] = await Promise.all([
    countByState(db),
    listJobs(db, { states: ['claimed', 'running'], limit: 50, offset: 0 }),
    queuedJobs(db),
    listJobs(db, { states: ['completed', 'failed', 'cancelled'], limit: 10, offset: 0 }),
    deps.database.ping(),
    deps.nodes(),
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
    health: { ok: dbOk, database: deps.database.kind, version: deps.version, gpuAvailable: deps.gpuAvailable, nodeId: deps.nodeId },
    nodes: nodes.map((n) => ({
      ...n,
      self: n.id === deps.nodeId,
      // Each device with the job it runs (one slot per device).
      devices: n.devices.map((d) => ({ ...d, jobs: n.jobs.filter((j) => j.device === d.device) })),
    })),
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

/**
 * Links the page's own reader may follow: the job's files as signed, expiring download links
 * (the ones callbacks carry, relative here so they work whichever host the page was opened on),
 * and its registered model with its exports.
 */
function pageSigner(deps: AppDeps): LinkSigner {
  return { key: deps.secrets.linkSigningKey, baseUrl: '', ttlSeconds: deps.config.downloadLinkTtlSeconds };
}

export async function jobFileLink(deps: AppDeps, row: JobRow, name: string): Promise<{ url: string; expires_at: string; size: number } | null> {
  // On this disk, or in remote storage when another node ran the job.
  const file = await deps.files.locate(row, name);
  if (!file) return null;
  const s = pageSigner(deps);
  return { ...signDownloadLink({ key: s.key, baseUrl: s.baseUrl, jobId: row.id, name, ttlSeconds: s.ttlSeconds }), size: file.size };
}

/** The model registered from a job (with its exports and the formats it may still export to), or null. */
export async function registeredModel(deps: AppDeps, jobId: string) {
  const { rows } = await listModels(deps.database.db, { jobId, limit: 1, offset: 0 });
  const row = rows[0];
  if (!row) return null;
  const exports = await deps.registry.exports([row.id]);
  const view = modelView(row, exports, pageSigner(deps));
  const done = new Set(view.exports.map((e) => e.format));
  return { ...view, row, exportable: deps.registry.exportFormats(row).filter((f) => !done.has(f)) };
}

export async function jobPageData(deps: AppDeps, row: JobRow, opts: { links: boolean } = { links: false }) {
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
  const link = (name: string) => (opts.links ? jobFileLink(deps, row, name) : Promise.resolve(null));
  const modelName = deps.files.modelName(row);
  const registered = opts.links && row.state === 'completed' ? await registeredModel(deps, row.id) : null;
  const [modelLink, artifacts, checkpoints] = await Promise.all([
    modelName ? link(modelName) : Promise.resolve(null),
    Promise.all(row.artifacts?.map(async (a) => ({ name: a.name, size: a.size, link: await link(a.name) })) ?? []),
    deps.files.listCheckpoints(row).then((list) => Promise.all(list.map(async (c) => ({ ...c, link: await link(c.name) })))),
  ]);
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
    modelLink,
    registered,
    artifacts,
    checkpoints,
    epochs: epochs.map((e) => ({ epoch: e.epoch, metrics: e.metrics, epoch_seconds: e.epochSeconds })),
    callbacks,
    callbackUrl: row.callbackUrl,
    queue: start ? { position: start.position, estimatedStart: start.at } : null,
    attempts: attemptsView(row.attemptLog),
    retryAt: row.state === 'queued' ? row.retryAt : null,
    logSize,
  };
}
export type JobPageData = Awaited<ReturnType<typeof jobPageData>>;

export const HISTORY_PAGE_SIZE = 20;
export const HISTORY_STATUSES = ['queued', 'training', 'completed', 'failed', 'cancelled'] as const;

/** The job history's filters, as read from its query string (already checked). */
export interface HistoryFilters {
  status: (typeof HISTORY_STATUSES)[number] | null;
  name: string;
  /** YYYY-MM-DD (UTC), inclusive. */
  from: string | null;
  to: string | null;
  page: number;
}

const DAY_MS = 86_400_000;

/** One page of every job, newest first, filtered by status, part of the name and submission date. */
export async function historyData(deps: AppDeps, f: HistoryFilters) {
  const offset = (f.page - 1) * HISTORY_PAGE_SIZE;
  const { total, rows } = await listJobs(deps.database.db, {
    states: f.status ? statesFor(f.status) : undefined,
    nameContains: f.name || undefined,
    createdFrom: f.from ? new Date(`${f.from}T00:00:00Z`) : undefined,
    createdBefore: f.to ? new Date(new Date(`${f.to}T00:00:00Z`).getTime() + DAY_MS) : undefined,
    limit: HISTORY_PAGE_SIZE,
    offset,
  });
  const pages = Math.max(1, Math.ceil(total / HISTORY_PAGE_SIZE));
  const query = (page: number) => {
    const q = new URLSearchParams();
    if (f.status) q.set('status', f.status);
    if (f.name) q.set('name', f.name);
    if (f.from) q.set('from', f.from);
    if (f.to) q.set('to', f.to);
    if (page > 1) q.set('page', String(page));
    const text = q.toString();
    return `/jobs${text ? `?${text}` : ''}`;
  };
  return {
    filters: f,
    statuses: HISTORY_STATUSES,
    jobs: rows.map((r) => jobCard(deps.engines, r)),
    total,
    page: f.page,
    pages,
    first: total === 0 ? 0 : offset + 1,
    last: offset + rows.length,
    prev: f.page > 1 ? query(Math.min(f.page - 1, pages)) : null,
    next: f.page < pages ? query(f.page + 1) : null,
  };
}
export type HistoryData = Awaited<ReturnType<typeof historyData>>;
