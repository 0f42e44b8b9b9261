/**
 * Turns an engine's base model source into something its worker can load without the internet:
 * a file under workdir/base-models/ (fetched by the service when it knows where from), a
 * registered model's weights, a folder placed by hand, a Hugging Face Hub snapshot downloaded once
 * (hub-snapshot.ts), a name the engine builds itself, or nothing (random initialisation). Workers never download weights: a file that cannot be had fails here, fast,
 * with MODEL_DOWNLOAD_FAILED naming the URL tried and where the file may be placed.
 *
 * Downloads go through the guarded downloader (SSRF guard, size cap, retries), once: jobs that
 * ask for the same file at the same time share one download, and later jobs reuse the file.
 * BASE_MODEL_MIRROR=<prefix> fetches `<prefix><name>` instead of the official URL, for sites
 * without internet. A pinned sha256 is checked on every use, cached or not.
 *
 * Before a file is first used, the engine checks that it loads (an HTML error page saved under a
 * weight's name must not poison every later job) and says which task it was built for; the
 * answer is kept beside the file (`<file>.check.json`, keyed by its sha256), so later jobs do not
 * pay for the check. A file that does not load is removed when trainhook downloaded it.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Dispatcher } from 'undici';
import { modelFolder } from '../engines/model-folder.js';
import { JobError } from '../core/errors.js';
import { downloadToFile } from '../datasets/download.js';
import type { BaseModelSource } from '../engines/types.js';
import { sha256File } from '../registry/files.js';
import { hubSnapshot, type HubOptions } from './hub-snapshot.js';

export interface BaseModelOptions {
  workdir: string;
  /** The job's task: a file built for another one is refused. */
  task: string;
  /** The engine's check of a weights file: the task it was built for; throws a JobError when it does not load. */
  check?: (file: string) => Promise<{ task: string }>;
  dispatcher: Dispatcher;
  maxBytes: number;
  timeoutMs: number;
  retries: number;
  mirror?: string | undefined;
  /** The folder of local model directories (HF_MODELS_DIR): a 'directory' source is a folder in it. */
  modelDirs?: string | undefined;
  signal?: AbortSignal;
  /** The Hugging Face Hub (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE, the snapshot byte cap), for a 'hub' source. */
  hub?: Pick<HubOptions, 'endpoint' | 'token' | 'offline' | 'maxBytes'> | undefined;
  /** The disk pre-flight for a download, with the bytes about to be written. */
  checkSpace?: ((bytes: number) => Promise<void>) | undefined;
  /** The weights file of a registered model of this engine, or a message why it cannot be used. */
  registered(id: string): Promise<string | { problem: string }>;
}

export interface ResolvedBaseModel {
  /** What the worker gets as spec.model. */
  model: string | null;
  /** Where it came from (a URL, model:<id>, a file placed by hand, a built-in name). */
  source: string | null;
  sha256: string | null;
}

export function baseModelsDir(workdir: string): string {
  return path.join(workdir, 'base-models');
}

/** Downloads and checks in flight on this node, by file: a second job waits for the first's. */
const inFlight = new Map<string, Promise<unknown>>();

function once<T>(key: string, work: () => Promise<T>): Promise<T> {
  let running = inFlight.get(key) as Promise<T> | undefined;
  if (!running) {
    running = work().finally(() => inFlight.delete(key));
    inFlight.set(key, running);
  }
  return running;
}

async function fetchFile(url: string, dest: string, opts: BaseModelOptions): Promise<void> {
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  await downloadToFile(url, dest, {
    dispatcher: opts.dispatcher,
    maxBytes: opts.maxBytes,
    timeoutMs: opts.timeoutMs,
    retries: opts.retries,
    signal: opts.signal,
    errorCode: 'MODEL_DOWNLOAD_FAILED',
  });
}

/** The task a file was built for: from its check record when its sha256 still matches, else checked now. */
async function checkedTask(file: string, sha256: string, opts: BaseModelOptions): Promise<string | null> {
  if (!opts.check) return null;
  const record = `${file}.check.json`;
  try {
    const stored = JSON.parse(fs.readFileSync(record, 'utf8')) as { sha256?: string; task?: string };
    if (stored.sha256 === sha256 && typeof stored.task === 'string') return stored.task;
  } catch {
    /* no record yet */
  }
  const { task } = await opts.check(file);
  const tmp = `${record}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ sha256, task, checked_at: new Date().toISOString() }));
  fs.renameSync(tmp, record);
  return task;
}

export async function resolveBaseModel(source: BaseModelSource, opts: BaseModelOptions): Promise<ResolvedBaseModel> {
  switch (source.kind) {
    case 'none':
      return { model: null, source: null, sha256: null };
    case 'directory': {
      const dir = modelFolder(opts.modelDirs ?? path.join(opts.workdir, 'hf-models'), source.name);
      if (!dir) {
        throw new JobError('MODEL_DOWNLOAD_FAILED', `base model ${JSON.stringify(source.name)} is not a folder name`, { base_model: source.name });
      }
      if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
        throw new JobError(
          'MODEL_DOWNLOAD_FAILED',
          `base model ${source.name} is not on this server: place its save_pretrained folder (config.json, weights, tokenizer) at ${dir}`,
          { base_model: source.name, expected_path: dir },
        );
      }
      return { model: dir, source: dir, sha256: null };
    }
    case 'hub': {
      if (!opts.hub) throw new JobError('MODEL_DOWNLOAD_FAILED', `base model ${source.repo}@${source.revision}: this server has no Hugging Face Hub set up`, { base_model: source.repo });
      const snapshot = await hubSnapshot(source, {
        ...opts.hub,
        workdir: opts.workdir,
        dispatcher: opts.dispatcher,
        timeoutMs: opts.timeoutMs,
        retries: opts.retries,
        signal: opts.signal,
        checkSpace: opts.checkSpace,
      });
      return { model: snapshot.dir, source: `${opts.hub.endpoint}/${source.repo}@${snapshot.sha ?? source.revision}`, sha256: null };
    }
    case 'builtin': {
      // A file of that name placed by hand wins over the engine's own (a customised architecture).
      const local = path.join(baseModelsDir(opts.workdir), source.value);
      if (!source.value.includes('/') && fs.existsSync(local)) return { model: local, source: local, sha256: await sha256File(local) };
      return { model: source.value, source: 'builtin', sha256: null };
    }
    case 'registered': {
      const file = await opts.registered(source.id);
      if (typeof file !== 'string') {
        throw new JobError('MODEL_DOWNLOAD_FAILED', file.problem, { base_model: `model:${source.id}` });
      }
      return { model: file, source: `model:${source.id}`, sha256: await sha256File(file) };
    }
    case 'file': {
      const dest = path.join(baseModelsDir(opts.workdir), source.file);
      const url = opts.mirror && source.mirrorName ? `${opts.mirror}${source.mirrorName}` : source.url;
      const { sha256, task } = await once(dest, async () => {
        let downloaded = false;
        if (!fs.existsSync(dest)) {
          if (!url) {
            throw new JobError(
              'MODEL_DOWNLOAD_FAILED',
              `base model ${source.file} is not on this server: place the file at ${dest}, or name a model this engine can download`,
              { base_model: source.file, expected_path: dest },
            );
          }
          try {
            await fetchFile(url, dest, opts);
            downloaded = true;
          } catch (err) {
            if (err instanceof JobError) {
              throw new JobError(
                'MODEL_DOWNLOAD_FAILED',
                `could not download base model ${source.file} from ${url} (${err.message}); place the file at ${dest}${opts.mirror ? '' : ', or set BASE_MODEL_MIRROR to a server that has it'}`,
                { base_model: source.file, url, expected_path: dest, cause: err.details ?? null },
                { cause: err },
              );
            }
            throw err;
          }
        }
        const digest = await sha256File(dest);
        try {
          return { sha256: digest, task: await checkedTask(dest, digest, opts) };
        } catch (err) {
          // What we fetched is not a model: keep no copy for the next job to trip on.
          if (downloaded) fs.rmSync(dest, { force: true });
          throw err;
        }
      });
      if (source.sha256 && sha256 !== source.sha256) {
        throw new JobError('MODEL_DOWNLOAD_FAILED', `base model ${source.file} has sha256 ${sha256}, not the pinned ${source.sha256}`, {
          base_model: source.file,
          path: dest,
          sha256,
          expected_sha256: source.sha256,
        });
      }
      if (task !== null && task !== opts.task) {
        throw new JobError('MODEL_DOWNLOAD_FAILED', `base model ${source.file} is a ${task} model; this job's task is ${opts.task}`, {
          base_model: source.file,
          path: dest,
          model_task: task,
        });
      }
      return { model: dest, source: url ?? dest, sha256 };
    }
  }
}
