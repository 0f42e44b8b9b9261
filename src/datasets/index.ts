/**
 * A job's dataset, from URL to what the worker trains on:
 * download (jobDir/dataset.zip) → extract (jobDir/dataset/) → delete the ZIP → check it in the
 * format the job's engine trains on → write what the worker reads and jobDir/dataset-info.json.
 *   yolo      data.yaml found and resolved, every image and label checked for the task, and a
 *             normalized jobDir/data.yaml written;
 *   classify  no data.yaml: the class folders are found and checked (classify.ts), and the
 *             worker gets the folder holding train/ and val/;
 *   coco      an annotation JSON per split folder (coco.ts); the worker gets the folder holding
 *             train/ and valid/.
 *
 * dataset-info.json is written last and atomically: it is the marker that the dataset is
 * ready. A job resumed after a restart finds it and skips the whole pipeline (the ZIP is gone
 * by then, and the download URL may have expired).
 */
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Dispatcher } from 'undici';
import type { Config } from '../core/config.js';
import { JobError } from '../core/errors.js';
import { checkDataset, type DatasetInfo, type DatasetTask } from './check.js';
import { checkClassifyDataset, readClassifyLayout } from './classify.js';
import { checkCocoDataset, looksLikeCoco, readCocoLayout } from './coco.js';
import { downloadToFile } from './download.js';
import { extractZip, zipDeclaredSize } from './extract.js';
import type { DatasetFormat } from './formats.js';
import type { LabelTask } from './labels.js';
import { readLayout, renderDataYaml } from './layout.js';

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
};

export type PrepareOptions = {
  dispatcher: Dispatcher;
  limits: Config['dataset'];
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
};

const MARKER = 'dataset-info.json';
const MARKER_VERSION = 1;

export function datasetPaths(jobDir: string) {
  return {
    zip: path.join(jobDir, 'dataset.zip'),
    extracted: path.join(jobDir, 'dataset'),
    dataYaml: path.join(jobDir, 'data.yaml'),
    marker: path.join(jobDir, MARKER),
  };
}

const inside = (root: string, p: string) => p === root || p.startsWith(root + path.sep);

type Marker = { version?: number; format?: DatasetFormat; data?: string; info?: DatasetInfo; warnings?: string[] };

/** What a job's dataset step prepared, when it finished (its marker and files are there); else null. */
export async function readPrepared(jobDir: string): Promise<PreparedDataset | null> {
  const p = datasetPaths(jobDir);
  try {
    const stored = JSON.parse(await readFile(p.marker, 'utf8')) as Marker;
    if (stored.version !== MARKER_VERSION || !stored.info) return null;
    // Markers written before classify existed have no format: they are yolo datasets.
    const format = stored.format ?? 'yolo';
    // Stored relative to the job folder, so a moved work directory still resolves.
    const data = format !== 'yolo' && stored.data ? path.resolve(jobDir, stored.data) : p.dataYaml;
    if (format !== 'yolo' && !inside(p.extracted, data)) return null;
    await Promise.all([stat(data), stat(p.extracted)]);
    return { data, format, dataYaml: format === 'yolo' ? p.dataYaml : null, info: stored.info, warnings: stored.warnings ?? [] };
  } catch {
    return null;
  }
}

export async function prepareDataset(
  dataset: { url: string; sha256?: string | null | undefined; format?: DatasetFormat | undefined },
  jobDir: string,
  opts: PrepareOptions,
): Promise<PreparedDataset> {
  const ready = await readPrepared(jobDir);
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
  // A half-done earlier attempt (crash mid-way) starts over from a clean slate.
  await Promise.all([rm(p.zip, { force: true }), rm(`${p.zip}.part`, { force: true }), rm(p.extracted, { recursive: true, force: true })]);
  const { limits } = opts;

  progress(0);
  try {
    await downloadToFile(dataset.url, p.zip, {
      dispatcher: opts.dispatcher,
      maxBytes: limits.maxDownloadBytes,
      timeoutMs: limits.downloadTimeoutMs,
      retries: limits.downloadRetries,
      sha256: dataset.sha256 ?? undefined,
      signal: opts.signal,
      backoffMs: opts.backoffMs,
      beforeBody: async (total) => {
        if (total !== null) await opts.checkSpace?.('download', total);
      },
      onProgress: (bytes, total) => {
        if (total) progress((0.8 * bytes) / total);
      },
    });
    progress(0.8);
    if (opts.checkSpace) await opts.checkSpace('extract', (await zipDeclaredSize(p.zip)).uncompressedBytes);
    try {
      await extractZip(p.zip, p.extracted, limits, {
        signal: opts.signal,
        onProgress: (done, total) => progress(0.8 + (0.1 * done) / Math.max(1, total)),
      });
    } catch (err) {
      // A refused or broken archive leaves nothing worth keeping (it may be a bomb's first GBs).
      await rm(p.extracted, { recursive: true, force: true });
      throw err;
    }
  } finally {
    await rm(p.zip, { force: true });
  }
  progress(0.9);

  // From here on, a failure leaves jobDir/dataset in place so the user's files can be looked at.
  const checkOpts = {
    displayRoot: p.extracted,
    signal: opts.signal,
    onProgress: (done: number, total: number) => progress(0.9 + (0.1 * done) / Math.max(1, total)),
  };
  let prepared: PreparedDataset;
  const format = await chooseFormat(dataset.format, opts.formats, p.extracted);
  if (format === 'coco') {
    const layout = await readCocoLayout(p.extracted);
    const info = await checkCocoDataset(layout, { ...checkOpts, task: opts.task });
    prepared = { data: layout.root, format, dataYaml: null, info, warnings: info.warnings };
  } else if (format === 'classify') {
    const layout = await readClassifyLayout(p.extracted);
    const info = await checkClassifyDataset(layout, checkOpts);
    prepared = { data: layout.root, format, dataYaml: null, info, warnings: info.warnings };
  } else {
    const task = labelTask(opts.task);
    const layout = await readLayout(p.extracted, task);
    const info = await checkDataset(layout, { ...checkOpts, task });
    if (opts.signal?.aborted) throw new JobError('CANCELLED', 'dataset preparation cancelled');
    await writeFile(p.dataYaml, renderDataYaml(layout));
    prepared = { data: p.dataYaml, format, dataYaml: p.dataYaml, info, warnings: info.warnings };
  }
  if (opts.signal?.aborted) throw new JobError('CANCELLED', 'dataset preparation cancelled');

  const tmp = `${p.marker}.tmp`;
  const marker: Marker = { version: MARKER_VERSION, format: prepared.format, data: path.relative(jobDir, prepared.data), info: prepared.info, warnings: prepared.warnings };
  await writeFile(tmp, JSON.stringify(marker, null, 2));
  await rename(tmp, p.marker);
  progress(1);
  return prepared;
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
