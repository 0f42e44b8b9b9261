/**
 * A job's dataset, from URL to what the worker trains on:
 * download (jobDir/dataset.zip) → extract (jobDir/dataset/) → delete the ZIP → find which of
 * the engine's formats the archive is in → check every image and label → write what the worker
 * reads (for YOLO: jobDir/data.yaml, normalized) and jobDir/dataset-info.json.
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
import { checkDataset, type DatasetInfo } from './check.js';
import { downloadToFile } from './download.js';
import { extractZip } from './extract.js';
import type { DatasetFormat } from './formats.js';
import type { LabelTask } from './labels.js';
import { readLayout, renderDataYaml } from './layout.js';

export type { DatasetInfo } from './check.js';

/** What the worker trains on: `data` is a normalized data.yaml (yolo) or a dataset folder. */
export type PreparedDataset = { data: string; format: DatasetFormat; info: DatasetInfo; warnings: string[] };

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
};

const MARKER = 'dataset-info.json';
const MARKER_VERSION = 2;

export function datasetPaths(jobDir: string) {
  return {
    zip: path.join(jobDir, 'dataset.zip'),
    extracted: path.join(jobDir, 'dataset'),
    dataYaml: path.join(jobDir, 'data.yaml'),
    marker: path.join(jobDir, MARKER),
  };
}

async function readPrepared(jobDir: string): Promise<PreparedDataset | null> {
  const p = datasetPaths(jobDir);
  try {
    const stored = JSON.parse(await readFile(p.marker, 'utf8')) as {
      version?: number;
      info?: DatasetInfo;
      warnings?: string[];
      data?: string;
      format?: DatasetFormat;
    };
    // Version 1 markers were written for YOLO datasets only, before the format was recorded.
    if (stored.version === 1 && stored.info) return { data: p.dataYaml, format: 'yolo', info: stored.info, warnings: stored.warnings ?? [] };
    if (stored.version !== MARKER_VERSION || !stored.info || !stored.data || !stored.format) return null;
    await Promise.all([stat(stored.data), stat(p.extracted)]);
    return { data: stored.data, format: stored.format, info: stored.info, warnings: stored.warnings ?? [] };
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
      onProgress: (bytes, total) => {
        if (total) progress((0.8 * bytes) / total);
      },
    });
    progress(0.8);
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
  const format = chooseFormat(dataset.format, opts.formats);
  const checkProgress = (done: number, total: number) => progress(0.9 + (0.1 * done) / Math.max(1, total));
  let prepared: PreparedDataset;
  switch (format) {
    case 'yolo': {
      const layout = await readLayout(p.extracted);
      const info = await checkDataset(layout, {
        task: yoloTask(opts.task),
        displayRoot: p.extracted,
        signal: opts.signal,
        onProgress: checkProgress,
      });
      if (opts.signal?.aborted) throw new JobError('CANCELLED', 'dataset preparation cancelled');
      await writeFile(p.dataYaml, renderDataYaml(layout));
      prepared = { data: p.dataYaml, format, info, warnings: info.warnings };
      break;
    }
    default:
      throw new JobError('DATASET_INVALID', `the ${format} dataset format is not supported by this server yet`, { format });
  }
  const tmp = `${p.marker}.tmp`;
  await writeFile(tmp, JSON.stringify({ version: MARKER_VERSION, ...prepared }, null, 2));
  await rename(tmp, p.marker);
  progress(1);
  return prepared;
}

/** The format to check: the one the request names (when the engine takes it), else the engine's first. */
function chooseFormat(requested: DatasetFormat | undefined, accepted: readonly DatasetFormat[]): DatasetFormat {
  if (requested) {
    if (!accepted.includes(requested)) {
      throw new JobError('DATASET_INVALID', `dataset.format ${requested} is not one this job's engine trains on (${accepted.join(', ')})`, {
        format: requested,
        accepted,
      });
    }
    return requested;
  }
  return accepted[0]!;
}

function yoloTask(task: string): LabelTask {
  if (task === 'detect' || task === 'segment') return task;
  throw new JobError('DATASET_INVALID', `a YOLO label layout has no rules for task ${task}`, { task });
}
