/**
 * The dataset check that runs before any training (SPEC §4): every image's header, every label
 * line, per-class counts, background images, and identical images shared by train and val.
 *
 * Speed: only image headers (4 KB) and label files are read, with synchronous calls run in
 * time slices of a few milliseconds between which the event loop gets control back (so the
 * server keeps answering while a 100,000-image dataset is checked). Thread-pool fs calls cost
 * 3-7x more per file than the reads themselves (numbers in images.ts). Content is hashed only
 * for train/val files whose sizes and first-4-KB CRCs collide. bench/dataset-check.ts compares
 * all this with Ultralytics' own verify_image_label.
 *
 * Only train and val are checked: they are what training and validation read. A test split
 * is counted, not checked.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import path from 'node:path';
import { JobError } from '../core/errors.js';
import { checkImage, imageScratch, labelPathFor, listImages } from './images.js';
import { checkLabelText, type LabelTask } from './labels.js';
import type { DatasetLayout, Split } from './layout.js';

export const MAX_REPORTED_PROBLEMS = 50;

export type Problem = { file: string; line: number | null; message: string };

export type SplitInfo = {
  images: number;
  background_images: number;
  /** Images without a label file (a subset of background images). */
  missing_labels: number;
  instances: number;
  class_distribution: Record<string, number>;
};

export type DatasetInfo = {
  task: LabelTask;
  total_images: number;
  train_images: number;
  val_images: number;
  test_images: number;
  images_per_split: Partial<Record<Split, number>>;
  classes: string[];
  nc: number;
  /** Instances per class name, train + val. */
  class_distribution: Record<string, number>;
  splits: { train: SplitInfo; val: SplitInfo };
  background_images: number;
  /** Identical files (same bytes) present in both train and val. */
  train_val_duplicates: number;
  train_val_duplicate_examples: { train: string; val: string }[];
  duplicate_label_rows: number;
  warnings: string[];
};

export type CheckOptions = {
  task: LabelTask;
  /** Paths in problems and warnings are shown relative to this folder. */
  displayRoot: string;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
};

type Collector = { problems: Problem[]; total: number; files: Set<string> };

function addProblem(c: Collector, file: string, line: number | null, message: string) {
  c.total++;
  c.files.add(file);
  if (c.problems.length < MAX_REPORTED_PROBLEMS) c.problems.push({ file, line, message });
}

const SLICE_MS = 8;

/**
 * Runs a synchronous fn over items, handing the event loop back every SLICE_MS so timers,
 * HTTP requests and SSE heartbeats are never held up longer than that (plus one file).
 */
async function eachInSlices<T>(items: readonly T[], fn: (item: T, i: number) => void, signal?: AbortSignal) {
  let sliceStart = performance.now();
  for (let i = 0; i < items.length; i++) {
    fn(items[i]!, i);
    if (performance.now() - sliceStart > SLICE_MS) {
      await new Promise<void>((r) => setImmediate(r));
      if (signal?.aborted) throw new JobError('CANCELLED', 'dataset check cancelled');
      sliceStart = performance.now();
    }
  }
}

/** A label file's text, or null when there is none (a background image for Ultralytics). */
function readLabel(file: string, buf: Buffer): string | null {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    // One read into a reused buffer covers nearly every label file; bigger ones are read whole.
    const n = readSync(fd, buf, 0, buf.length, 0);
    if (n < buf.length) return buf.toString('utf8', 0, n);
    return readFileSync(fd, 'utf8'); // positional reads above left the offset at 0
  } finally {
    closeSync(fd);
  }
}

function hashFile(file: string): string {
  return createHash('sha1').update(readFileSync(file)).digest('hex');
}

function emptySplit(): SplitInfo {
  return { images: 0, background_images: 0, missing_labels: 0, instances: 0, class_distribution: {} };
}

export async function checkDataset(layout: DatasetLayout, opts: CheckOptions): Promise<DatasetInfo> {
  const { task } = opts;
  const names = layout.names;
  const nc = names.length;
  const rel = (p: string) => path.relative(opts.displayRoot, p).split(path.sep).join('/');
  const warnings = [...layout.warnings];
  const collector: Collector = { problems: [], total: 0, files: new Set() };

  // 1. What each split holds.
  const lists: Partial<Record<Split, string[]>> = {};
  let ignoredFiles: string[] = [];
  for (const split of ['train', 'val', 'test'] as const) {
    const dirs = layout.splits[split];
    if (!dirs) continue;
    const files: string[] = [];
    for (const d of dirs) {
      const { images, ignored } = await listImages(d);
      files.push(...images);
      ignoredFiles = ignoredFiles.concat(ignored);
    }
    lists[split] = [...new Set(files)];
    if (files.length === 0 && split !== 'test') {
      addProblem(collector, dirs.map(rel).join(', '), null, `the ${split} split has no images (jpg, png, bmp, tif, webp)`);
    }
  }
  const checked = [...(lists.train ?? []).map((f) => ['train', f] as const), ...(lists.val ?? []).map((f) => ['val', f] as const)];
  if (ignoredFiles.length) {
    warnings.push(`${ignoredFiles.length} file(s) in image folders are not images and were ignored (e.g. ${rel(ignoredFiles[0]!)})`);
  }

  // 2. Every image header and label file, bounded concurrency.
  const perSplit = { train: emptySplit(), val: emptySplit() };
  const counts = { train: new Array<number>(nc).fill(0), val: new Array<number>(nc).fill(0) };
  const sizes = new Map<string, { train: string[]; val: string[] }>();
  let truncatedJpegs = 0;
  let duplicateRows = 0;
  let done = 0;
  let lastReport = 0;
  const imageBuf = imageScratch();
  const labelBuf = Buffer.allocUnsafe(16 * 1024);
  await eachInSlices(
    checked,
    ([split, image]) => {
      const img = checkImage(image, imageBuf);
      if (!img.ok) addProblem(collector, rel(image), null, img.message);
      else {
        if (img.truncatedJpeg) truncatedJpegs++;
        const key = `${img.size}:${img.headCrc}`;
        let bucket = sizes.get(key);
        if (!bucket) sizes.set(key, (bucket = { train: [], val: [] }));
        bucket[split].push(image);
      }
      const s = perSplit[split];
      s.images++;
      const labelFile = labelPathFor(image);
      let text: string | null;
      try {
        text = readLabel(labelFile, labelBuf);
      } catch (err) {
        addProblem(collector, rel(labelFile), null, `cannot read the label file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
        text = '';
      }
      if (text === null) {
        s.background_images++;
        s.missing_labels++;
      } else {
        const r = checkLabelText(text, task, nc, counts[split], (line, message) => addProblem(collector, rel(labelFile), line, message));
        s.instances += r.instances;
        duplicateRows += r.duplicates;
        if (r.instances === 0 && r.problems === 0) s.background_images++;
      }
      done++;
      const now = Date.now();
      if (opts.onProgress && now - lastReport > 100) {
        lastReport = now;
        opts.onProgress(done, checked.length);
      }
    },
    opts.signal,
  );
  opts.onProgress?.(checked.length, checked.length);

  // 3. Identical files in train and val: hash only where size and head CRC collide.
  const duplicates: { train: string; val: string }[] = [];
  const sameFolder = layout.splits.val.some((v) => layout.splits.train.includes(v));
  if (sameFolder) {
    warnings.push('val uses the same images folder as train: validation metrics will be optimistic');
  }
  const toHash = [...sizes.values()].filter((b) => b.train.length && b.val.length);
  let dupCount = 0;
  if (sameFolder) {
    const trainSet = new Set(lists.train);
    dupCount = (lists.val ?? []).filter((f) => trainSet.has(f)).length;
  }
  await eachInSlices(
    toHash,
    (bucket) => {
      const byHash = new Map<string, string>();
      for (const f of bucket.train) byHash.set(hashFile(f), f);
      for (const f of bucket.val) {
        const twin = byHash.get(hashFile(f));
        if (twin !== undefined && twin !== f) {
          dupCount++;
          if (duplicates.length < 10) duplicates.push({ train: rel(twin), val: rel(f) });
        }
      }
    },
    opts.signal,
  );
  if (dupCount && !sameFolder) {
    warnings.push(`${dupCount} image(s) in val are identical to images in train (e.g. ${duplicates[0]!.val}); validation metrics will be optimistic`);
  }

  // 4. Totals and warnings.
  const distribution = (c: number[]) => Object.fromEntries(names.map((n, i) => [n, c[i] ?? 0]));
  perSplit.train.class_distribution = distribution(counts.train);
  perSplit.val.class_distribution = distribution(counts.val);
  const both = counts.train.map((v, i) => v + (counts.val[i] ?? 0));
  const unused = names.filter((_, i) => both[i] === 0);
  if (unused.length && collector.total === 0) {
    warnings.push(`${unused.length} class(es) have no labelled instance: ${unused.slice(0, 10).join(', ')}`);
  }
  if (truncatedJpegs) warnings.push(`${truncatedJpegs} JPEG(s) are truncated (no end marker); Ultralytics re-saves them`);
  if (duplicateRows) warnings.push(`${duplicateRows} duplicate label row(s); Ultralytics drops them`);
  const bg = perSplit.train.background_images + perSplit.val.background_images;

  const info: DatasetInfo = {
    task,
    total_images: perSplit.train.images + perSplit.val.images,
    train_images: perSplit.train.images,
    val_images: perSplit.val.images,
    test_images: lists.test?.length ?? 0,
    images_per_split: {
      train: perSplit.train.images,
      val: perSplit.val.images,
      ...(lists.test ? { test: lists.test.length } : {}),
    },
    classes: names,
    nc,
    class_distribution: distribution(both),
    splits: perSplit,
    background_images: bg,
    train_val_duplicates: dupCount,
    train_val_duplicate_examples: duplicates,
    duplicate_label_rows: duplicateRows,
    warnings,
  };

  if (collector.total > 0) {
    const first = collector.problems[0]!;
    const where = first.line ? `${first.file}:${first.line}` : first.file;
    throw new JobError(
      'DATASET_INVALID',
      `${collector.total} problem${collector.total === 1 ? '' : 's'} in ${collector.files.size} file${collector.files.size === 1 ? '' : 's'}, first: ${where}: ${first.message}`,
      { problems: collector.problems, total_problems: collector.total, files_with_problems: collector.files.size, dataset_info: info },
    );
  }
  return info;
}
