/**
 * COCO JSON datasets in Roboflow's COCO export layout: `train/` and `valid/` (or `val/`), each
 * holding its images and one annotation file (`_annotations.coco.json`, or the only *.json in the
 * folder), at the root of the ZIP or inside its one top-level folder; `test/` is optional.
 *
 * Checked before any training, like a YOLO dataset: the JSON's shape (images, annotations,
 * categories, unique ids), every image the JSON names (it exists inside the split folder, its
 * header reads, its size matches the JSON's), every annotation (known image and category, a
 * finite box of positive size inside the image, polygons of 3+ points or an RLE for segment),
 * the two splits' categories agree, identical train/val images. Problems: DATASET_INVALID with
 * the first 50 (file and annotation index). What is trained on is the folder holding the splits.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { JobError } from '../core/errors.js';
import type { DatasetInfo, SplitInfo } from './check.js';
import { eachInSlices, ImageScan, Problems, throttledProgress } from './scan.js';

export const COCO_ANNOTATIONS = '_annotations.coco.json';
/** Annotation files are parsed whole: past this size a dataset is refused rather than risk the server's memory. */
const MAX_JSON_BYTES = 512 * 1024 ** 2;
/** Coordinates may sit a little outside the image, as exporters round them. */
const TOLERANCE_PX = 1.5;

export type CocoLayout = {
  /** The folder holding train/ and valid/ (what the worker reads). */
  root: string;
  splits: { train: string; val: string; test?: string };
  /** Each split's annotation file. */
  annotations: { train: string; val: string; test?: string };
  warnings: string[];
};

type CocoImage = { id: unknown; file_name: unknown; width?: unknown; height?: unknown };
type CocoAnnotation = { id?: unknown; image_id: unknown; category_id: unknown; bbox?: unknown; segmentation?: unknown; iscrowd?: unknown };
type CocoCategory = { id: unknown; name: unknown; supercategory?: unknown };
type CocoFile = { images: CocoImage[]; annotations: CocoAnnotation[]; categories: CocoCategory[] };

const invalid = (message: string, details: Record<string, unknown> = {}) => new JobError('DATASET_INVALID', message, details);
const isDir = (p: string) => stat(p).then((s) => s.isDirectory(), () => false);
const isFile = (p: string) => stat(p).then((s) => s.isFile(), () => false);
const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const inside = (root: string, p: string) => p === root || p.startsWith(root + path.sep);

async function annotationFile(dir: string): Promise<string | null> {
  if (await isFile(path.join(dir, COCO_ANNOTATIONS))) return path.join(dir, COCO_ANNOTATIONS);
  const jsons = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile() && e.name.toLowerCase().endsWith('.json'));
  return jsons.length === 1 ? path.join(dir, jsons[0]!.name) : null;
}

/** Whether an extracted archive looks like a COCO export (train/ with a JSON beside its images). */
export async function looksLikeCoco(extractDir: string): Promise<boolean> {
  return (await findRoot(extractDir)) !== null;
}

async function findRoot(extractDir: string): Promise<string | null> {
  const candidates = [extractDir];
  const dirs = (await readdir(extractDir, { withFileTypes: true })).filter((e) => e.isDirectory());
  if (dirs.length === 1) candidates.push(path.join(extractDir, dirs[0]!.name));
  for (const c of candidates) {
    if ((await isDir(path.join(c, 'train'))) && (await annotationFile(path.join(c, 'train')))) return c;
  }
  return null;
}

export async function readCocoLayout(extractDir: string): Promise<CocoLayout> {
  const root = await findRoot(path.resolve(extractDir));
  if (!root) {
    throw invalid(
      `no COCO dataset found: put train/ and valid/ (each with its images and ${COCO_ANNOTATIONS}) at the root of the ZIP or in its one top-level folder`,
      { reason: 'NO_COCO_SPLITS' },
    );
  }
  const warnings: string[] = [];
  let valName: string | null = null;
  for (const name of ['valid', 'val', 'validation']) {
    if ((await isDir(path.join(root, name))) && (await annotationFile(path.join(root, name)))) {
      valName = name;
      break;
    }
  }
  if (!valName) {
    throw invalid(`the COCO dataset has no validation split: add valid/ (or val/) with its images and ${COCO_ANNOTATIONS}`, {
      reason: 'MISSING_SPLIT',
      split: 'val',
    });
  }
  const splits: CocoLayout['splits'] = { train: path.join(root, 'train'), val: path.join(root, valName) };
  const annotations: CocoLayout['annotations'] = {
    train: (await annotationFile(splits.train))!,
    val: (await annotationFile(splits.val))!,
  };
  if (await isDir(path.join(root, 'test'))) {
    const test = await annotationFile(path.join(root, 'test'));
    if (test) {
      splits.test = path.join(root, 'test');
      annotations.test = test;
    } else warnings.push('test/ has no annotation file; it was ignored');
  }
  return { root, splits, annotations, warnings };
}

async function parseCoco(file: string, shown: string): Promise<CocoFile> {
  const size = (await stat(file)).size;
  if (size > MAX_JSON_BYTES) throw invalid(`${shown} is ${size} bytes: annotation files over ${MAX_JSON_BYTES} bytes are not read`, { file: shown });
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw invalid(`${shown} is not valid JSON: ${(err as Error).message.slice(0, 200)}`, { file: shown, reason: 'BAD_JSON' });
  }
  const d = doc as Partial<CocoFile> | null;
  if (!d || typeof d !== 'object' || !Array.isArray(d.images) || !Array.isArray(d.annotations) || !Array.isArray(d.categories)) {
    throw invalid(`${shown} must be a COCO object with images, annotations and categories arrays`, { file: shown, reason: 'BAD_COCO' });
  }
  return d as CocoFile;
}

/** Categories by id, and the class names in id order (what the model's classes are). */
function readCategories(coco: CocoFile, shown: string, problems: Problems): Map<number, string> {
  const byId = new Map<number, string>();
  coco.categories.forEach((c, i) => {
    if (!c || typeof c !== 'object' || !Number.isInteger(c.id) || typeof c.name !== 'string' || c.name.trim() === '') {
      problems.add(shown, null, `categories[${i}] needs an integer id and a name`);
    } else if (byId.has(c.id as number)) {
      problems.add(shown, null, `categories[${i}]: id ${String(c.id)} appears twice`);
    } else byId.set(c.id as number, c.name);
  });
  if (byId.size === 0) problems.add(shown, null, 'categories is empty: name the classes');
  return byId;
}

function checkSegmentation(seg: unknown): string | null {
  if (Array.isArray(seg)) {
    if (seg.length === 0) return 'segmentation is empty';
    for (const poly of seg) {
      if (!Array.isArray(poly) || poly.length < 6 || poly.length % 2 !== 0 || !poly.every(finite)) {
        return 'a segmentation polygon needs 3 or more x y pairs of numbers';
      }
    }
    return null;
  }
  if (seg && typeof seg === 'object') {
    const rle = seg as { counts?: unknown; size?: unknown };
    const okSize = Array.isArray(rle.size) && rle.size.length === 2 && rle.size.every((v) => Number.isInteger(v) && (v as number) > 0);
    const okCounts = typeof rle.counts === 'string' || (Array.isArray(rle.counts) && rle.counts.every((v) => Number.isInteger(v)));
    return okSize && okCounts ? null : 'an RLE segmentation needs size [height, width] and counts';
  }
  return 'segmentation must be a list of polygons or an RLE object';
}

export async function checkCocoDataset(
  layout: CocoLayout,
  opts: { task: string; displayRoot: string; onProgress?: (done: number, total: number) => void; signal?: AbortSignal },
): Promise<DatasetInfo> {
  if (opts.task !== 'detect' && opts.task !== 'segment') {
    throw invalid(`a COCO dataset has no rules for task ${opts.task}`, { task: opts.task });
  }
  const rel = (p: string) => path.relative(opts.displayRoot, p).split(path.sep).join('/');
  const problems = new Problems();
  const warnings = [...layout.warnings];
  const images = new ImageScan(problems, rel);
  const parsed = {
    train: await parseCoco(layout.annotations.train, rel(layout.annotations.train)),
    val: await parseCoco(layout.annotations.val, rel(layout.annotations.val)),
  };
  const categories = {
    train: readCategories(parsed.train, rel(layout.annotations.train), problems),
    val: readCategories(parsed.val, rel(layout.annotations.val), problems),
  };
  const trainIds = [...categories.train.entries()].map(([id, n]) => `${id}:${n}`).sort().join(',');
  const valIds = [...categories.val.entries()].map(([id, n]) => `${id}:${n}`).sort().join(',');
  if (problems.total === 0 && trainIds !== valIds) {
    problems.add(rel(layout.annotations.val), null, 'the categories of valid differ from train: both splits must name the same classes with the same ids');
  }
  const classIds = [...categories.train.keys()].sort((a, b) => a - b);
  const classes = classIds.map((id) => categories.train.get(id)!);

  const splitInfo = (): SplitInfo & { perClass: number[] } => ({
    images: 0,
    background_images: 0,
    missing_labels: 0,
    instances: 0,
    class_distribution: {},
    perClass: new Array<number>(classIds.length).fill(0),
  });
  const info = { train: splitInfo(), val: splitInfo() };
  type Work = { split: 'train' | 'val'; image: CocoImage; index: number };
  const work: Work[] = [];
  const byImage = { train: new Map<number, { width: number; height: number; annotated: boolean }>(), val: new Map<number, { width: number; height: number; annotated: boolean }>() };
  for (const split of ['train', 'val'] as const) {
    const seen = new Set<number>();
    parsed[split].images.forEach((image, index) => {
      const shown = rel(layout.annotations[split]);
      if (!image || !Number.isInteger(image.id) || typeof image.file_name !== 'string') {
        problems.add(shown, null, `images[${index}] needs an integer id and a file_name`);
        return;
      }
      if (seen.has(image.id as number)) {
        problems.add(shown, null, `images[${index}]: id ${String(image.id)} appears twice`);
        return;
      }
      seen.add(image.id as number);
      work.push({ split, image, index });
    });
  }
  const tick = throttledProgress(work.length, opts.onProgress);
  await eachInSlices(
    work,
    ({ split, image, index }) => {
      tick();
      const dir = layout.splits[split];
      const file = path.resolve(dir, image.file_name as string);
      const shown = rel(layout.annotations[split]);
      if (!inside(dir, file)) {
        problems.add(shown, null, `images[${index}].file_name ${JSON.stringify(image.file_name)} points outside its split folder`);
        return;
      }
      const checked = images.check(split, file);
      if (!checked.ok) return;
      const width = finite(image.width) ? image.width : checked.width;
      const height = finite(image.height) ? image.height : checked.height;
      if (checked.width !== undefined && checked.height !== undefined && (width !== checked.width || height !== checked.height)) {
        problems.add(rel(file), null, `the JSON says ${width}x${height}, the image is ${checked.width}x${checked.height}`);
      }
      byImage[split].set(image.id as number, { width: width ?? 0, height: height ?? 0, annotated: false });
      info[split].images++;
    },
    opts.signal,
  );
  opts.onProgress?.(work.length, work.length);

  for (const split of ['train', 'val'] as const) {
    const shown = rel(layout.annotations[split]);
    const known = categories[split];
    await eachInSlices(
      parsed[split].annotations,
      (a, i) => {
        if (!a || typeof a !== 'object') return problems.add(shown, null, `annotations[${i}] is not an object`);
        const img = Number.isInteger(a.image_id) ? byImage[split].get(a.image_id as number) : undefined;
        if (!img) return problems.add(shown, null, `annotations[${i}]: image_id ${String(a.image_id)} is not an image of this split`);
        if (!Number.isInteger(a.category_id) || !known.has(a.category_id as number)) {
          return problems.add(shown, null, `annotations[${i}]: category_id ${String(a.category_id)} is not a category of this split`);
        }
        const bbox = a.bbox;
        if (!Array.isArray(bbox) || bbox.length !== 4 || !bbox.every(finite)) {
          return problems.add(shown, null, `annotations[${i}]: bbox must be [x, y, width, height] in pixels`);
        }
        const [x, y, w, h] = bbox as [number, number, number, number];
        if (w <= 0 || h <= 0) return problems.add(shown, null, `annotations[${i}]: bbox width and height must be positive, got ${w}x${h}`);
        if (img.width && img.height && (x < -TOLERANCE_PX || y < -TOLERANCE_PX || x + w > img.width + TOLERANCE_PX || y + h > img.height + TOLERANCE_PX)) {
          return problems.add(shown, null, `annotations[${i}]: bbox [${bbox.join(', ')}] lies outside its ${img.width}x${img.height} image`);
        }
        if (opts.task === 'segment') {
          const bad = checkSegmentation(a.segmentation);
          if (bad) return problems.add(shown, null, `annotations[${i}]: ${bad}`);
        }
        img.annotated = true;
        info[split].instances++;
        info[split].perClass[classIds.indexOf(a.category_id as number)]!++;
      },
      opts.signal,
    );
    info[split].background_images = [...byImage[split].values()].filter((v) => !v.annotated).length;
  }

  const dup = await images.duplicates(opts.signal);
  if (dup.count) warnings.push(`${dup.count} image(s) in valid are identical to images in train (e.g. ${dup.examples[0]!.val}); validation metrics will be optimistic`);
  if (images.truncatedJpegs) warnings.push(`${images.truncatedJpegs} JPEG(s) are truncated (no end marker)`);
  if (info.train.images === 0) problems.add(rel(layout.annotations.train), null, 'train has no readable images');
  if (info.val.images === 0) problems.add(rel(layout.annotations.val), null, 'valid has no readable images');

  const distribution = (perClass: number[]) => Object.fromEntries(classes.map((c, i) => [c, perClass[i] ?? 0]));
  const { perClass: trainCounts, ...train } = info.train;
  const { perClass: valCounts, ...val } = info.val;
  const testImages = layout.annotations.test ? (await parseCoco(layout.annotations.test, rel(layout.annotations.test))).images.length : 0;
  const result: DatasetInfo = {
    task: opts.task,
    total_images: train.images + val.images,
    train_images: train.images,
    val_images: val.images,
    test_images: testImages,
    images_per_split: { train: train.images, val: val.images, ...(testImages ? { test: testImages } : {}) },
    classes,
    nc: classes.length,
    class_distribution: distribution(trainCounts.map((n, i) => n + (valCounts[i] ?? 0))),
    splits: { train: { ...train, class_distribution: distribution(trainCounts) }, val: { ...val, class_distribution: distribution(valCounts) } },
    background_images: train.background_images + val.background_images,
    train_val_duplicates: dup.count,
    train_val_duplicate_examples: dup.examples,
    duplicate_label_rows: 0,
    warnings,
  };
  problems.throwIfAny(result);
  return result;
}
