/**
 * Experiments side by side (GET /api/v1/jobs/compare and the /jobs/compare page): the full
 * training arguments of each job, which of them differ, the final and best metrics, the best
 * experiment by its engine's declared best metric and direction (lowest val_loss for
 * transformers, highest mAP for detection), and one sentence that says why.
 *
 * The comparison itself (`compareJobs`) is pure: it is handed the rows and the engines, so the API
 * and the page say the same thing and a test can read it without a server; `loadComparison`
 * reads the rows.
 */
import { inArray } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { jobs, models, type JobRow } from '../db/schema.js';
import type { Engines } from '../engines/index.js';
import type { MetricsSpec } from '../engines/types.js';
import { better, jobMetrics } from './metrics.js';
import { jobRequest } from './request.js';
import { apiStatus } from './view.js';

type Num = number | null;

/**
 * The arguments a job trained with, as stored when it started (a job that never started: what
 * its engine would give it), its engine's defaults filled in, and its framework.
 */
export function jobTrainArgs(job: JobRow, engines: Engines): Record<string, unknown> {
  const request = jobRequest(job, engines);
  const { engine, modelConfig } = request;
  const device = job.device ?? (request.resources.device !== 'auto' ? request.resources.device : 'cpu');
  const args = job.trainArgs ?? engine.trainArgs(modelConfig, { device, resources: request.resources, resolvedConfig: request.resolvedConfig });
  const full = engine.effectiveArgs ? engine.effectiveArgs(job.task, args, modelConfig.base_model) : { ...args };
  return { framework: engine.name, ...full };
}

const same = (a: unknown, b: unknown) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

/** A job as the comparison names it in its sentence: its name, and its id's first block when names clash. */
function label(job: JobRow, all: readonly JobRow[]): string {
  const clash = all.filter((j) => j.name === job.name).length > 1;
  return clash ? `${job.name} (${job.id.slice(0, 8)})` : job.name;
}

/** A number as a person reads it in a sentence: 4 significant digits, exponent for the tiny. */
export function shortNumber(v: unknown): string {
  if (typeof v !== 'number' || !Number.isFinite(v)) return JSON.stringify(v ?? null);
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e6)) return v.toExponential(2).replace(/\.?0+e/, 'e');
  return String(Number(v.toPrecision(4)));
}

export interface MainDifference {
  key: string;
  best: unknown;
  runner_up: unknown;
}

export interface Recommendation {
  /** The engine's best metric, and whether lower or higher is better. */
  metric: string;
  goal: 'min' | 'max';
  best_job_id: string;
  best_value: number;
  runner_up_job_id: string | null;
  runner_up_value: Num;
  /** |best − runner-up| / |runner-up|: 0.18 is "18% below" for a loss. */
  relative_difference: Num;
  /** The argument that differs most between the two (numbers by their ratio), or null when none differs. */
  main_difference: MainDifference | null;
  text: string;
}

/**
 * The argument that most likely explains the gap between two jobs: of those that differ between
 * them (their name aside), a number that changed by the largest factor; else the first other one.
 */
function mainDifference(differences: Record<string, Record<string, unknown>>, bestId: string, otherId: string): MainDifference | null {
  let pick: { key: string; score: number } | null = null;
  for (const [key, values] of Object.entries(differences)) {
    const a = values[bestId] ?? null;
    const b = values[otherId] ?? null;
    if (key === 'name' || same(a, b)) continue;
    // A changed number scores by how many times larger one is (log ratio); anything else scores
    // below every number, so a learning-rate change outranks a changed flag.
    const score = typeof a === 'number' && typeof b === 'number' && a > 0 && b > 0 ? 1 + Math.abs(Math.log(a / b)) : typeof a === 'number' && typeof b === 'number' ? 1 : 0;
    if (!pick || score > pick.score) pick = { key, score };
  }
  return pick ? { key: pick.key, best: differences[pick.key]![bestId] ?? null, runner_up: differences[pick.key]![otherId] ?? null } : null;
}

/**
 * The best job by the first job's engine's best metric: its value in the job's best epoch (what
 * its model holds), else the latest one. Null when no job has that metric yet.
 */
export function recommend(
  ordered: readonly JobRow[],
  spec: MetricsSpec,
  differences: Record<string, Record<string, unknown>>,
): Recommendation | null {
  const { key, goal } = spec.best;
  const valueOf = (j: JobRow): Num => {
    for (const m of [j.metricsBest, j.metricsCurrent]) {
      const v = (m as Record<string, unknown> | null | undefined)?.[key];
      if (typeof v === 'number' && Number.isFinite(v)) return v;
    }
    return null;
  };
  const scored = ordered.map((j) => ({ job: j, value: valueOf(j) })).filter((s): s is { job: JobRow; value: number } => s.value !== null);
  if (scored.length === 0) return null;
  scored.sort((a, b) => (better(spec, key, a.value, b.value) ? -1 : better(spec, key, b.value, a.value) ? 1 : 0));
  const [first, second] = [scored[0]!, scored[1]];
  const best = label(first.job, ordered);
  const word = goal === 'min' ? 'lowest' : 'highest';
  const base = { metric: key, goal, best_job_id: first.job.id, best_value: first.value };
  if (!second) {
    const others = ordered.length - 1;
    return {
      ...base,
      runner_up_job_id: null,
      runner_up_value: null,
      relative_difference: null,
      main_difference: null,
      text: `Job ${best} is the only one with a ${key} (${shortNumber(first.value)}); the other ${others === 1 ? 'job has' : `${others} jobs have`} none yet.`,
    };
  }
  const other = label(second.job, ordered);
  const relative = second.value !== 0 ? Math.abs(first.value - second.value) / Math.abs(second.value) : null;
  const main = mainDifference(differences, first.job.id, second.job.id);
  const because = main
    ? `its ${main.key} ${shortNumber(main.best)} vs ${shortNumber(main.runner_up)} is the main difference`
    : 'their training arguments are the same, so the gap is run-to-run variation';
  let text: string;
  if (first.value === second.value) {
    text = `Jobs ${best} and ${other} tie on ${key} (${shortNumber(first.value)}); ${main ? `they differ most in ${main.key} (${shortNumber(main.best)} vs ${shortNumber(main.runner_up)})` : 'their training arguments are the same'}.`;
  } else {
    const gap = relative === null ? `vs ${shortNumber(second.value)} for ${other}` : `${Math.round(relative * 100)}% ${goal === 'min' ? 'below' : 'above'} ${other}`;
    text = `Job ${best} has the ${word} ${key} (${shortNumber(first.value)}, ${gap}); ${because}.`;
  }
  return {
    ...base,
    runner_up_job_id: second.job.id,
    runner_up_value: second.value,
    relative_difference: relative,
    main_difference: main,
    text,
  };
}

export interface Comparison {
  job_ids: string[];
  jobs: Record<string, unknown>[];
  config: { differences: Record<string, Record<string, unknown>>; same: Record<string, unknown> };
  metrics: {
    final: Record<string, Record<string, Num>>;
    best: Record<string, Record<string, Num>>;
    leader: Record<string, string | null>;
  };
  recommendation: Recommendation | null;
}

/** The comparison of jobs in the order given; `modelOf` maps a job to its registered model. */
export function compareJobs(ordered: readonly JobRow[], engines: Engines, modelOf: ReadonlyMap<string, string>): Comparison {
  const args = new Map(ordered.map((j) => [j.id, jobTrainArgs(j, engines)]));
  const keys = [...new Set(ordered.flatMap((j) => Object.keys(args.get(j.id)!)))];
  const differences: Record<string, Record<string, unknown>> = {};
  const common: Record<string, unknown> = {};
  for (const key of keys) {
    const values = ordered.map((j) => args.get(j.id)![key] ?? null);
    if (values.every((v) => same(v, values[0]))) common[key] = values[0];
    else differences[key] = Object.fromEntries(ordered.map((j, i) => [j.id, values[i]]));
  }
  // The dataset is part of an experiment too.
  const datasets = ordered.map((j) => {
    const d = (j.request as { dataset?: { url?: string; id?: string } }).dataset;
    return d?.url ?? (d?.id ? `dataset:${d.id}` : null);
  });
  if (datasets.some((d) => !same(d, datasets[0]))) differences['dataset.url'] = Object.fromEntries(ordered.map((j, i) => [j.id, datasets[i]]));
  else common['dataset.url'] = datasets[0];

  const table = (pick: (j: JobRow) => Record<string, unknown> | null | undefined) => {
    const out: Record<string, Record<string, Num>> = {};
    for (const j of ordered) {
      for (const [name, value] of Object.entries(pick(j) ?? {})) {
        if (name === 'epoch') continue;
        (out[name] ??= {})[j.id] = typeof value === 'number' ? value : null;
      }
    }
    for (const row of Object.values(out)) for (const j of ordered) if (!(j.id in row)) row[j.id] = null;
    return out;
  };
  const final = table((j) => j.metricsCurrent);
  const best = table((j) => j.metricsBest);
  const specs = ordered.map((j) => jobMetrics(engines, j));
  const leader: Record<string, string | null> = {};
  for (const [name, row] of Object.entries(final)) {
    const scored = Object.entries(row).filter((e): e is [string, number] => typeof e[1] === 'number');
    if (scored.length < 2) {
      leader[name] = scored[0]?.[0] ?? null;
      continue;
    }
    // Each metric's direction comes from the first job's engine that declares it.
    const spec = specs.find((m) => m.fields.some((f) => f.key === name)) ?? specs[0]!;
    scored.sort((a, b) => (better(spec, name, a[1], b[1]) ? -1 : better(spec, name, b[1], a[1]) ? 1 : 0));
    leader[name] = scored[0]![1] === scored[1]![1] ? null : scored[0]![0];
  }

  return {
    job_ids: ordered.map((j) => j.id),
    jobs: ordered.map((j) => ({
      job_id: j.id,
      name: j.name,
      status: apiStatus(j.state),
      framework: j.engine,
      task: j.task,
      base_model: args.get(j.id)!['model'] ?? (j.request as { model_config?: { base_model?: string } }).model_config?.base_model ?? null,
      device: j.device,
      epochs_completed: j.currentEpoch,
      total_epochs: j.totalEpochs,
      created_at: j.createdAt.toISOString(),
      started_at: j.startedAt?.toISOString() ?? null,
      finished_at: j.finishedAt?.toISOString() ?? null,
      duration_seconds: j.startedAt && j.finishedAt ? (j.finishedAt.getTime() - j.startedAt.getTime()) / 1000 : null,
      model_id: modelOf.get(j.id) ?? null,
      error: j.error ? { code: j.error.code, message: j.error.message } : null,
    })),
    config: { differences, same: common },
    metrics: { final, best, leader },
    // Jobs of different engines rank by the first one's best metric: the others may lack it.
    recommendation: recommend(ordered, specs[0]!, differences),
  };
}

export const COMPARE_MAX_IDS = 20;

export type ComparisonLoad = { ok: true; comparison: Comparison } | { ok: false; missing: string[] };

/** Reads the jobs (in the order of `ids`) and their registered models, and compares them. */
export async function loadComparison(database: Database, engines: Engines, ids: readonly string[]): Promise<ComparisonLoad> {
  const { db } = database;
  const rows = await db.select().from(jobs).where(inArray(jobs.id, [...ids]));
  const byId = new Map(rows.map((r) => [r.id, r]));
  const missing = ids.filter((id) => !byId.has(id));
  if (missing.length) return { ok: false, missing };
  const registered = await db.select({ id: models.id, jobId: models.sourceJobId }).from(models).where(inArray(models.sourceJobId, [...ids]));
  const modelOf = new Map(registered.map((m) => [m.jobId!, m.id]));
  return { ok: true, comparison: compareJobs(ids.map((id) => byId.get(id)!), engines, modelOf) };
}
