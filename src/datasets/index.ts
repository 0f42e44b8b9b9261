/**
 * A job's dataset, from URL (or an uploaded archive) to what the worker trains on:
 * download (workdir/datasets/.tmp/) → extract into the shared store by the archive's sha256
 * (store.ts: once per archive, whatever the number of jobs) → check it in the format the job's
 * engine trains on (once per archive, format and task: the result is stored beside it) →
 * write what the worker reads into the job's folder and jobDir/dataset-info.json.
 *   yolo      data.yaml found and resolved, every image and label checked for the task, and a
 *             normalized jobDir/data.yaml written (pointing into the store);
 *   classify  no data.yaml: the class folders are found and checked (classify.ts), and the
 *             worker gets the folder holding train/ and val/;
 *   coco      an annotation JSON per split folder (coco.ts); the worker gets the folder holding
 *             train/ and valid/.
 *   jsonl     text samples (jsonl.ts): every line checked; the worker gets the folder holding
 *             train.jsonl and val.jsonl, or data.jsonl.
 *
 * The job's folder refers to the store: dataset-info.json names the archive's sha256 and the
 * data path relative to the job folder. It is written last and atomically: it is the marker that
 * the dataset is ready. A job resumed after a restart finds it and skips the whole pipeline
 * (the download URL may have expired by then).
 */
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Dispatcher } from 'undici';
import type { Config } from '../core/config.js';
import { JobError } from '../core/errors.js';
import { checkDataset, type DatasetInfo, type DatasetTask } from './check.js';
import { checkClassifyDataset, readClassifyLayout } from './classify.js';
import { checkCocoDataset, looksLikeCoco, readCocoLayout } from './coco.js';
import { downloadToFile, type Validators } from './download.js';
import { zipDeclaredSize } from './extract.js';
import type { DatasetFormat } from './formats.js';
import { checkJsonlDataset, readJsonlLayout } from './jsonl.js';
import type { LabelTask } from './labels.js';
import { readLayout, renderDataYaml, type DatasetLayout } from './layout.js';
import type { DatasetStore } from './store.js';

export type { DatasetInfo, DatasetTask } from './check.js';
export type { DatasetFormat } from './formats.js';

export type PreparedDataset = {
  /** What the worker passes to Ultralytics as data=: the normalized data.yaml, or for classify the folder holding train/ and val/. */
  data: string;
  format: DatasetFormat;
  /** The normalized data.yaml; null for classify, which has none. */
  dataYaml: string | null;
  info: DatasetInfo;
  warnings: string[];
  /** The archive in the shared store (null for a job prepared before the store existed). */
  sha256: string | null;
};

/** Where a job's dataset comes from: a URL, or an archive already in the store (an upload). */
export type DatasetSource =
  | { url: string; sha256?: string | null | undefined; format?: DatasetFormat | undefined }
  | { stored: string; format?: DatasetFormat | undefined };

export type PrepareOptions = {
  dispatcher: Dispatcher;
  limits: Config['dataset'];
  store: DatasetStore;
  /** The formats the job's engine trains this task on, in order of preference. */
  formats: readonly DatasetFormat[];
  task: string;
  signal?: AbortSignal;
  /** 0→1 over the whole preparation: download 0–0.8, extraction 0.8–0.9, check 0.9–1. */
  onPhaseProgress?: (fraction: number) => void;
  /** Retry backoff base for the download (tests shorten it). */
  backoffMs?: number;
  /**
   * Asked before each step that fills the disk, with the bytes it is about to write: the
   * archive's Content-Length before its body is read ('download'; not called without one), the
   * sum of the central directory's uncompressed sizes before extraction ('extract'). A JobError
   * it throws ends the preparation there.
   */
  checkSpace?: (stage: 'download' | 'extract', bytes: number) => Promise<void>;
  /**
   * Called once the archive is in the store, before it is checked, while the store keeps it:
   * the job records which archive it uses, so that retention never removes it under the job.
   */
  onArchive?: (sha256: string) => Promise<void>;
};

const MARKER = 'dataset-info.json';
/** 1: the dataset was extracted into the job's folder; 2: it lives in the shared store. */
const MARKER_VERSION = 2;
/** Bumped when what a check decides changes: older stored results are then not reused. */
const CHECK_VERSION = 1;

export function datasetPaths(jobDir: string) {
  return {
    extracted: path.join(jobDir, 'dataset'),
    dataYaml: path.join(jobDir, 'data.yaml'),
    marker: path.join(jobDir, MARKER),
  };
}

const inside = (root: string, p: string) => p === root || p.startsWith(root + path.sep);

type Marker = { version?: number; format?: DatasetFormat; data?: string; info?: DatasetInfo; warnings?: string[]; sha256?: string };

/** What a job's dataset step prepared, when it finished (its marker and files are there); else null. */
export async function readPrepared(jobDir: string, store: DatasetStore): Promise<PreparedDataset | null> {
  const p = datasetPaths(jobDir);
  try {
    const stored = JSON.parse(await readFile(p.marker, 'utf8')) as Marker;
    if ((stored.version !== 1 && stored.version !== MARKER_VERSION) || !stored.info) return null;
    // Markers written before classify existed have no format: they are yolo datasets.
    const format = stored.format ?? 'yolo';
    const sha256 = stored.version === MARKER_VERSION && stored.sha256 ? stored.sha256 : null;
    const root = sha256 ? store.filesDir(sha256) : p.extracted;
    // Stored relative to the job folder, so a moved work directory still resolves.
    const data = format !== 'yolo' && stored.data ? path.resolve(jobDir, stored.data) : p.dataYaml;
    if (format !== 'yolo' && !inside(root, data)) return null;
    await Promise.all([stat(data), stat(root)]);
    return { data, format, dataYaml: format === 'yolo' ? p.dataYaml : null, info: stored.info, warnings: stored.warnings ?? [], sha256 };
  } catch {
    return null;
  }
}

/** A check's result as stored beside the archive: paths relative to its files folder. */
type CheckedDataset = {
  format: DatasetFormat;
  info: DatasetInfo;
  warnings: string[];
  /** classify, coco: the folder the worker reads; yolo: the layout data.yaml is written from. */
  data: string;
  layout?: Omit<DatasetLayout, 'root' | 'splits'> & { splits: DatasetLayout['splits'] };
};

const rebase = (from: string, to: string, p: string) => path.resolve(to, path.relative(from, p));

/**
 * Gets the archive into the store (downloading it unless the store has it already) and
 * answers its sha256. Two jobs on the same URL at once share one download.
 */
async function fetchArchive(source: DatasetSource, opts: PrepareOptions, progress: (f: number) => void): Promise<string> {
  const { store, limits } = opts;
  if ('stored' in source) {
    if (!(await store.available(source.stored)) && !(await store.fetchRemote(source.stored, limits, { signal: opts.signal }))) {
      throw new JobError('DATASET_INVALID', 'the uploaded dataset is no longer stored (it was deleted); upload it again', { sha256: source.stored });
    }
    return source.stored;
  }
  if (source.sha256 && ((await store.available(source.sha256)) || (await store.fetchRemote(source.sha256, limits, { signal: opts.signal })))) return source.sha256;
  const { url } = source;
  return store.shared(`url:${url}\n${source.sha256 ?? ''}`, async () => {
    // The archive this URL gave before, unless the server says it changed (a 304 costs no body).
    let last = await store.lastFromUrl(url);
    if (last && source.sha256 && last.sha256 !== source.sha256) last = null;
    const zip = store.tmpPath('.zip');
    await mkdir(path.dirname(zip), { recursive: true });
    const download = (validators: Validators | undefined) =>
      downloadToFile(url, zip, {
        validators,
        dispatcher: opts.dispatcher,
        maxBytes: limits.maxDownloadBytes,
        timeoutMs: limits.downloadTimeoutMs,
        retries: limits.downloadRetries,
        sha256: source.sha256 ?? undefined,
        signal: opts.signal,
        backoffMs: opts.backoffMs,
        beforeBody: async (total) => {
          if (total !== null) await opts.checkSpace?.('download', total);
        },
        onProgress: (bytes, total) => {
          if (total) progress((0.8 * bytes) / total);
        },
      });
    let result = await download(last?.validators);
    if (result.notModified) {
      if (last && (await store.available(last.sha256))) return last.sha256;
      result = await download(undefined); // removed meanwhile: fetch it whole
    }
    const { sha256, validators } = result;
    progress(0.8);
    if (opts.checkSpace) await opts.checkSpace('extract', (await zipDeclaredSize(zip)).uncompressedBytes);
    await store.adopt(zip, sha256, limits, {
      signal: opts.signal,
      onProgress: (done, total) => progress(0.8 + (0.1 * done) / Math.max(1, total)),
    });
    await store.rememberUrl(url, sha256, validators);
    return sha256;
  });
}

/**
 * Checks an archive of the store in the format its job trains on (once per archive, format
 * and task; later callers get the stored result, a refusal included).
 */
export async function checkStored(
  sha256: string,
  opts: Pick<PrepareOptions, 'store' | 'formats' | 'task' | 'signal'> & { requested?: DatasetFormat | undefined; onProgress?: (done: number, total: number) => void },
): Promise<{ format: DatasetFormat; info: DatasetInfo; warnings: string[]; data: string; dataYamlText: string | null }> {
  const root = opts.store.filesDir(sha256);
  const key = `v${CHECK_VERSION}-${opts.requested ?? 'auto'}-${opts.formats.join('+')}-${opts.task}`;
  const checked = await opts.store.checked<CheckedDataset>(sha256, key, async () => {
    const checkOpts = { displayRoot: root, signal: opts.signal, onProgress: opts.onProgress };
    const format = await chooseFormat(opts.requested, opts.formats, root);
    let result: CheckedDataset;
    if (format === 'coco') {
      const layout = await readCocoLayout(root);
      const info = await checkCocoDataset(layout, { ...checkOpts, task: opts.task });
      result = { format, info, warnings: info.warnings, data: path.relative(root, layout.root) };
    } else if (format === 'jsonl') {
      const layout = await readJsonlLayout(root);
      const info = await checkJsonlDataset(layout, { task: opts.task, displayRoot: root, signal: opts.signal });
      result = { format, info, warnings: info.warnings, data: path.relative(root, layout.root) };
    } else if (format === 'classify') {
      const layout = await readClassifyLayout(root);
      const info = await checkClassifyDataset(layout, checkOpts);
      result = { format, info, warnings: info.warnings, data: path.relative(root, layout.root) };
    } else {
      const task = labelTask(opts.task);
      const layout = await readLayout(root, task);
      const info = await checkDataset(layout, { ...checkOpts, task });
      const rel = (dirs: string[]) => dirs.map((d) => path.relative(root, d));
      const splits = { train: rel(layout.splits.train), val: rel(layout.splits.val), ...(layout.splits.test ? { test: rel(layout.splits.test) } : {}) };
      const { root: layoutRoot, splits: _splits, ...rest } = layout;
      result = { format, info, warnings: info.warnings, data: path.relative(root, layoutRoot), layout: { ...rest, splits } };
    }
    if (opts.signal?.aborted) throw new JobError('CANCELLED', 'dataset preparation cancelled');
    return result;
  });
  const data = path.resolve(root, checked.data);
  let dataYamlText: string | null = null;
  if (checked.format === 'yolo' && checked.layout) {
    const abs = (dirs: string[]) => dirs.map((d) => path.resolve(root, d));
    const { splits } = checked.layout;
    dataYamlText = renderDataYaml({
      ...checked.layout,
      root: data,
      splits: { train: abs(splits.train), val: abs(splits.val), ...(splits.test ? { test: abs(splits.test) } : {}) },
    });
  }
  return { format: checked.format, info: checked.info, warnings: checked.warnings, data, dataYamlText };
}

export async function prepareDataset(source: DatasetSource, jobDir: string, opts: PrepareOptions): Promise<PreparedDataset> {
  const { store } = opts;
  const ready = await readPrepared(jobDir, store);
  if (ready) {
    opts.onPhaseProgress?.(1);
    return ready;
  }
  const p = datasetPaths(jobDir);
  // Never backwards: a retried download starts its byte count over, the user's bar should not.
  let shown = 0;
  const progress = (f: number) => {
    shown = Math.max(shown, Math.min(1, f));
    opts.onPhaseProgress?.(shown);
  };
  await mkdir(jobDir, { recursive: true });
  progress(0);
  const release = store.preparing();
  try {
    const sha256 = await fetchArchive(source, opts, progress);
    if (opts.signal?.aborted) throw new JobError('CANCELLED', 'dataset preparation cancelled');
    await opts.onArchive?.(sha256);
    progress(0.9);
    const checked = await checkStored(sha256, {
      store,
      formats: opts.formats,
      task: opts.task,
      signal: opts.signal,
      requested: source.format,
      onProgress: (done, total) => progress(0.9 + (0.1 * done) / Math.max(1, total)),
    });
    if (opts.signal?.aborted) throw new JobError('CANCELLED', 'dataset preparation cancelled');
    let data = checked.data;
    if (checked.dataYamlText !== null) {
      await writeFile(p.dataYaml, checked.dataYamlText);
      data = p.dataYaml;
    }
    const prepared: PreparedDataset = {
      data,
      format: checked.format,
      dataYaml: checked.dataYamlText !== null ? p.dataYaml : null,
      info: checked.info,
      warnings: checked.warnings,
      sha256,
    };
    const tmp = `${p.marker}.tmp`;
    const marker: Marker = {
      version: MARKER_VERSION,
      sha256,
      format: prepared.format,
      data: path.relative(jobDir, prepared.data),
      info: prepared.info,
      warnings: prepared.warnings,
    };
    await writeFile(tmp, JSON.stringify(marker, null, 2));
    await rename(tmp, p.marker);
    progress(1);
    return prepared;
  } finally {
    release();
  }
}

/**
 * The format to check: the one the request names (when the engine takes it); else, for an
 * engine that reads both YOLO and COCO, the one the archive looks like; else the engine's first.
 */
async function chooseFormat(requested: DatasetFormat | undefined, accepted: readonly DatasetFormat[], extracted: string): Promise<DatasetFormat> {
  if (requested) {
    if (!accepted.includes(requested)) {
      throw new JobError('DATASET_INVALID', `dataset.format ${requested} is not one this job's engine trains on (${accepted.join(', ')})`, {
        format: requested,
        accepted,
      });
    }
    return requested;
  }
  if (accepted.includes('coco') && accepted.length > 1 && (await looksLikeCoco(extracted))) return 'coco';
  return accepted[0]!;
}

const LABEL_TASKS: readonly string[] = ['detect', 'segment', 'pose', 'obb'] satisfies LabelTask[];

/** The label rules of a task in a YOLO layout. */
function labelTask(task: string): LabelTask {
  if (LABEL_TASKS.includes(task)) return task as LabelTask;
  throw new JobError('DATASET_INVALID', `a YOLO label layout has no rules for task ${task}`, { task });
}
