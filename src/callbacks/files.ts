/**
 * The files of a job that may be downloaded, by name: the model (best.pt, last.pt), the
 * artifacts the worker reported (plots, results.csv, args.yaml) and the worker's log. Names
 * come from the job row, never from a path in a request, and every path is checked to lie in
 * the job's own folder (workdir/jobs/<id>/) after symlinks are resolved: no traversal, no
 * serving a file the worker did not write.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { JobRow } from '../db/schema.js';
import { jobDir } from '../jobs/paths.js';

/** The keys of a training_completed callback's `artifacts` (seed 003 §4.2.2) and their files. */
export const CALLBACK_ARTIFACTS = {
  confusion_matrix: ['confusion_matrix.png'],
  // Ultralytics ≥ 8.3 prefixes curves with Box/Mask; older releases did not.
  pr_curve: ['BoxPR_curve.png', 'PR_curve.png', 'MaskPR_curve.png'],
  f1_curve: ['BoxF1_curve.png', 'F1_curve.png', 'MaskF1_curve.png'],
  results_csv: ['results.csv'],
  training_logs: ['worker.log'],
} as const satisfies Record<string, readonly string[]>;
export type CallbackArtifact = keyof typeof CALLBACK_ARTIFACTS;

export const MODEL_FILE = 'best.pt';
export const LOG_FILE = 'worker.log';
const NAME_RE = /^[A-Za-z0-9][\w.-]{0,199}$/;

export function jobFolder(workdir: string, jobId: string): string {
  return path.join(workdir, 'jobs', jobId);
}

/** name → absolute path as recorded (not yet checked on disk). */
export function jobFiles(job: JobRow, workdir: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const a of job.artifacts ?? []) {
    if (NAME_RE.test(a.name) && typeof a.path === 'string') files.set(a.name, a.path);
  }
  const model = job.model as { best?: unknown; last?: unknown } | null;
  if (typeof model?.best === 'string') files.set(MODEL_FILE, model.best);
  if (typeof model?.last === 'string') files.set('last.pt', model.last);
  files.set(LOG_FILE, path.join(jobFolder(workdir, job.id), LOG_FILE));
  return files;
}

/** A requested name or alias (model, training_logs, pr_curve…) → the file name it serves. */
export function resolveName(job: JobRow, workdir: string, requested: string): string | null {
  const files = jobFiles(job, workdir);
  if (requested === 'model') return files.has(MODEL_FILE) ? MODEL_FILE : null;
  if (files.has(requested) && NAME_RE.test(requested)) return requested;
  const candidates = (CALLBACK_ARTIFACTS as Record<string, readonly string[]>)[requested];
  return candidates?.find((c) => files.has(c)) ?? null;
}

/**
 * The file behind a name, when it exists and lies inside the job's folder; null otherwise.
 * realpath on both sides, so a symlink planted in the folder cannot point outside it.
 */
export function openableFile(job: JobRow, workdir: string, name: string): { path: string; size: number } | null {
  if (!NAME_RE.test(name)) return null;
  const recorded = jobFiles(job, workdir).get(name);
  if (!recorded) return null;
  try {
    const root = fs.realpathSync(jobFolder(workdir, job.id));
    const real = fs.realpathSync(recorded);
    if (!real.startsWith(root + path.sep)) return null;
    const stat = fs.statSync(real);
    return stat.isFile() ? { path: real, size: stat.size } : null;
  } catch {
    return null;
  }
}

const TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.csv': 'text/csv; charset=utf-8',
  '.yaml': 'text/yaml; charset=utf-8',
  '.log': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

export function contentType(name: string): string {
  return TYPES[path.extname(name).toLowerCase()] ?? 'application/octet-stream';
}
