/**
 * Storage in a folder. By default that folder is the workdir, where every key already names the
 * file it stands for (`jobs/<id>/…`, `models/<id>/…`): `remote` is false and callers copy
 * nothing, so a single node behaves exactly as before storage existed. STORAGE_URL=file:///path
 * names another folder (a file system every node mounts): then it is remote like a bucket.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { storageKey, type Storage, type StoredObject } from './types.js';

export class LocalStorage implements Storage {
  readonly kind = 'local' as const;
  readonly location: string;

  constructor(
    readonly root: string,
    readonly remote: boolean,
  ) {
    this.location = path.resolve(root);
  }

  private file(key: string): string {
    return path.join(this.location, ...storageKey(key).split('/'));
  }

  private async writeThrough(key: string, write: (tmp: string) => Promise<void>): Promise<void> {
    const dest = this.file(key);
    await fs.promises.mkdir(path.dirname(dest), { recursive: true });
    const tmp = `${dest}.${crypto.randomBytes(6).toString('hex')}.tmp`;
    try {
      await write(tmp);
      await fs.promises.rename(tmp, dest);
    } catch (err) {
      await fs.promises.rm(tmp, { force: true });
      throw err;
    }
  }

  async putFile(key: string, file: string): Promise<void> {
    // The default storage is the workdir: a file put under its own key is already in place.
    if (path.resolve(file) === this.file(key)) return;
    await this.writeThrough(key, (tmp) => fs.promises.copyFile(file, tmp));
  }

  async putStream(key: string, body: Readable): Promise<void> {
    await this.writeThrough(key, (tmp) => pipeline(body, fs.createWriteStream(tmp)));
  }

  async getToFile(key: string, file: string): Promise<boolean> {
    const src = this.file(key);
    if (!fs.statSync(src, { throwIfNoEntry: false })?.isFile()) return false;
    if (path.resolve(file) === src) return true;
    await fs.promises.mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.${crypto.randomBytes(6).toString('hex')}.tmp`;
    try {
      await fs.promises.copyFile(src, tmp);
      await fs.promises.rename(tmp, file);
    } catch (err) {
      await fs.promises.rm(tmp, { force: true });
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    return true;
  }

  async getStream(key: string, range?: { start: number; end: number }): Promise<{ body: Readable; size: number } | null> {
    const src = this.file(key);
    const st = fs.statSync(src, { throwIfNoEntry: false });
    if (!st?.isFile()) return null;
    if (st.size === 0) return { body: Readable.from([]), size: 0 };
    const start = range?.start ?? 0;
    const end = Math.min(range?.end ?? st.size - 1, st.size - 1);
    if (start > end) return { body: Readable.from([]), size: 0 };
    return { body: fs.createReadStream(src, { start, end }), size: end - start + 1 };
  }

  async head(key: string): Promise<StoredObject | null> {
    const st = fs.statSync(this.file(key), { throwIfNoEntry: false });
    return st?.isFile() ? { key: storageKey(key), size: st.size, modifiedAt: st.mtime } : null;
  }

  async list(prefix: string): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    const walk = (dir: string, rel: string) => {
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const key = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) {
          if (key.startsWith(prefix) || prefix.startsWith(`${key}/`)) walk(path.join(dir, e.name), key);
        } else if (e.isFile() && key.startsWith(prefix) && !e.name.endsWith('.tmp')) {
          const st = fs.statSync(path.join(dir, e.name), { throwIfNoEntry: false });
          if (st) out.push({ key, size: st.size, modifiedAt: st.mtime });
        }
      }
    };
    walk(this.location, '');
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async deletePrefix(prefix: string): Promise<number> {
    const objects = await this.list(prefix);
    for (const o of objects) await fs.promises.rm(this.file(o.key), { force: true });
    return objects.length;
  }

  async link(): Promise<string | null> {
    return null;
  }
}
