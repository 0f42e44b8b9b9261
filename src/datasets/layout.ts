/**
 * Finds a dataset's data.yaml and resolves it to absolute, checked split folders, then
 * writes the normalized data.yaml the worker trains from.
 *
 * Accepted: the Ultralytics layout (images/{train,val} + labels/…, or any folders named in
 * data.yaml relative to it) and the Roboflow export ({train,valid,test}/{images,labels} with
 * `../train/images` paths, resolved as Ultralytics does by dropping the leading `../`).
 * A user's data.yaml is never passed through: `download:` (which Ultralytics may execute) and
 * any other key are dropped, and every path is absolute and inside the dataset folder.
 * A pose dataset keeps its keypoint keys (kpt_shape, flip_idx, kpt_names), once checked.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import YAML from 'yaml';
import { JobError } from '../core/errors.js';
import type { KptShape, LabelTask } from './labels.js';

export const SPLITS = ['train', 'val', 'test'] as const;
export type Split = (typeof SPLITS)[number];

export type DatasetLayout = {
  /** Folder holding data.yaml; every split lies inside it. */
  root: string;
  /** The user's data.yaml, relative to the extraction folder (for messages). */
  dataYaml: string;
  names: string[];
  /** Absolute image folders per split; test only when present. */
  splits: { train: string[]; val: string[]; test?: string[] };
  /** Pose only: the checked keypoint keys of data.yaml. */
  keypoints?: Keypoints;
  warnings: string[];
};

export type Keypoints = {
  kpt_shape: KptShape;
  /** The index each keypoint takes in a left-right mirrored image; absent: Ultralytics does not flip. */
  flip_idx?: number[];
  /** Keypoint names per class index (metadata Ultralytics stores in the model). */
  kpt_names?: Record<number, string[]>;
};

const YAML_NAMES = ['data.yaml', 'data.yml'];

function invalid(message: string, details: Record<string, unknown> = {}): JobError {
  return new JobError('DATASET_INVALID', message, details);
}

async function isDir(p: string): Promise<boolean> {
  return stat(p).then((s) => s.isDirectory(), () => false);
}
async function isFile(p: string): Promise<boolean> {
  return stat(p).then((s) => s.isFile(), () => false);
}

/** data.yaml (or the only *.yaml) in a folder, or null. */
async function yamlIn(dir: string): Promise<string | null> {
  for (const n of YAML_NAMES) if (await isFile(path.join(dir, n))) return path.join(dir, n);
  const yamls = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile() && /\.ya?ml$/i.test(e.name));
  return yamls.length === 1 ? path.join(dir, yamls[0]!.name) : null;
}

/** data.yaml at the root of the extraction, or inside its one top-level folder. */
export async function findDataYaml(extractDir: string): Promise<string> {
  const atRoot = await yamlIn(extractDir);
  if (atRoot) return atRoot;
  const dirs = (await readdir(extractDir, { withFileTypes: true })).filter((e) => e.isDirectory());
  if (dirs.length === 1) {
    const inner = await yamlIn(path.join(extractDir, dirs[0]!.name));
    if (inner) return inner;
  }
  throw invalid(
    'no data.yaml found: put data.yaml at the root of the ZIP or inside its single top-level folder ' +
      `(top-level folders found: ${dirs.map((d) => d.name).join(', ') || 'none'})`,
    { reason: 'NO_DATA_YAML' },
  );
}

/** names as a list, or a map whose keys are exactly 0..n-1 (as Ultralytics requires). */
export function parseNames(raw: unknown, nc: unknown): string[] {
  let names: string[];
  if (raw === undefined || raw === null) {
    if (typeof nc !== 'number' || !Number.isInteger(nc) || nc < 1) {
      throw invalid('data.yaml has no names (a list of class names, or a map {0: name, 1: name, …})', { reason: 'NO_NAMES' });
    }
    names = Array.from({ length: nc }, (_, i) => `class_${i}`); // what Ultralytics does without names
  } else if (Array.isArray(raw)) {
    names = raw.map((n) => String(n ?? ''));
  } else if (typeof raw === 'object') {
    const entries = Object.entries(raw as Record<string, unknown>);
    const byIndex = new Map<number, string>();
    for (const [k, v] of entries) {
      const i = Number(k);
      if (!/^\d+$/.test(k.trim()) || !Number.isSafeInteger(i)) {
        throw invalid(`data.yaml names: key "${k}" is not a class index (keys must be 0..n-1)`, { reason: 'BAD_NAMES' });
      }
      byIndex.set(i, String(v ?? ''));
    }
    const missing = [];
    for (let i = 0; i < entries.length; i++) if (!byIndex.has(i)) missing.push(i);
    if (missing.length) {
      throw invalid(
        `data.yaml names: keys must be 0..${entries.length - 1} with no gaps; missing ${missing.slice(0, 10).join(', ')}`,
        { reason: 'BAD_NAMES', missing },
      );
    }
    names = Array.from({ length: entries.length }, (_, i) => byIndex.get(i)!);
  } else {
    throw invalid('data.yaml names must be a list or a map {0: name, …}', { reason: 'BAD_NAMES' });
  }
  if (names.length === 0) throw invalid('data.yaml names is empty', { reason: 'BAD_NAMES' });
  const blank = names.findIndex((n) => n.trim() === '');
  if (blank >= 0) throw invalid(`data.yaml names: class ${blank} has an empty name`, { reason: 'BAD_NAMES' });
  if (nc !== undefined && nc !== null && nc !== names.length) {
    throw invalid(`data.yaml says nc: ${String(nc)} but lists ${names.length} names`, { reason: 'NC_MISMATCH' });
  }
  return names;
}

const isIndex = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/**
 * A pose dataset's keypoint keys. kpt_shape [K, D] is required, K ≥ 1 and D 2 (x y) or 3
 * (x y visibility), as Ultralytics requires. flip_idx, when given, must be a permutation of
 * 0..K-1: Ultralytics only checks its length, and a wrong index fails mid-training or
 * silently swaps keypoints (stricter here). kpt_names is only metadata: a malformed one is
 * dropped with a warning rather than failing the job.
 */
export function parseKeypoints(data: Record<string, unknown>, nc: number, shown: string, warnings: string[]): Keypoints {
  const raw = data.kpt_shape;
  if (raw === undefined || raw === null) {
    throw invalid(
      `${shown} has no kpt_shape: a pose dataset declares its keypoints as kpt_shape: [K, D] (K keypoints per object, D = 2 for x y or 3 for x y visibility), e.g. kpt_shape: [17, 3]`,
      { reason: 'BAD_KPT_SHAPE' },
    );
  }
  if (!Array.isArray(raw) || raw.length !== 2 || !isIndex(raw[0]) || raw[0] < 1 || (raw[1] !== 2 && raw[1] !== 3)) {
    throw invalid(
      `${shown}: kpt_shape must be [K, D] with K ≥ 1 keypoints and D = 2 (x y) or 3 (x y visibility); got ${JSON.stringify(raw)}`,
      { reason: 'BAD_KPT_SHAPE' },
    );
  }
  const nk = raw[0];
  const keypoints: Keypoints = { kpt_shape: [nk, raw[1]] };

  const flip = data.flip_idx;
  if (flip === undefined || flip === null || (Array.isArray(flip) && flip.length === 0)) {
    warnings.push(
      `${shown} has no flip_idx: Ultralytics turns off left-right flip augmentation for keypoints (add flip_idx: the index each keypoint takes in a mirrored image)`,
    );
  } else {
    const seen = new Set<number>();
    const ok =
      Array.isArray(flip) &&
      flip.length === nk &&
      flip.every((i) => isIndex(i) && i < nk && !seen.has(i) && seen.add(i));
    if (!ok) {
      throw invalid(
        `${shown}: flip_idx must list each keypoint index 0..${nk - 1} exactly once (${nk} entries, kpt_shape [${nk}, ${raw[1]}]); got ${JSON.stringify(flip).slice(0, 200)}`,
        { reason: 'BAD_FLIP_IDX' },
      );
    }
    keypoints.flip_idx = flip as number[];
  }

  const names = data.kpt_names;
  if (names !== undefined && names !== null) {
    const list = (v: unknown) => Array.isArray(v) && v.length === nk && v.every((n) => typeof n === 'string' || typeof n === 'number');
    let byClass: Record<number, string[]> | null = null;
    if (list(names)) {
      // One list for every class.
      byClass = Object.fromEntries(Array.from({ length: nc }, (_, c) => [c, (names as unknown[]).map(String)]));
    } else if (typeof names === 'object' && !Array.isArray(names)) {
      const entries = Object.entries(names as Record<string, unknown>);
      if (entries.every(([k, v]) => /^\d+$/.test(k) && Number(k) < nc && list(v))) {
        byClass = Object.fromEntries(entries.map(([k, v]) => [Number(k), (v as unknown[]).map(String)]));
      }
    }
    if (byClass) keypoints.kpt_names = byClass;
    else warnings.push(`${shown}: kpt_names was ignored (expected {class index: [${nk} keypoint names]})`);
  }
  return keypoints;
}

const inside = (root: string, p: string) => p === root || p.startsWith(root + path.sep);

/**
 * One split entry to an absolute folder inside the dataset, the way Ultralytics resolves it
 * (relative to the dataset root; a leading `../` that leads nowhere is dropped, which is what
 * makes Roboflow's `../train/images` work). Absolute paths from the author's machine
 * (/content/…, C:\…) are re-rooted by their longest tail that exists here.
 */
async function resolveSplitDir(item: string, base: string, yamlDir: string, root: string): Promise<string | null> {
  const rel = item.replace(/\\/g, '/');
  const candidates: string[] = [];
  if (path.isAbsolute(rel) || /^[a-zA-Z]:\//.test(rel)) {
    const parts = rel.replace(/^[a-zA-Z]:/, '').split('/').filter(Boolean);
    for (let i = 0; i < parts.length; i++) candidates.push(path.join(base, ...parts.slice(i)));
  } else {
    candidates.push(path.resolve(base, rel), path.resolve(yamlDir, rel));
    if (rel.startsWith('../')) candidates.push(path.resolve(base, rel.slice(3)), path.resolve(yamlDir, rel.slice(3)));
  }
  for (const c of candidates) if (inside(root, c) && (await isDir(c))) return c;
  return null;
}

export async function readLayout(extractDir: string, task: LabelTask = 'detect'): Promise<DatasetLayout> {
  const root = path.resolve(extractDir);
  const yamlPath = await findDataYaml(root);
  const yamlDir = path.dirname(yamlPath);
  const shown = path.relative(root, yamlPath);
  let doc: unknown;
  try {
    // The yaml library caps alias expansion (billion laughs) by default.
    doc = YAML.parse(await readFile(yamlPath, 'utf8'));
  } catch (err) {
    throw invalid(`${shown} is not valid YAML: ${(err as Error).message.split('\n')[0]}`, { reason: 'BAD_YAML', file: shown });
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
    throw invalid(`${shown} must be a YAML mapping with train, val and names`, { reason: 'BAD_YAML', file: shown });
  }
  const data = doc as Record<string, unknown>;
  const warnings: string[] = [];
  if ('download' in data) warnings.push(`${shown}: the download key was ignored (it is never run)`);
  if (data.val === undefined && data.validation !== undefined) data.val = data.validation;

  // `path` is the dataset root in Ultralytics. Relative and present here: from the yaml's
  // folder. Absolute, or not in the archive: it names the author's machine (/content/… in
  // Colab, `coco8` under Ultralytics' datasets dir), so the yaml's folder is the root. Not
  // worth a warning: that is how most exports look, and a split that then cannot be found
  // fails loudly below.
  let base = yamlDir;
  if (typeof data.path === 'string' && data.path.trim() !== '') {
    const p = data.path.trim();
    const candidate = path.resolve(yamlDir, p);
    if (!path.isAbsolute(p) && inside(root, candidate) && (await isDir(candidate))) base = candidate;
  }

  const names = parseNames(data.names, data.nc);
  const keypoints = task === 'pose' ? parseKeypoints(data, names.length, shown, warnings) : undefined;
  const splits: DatasetLayout['splits'] = { train: [], val: [] };
  for (const split of SPLITS) {
    const value = data[split];
    if (value === undefined || value === null || value === '') {
      if (split !== 'test') {
        throw invalid(`${shown} has no ${split} split (add "${split}: <images folder>")`, { reason: 'MISSING_SPLIT', split });
      }
      continue;
    }
    const items = Array.isArray(value) ? value : [value];
    const dirs: string[] = [];
    for (const raw of items) {
      if (typeof raw !== 'string' || raw.trim() === '') {
        throw invalid(`${shown}: ${split} must be a folder path or a list of them`, { reason: 'BAD_SPLIT', split });
      }
      const item = raw.trim();
      if (/\.txt$/i.test(item) && !(await isDir(path.resolve(base, item)))) {
        throw invalid(`${shown}: ${split}: "${item}": image lists in .txt files are not supported; point ${split} at an images folder`, {
          reason: 'BAD_SPLIT',
          split,
        });
      }
      const dir = await resolveSplitDir(item, base, yamlDir, root);
      if (!dir) {
        if (split === 'test') {
          warnings.push(`${shown} names a test split "${item}" that is not in the archive; it was ignored`);
          continue;
        }
        throw invalid(`${shown}: the ${split} folder "${item}" is not in the archive`, { reason: 'MISSING_SPLIT', split, path: item });
      }
      if (!dirs.includes(dir)) dirs.push(dir);
    }
    if (split === 'test') {
      if (dirs.length) splits.test = dirs;
    } else {
      splits[split] = dirs;
    }
  }
  return { root: base, dataYaml: shown, names, splits, ...(keypoints ? { keypoints } : {}), warnings };
}

/** The data.yaml the worker gets: absolute paths, names as a list, nc, the keypoint keys of a pose dataset; nothing else. */
export function renderDataYaml(layout: DatasetLayout): string {
  const one = (dirs: string[]) => (dirs.length === 1 ? dirs[0]! : dirs);
  const doc: Record<string, unknown> = {
    path: layout.root,
    train: one(layout.splits.train),
    val: one(layout.splits.val),
  };
  if (layout.splits.test?.length) doc.test = one(layout.splits.test);
  doc.nc = layout.names.length;
  doc.names = layout.names;
  const kp = layout.keypoints;
  if (kp) {
    doc.kpt_shape = [...kp.kpt_shape];
    if (kp.flip_idx) doc.flip_idx = kp.flip_idx;
    if (kp.kpt_names) doc.kpt_names = kp.kpt_names;
  }
  return YAML.stringify(doc);
}
