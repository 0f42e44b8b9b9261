/**
 * The shared dataset store: every dataset archive trainhook has extracted, once, by the sha256
 * of its bytes. Two jobs on the same ZIP (the same URL, the same bytes under two URLs, an
 * upload) extract it once and read the same folder.
 *
 *   workdir/datasets/<sha256>/files/    the extracted archive (present = complete: it is
 *                                       extracted beside it and renamed into place)
 *   workdir/datasets/<sha256>/checks/   the result of checking it in one format for one task
 *                                       (reused by every later job with that format and task)
 *   workdir/datasets/.tmp/              downloads, uploads and extractions in progress
 *   workdir/datasets/.urls/<hash>.json  which archive a URL gave last time, with the ETag and
 *                                       Last-Modified it came with (named by a hash of the URL:
 *                                       a signed URL's token is never written down)
 *
 * With remote storage (STORAGE_URL), every archive adopted here is also kept there as
 * datasets/<sha256>.zip, and one missing here is fetched from there (fetchRemote): an upload
 * received by an API-only node, or an archive another node downloaded, trains anywhere.
 *
 * Work on one archive is serialised in this process (one workdir belongs to one process: see
 * core/workdir-lock.ts): concurrent jobs on the same archive wait for the one that extracts or
 * checks it and then reuse its result; concurrent downloads of the same URL share one transfer.
 */
import crypto from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { JobError } from '../core/errors.js';
import { storageKey, type Storage } from '../storage/index.js';
import type { Validators } from './download.js';
import { extractZip, type ExtractLimits } from './extract.js';

export const SHA256_RE = /^[a-f0-9]{64}$/;

/** Raised when an upload passes its byte limit (the API answers 413). */
export class TooLargeError extends Error {
  override readonly name = 'TooLargeError';
  constructor(readonly limit: number) {
    super(`the upload passed the ${limit}-byte limit`);
  }
}

/** Bytes of the regular files under a folder (symlinks are not followed). */
export function folderBytes(dir: string): number {
  let total = 0;
  const walk = (d: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) total += fs.statSync(p, { throwIfNoEntry: false })?.size ?? 0;
    }
  };
  walk(dir);
  return total;
}

export class DatasetStore {
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly downloads = new Map<string, Promise<string>>();
  /** Preparations under way (see preparing()). */
  private active = 0;

  /** Remote storage, when archives are shared with other nodes through it. */
  constructor(
    readonly root: string,
    private readonly remote?: Storage,
  ) {}

  /** An archive's key in remote storage. */
  static archiveKey(sha256: string): string {
    if (!SHA256_RE.test(sha256)) throw new Error(`not a sha256: ${sha256}`);
    return storageKey('datasets', `${sha256}.zip`);
  }

  /**
   * Gets an archive this node lacks from remote storage and adopts it (extracted as if
   * downloaded); false when there is no remote storage or it does not hold the archive.
   */
  async fetchRemote(sha256: string, limits: ExtractLimits, opts: { signal?: AbortSignal | undefined } = {}): Promise<boolean> {
    if (!this.remote || !SHA256_RE.test(sha256)) return false;
    if (await this.available(sha256)) return true;
    const zip = this.tmpPath('.zip');
    if (!(await this.remote.getToFile(DatasetStore.archiveKey(sha256), zip))) return false;
    // Stored under its hash by trainhook itself, but checked: a bucket is not a trusted disk.
    const hash = crypto.createHash('sha256');
    await pipeline(fs.createReadStream(zip), hash);
    if (hash.digest('hex') !== sha256) {
      await rm(zip, { force: true });
      throw new JobError('DATASET_CORRUPTED', `the archive ${sha256} in storage does not have that sha256`, { sha256 });
    }
    await this.adopt(zip, sha256, limits, opts);
    return true;
  }

  dir(sha256: string): string {
    if (!SHA256_RE.test(sha256)) throw new Error(`not a sha256: ${sha256}`);
    return path.join(this.root, sha256);
  }

  filesDir(sha256: string): string {
    return path.join(this.dir(sha256), 'files');
  }

  tmpPath(suffix: string): string {
    return path.join(this.root, '.tmp', `${crypto.randomUUID()}${suffix}`);
  }

  /** Leftovers of transfers a crash interrupted. Call once, before any job runs. */
  async clearTmp(): Promise<void> {
    await rm(path.join(this.root, '.tmp'), { recursive: true, force: true });
  }

  async has(sha256: string): Promise<boolean> {
    return stat(this.filesDir(sha256)).then(
      (s) => s.isDirectory(),
      () => false,
    );
  }

  /**
   * Whether an archive is here, asked in turn with remove(): a caller that has marked itself
   * preparing() and gets true keeps the archive until it releases that mark.
   */
  async available(sha256: string): Promise<boolean> {
    return this.exclusive(`archive:${sha256}`, () => this.has(sha256));
  }

  /** The sha256 of every archive in the store. */
  list(): string[] {
    try {
      return fs.readdirSync(this.root).filter((n) => SHA256_RE.test(n));
    } catch {
      return [];
    }
  }

  bytes(sha256: string): number {
    return folderBytes(this.dir(sha256));
  }

  /**
   * Marks a preparation (download, upload, check) under way until the returned function is
   * called. Archives are never removed meanwhile: one may have just been adopted by a job that
   * has not recorded it yet.
   */
  preparing(): () => void {
    this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
    };
  }

  /** Runs fn alone for this key (other callers with the same key wait their turn). */
  async exclusive<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const before = this.locks.get(key) ?? Promise.resolve();
    const run = before.catch(() => {}).then(fn);
    const tail = run.catch(() => {});
    this.locks.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    }
  }

  /**
   * One transfer per key at a time: a second caller with the same key (the same URL) while the
   * first is under way gets the first one's result instead of a second download.
   */
  async shared(key: string, fn: () => Promise<string>): Promise<string> {
    const running = this.downloads.get(key);
    if (running) return running;
    const p = fn().finally(() => this.downloads.delete(key));
    this.downloads.set(key, p);
    return p;
  }

  private urlFile(url: string): string {
    return path.join(this.root, '.urls', `${crypto.createHash('sha256').update(url).digest('hex')}.json`);
  }

  /** What a URL gave last time, when that archive is still here and the server sent a validator. */
  async lastFromUrl(url: string): Promise<{ sha256: string; validators: Validators } | null> {
    try {
      const memo = JSON.parse(await readFile(this.urlFile(url), 'utf8')) as { sha256?: unknown; etag?: unknown; lastModified?: unknown };
      if (typeof memo.sha256 !== 'string' || !SHA256_RE.test(memo.sha256) || !(await this.available(memo.sha256))) return null;
      const validators = {
        etag: typeof memo.etag === 'string' ? memo.etag : null,
        lastModified: typeof memo.lastModified === 'string' ? memo.lastModified : null,
      };
      return validators.etag || validators.lastModified ? { sha256: memo.sha256, validators } : null;
    } catch {
      return null;
    }
  }

  /** Remembers what a URL gave, when its server sent something to revalidate it with. */
  async rememberUrl(url: string, sha256: string, validators: Validators): Promise<void> {
    if (!validators.etag && !validators.lastModified) return;
    const file = this.urlFile(url);
    await mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.${crypto.randomUUID()}.tmp`;
    await writeFile(tmp, JSON.stringify({ sha256, ...validators }));
    await rename(tmp, file);
  }

  /** Forgets URLs whose archive is gone; answers how many. */
  async forgetStaleUrls(): Promise<number> {
    const dir = path.join(this.root, '.urls');
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      return 0;
    }
    let n = 0;
    for (const name of names) {
      const file = path.join(dir, name);
      const sha = await readFile(file, 'utf8').then(
        (t) => (JSON.parse(t) as { sha256?: string }).sha256 ?? '',
        () => '',
      );
      if (!SHA256_RE.test(sha) || !(await this.has(sha))) {
        await rm(file, { force: true });
        n++;
      }
    }
    return n;
  }

  /**
   * Moves a ZIP (already hashed) into the store: extracted into a temporary folder with the
   * zip-slip and bomb guards, then renamed into place. The ZIP is deleted either way. When the
   * archive is there already, nothing is extracted.
   */
  async adopt(
    zipPath: string,
    sha256: string,
    limits: ExtractLimits,
    opts: { signal?: AbortSignal | undefined; onProgress?: (done: number, total: number) => void } = {},
  ): Promise<{ extracted: boolean }> {
    try {
      const result = await this.exclusive(`archive:${sha256}`, async () => {
        if (await this.has(sha256)) return { extracted: false };
        const tmp = this.tmpPath('.d');
        try {
          await extractZip(zipPath, tmp, limits, opts);
          if (opts.signal?.aborted) throw new JobError('CANCELLED', 'dataset preparation cancelled');
          await mkdir(this.dir(sha256), { recursive: true });
          await rename(tmp, this.filesDir(sha256));
        } finally {
          // A refused or broken archive leaves nothing worth keeping (it may be a bomb's first GBs).
          await rm(tmp, { recursive: true, force: true });
        }
        return { extracted: true };
      });
      // Extracted without a refusal: kept in remote storage by its hash for the other nodes.
      if (this.remote) await this.keepRemote(zipPath, sha256);
      return result;
    } finally {
      await rm(zipPath, { force: true });
    }
  }

  private async keepRemote(zipPath: string, sha256: string): Promise<void> {
    const key = DatasetStore.archiveKey(sha256);
    try {
      if (!(await this.remote!.head(key))) await this.remote!.putFile(key, zipPath, { contentType: 'application/zip' });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new JobError('STORAGE_UNAVAILABLE', `could not keep the dataset archive in ${this.remote!.location}: ${message}`, { sha256 }, { cause: err });
    }
  }

  /**
   * Streams a body into a temporary file, hashed and capped on the fly (never held in memory).
   * Answers the file and its sha256; the caller adopts or deletes it.
   */
  async receive(body: Readable, maxBytes: number): Promise<{ file: string; sha256: string; bytes: number }> {
    const file = this.tmpPath('.zip');
    await mkdir(path.dirname(file), { recursive: true });
    const hash = crypto.createHash('sha256');
    let bytes = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        bytes += chunk.length;
        if (bytes > maxBytes) return cb(new TooLargeError(maxBytes));
        hash.update(chunk);
        cb(null, chunk);
      },
    });
    try {
      await pipeline(body, meter, createWriteStream(file));
    } catch (err) {
      await rm(file, { force: true });
      throw err;
    }
    return { file, sha256: hash.digest('hex'), bytes };
  }

  /**
   * The result of checking an archive in one format for one task, computed once: the first
   * caller runs `check`, later callers (now or after a restart) read what it stored. A refusal
   * (a JobError) is stored and repeated too: the same bytes fail the same way.
   */
  async checked<T>(sha256: string, key: string, check: () => Promise<T>): Promise<T> {
    const file = path.join(this.dir(sha256), 'checks', `${key}.json`);
    return this.exclusive(`check:${sha256}:${key}`, async () => {
      const stored = await readFile(file, 'utf8').then(
        (t) => JSON.parse(t) as { ok: true; value: T } | { ok: false; error: { code: JobError['code']; message: string; details: unknown } },
        () => null,
      );
      if (stored?.ok === true) return stored.value;
      if (stored?.ok === false) throw new JobError(stored.error.code, stored.error.message, stored.error.details);
      let result: { ok: true; value: T } | { ok: false; error: { code: JobError['code']; message: string; details: unknown } };
      try {
        result = { ok: true, value: await check() };
      } catch (err) {
        if (!(err instanceof JobError) || err.code === 'CANCELLED') throw err;
        result = { ok: false, error: { code: err.code, message: err.message, details: err.details ?? null } };
      }
      await mkdir(path.dirname(file), { recursive: true });
      const tmp = `${file}.${crypto.randomUUID()}.tmp`;
      await writeFile(tmp, JSON.stringify(result));
      await rename(tmp, file);
      if (!result.ok) throw new JobError(result.error.code, result.error.message, result.error.details);
      return result.value;
    });
  }

  /**
   * Deletes an archive's folder, unless a preparation is under way or keep() (asked while no
   * one else works on this archive) says otherwise. Answers whether it was deleted.
   */
  async remove(sha256: string, keep: () => Promise<boolean> = async () => false): Promise<boolean> {
    return this.exclusive(`archive:${sha256}`, async () => {
      if (this.active > 0 || (await keep())) return false;
      // Renamed away first: a half-deleted folder never looks like a complete archive.
      const doomed = this.tmpPath('.rm');
      await mkdir(path.dirname(doomed), { recursive: true });
      try {
        await rename(this.dir(sha256), doomed);
      } catch {
        return false;
      }
      await rm(doomed, { recursive: true, force: true });
      return true;
    });
  }
}
