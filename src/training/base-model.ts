/**
 * Resolves a request's base_model to something the worker can load without the internet
 * (SPEC §5): a .pt under workdir/base-models/, an https URL fetched by the service (SSRF guard,
 * size cap) into that folder, a registered model (`model:<id>`, its workdir/models/<id>/best.pt),
 * or a model .yaml built from scratch. Ultralytics would try to
 * download a missing .pt from GitHub; we fail fast instead, naming where to put the file.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Dispatcher } from 'undici';
import { downloadToFile } from '../datasets/download.js';
import { JobError } from '../errors.js';
import { modelWeightsFile } from '../registry/files.js';

export interface BaseModelOptions {
  workdir: string;
  dispatcher: Dispatcher;
  maxBytes: number;
  timeoutMs: number;
  retries: number;
  signal?: AbortSignal;
}

export function baseModelsDir(workdir: string): string {
  return path.join(workdir, 'base-models');
}

export async function resolveBaseModel(baseModel: string, opts: BaseModelOptions): Promise<string> {
  const dir = baseModelsDir(opts.workdir);
  if (/^https:\/\//.test(baseModel)) {
    const name = `url-${crypto.createHash('sha256').update(baseModel).digest('hex').slice(0, 16)}.pt`;
    const dest = path.join(dir, name);
    if (fs.existsSync(dest)) return dest;
    fs.mkdirSync(dir, { recursive: true });
    await downloadToFile(baseModel, dest, {
      dispatcher: opts.dispatcher,
      maxBytes: opts.maxBytes,
      timeoutMs: opts.timeoutMs,
      retries: opts.retries,
      signal: opts.signal,
      errorCode: 'MODEL_DOWNLOAD_FAILED',
    });
    return dest;
  }
  // A registered model (src/registry): its weights live under workdir/models/<id>/.
  const registered = /^model:([\w-]{1,100})$/.exec(baseModel);
  if (registered) {
    const file = modelWeightsFile(opts.workdir, registered[1]!);
    if (fs.existsSync(file)) return file;
    throw new JobError('MODEL_DOWNLOAD_FAILED', `registered model ${registered[1]} not found (deleted, or registered on another node)`, {
      base_model: baseModel,
      expected_path: file,
    });
  }
  const local = path.join(dir, baseModel);
  if (fs.existsSync(local)) return local;
  // Architecture files (yolo11n.yaml, yolov8s-seg.yaml) ship inside Ultralytics: build from scratch.
  if (/\.ya?ml$/.test(baseModel)) return baseModel;
  throw new JobError(
    'MODEL_DOWNLOAD_FAILED',
    `base model ${baseModel} is not on this server: place the file at ${local}, pass an https URL, or use a model .yaml to train from scratch`,
    { base_model: baseModel, expected_path: local },
  );
}
