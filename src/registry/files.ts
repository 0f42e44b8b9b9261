/**
 * Where registry files live: workdir/models/<model id>/ holds the registered weights (under the
 * name the worker gave them: best.pt, checkpoint_best_total.pth…) and their exports. Ids are
 * UUIDs and file names come from rows, never from a request path, so nothing here can be
 * steered outside that folder.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { storageKey } from '../storage/index.js';

const ID_RE = /^[\w-]{1,100}$/;

export function modelsRoot(workdir: string): string {
  return path.join(workdir, 'models');
}

export function modelDir(workdir: string, id: string): string {
  if (!ID_RE.test(id)) throw new Error(`invalid model id ${JSON.stringify(id)}`);
  return path.join(modelsRoot(workdir), id);
}

export async function sha256File(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  await pipeline(fs.createReadStream(file), hash);
  return hash.digest('hex');
}

/** Copies through a temporary name, so a crash never leaves a half-written model in place. */
export async function copyAtomic(src: string, dest: string): Promise<void> {
  await fs.promises.mkdir(path.dirname(dest), { recursive: true });
  const tmp = `${dest}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  try {
    await fs.promises.copyFile(src, tmp);
    await fs.promises.rename(tmp, dest);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true });
    throw err;
  }
}

/** A file of a model, when it exists inside the model's folder (symlinks resolved); else null. */
export function openableModelFile(workdir: string, id: string, fileName: string): { path: string; size: number } | null {
  if (!/^[\w.-]{1,200}$/.test(fileName) || fileName.startsWith('.')) return null;
  try {
    const root = fs.realpathSync(modelDir(workdir, id));
    const real = fs.realpathSync(path.join(root, fileName));
    if (!real.startsWith(root + path.sep)) return null;
    const st = fs.statSync(real);
    return st.isFile() ? { path: real, size: st.size } : null;
  } catch {
    return null;
  }
}

/** A model's file in storage: `models/<model id>/<file name>` (as in the workdir). */
export function modelFileKey(id: string, fileName: string): string {
  if (!ID_RE.test(id)) throw new Error(`invalid model id ${JSON.stringify(id)}`);
  return storageKey('models', id, fileName);
}

export function modelPrefix(id: string): string {
  return `${storageKey('models', id)}/`;
}
