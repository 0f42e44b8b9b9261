/**
 * A running job's files, copied to remote storage in the background: its checkpoints after
 * every epoch (last.pt each time, best.pt when it improved: a file goes up only when its size
 * or modification time changed), the small state files a resume reads (results.csv,
 * trainhook-state.json…), its artifacts, and its log in parts as it grows.
 *
 * One upload at a time per job, from a queue that holds each file once: an epoch that ends
 * while last.pt is still going up queues it again, once, however many epochs pass meanwhile.
 * Nothing here is awaited by the epoch event (scan() returns at once); a failed upload is
 * retried after 1, 5 and 30 s and then left for the next scan. flush() is awaited before a job
 * is marked completed, so that completion means the files are in the bucket.
 *
 *   jobs/<id>/files/<path in the job's folder>   checkpoints, state files, artifacts
 *   jobs/<id>/log/<first byte's offset, 15 digits>  the log, a part per upload
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../core/logger.js';
import { storageKey, type Storage } from '../storage/index.js';

/** How often a growing log is sent up while nothing else happens. */
export const LOG_PART_INTERVAL_MS = 15_000;
/** Top-level files of the run folder bigger than this are not state files: left to the patterns. */
const STATE_FILE_MAX_BYTES = 64 * 1024 * 1024;
/** What a job's folder holds that is this node's own: rebuilt by each node, never copied. */
const LOCAL_ONLY = new Set(['worker.log', 'worker-spec.json', 'dataset-info.json', 'data.yaml']);
const RETRY_DELAYS_MS = [1000, 5000, 30_000];
/**
 * The share of this process's CPU time the uploads of one job may take, averaged: after an
 * upload that cost C ms of CPU, the next waits until C / CPU_BUDGET ms have passed since it
 * began. With epochs longer than that every epoch's last.pt goes up; with shorter ones (a
 * 20 MB checkpoint every 2 s) the queue coalesces and last.pt goes up every few epochs instead
 * of taking the trainer's cores. Small files do not wait (see small()); flush() ignores it:
 * completion waits for nothing else.
 */
export const CPU_BUDGET = 0.02;
/** Files up to this size are not held back by the budget. */
const SMALL_FILE_BYTES = 1024 * 1024;
/**
 * Past this many log parts the whole log goes up again as one part at offset 0 and the others
 * are deleted: a reader lists and fetches a handful of objects, not one per 15 s of a long job.
 */
const LOG_MAX_PARTS = 64;
const OFFSET_DIGITS = 15;

export function jobFilesPrefix(jobId: string): string {
  return `${storageKey('jobs', jobId, 'files')}/`;
}

export function jobLogPrefix(jobId: string): string {
  return `${storageKey('jobs', jobId, 'log')}/`;
}

export function logPartKey(jobId: string, offset: number): string {
  return storageKey('jobs', jobId, 'log', String(offset).padStart(OFFSET_DIGITS, '0'));
}

export function logPartOffset(key: string): number | null {
  const m = /\/(\d{15})$/.exec(key);
  return m ? Number(m[1]) : null;
}

/** `dir/*.pt`-style patterns: a literal folder and a file name with `*` wildcards. */
export function matchGlob(root: string, pattern: string): string[] {
  const dir = path.join(root, path.dirname(pattern));
  const re = new RegExp(`^${path.basename(pattern).replace(/[.+^${}()|[\]\\?]/g, '\\$&').replace(/\*/g, '[^/]*')}$`);
  try {
    return fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isFile() && re.test(e.name))
      .map((e) => path.join(dir, e.name));
  } catch {
    return [];
  }
}

/**
 * A checkpoint caught half-written: empty, or a ZIP (torch.save writes one) whose end-of-central-
 * directory record is not in its last 64 KiB, where a finished archive always has it.
 */
export function isTorn(file: string): boolean {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    if (size === 0) return true;
    const head = Buffer.alloc(4);
    fs.readSync(fd, head, 0, 4, 0);
    if (head.readUInt32LE(0) !== 0x04034b50) return false;
    const tailSize = Math.min(size, 65_557);
    const tail = Buffer.alloc(tailSize);
    fs.readSync(fd, tail, 0, tailSize, size - tailSize);
    return tail.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06])) < 0;
  } finally {
    fs.closeSync(fd);
  }
}

export interface FileSyncOptions {
  storage: Storage;
  jobId: string;
  /** The job's folder. */
  dir: string;
  logFile: string;
  /** The engine's checkpoint patterns, relative to the folder. */
  checkpoints: readonly string[];
  logger: Logger;
  /** Bytes of the log already in storage (a resumed job's restored log). */
  logUploaded?: number;
  retryDelaysMs?: readonly number[];
  /** CPU_BUDGET unless set (tests). */
  cpuBudget?: number;
}

type Item = { kind: 'file'; rel: string } | { kind: 'log' };

export class JobFileSync {
  private readonly pending = new Map<string, Item>();
  /** Snapshots taken so far (their names). */
  private snapshots = 0;
  /** Size and mtime of each file as last uploaded. */
  private readonly uploaded = new Map<string, string>();
  private readonly failed = new Set<string>();
  private logUploaded: number;
  /** Parts this sync has added since the log was last sent whole (unknown before: counted as many). */
  private logParts: number;
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Bytes and milliseconds spent uploading (bench/storage.ts reads them). */
  readonly stats = { uploads: 0, bytes: 0, ms: 0, cpuMs: 0, flushCpuMs: 0, failures: 0, byFile: {} as Record<string, number> };
  /** When the next upload may start (the CPU budget); 0 while flushing. */
  private notBefore = 0;
  private flushing = 0;

  constructor(private readonly opts: FileSyncOptions) {
    this.logUploaded = opts.logUploaded ?? 0;
    this.logParts = this.logUploaded > 0 ? LOG_MAX_PARTS / 2 : 0;
  }

  /** Sends the log up every LOG_PART_INTERVAL_MS while the job runs. */
  start(intervalMs = LOG_PART_INTERVAL_MS): this {
    this.timer = setInterval(() => this.queueLog(), intervalMs);
    this.timer.unref();
    return this;
  }

  /** Queues the checkpoints, state files and the log's new bytes; returns at once. */
  scan(extra: readonly string[] = []): void {
    for (const file of this.candidates(extra)) this.queueFile(file);
    this.queueLog();
  }

  /** Queues files by absolute path (artifacts, the final model), when they lie in the job's folder. */
  add(files: readonly string[]): void {
    for (const f of files) this.queueFile(f);
    this.kick();
  }

  /**
   * Everything changed since the last upload, sent up; resolves once the queue is empty.
   * Throws when a file could not be uploaded after its retries.
   */
  async flush(extra: readonly string[] = []): Promise<void> {
    this.failed.clear();
    this.flushing++;
    try {
      this.wake?.();
      const cpu0 = this.stats.cpuMs;
      this.scan(extra);
      while (this.running) await this.running;
      this.stats.flushCpuMs += this.stats.cpuMs - cpu0;
    } finally {
      this.flushing--;
    }
    if (this.failed.size) {
      throw new Error(`could not upload ${[...this.failed].join(', ')} to ${this.opts.storage.location}`);
    }
  }

  /** Stops the log timer; uploads under way finish. */
  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private candidates(extra: readonly string[]): string[] {
    const { dir } = this.opts;
    // In the order they go up: the checkpoint a resume starts from (last.pt, last.ckpt…), the
    // small state files that describe it (results.csv…), then the other checkpoints (best.pt),
    // which wait for the CPU budget after last.pt's upload, and artifacts.
    const checkpoints = this.opts.checkpoints.flatMap((pattern) => matchGlob(dir, pattern));
    const isResume = (f: string) => /^last([._-]|$)/i.test(path.basename(f));
    const out = new Set<string>(checkpoints.filter(isResume));
    let entries: fs.Dirent[] = [];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      // No folder yet.
    }
    for (const e of entries) {
      if (!e.isFile() || LOCAL_ONLY.has(e.name) || e.name.startsWith('.') || e.name.endsWith('.tmp')) continue;
      const file = path.join(dir, e.name);
      const size = fs.statSync(file, { throwIfNoEntry: false })?.size ?? Infinity;
      if (size <= STATE_FILE_MAX_BYTES) out.add(file);
    }
    for (const f of checkpoints) out.add(f);
    for (const f of extra) out.add(f);
    return [...out];
  }

  private queueFile(file: string): void {
    const rel = path.relative(this.opts.dir, file);
    if (!rel || rel.startsWith('..') || path.isAbsolute(rel) || LOCAL_ONLY.has(rel)) return;
    const key = rel.split(path.sep).join('/');
    try {
      storageKey(key);
    } catch {
      return; // a name storage keys cannot hold (spaces…): not one trainhook resumes from
    }
    // Moved to the end when already waiting: uploads follow the latest scan's order, checkpoints
    // before the state files that describe them (a results.csv in storage never runs ahead of
    // the last.pt stored before it).
    this.pending.delete(key);
    this.pending.set(key, { kind: 'file', rel: key });
    this.kick();
  }

  private queueLog(): void {
    const size = fs.statSync(this.opts.logFile, { throwIfNoEntry: false })?.size ?? 0;
    if (size > this.logUploaded && !this.pending.has('\0log')) this.pending.set('\0log', { kind: 'log' });
    this.kick();
  }

  private kick(): void {
    // A drain waiting for the budget looks again: what was just queued may be small.
    if (this.running) return this.wake?.();
    if (this.pending.size === 0) return;
    this.running = this.drain().finally(() => {
      this.running = null;
      // Something queued while the last upload finished.
      if (this.pending.size && !this.closed) this.kick();
    });
  }

  /**
   * State files, plots and log parts cost next to nothing: they go up at once, right behind the
   * checkpoint they describe, and only checkpoints wait for the budget.
   */
  private small(item: Item | undefined): boolean {
    if (!item || item.kind === 'log') return true;
    const size = fs.statSync(path.join(this.opts.dir, ...item.rel.split('/')), { throwIfNoEntry: false })?.size ?? 0;
    return size <= SMALL_FILE_BYTES;
  }

  /** Ends the budget's wait early (a flush). */
  private wake: (() => void) | null = null;

  private async drain(): Promise<void> {
    for (;;) {
      const first = this.pending.entries().next();
      if (first.done) return;
      let entry = first.value;
      const wait = this.notBefore - performance.now();
      if (!this.flushing && wait > 0) {
        // Checkpoints wait for the budget; small files queued meanwhile go up at once.
        const small = [...this.pending.entries()].find(([, item]) => this.small(item));
        if (!small) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, wait);
            timer.unref();
            this.wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          this.wake = null;
          continue;
        }
        entry = small;
      }
      const [id, item] = entry;
      this.pending.delete(id);
      const started = performance.now();
      const cpu0 = process.cpuUsage();
      await this.withRetries(id, () => (item.kind === 'log' ? this.uploadLog() : this.uploadFile(item.rel)));
      // The whole process's CPU meanwhile: an overestimate when it also served requests, so
      // the budget errs on the trainer's side.
      const cpu = process.cpuUsage(cpu0);
      const cpuMs = (cpu.user + cpu.system) / 1000;
      this.stats.cpuMs += cpuMs;
      this.notBefore = Math.max(this.notBefore, started + cpuMs / (this.opts.cpuBudget ?? CPU_BUDGET));
    }
  }

  private async withRetries(id: string, fn: () => Promise<void>): Promise<void> {
    const delays = this.opts.retryDelaysMs ?? RETRY_DELAYS_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        await fn();
        this.failed.delete(id);
        return;
      } catch (err) {
        this.stats.failures++;
        if (attempt >= delays.length) {
          this.failed.add(id);
          this.opts.logger.warn({ err, file: id === '\0log' ? 'worker.log' : id, storage: this.opts.storage.location }, 'upload to storage failed; tried again at the next epoch');
          return;
        }
        await new Promise((r) => setTimeout(r, delays[attempt]));
      }
    }
  }

  private async uploadFile(rel: string): Promise<void> {
    const file = path.join(this.opts.dir, ...rel.split('/'));
    const before = fs.statSync(file, { throwIfNoEntry: false });
    if (!before?.isFile()) return;
    const stamp = `${before.size}:${before.mtimeMs}`;
    if (this.uploaded.get(rel) === stamp) return;
    // A copy first, and only a whole one goes up: the worker rewrites checkpoints in place, and
    // bytes read while it writes would sit torn in the bucket until the next upload, which is
    // what a node taking the job over would resume from if this one died meanwhile.
    const snapshot = path.join(this.opts.dir, `.upload-${process.pid}-${++this.snapshots}`);
    try {
      await fs.promises.copyFile(file, snapshot);
      const copied = fs.statSync(file, { throwIfNoEntry: false });
      // Being written: the next scan (each epoch, and the flush at the end) sends it finished.
      // Not queued again now, which would spin on a file torn for good (a worker killed mid-save).
      if (!copied || `${copied.size}:${copied.mtimeMs}` !== stamp || isTorn(snapshot)) return;
      const t0 = performance.now();
      await this.opts.storage.putFile(`${jobFilesPrefix(this.opts.jobId)}${rel}`, snapshot);
      this.stats.ms += performance.now() - t0;
      this.stats.uploads++;
      this.stats.bytes += before.size;
      this.stats.byFile[rel] = (this.stats.byFile[rel] ?? 0) + 1;
      this.opts.logger.debug({ file: rel, bytes: before.size, ms: Math.round(performance.now() - t0) }, 'uploaded to storage');
    } finally {
      await fs.promises.rm(snapshot, { force: true });
    }
    this.uploaded.set(rel, stamp);
  }

  private async uploadLog(): Promise<void> {
    const size = fs.statSync(this.opts.logFile, { throwIfNoEntry: false })?.size ?? 0;
    if (size <= this.logUploaded) return;
    // Whole again: readers skip the bytes of later parts it covers, so they read it right while
    // the superseded parts are being deleted.
    const whole = this.logParts + 1 >= LOG_MAX_PARTS;
    const start = whole ? 0 : this.logUploaded;
    const t0 = performance.now();
    await this.opts.storage.putStream(logPartKey(this.opts.jobId, start), fs.createReadStream(this.opts.logFile, { start, end: size - 1 }), {
      contentType: 'text/plain; charset=utf-8',
    });
    this.stats.ms += performance.now() - t0;
    this.stats.uploads++;
    this.stats.bytes += size - start;
    this.logUploaded = size;
    this.logParts++;
    if (whole) {
      const first = logPartKey(this.opts.jobId, 0);
      for (const part of await this.opts.storage.list(jobLogPrefix(this.opts.jobId))) {
        const offset = logPartOffset(part.key);
        if (part.key !== first && offset !== null && offset < size) await this.opts.storage.deletePrefix(part.key);
      }
      this.logParts = 0;
    }
  }
}
