/**
 * Text datasets for causal language models: JSON Lines, one sample a line, at the root of the
 * ZIP or inside its single top-level folder:
 *
 *   train.jsonl + val.jsonl   the two splits as given (valid.jsonl, validation.jsonl work too), or
 *   data.jsonl                one file, split in two by the worker: a fixed share of its samples,
 *                             drawn with a fixed seed (SPLIT below, recorded in the dataset info),
 *                             goes to validation, the same lines for every job on the archive.
 *
 * A sample is `{"prompt": "…", "completion": "…"}` (the loss falls on the completion only), or
 * `{"messages": [{"role": "system"|"user"|"assistant", "content": "…"}, …]}` (the loss falls on
 * the assistant's messages; there must be one with text). A vision-language sample also names
 * its `"image"` (a path inside the ZIP) and may carry a `"meta"` object (a SAM2 conversion
 * writes video, frame, classes and template there). Every line is checked before any
 * training: a line that is not JSON, not an object, or lacks those fields is a problem named by
 * file and line number (the first 50 are kept). Blank lines are skipped.
 *
 * Task vision-lm (image + text → text) reads the same files beside an `images/` folder, and each
 * line must be `{"image": "images/<file>", "prompt": "…", "completion": "…"}` (a `meta` object and
 * other fields are ignored): `image` is a path relative to the folder holding the JSONL files (the
 * archive's root, or its single top-level folder), without `..` or a leading `/`, naming a file
 * inside it that reads as an image (its header, images.ts). Each problem is named by file and line.
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { JobError } from '../core/errors.js';
import type { DatasetInfo, SplitInfo } from './check.js';
import { checkImage, imageScratch } from './images.js';
import { eachInSlices, Problems } from './scan.js';

/** How a single data.jsonl is split (worker/engines/*: the same rule, applied to the same lines). */
export const SPLIT = { seed: 0, val_fraction: 0.1 } as const;

export const VAL_FILES = ['val.jsonl', 'valid.jsonl', 'validation.jsonl'] as const;

export type JsonlLayout = {
  /** The folder holding the files: what the worker gets as data. */
  root: string;
  files: { train: string; val: string } | { data: string };
};

const SHAPE_HINT =
  'a text dataset is train.jsonl and val.jsonl (or one data.jsonl, split by the server), one {"prompt": "…", "completion": "…"} or {"messages": […]} a line';

const invalid = (message: string, details: Record<string, unknown>) => new JobError('DATASET_INVALID', message, details);
const isFile = (p: string) => stat(p).then((s) => s.isFile(), () => false);

async function layoutIn(dir: string): Promise<JsonlLayout | null> {
  const train = path.join(dir, 'train.jsonl');
  if (await isFile(train)) {
    for (const v of VAL_FILES) if (await isFile(path.join(dir, v))) return { root: dir, files: { train, val: path.join(dir, v) } };
    if (await isFile(path.join(dir, 'data.jsonl'))) return { root: dir, files: { data: path.join(dir, 'data.jsonl') } };
    throw invalid(`train.jsonl has no val.jsonl beside it: add one, or put every sample in a single data.jsonl (${SHAPE_HINT})`, {
      reason: 'MISSING_SPLIT',
      split: 'val',
    });
  }
  if (await isFile(path.join(dir, 'data.jsonl'))) return { root: dir, files: { data: path.join(dir, 'data.jsonl') } };
  return null;
}

export async function readJsonlLayout(extractDir: string): Promise<JsonlLayout> {
  const root = path.resolve(extractDir);
  const top = await layoutIn(root);
  if (top) return top;
  const entries = await readdir(root, { withFileTypes: true });
  const dirs = entries.filter((e) => e.isDirectory()).map((e) => e.name);
  if (dirs.length === 1) {
    const inner = await layoutIn(path.join(root, dirs[0]!));
    if (inner) return inner;
  }
  throw invalid(`no train.jsonl or data.jsonl found: ${SHAPE_HINT}, at the root of the ZIP or inside its single top-level folder (found: ${entries.map((e) => e.name).join(', ') || 'nothing'})`, {
    reason: 'NO_JSONL_FILES',
  });
}

const IMAGE_NOT_A_PATH = '"image" must be a non-empty string: the image\'s path inside the ZIP, such as images/0001.jpg';

const ROLES: ReadonlySet<string> = new Set(['system', 'user', 'assistant']);

/** What is wrong with one parsed line, or null when it is a sample. */
export function sampleProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return `must be a JSON object, not ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}`;
  const o = value as Record<string, unknown>;
  // Vision-language samples name their image and carry where they came from (SAM2 conversion).
  if ('image' in o && (typeof o['image'] !== 'string' || o['image'].trim() === '')) return IMAGE_NOT_A_PATH;
  if ('meta' in o && (typeof o['meta'] !== 'object' || o['meta'] === null || Array.isArray(o['meta']))) return '"meta" must be an object';
  if ('messages' in o && !('prompt' in o) && !('completion' in o)) {
    const m = o['messages'];
    if (!Array.isArray(m) || m.length === 0) return '"messages" must be a non-empty array of {"role", "content"}';
    let answered = false;
    for (let i = 0; i < m.length; i++) {
      const msg = m[i] as Record<string, unknown> | null;
      if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return `messages[${i}] must be an object {"role", "content"}`;
      if (typeof msg['role'] !== 'string' || !ROLES.has(msg['role'])) return `messages[${i}].role must be "system", "user" or "assistant"`;
      if (typeof msg['content'] !== 'string') return `messages[${i}].content must be a string`;
      if (msg['role'] === 'assistant' && msg['content'].trim() !== '') answered = true;
    }
    return answered ? null : 'no assistant message with text: the loss is computed on the assistant\'s answers';
  }
  if (!('prompt' in o) || !('completion' in o)) return 'needs "prompt" and "completion" strings (or "messages")';
  if (typeof o['prompt'] !== 'string') return '"prompt" must be a string';
  if (typeof o['completion'] !== 'string') return '"completion" must be a string';
  if (o['completion'].trim() === '') return '"completion" is empty: there would be nothing to learn';
  return null;
}

/** The task whose samples carry an image each (the transformers engine's vision-language task). */
export const VISION_TASK = 'vision-lm';

const VISION_HINT = 'a vision-lm sample is {"image": "images/<file>", "prompt": "…", "completion": "…"}';

/**
 * Checks the image lines of a vision dataset refer to, each file once: what is wrong with a line's
 * `image` field, or null. Paths are relative to `root` (the folder holding the JSONL files).
 */
export class ImageRefs {
  private readonly seen = new Map<string, string | null>();
  private readonly scratch = imageScratch();
  constructor(private readonly root: string) {}

  /** Distinct image files read so far (each with or without a problem). */
  get count(): number {
    return this.seen.size;
  }

  problem(value: unknown): string | null {
    if (value === undefined) return `"image" is missing: ${VISION_HINT}`;
    if (typeof value !== 'string' || value.trim() === '') return IMAGE_NOT_A_PATH;
    if (value.length > 1000) return '"image" is longer than 1000 characters';
    if (value.startsWith('/') || value.includes('\\') || /^[A-Za-z]:/.test(value) || value.includes('\0')) {
      return `"image" must be a relative path inside the archive with / separators, not ${JSON.stringify(value)}`;
    }
    if (value.split('/').includes('..')) return `"image" must not contain "..": ${JSON.stringify(value)}`;
    const file = path.resolve(this.root, value);
    if (!file.startsWith(this.root + path.sep)) return `"image" must name a file inside the archive: ${JSON.stringify(value)}`;
    if (this.seen.has(file)) return this.seen.get(file)!;
    const check = checkImage(file, this.scratch);
    const problem = check.ok
      ? null
      : check.message.startsWith('cannot open the image (ENOENT')
        ? `"image" ${value} is not in the archive`
        : `"image" ${value}: ${check.message}`;
    this.seen.set(file, problem);
    return problem;
  }
}

/** What is wrong with one parsed line of a vision dataset, or null. */
export function visionSampleProblem(value: unknown, images: ImageRefs): string | null {
  const problem = sampleProblem(value);
  if (problem) return problem.startsWith('needs "prompt"') ? `needs "image", "prompt" and "completion": ${VISION_HINT}` : problem;
  const o = value as Record<string, unknown>;
  if (!('prompt' in o)) return `chat "messages" are not read for vision-lm: ${VISION_HINT}`;
  return images.problem(o['image']);
}

/** Samples in a file; every bad line is added to problems. */
async function checkFile(
  file: string,
  displayRoot: string,
  problems: Problems,
  signal?: AbortSignal,
  images?: ImageRefs,
): Promise<number> {
  const shown = path.relative(displayRoot, file);
  const lines = (await readFile(file, 'utf8')).split('\n');
  let samples = 0;
  await eachInSlices(
    lines,
    (raw, i) => {
      const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      if (line.trim() === '') return;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (err) {
        problems.add(shown, i + 1, `not valid JSON (${(err as Error).message})`);
        return;
      }
      const problem = images ? visionSampleProblem(value, images) : sampleProblem(value);
      if (problem) problems.add(shown, i + 1, problem);
      else samples++;
    },
    signal,
  );
  return samples;
}

/** Validation samples of a single data.jsonl of n samples (the worker draws which ones). */
export function valCount(n: number): number {
  return Math.min(n - 1, Math.max(1, Math.round(n * SPLIT.val_fraction)));
}

const emptySplit = (): SplitInfo => ({ images: 0, background_images: 0, missing_labels: 0, instances: 0, class_distribution: {} });

export async function checkJsonlDataset(
  layout: JsonlLayout,
  opts: { task: string; displayRoot: string; signal?: AbortSignal | undefined },
): Promise<DatasetInfo> {
  const problems = new Problems();
  const warnings: string[] = [];
  let train: number, val: number;
  let split: DatasetInfo['split'] = null;
  const images = opts.task === VISION_TASK ? new ImageRefs(path.resolve(layout.root)) : undefined;
  if ('data' in layout.files) {
    const n = await checkFile(layout.files.data, opts.displayRoot, problems, opts.signal, images);
    if (problems.total === 0 && n < 2) throw invalid(`data.jsonl holds ${n} sample${n === 1 ? '' : 's'}: at least 2 are needed, one for validation`, { reason: 'TOO_FEW_SAMPLES', samples: n });
    val = n >= 2 ? valCount(n) : 0;
    train = n - val;
    split = { source: 'data.jsonl', ...SPLIT };
    warnings.push(`data.jsonl is split by the server: ${val} of its ${n} samples (seed ${SPLIT.seed}) are the validation set`);
  } else {
    train = await checkFile(layout.files.train, opts.displayRoot, problems, opts.signal, images);
    val = await checkFile(layout.files.val, opts.displayRoot, problems, opts.signal, images);
  }
  const info: DatasetInfo = {
    task: opts.task as DatasetInfo['task'],
    // A vision sample is one image: the distinct files, and the samples (with their image) per split.
    total_images: images?.count ?? 0,
    train_images: images ? train : 0,
    val_images: images ? val : 0,
    test_images: 0,
    images_per_split: {},
    classes: [],
    nc: 0,
    class_distribution: {},
    splits: { train: emptySplit(), val: emptySplit() },
    background_images: 0,
    train_val_duplicates: 0,
    train_val_duplicate_examples: [],
    duplicate_label_rows: 0,
    samples_per_split: { train, val },
    total_samples: train + val,
    split,
    warnings,
  };
  problems.throwIfAny(info);
  if (train === 0) throw invalid(`the training split holds no samples (${SHAPE_HINT})`, { reason: 'EMPTY_SPLIT', split: 'train' });
  if (val === 0) throw invalid(`the validation split holds no samples (${SHAPE_HINT})`, { reason: 'EMPTY_SPLIT', split: 'val' });
  return info;
}
