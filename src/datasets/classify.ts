/**
 * Classification datasets, as Ultralytics reads them (check_cls_dataset, then torchvision's
 * ImageFolder per split): no data.yaml and no label files, but a root folder holding
 *
 *   train/<class>/<images>   and   val/<class>/<images>
 *
 * at the root of the ZIP or inside its single top-level folder. The validation folder is the
 * first of val/, validation/, valid/ that exists, else test/ (Ultralytics' own order). Class
 * names are train's folder names, sorted; an image's class is the folder it sits in (at any
 * depth below it).
 *
 * ImageFolder numbers each split's classes by that split's own sorted folder names, so a
 * class folder missing from val (or one val has and train has not) silently shifts every
 * later class: val images would be scored against the wrong classes. Ultralytics only logs
 * it. Here the two folder sets must be equal (an empty folder is fine). A hidden folder in a
 * split would become a class too, so it is a problem; files beside the class folders are
 * ignored, as ImageFolder ignores them.
 *
 * Images are judged as in the YOLO layouts (header check, first 50 problems kept, identical
 * train/val images counted); DatasetInfo counts images per class where the YOLO layouts count
 * instances.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { JobError } from '../core/errors.js';
import type { DatasetInfo, SplitInfo } from './check.js';
import { listImages } from './images.js';
import { eachInSlices, ImageScan, Problems, throttledProgress } from './scan.js';

/** Where Ultralytics looks for the validation images, in its order; test only when none of the others exists. */
export const VAL_FOLDERS = ['val', 'validation', 'valid', 'test'] as const;
export type ValFolder = (typeof VAL_FOLDERS)[number];

/** torchvision ImageFolder's extensions that Ultralytics also trains on (ppm and pgm it drops as corrupt). */
export const CLASSIFY_EXTENSIONS: ReadonlySet<string> = new Set(['jpg', 'jpeg', 'png', 'bmp', 'tif', 'tiff', 'webp']);

export type ClassifyLayout = {
  /** The folder holding train/ and the validation folder: what Ultralytics gets as data=. */
  root: string;
  splits: { train: string; val: string; test?: string };
  /** The folder used for validation (test when there is no val, validation or valid). */
  valFolder: ValFolder;
  warnings: string[];
};

export type ClassifyCheckOptions = {
  /** Paths in problems and warnings are shown relative to this folder. */
  displayRoot: string;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
};

function invalid(message: string, details: Record<string, unknown>): JobError {
  return new JobError('DATASET_INVALID', message, details);
}

async function isDir(p: string): Promise<boolean> {
  return stat(p).then((s) => s.isDirectory(), () => false);
}

const SHAPE_HINT = 'a classify dataset is train/<class>/<images> and val/<class>/<images>, one folder per class';

/** The folder holding train/: the extraction folder, or its single top-level folder. */
async function findRoot(extractDir: string): Promise<string> {
  if (await isDir(path.join(extractDir, 'train'))) return extractDir;
  const entries = await readdir(extractDir, { withFileTypes: true });
  const dirs = entries.filter((e) => e.isDirectory()).map((e) => e.name);
  if (dirs.length === 1 && (await isDir(path.join(extractDir, dirs[0]!, 'train')))) return path.join(extractDir, dirs[0]!);
  const inner = dirs.length === 1 ? (await readdir(path.join(extractDir, dirs[0]!), { withFileTypes: true })).map((e) => e.name) : [];
  const names = [...entries.map((e) => e.name), ...inner];
  const yolo = names.some((n) => /^data\.ya?ml$/i.test(n)) || (names.includes('images') && names.includes('labels'));
  throw invalid(
    `no train folder found: ${SHAPE_HINT}, at the root of the ZIP or inside its single top-level folder` +
      (yolo ? '; this archive looks like a YOLO dataset (data.yaml, images/ and labels/): train it with task detect, segment, pose or obb' : '') +
      ` (top-level folders found: ${dirs.join(', ') || 'none'})`,
    { reason: 'NO_CLASSIFY_SPLITS' },
  );
}

export async function readClassifyLayout(extractDir: string): Promise<ClassifyLayout> {
  const root = await findRoot(path.resolve(extractDir));
  // Ultralytics takes a data= ending like an archive for a file to download and unpack.
  if (/\.(zip|tar|gz)$/i.test(path.basename(root))) {
    throw invalid(
      `the dataset folder "${path.basename(root)}" ends in .zip, .tar or .gz, which Ultralytics takes for an archive to unpack; rename the folder`,
      { reason: 'BAD_FOLDER_NAME' },
    );
  }
  // Roboflow's YOLO export also has train/, holding images/ and labels/: two "classes" otherwise.
  if ((await isDir(path.join(root, 'train/images'))) && (await isDir(path.join(root, 'train/labels')))) {
    throw invalid(
      `train/ holds images/ and labels/: this is a YOLO dataset (Roboflow's export layout), not ${SHAPE_HINT}; train it with task detect, segment, pose or obb`,
      { reason: 'NO_CLASSIFY_SPLITS' },
    );
  }
  const warnings: string[] = [];
  let valFolder: ValFolder | null = null;
  for (const v of VAL_FOLDERS) {
    if (await isDir(path.join(root, v))) {
      valFolder = v;
      break;
    }
  }
  if (!valFolder) {
    throw invalid(`no validation folder next to train/: add val/<class>/<images> (validation/ and valid/ work too; test/ is used when none of them exists)`, {
      reason: 'MISSING_SPLIT',
      split: 'val',
    });
  }
  if (valFolder === 'test') warnings.push('there is no val folder: test/ is used for validation, as Ultralytics does');
  const splits: ClassifyLayout['splits'] = { train: path.join(root, 'train'), val: path.join(root, valFolder) };
  if (valFolder !== 'test' && (await isDir(path.join(root, 'test')))) splits.test = path.join(root, 'test');
  return { root, splits, valFolder, warnings };
}

/** Python's sorted() order for str: by code point (JavaScript's default sort compares UTF-16 units). */
export function byCodePoint(a: string, b: string): number {
  const x = [...a], y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

type SplitListing = { classes: string[]; hidden: string[]; looseFiles: number; images: Map<string, string[]>; ignored: string[] };

/** A split folder's class folders (sorted as Python sorts them) and each one's images. */
async function listSplit(dir: string): Promise<SplitListing> {
  const entries = await readdir(dir, { withFileTypes: true });
  const classes = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort(byCodePoint);
  const listing: SplitListing = {
    classes,
    hidden: classes.filter((c) => c.startsWith('.')),
    looseFiles: entries.filter((e) => e.isFile()).length,
    images: new Map(),
    ignored: [],
  };
  for (const c of classes) {
    const { images, ignored } = await listImages(path.join(dir, c), CLASSIFY_EXTENSIONS);
    listing.images.set(c, images);
    listing.ignored.push(...ignored);
  }
  return listing;
}

export async function checkClassifyDataset(layout: ClassifyLayout, opts: ClassifyCheckOptions): Promise<DatasetInfo> {
  const rel = (p: string) => path.relative(opts.displayRoot, p).split(path.sep).join('/');
  const warnings = [...layout.warnings];
  const problems = new Problems();
  const trainDir = layout.splits.train, valDir = layout.splits.val;
  const train = await listSplit(trainDir);
  const val = await listSplit(valDir);
  const test = layout.splits.test ? await listSplit(layout.splits.test) : null;
  const classes = train.classes;

  // 1. The class folders: the same set in train and val, none hidden.
  for (const [dir, listing] of [[trainDir, train], [valDir, val]] as const) {
    for (const h of listing.hidden) {
      problems.add(rel(path.join(dir, h)), null, `"${h}" is a hidden folder: Ultralytics would take it for a class; remove it from the ZIP`);
    }
  }
  if (classes.length === 0) problems.add(rel(trainDir), null, `train has no class folders: ${SHAPE_HINT}`);
  const valSet = new Set(val.classes), trainSet = new Set(classes);
  for (const c of classes) {
    if (!valSet.has(c) && !c.startsWith('.')) {
      problems.add(
        rel(valDir),
        null,
        `class "${c}" has a folder in train but not in ${layout.valFolder}: Ultralytics numbers each split's classes by its own folders, so val images of later classes would be scored as the wrong class (an empty ${layout.valFolder}/${c} folder is enough)`,
      );
    }
  }
  for (const c of val.classes) {
    if (!trainSet.has(c) && !c.startsWith('.')) {
      problems.add(
        rel(path.join(valDir, c)),
        null,
        `class "${c}" has a folder in ${layout.valFolder} but not in train: the model cannot learn it, and Ultralytics numbers val's classes by val's own folders, so some val images would be scored as the wrong class`,
      );
    }
  }

  // 2. Every train and val image's header.
  const checked: (readonly ['train' | 'val', string, number])[] = [];
  const perClass = { train: new Array<number>(classes.length).fill(0), val: new Array<number>(classes.length).fill(0) };
  for (const [split, listing] of [['train', train], ['val', val]] as const) {
    for (const [c, files] of listing.images) {
      const i = classes.indexOf(c);
      for (const f of files) checked.push([split, f, i]);
    }
  }
  for (const [split, listing, dir] of [['train', train, trainDir], ['val', val, valDir]] as const) {
    if (![...listing.images.values()].some((f) => f.length)) {
      problems.add(rel(dir), null, `the ${split} split has no images in its class folders (jpg, png, bmp, tif, webp): ${SHAPE_HINT}`);
    }
  }
  const images = new ImageScan(problems, rel);
  const tick = throttledProgress(checked.length, opts.onProgress);
  await eachInSlices(
    checked,
    ([split, file, i]) => {
      if (images.check(split, file).ok && i >= 0) perClass[split][i]!++;
      tick();
    },
    opts.signal,
  );
  opts.onProgress?.(checked.length, checked.length);

  // 3. Identical images in train and val.
  const dup = await images.duplicates(opts.signal);
  if (dup.count) {
    warnings.push(`${dup.count} image(s) in val are identical to images in train (e.g. ${dup.examples[0]!.val}); validation metrics will be optimistic`);
  }

  // 4. Totals and warnings.
  const ignored = [...train.ignored, ...val.ignored];
  if (ignored.length) warnings.push(`${ignored.length} file(s) in class folders are not images Ultralytics trains on and were ignored (e.g. ${rel(ignored[0]!)})`);
  const loose = train.looseFiles + val.looseFiles;
  if (loose) warnings.push(`${loose} file(s) directly in train/ or ${layout.valFolder}/, outside any class folder, were ignored`);
  if (problems.total === 0) {
    const noTrain = classes.filter((_, i) => perClass.train[i] === 0);
    if (noTrain.length) warnings.push(`${noTrain.length} class(es) have no train images: ${noTrain.slice(0, 10).join(', ')}`);
    const noVal = classes.filter((_, i) => perClass.val[i] === 0);
    if (noVal.length) warnings.push(`${noVal.length} class(es) have no ${layout.valFolder} images, so their accuracy is not measured: ${noVal.slice(0, 10).join(', ')}`);
  }
  if (images.truncatedJpegs) warnings.push(`${images.truncatedJpegs} JPEG(s) are truncated (no end marker); Ultralytics re-saves them`);
  if (classes.length === 1) warnings.push(`there is only one class ("${classes[0]}"): every image is predicted as it, so accuracy is always 1`);

  const distribution = (c: number[]) => Object.fromEntries(classes.map((n, i) => [n, c[i] ?? 0]));
  const splitInfo = (listing: SplitListing, counts: number[]): SplitInfo => {
    const n = [...listing.images.values()].reduce((a, f) => a + f.length, 0);
    return { images: n, background_images: 0, missing_labels: 0, instances: counts.reduce((a, b) => a + b, 0), class_distribution: distribution(counts) };
  };
  const splits = { train: splitInfo(train, perClass.train), val: splitInfo(val, perClass.val) };
  const testImages = test ? [...test.images.values()].reduce((a, f) => a + f.length, 0) : 0;
  const info: DatasetInfo = {
    task: 'classify',
    total_images: splits.train.images + splits.val.images,
    train_images: splits.train.images,
    val_images: splits.val.images,
    test_images: testImages,
    images_per_split: { train: splits.train.images, val: splits.val.images, ...(test ? { test: testImages } : {}) },
    classes,
    nc: classes.length,
    class_distribution: distribution(perClass.train.map((v, i) => v + perClass.val[i]!)),
    splits,
    background_images: 0,
    train_val_duplicates: dup.count,
    train_val_duplicate_examples: dup.examples,
    duplicate_label_rows: 0,
    warnings,
  };
  problems.throwIfAny(info);
  return info;
}
