/**
 * The dataset check that runs before any training, for the YOLO label layouts
 * (detect, segment, pose, obb): every image's header, every label line, per-class counts,
 * background images, and identical images shared by train and val. Classification datasets
 * (a folder per class, no labels) are checked in classify.ts into the same DatasetInfo.
 *
 * Speed: only image headers (4 KB) and label files are read, in time slices (scan.ts).
 * bench/dataset-check.ts compares all this with Ultralytics' own verify_image_label.
 *
 * Only train and val are checked: they are what training and validation read. A test split
 * is counted, not checked.
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import path from 'node:path';
import { JobError } from '../core/errors.js';
import { labelPathFor, listImages } from './images.js';
import { checkLabelText, type LabelTask } from './labels.js';
import type { DatasetLayout, Split } from './layout.js';
import { eachInSlices, ImageScan, Problems, throttledProgress } from './scan.js';

export { MAX_REPORTED_PROBLEMS, type Problem } from './scan.js';

/** Every task trainhook checks a dataset for: the YOLO label tasks, classify, and text generation (jsonl.ts). */
export type DatasetTask = LabelTask | 'classify' | 'causal-lm' | 'vision-lm';

/**
 * Counts of one split. classify: every image is one instance of its folder's class, so
 * instances and class_distribution count images; there are no background images or labels.
 */
export type SplitInfo = {
  images: number;
  background_images: number;
  /** Images without a label file (a subset of background images). */
  missing_labels: number;
  instances: number;
  class_distribution: Record<string, number>;
};

export type DatasetInfo = {
  task: DatasetTask;
  total_images: number;
  train_images: number;
  val_images: number;
  test_images: number;
  images_per_split: Partial<Record<Split, number>>;
  classes: string[];
  nc: number;
  /** Instances per class name, train + val (classify: images per class). */
  class_distribution: Record<string, number>;
  /** Pose: keypoints per object and values per keypoint, from data.yaml. */
  kpt_shape?: [number, number];
  splits: { train: SplitInfo; val: SplitInfo };
  background_images: number;
  /** Identical files (same bytes) present in both train and val. */
  train_val_duplicates: number;
  train_val_duplicate_examples: { train: string; val: string }[];
  duplicate_label_rows: number;
  /** Text datasets (jsonl.ts): samples per split, and how a single data.jsonl is split. The image counts are 0. */
  samples_per_split?: { train: number; val: number };
  total_samples?: number;
  split?: { source: string; seed: number; val_fraction: number } | null;
  warnings: string[];
};

export type CheckOptions = {
  task: LabelTask;
  /** Paths in problems and warnings are shown relative to this folder. */
  displayRoot: string;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
};

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

function emptySplit(): SplitInfo {
  return { images: 0, background_images: 0, missing_labels: 0, instances: 0, class_distribution: {} };
}

export async function checkDataset(layout: DatasetLayout, opts: CheckOptions): Promise<DatasetInfo> {
  const { task } = opts;
  const names = layout.names;
  const nc = names.length;
  const kptShape = layout.keypoints?.kpt_shape;
  if (task === 'pose' && !kptShape) throw new Error('checkDataset: a pose check needs a layout read for pose (kpt_shape)');
  const rel = (p: string) => path.relative(opts.displayRoot, p).split(path.sep).join('/');
  const warnings = [...layout.warnings];
  const problems = new Problems();

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
      problems.add(dirs.map(rel).join(', '), null, `the ${split} split has no images (jpg, png, bmp, tif, webp)`);
    }
  }
  const checked = [...(lists.train ?? []).map((f) => ['train', f] as const), ...(lists.val ?? []).map((f) => ['val', f] as const)];
  if (ignoredFiles.length) {
    warnings.push(`${ignoredFiles.length} file(s) in image folders are not images and were ignored (e.g. ${rel(ignoredFiles[0]!)})`);
  }

  // 2. Every image header and label file.
  const perSplit = { train: emptySplit(), val: emptySplit() };
  const counts = { train: new Array<number>(nc).fill(0), val: new Array<number>(nc).fill(0) };
  const images = new ImageScan(problems, rel);
  let duplicateRows = 0;
  const tick = throttledProgress(checked.length, opts.onProgress);
  const labelBuf = Buffer.allocUnsafe(16 * 1024);
  await eachInSlices(
    checked,
    ([split, image]) => {
      images.check(split, image);
      const s = perSplit[split];
      s.images++;
      const labelFile = labelPathFor(image);
      let text: string | null;
      try {
        text = readLabel(labelFile, labelBuf);
      } catch (err) {
        problems.add(rel(labelFile), null, `cannot read the label file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
        text = '';
      }
      if (text === null) {
        s.background_images++;
        s.missing_labels++;
      } else {
        const r = checkLabelText(text, task, nc, counts[split], (line, message) => problems.add(rel(labelFile), line, message), kptShape);
        s.instances += r.instances;
        duplicateRows += r.duplicates;
        if (r.instances === 0 && r.problems === 0) s.background_images++;
      }
      tick();
    },
    opts.signal,
  );
  opts.onProgress?.(checked.length, checked.length);

  // 3. Identical files in train and val.
  const sameFolder = layout.splits.val.some((v) => layout.splits.train.includes(v));
  if (sameFolder) {
    warnings.push('val uses the same images folder as train: validation metrics will be optimistic');
  }
  const dup = await images.duplicates(opts.signal);
  let dupCount = dup.count;
  if (sameFolder) {
    const trainSet = new Set(lists.train);
    dupCount += (lists.val ?? []).filter((f) => trainSet.has(f)).length;
  }
  if (dupCount && !sameFolder) {
    warnings.push(`${dupCount} image(s) in val are identical to images in train (e.g. ${dup.examples[0]!.val}); validation metrics will be optimistic`);
  }

  // 4. Totals and warnings.
  const distribution = (c: number[]) => Object.fromEntries(names.map((n, i) => [n, c[i] ?? 0]));
  perSplit.train.class_distribution = distribution(counts.train);
  perSplit.val.class_distribution = distribution(counts.val);
  const both = counts.train.map((v, i) => v + (counts.val[i] ?? 0));
  const unused = names.filter((_, i) => both[i] === 0);
  if (unused.length && problems.total === 0) {
    warnings.push(`${unused.length} class(es) have no labelled instance: ${unused.slice(0, 10).join(', ')}`);
  }
  if (images.truncatedJpegs) warnings.push(`${images.truncatedJpegs} JPEG(s) are truncated (no end marker); Ultralytics re-saves them`);
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
    ...(kptShape ? { kpt_shape: [kptShape[0], kptShape[1]] as [number, number] } : {}),
    splits: perSplit,
    background_images: bg,
    train_val_duplicates: dupCount,
    train_val_duplicate_examples: dup.examples,
    duplicate_label_rows: duplicateRows,
    warnings,
  };
  problems.throwIfAny(info);
  return info;
}
