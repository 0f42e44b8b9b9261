/**
 * A job's metrics as its engine declares them (engines/types.ts MetricsSpec): the blocks the
 * callbacks send, the headline numbers the pages and streams show, the summed loss. Pure.
 */
import type { JobRow } from '../db/schema.js';
import type { Engines } from '../engines/index.js';
import type { MetricsSpec } from '../engines/types.js';

type Num = number | null;
export type MetricValues = Record<string, Num> | null | undefined;

export const num = (m: Record<string, unknown> | null | undefined, key: string): Num => {
  const v = m?.[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
};

/** The listed metrics in the listed order, null where a value is missing. */
export function pick(m: MetricValues, keys: readonly string[]): Record<string, Num> {
  const out: Record<string, Num> = {};
  for (const key of keys) out[key] = num(m, key);
  return out;
}

/** The training loss the engine sums (its label names the parts); null before the first epoch. */
export function totalLoss(spec: MetricsSpec, m: MetricValues): Num {
  if (!m) return null;
  let sum = 0;
  let any = false;
  for (const k of spec.losses) {
    const v = m[k];
    if (typeof v === 'number' && Number.isFinite(v)) {
      sum += v;
      any = true;
    }
  }
  return any ? Math.round(sum * 1e5) / 1e5 : null;
}

/** The words under the summed loss: "box_loss + cls_loss + dfl_loss". */
export function lossLabel(spec: MetricsSpec): string {
  return spec.losses.length > 1 ? `loss (${spec.losses.join(' + ')})` : (spec.losses[0] ?? 'loss');
}

/** A job's metric declaration (its engine's, for its task). */
export function jobMetrics(engines: Engines, row: Pick<JobRow, 'engine' | 'task'>): MetricsSpec {
  return (engines.get(row.engine) ?? engines.default).metrics(row.task);
}

/**
 * The headline of a job: its engine's headline metrics of the current epoch, and the summed
 * loss. Every place that shows a job in a line (dashboard, streams) reads the same numbers.
 */
export function headline(spec: MetricsSpec, row: Pick<JobRow, 'metricsCurrent'>): Record<string, Num> {
  const m = row.metricsCurrent ?? null;
  return { ...pick(m, spec.headline), loss: totalLoss(spec, m) };
}

/** Whether `value` beats `than` under the spec's goal for `key` (lower losses, higher mAP…). */
export function better(spec: MetricsSpec, key: string, value: number, than: number): boolean {
  const goal = spec.fields.find((f) => f.key === key)?.goal ?? (key === spec.best.key ? spec.best.goal : /loss|^lr/.test(key) ? 'min' : 'max');
  return goal === 'min' ? value < than : value > than;
}
