/**
 * The one place for a job's files: where they live, which of them may be downloaded, its
 * checkpoints, its log, and opening any of them safely.
 *
 * workdir/jobs/{id}/ is the job's folder and its engine's run folder at once: the worker writes
 * checkpoints, plots and CSVs there, beside the dataset, the worker spec and worker.log.
 *
 * Downloadable files are named by the job row (the model the worker reported, its artifacts)
 * and the log, never by a path in a request, and every path is checked to lie in the job's
 * folder after symlinks are resolved: no traversal, no serving a file the worker did not write.
 *
 * With remote storage (STORAGE_URL=s3://… or file:///…), a running job's files are copied
 * there as they change (file-sync.ts) and read back from there when this node does not have
 * them: another node ran the job, or this node took over a job whose node died (restore()).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '../core/logger.js';
import { DatasetStore, folderBytes } from '../datasets/store.js';
import type { JobRow } from '../db/schema.js';
import type { Engines } from '../engines/index.js';
import { LocalStorage, type Storage } from '../storage/index.js';
import { AnsiStripper, stripAnsi } from '../worker/ansi.js';
import { jobFilesPrefix, JobFileSync, jobLogPrefix, logPartOffset, matchGlob } from './file-sync.js';

export const LOG_FILE = 'worker.log';
/** The callback artifact key of the job's log (every engine's completion callback has it). */
export const LOG_ARTIFACT = 'training_logs';
const NAME_RE = /^[A-Za-z0-9][\w.-]{0,199}$/;
/** Longer log lines (a progress bar redrawn thousands of times) are cut to this. */
const MAX_LINE_CHARS = 8192;

export interface LogPage {
  offset: number;
  limit: number;
  total_lines: number;
  next_offset: number | null;
  lines: string[];
}

export interface Checkpoint {
  name: string;
  size: number;
  modified_at: string;
}

type JobRef = Pick<JobRow, 'id' | 'engine' | 'model' | 'artifacts'>;

/** Where a downloadable file is: on this disk, in remote storage, or the log's parts there. */
export type LocatedFile =
  | { where: 'local'; path: string; size: number }
  | { where: 'remote'; key: string; size: number }
  | { where: 'remote-log'; size: number };

export class JobFiles {
  /** The shared dataset store (workdir/datasets/): a job's folder refers to its archive there. */
  readonly datasets: DatasetStore;

  /** Where files are kept beyond this disk; the workdir itself (nothing copied) by default. */
  readonly storage: Storage;

  constructor(
    readonly workdir: string,
    private readonly engines: Engines,
    storage?: Storage,
  ) {
    this.storage = storage ?? new LocalStorage(workdir, false);
    this.datasets = new DatasetStore(path.join(workdir, 'datasets'), this.storage.remote ? this.storage : undefined);
  }

  dir(jobId: string): string {
    return path.join(this.workdir, 'jobs', jobId);
  }

  logFile(jobId: string): string {
    return path.join(this.dir(jobId), LOG_FILE);
  }

  specFile(jobId: string): string {
    return path.join(this.dir(jobId), 'worker-spec.json');
  }

  /** Checkpoints the worker left (files, not rows: they are the truth), newest first. */
  checkpoints(job: Pick<JobRow, 'id' | 'engine'>): Checkpoint[] {
    const engine = this.engines.get(job.engine);
    if (!engine) return [];
    const seen = new Set<string>();
    const out: Checkpoint[] = [];
    for (const pattern of engine.files.checkpoints) {
      for (const file of matchGlob(this.dir(job.id), pattern)) {
        const name = path.relative(this.dir(job.id), file);
        if (seen.has(name)) continue;
        seen.add(name);
        const st = fs.statSync(file, { throwIfNoEntry: false });
        if (st) out.push({ name: path.basename(file), size: st.size, modified_at: st.mtime.toISOString() });
      }
    }
    return out.sort((a, b) => b.modified_at.localeCompare(a.modified_at) || a.name.localeCompare(b.name));
  }

  /** checkpoints(), or when this disk has none (another node ran the job), those in remote storage. */
  async listCheckpoints(job: Pick<JobRow, 'id' | 'engine'>): Promise<Checkpoint[]> {
    const local = this.checkpoints(job);
    const engine = this.engines.get(job.engine);
    if (local.length || !this.storage.remote || !engine) return local;
    const prefix = jobFilesPrefix(job.id);
    const patterns = engine.files.checkpoints.map(
      (p) => new RegExp(`^${p.replace(/[.+^${}()|[\]\\?]/g, '\\$&').replace(/\*/g, '[^/]*')}$`),
    );
    const seen = new Set<string>();
    const out: Checkpoint[] = [];
    for (const o of await this.storage.list(prefix)) {
      const rel = o.key.slice(prefix.length);
      const name = rel.split('/').pop()!;
      if (!patterns.some((re) => re.test(rel)) || seen.has(name)) continue;
      seen.add(name);
      out.push({ name, size: o.size, modified_at: o.modifiedAt.toISOString() });
    }
    return out.sort((a, b) => b.modified_at.localeCompare(a.modified_at) || a.name.localeCompare(b.name));
  }

  /** The name the trained model downloads under (the file the worker reported as best), or null. */
  modelName(job: JobRef): string | null {
    const best = (job.model as { best?: unknown } | null)?.best;
    return typeof best === 'string' && NAME_RE.test(path.basename(best)) ? path.basename(best) : null;
  }

  /** name → absolute path as recorded (not yet checked on disk). */
  downloadable(job: JobRef): Map<string, string> {
    const files = new Map<string, string>();
    for (const a of job.artifacts ?? []) {
      if (NAME_RE.test(a.name) && typeof a.path === 'string') files.set(a.name, a.path);
    }
    const model = job.model as { best?: unknown; last?: unknown } | null;
    for (const p of [model?.best, model?.last]) {
      if (typeof p === 'string' && NAME_RE.test(path.basename(p))) files.set(path.basename(p), p);
    }
    files.set(LOG_FILE, this.logFile(job.id));
    return files;
  }

  /** The callback artifact keys of a job's engine, the log's included, with the file names each may be. */
  artifactKeys(job: Pick<JobRow, 'engine'>): Record<string, readonly string[]> {
    const declared = this.engines.get(job.engine)?.files.callbackArtifacts ?? {};
    return { ...declared, [LOG_ARTIFACT]: [LOG_FILE] };
  }

  /** A requested name or alias (model, training_logs, pr_curve…) → the file name it serves. */
  resolveName(job: JobRef, requested: string): string | null {
    const files = this.downloadable(job);
    if (requested === 'model') return this.modelName(job);
    if (files.has(requested) && NAME_RE.test(requested)) return requested;
    return this.artifactKeys(job)[requested]?.find((c) => files.has(c)) ?? null;
  }

  /**
   * The file behind a name, when it exists and lies inside the job's folder; null otherwise.
   * realpath on both sides, so a symlink planted in the folder cannot point outside it.
   */
  open(job: JobRef, name: string): { path: string; size: number } | null {
    if (!NAME_RE.test(name)) return null;
    const recorded = this.downloadable(job).get(name);
    if (!recorded) return null;
    try {
      const root = fs.realpathSync(this.dir(job.id));
      const real = fs.realpathSync(recorded);
      if (!real.startsWith(root + path.sep)) return null;
      const stat = fs.statSync(real);
      return stat.isFile() ? { path: real, size: stat.size } : null;
    } catch {
      return null;
    }
  }

  /** The path of a recorded file inside the job's folder ('weights/best.pt'), whichever node recorded it. */
  private relativeOf(jobId: string, recorded: string): string | null {
    const marker = `${path.sep}jobs${path.sep}${jobId}${path.sep}`;
    const at = recorded.lastIndexOf(marker);
    if (at < 0) return null;
    const rel = recorded.slice(at + marker.length).split(path.sep);
    return rel.every((p) => p && p !== '.' && p !== '..') ? rel.join('/') : null;
  }

  /**
   * Where a downloadable file is: this disk first (open()), else remote storage when there is
   * one. The log in remote storage is its uploaded parts, read in order.
   */
  async locate(job: JobRef, name: string): Promise<LocatedFile | null> {
    const local = this.open(job, name);
    if (local) return { where: 'local', ...local };
    if (!this.storage.remote || !NAME_RE.test(name)) return null;
    if (name === LOG_FILE) {
      const parts = await this.storage.list(jobLogPrefix(job.id));
      if (!parts.length) return null;
      return { where: 'remote-log', size: logSize(parts) };
    }
    const recorded = this.downloadable(job).get(name);
    const rel = recorded ? this.relativeOf(job.id, recorded) : null;
    if (!rel) return null;
    const key = `${jobFilesPrefix(job.id)}${rel}`;
    const head = await this.storage.head(key).catch(() => null);
    return head ? { where: 'remote', key, size: head.size } : null;
  }

  /** The bytes of a located file (the first `size` of them: a growing log ends where it was found). */
  async readLocated(jobId: string, file: LocatedFile): Promise<Readable> {
    if (file.where === 'local') {
      return file.size === 0 ? Readable.from([]) : fs.createReadStream(file.path, { start: 0, end: file.size - 1 });
    }
    if (file.where === 'remote-log') return Readable.from(this.remoteLogChunks(jobId, file.size));
    const got = await this.storage.getStream(file.key, file.size > 0 ? { start: 0, end: file.size - 1 } : undefined);
    if (!got) throw new Error(`${file.key} is gone from ${this.storage.location}`);
    return got.body;
  }

  /** A direct (presigned) link to a file in remote storage, or null when trainhook streams it. */
  async remoteLink(file: LocatedFile, name: string, ttlSeconds: number): Promise<string | null> {
    if (file.where !== 'remote') return null;
    return this.storage.link(file.key, { fileName: name, contentType: contentType(name), ttlSeconds });
  }

  /** The log's parts in storage, as one stream of bytes up to `limit` (overlapping parts read once). */
  private async *remoteLogChunks(jobId: string, limit = Infinity): AsyncGenerator<Buffer> {
    const parts = await this.storage.list(jobLogPrefix(jobId));
    let pos = 0;
    for (const part of parts) {
      const offset = logPartOffset(part.key);
      if (offset === null || offset + part.size <= pos || pos >= limit) continue;
      // A gap (a part lost with a dead node) is skipped: the later bytes are still worth reading.
      if (offset > pos) pos = offset;
      const start = pos - offset;
      const end = Math.min(part.size, limit - offset) - 1;
      if (end < start) continue;
      const got = await this.storage.getStream(part.key, { start, end });
      if (!got) continue;
      for await (const chunk of got.body) {
        const buf = chunk as Buffer;
        pos += buf.length;
        yield buf;
      }
    }
  }

  /** The background uploader of a running job's files, or null when there is no remote storage. */
  sync(job: Pick<JobRow, 'id' | 'engine'>, logger: Logger, logUploaded = 0): JobFileSync | null {
    if (!this.storage.remote) return null;
    return new JobFileSync({
      storage: this.storage,
      jobId: job.id,
      dir: this.dir(job.id),
      logFile: this.logFile(job.id),
      checkpoints: this.engines.get(job.engine)?.files.checkpoints ?? [],
      logger,
      logUploaded,
    });
  }

  /**
   * Before a job runs again, possibly on another node: what remote storage holds of it (its
   * checkpoints and state files, its log) is fetched into its folder where this disk lacks it,
   * so that the worker's resume finds last.pt as if this node had trained it. Answers the files
   * fetched and the bytes of the log now in storage (where its next part starts).
   */
  async restore(job: Pick<JobRow, 'id'>): Promise<{ files: number; logBytes: number }> {
    if (!this.storage.remote) return { files: 0, logBytes: 0 };
    const dir = this.dir(job.id);
    const prefix = jobFilesPrefix(job.id);
    let files = 0;
    for (const o of await this.storage.list(prefix)) {
      const rel = o.key.slice(prefix.length);
      const local = path.join(dir, ...rel.split('/'));
      if (!local.startsWith(dir + path.sep)) continue;
      const st = fs.statSync(local, { throwIfNoEntry: false });
      // This node's own copy is newer when it ran the job last (its upload may have failed); a
      // checkpoint keeps its size from epoch to epoch, so only the times tell them apart.
      if (st?.isFile() && st.mtime >= o.modifiedAt) continue;
      if (await this.storage.getToFile(o.key, local)) files++;
    }
    const parts = await this.storage.list(jobLogPrefix(job.id));
    const logBytes = logSize(parts);
    const log = this.logFile(job.id);
    const localLog = fs.statSync(log, { throwIfNoEntry: false })?.size ?? 0;
    if (logBytes > localLog) {
      // The stored log is longer than this disk's: this node did not write it. Rebuilt whole, so
      // the next part's offset carries on from where the other node's parts ended.
      fs.mkdirSync(dir, { recursive: true });
      const tmp = `${log}.restore.tmp`;
      await pipeline(Readable.from(this.remoteLogChunks(job.id, logBytes)), fs.createWriteStream(tmp));
      fs.renameSync(tmp, log);
      return { files, logBytes };
    }
    return { files, logBytes: Math.min(localLog, logBytes) };
  }

  /** Deletes what remote storage holds of a job (its files; its log too with `withLog`). */
  async removeRemote(jobId: string, withLog = false): Promise<number> {
    if (!this.storage.remote) return 0;
    const n = await this.storage.deletePrefix(jobFilesPrefix(jobId));
    return withLog ? n + (await this.storage.deletePrefix(jobLogPrefix(jobId))) : n;
  }

  /** Bytes the job's folder holds on this disk (its dataset in the shared store not counted). */
  diskUsage(jobId: string): number {
    return folderBytes(this.dir(jobId));
  }

  /**
   * Removes a finished job's files: its dataset reference, checkpoints, plots and CSVs. The
   * worker's log stays (small, and what tells later what happened); so does the job's row, and
   * its registered model, which lives in workdir/models/. Answers the bytes left.
   */
  removeFiles(jobId: string): number {
    const dir = this.dir(jobId);
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return 0;
    }
    for (const e of entries) {
      if (e.name === LOG_FILE) continue;
      fs.rmSync(path.join(dir, e.name), { recursive: true, force: true });
    }
    return this.diskUsage(jobId);
  }

  /**
   * Lines [offset, offset + limit) of a job's log, streamed (the file is never read whole). A
   * line redrawn with carriage returns (tqdm) reads as its last state, as a terminal shows it.
   */
  async readLog(jobId: string, offset: number, limit: number): Promise<LogPage> {
    const file = this.logFile(jobId);
    const lines: string[] = [];
    let total = 0;
    const take = (raw: string) => {
      if (total >= offset && lines.length < limit) {
        const segments = raw.split('\r').filter((seg) => seg.length > 0);
        // Logs written before colour codes were stripped at write time still carry them.
        let line = stripAnsi(segments.length ? segments[segments.length - 1]! : '');
        if (line.length > MAX_LINE_CHARS) line = `${line.slice(0, MAX_LINE_CHARS)}… [line cut at ${MAX_LINE_CHARS} characters]`;
        lines.push(line);
      }
      total++;
    };
    const source = fs.existsSync(file)
      ? fs.createReadStream(file, { encoding: 'utf8', highWaterMark: 256 * 1024 })
      : this.storage.remote
        ? Readable.from(this.remoteLogChunks(jobId)).setEncoding('utf8')
        : null;
    if (source) {
      // Split on \n only: readline would also break at every lone \r of a progress bar.
      let rest = '';
      for await (const chunk of source) {
        const parts = (rest + (chunk as string)).split('\n');
        rest = parts.pop()!;
        for (const part of parts) take(part);
        // A line longer than any page shows is not kept whole in memory.
        if (rest.length > 16 * MAX_LINE_CHARS) rest = rest.slice(-16 * MAX_LINE_CHARS);
      }
      if (rest.length > 0) take(rest);
    }
    const end = offset + lines.length;
    return { offset, limit, total_lines: total, next_offset: end < total ? end : null, lines };
  }

  /**
   * The whole log as a download; an empty one when the job has not written a log yet. Colour
   * codes are stripped on the way (older logs have them), so its length is known only at the end.
   */
  async logDownload(jobId: string): Promise<Response> {
    const file = this.logFile(jobId);
    const headers = {
      'content-type': 'text/plain; charset=utf-8',
      'content-disposition': `attachment; filename="trainhook-${jobId}.log"`,
      'x-content-type-options': 'nosniff',
    };
    let source: Readable;
    if (fs.existsSync(file)) {
      const size = fs.statSync(file).size;
      if (size === 0) return new Response('', { status: 200, headers: { ...headers, 'content-length': '0' } });
      // Up to the size seen now: a log still being written ends where it ended when asked.
      source = fs.createReadStream(file, { start: 0, end: size - 1, encoding: 'utf8' });
    } else if (this.storage.remote && (await this.storage.list(jobLogPrefix(jobId))).length) {
      // Another node ran the job: its log is the parts it uploaded.
      source = Readable.from(this.remoteLogChunks(jobId)).setEncoding('utf8');
    } else {
      return new Response('', { status: 200, headers });
    }
    const plain = new AnsiStripper();
    const stripped = Readable.from(
      (async function* () {
        for await (const chunk of source) {
          const text = plain.push(chunk as string);
          if (text) yield Buffer.from(text, 'utf8');
        }
        const rest = plain.end();
        if (rest) yield Buffer.from(rest, 'utf8');
      })(),
    );
    return new Response(Readable.toWeb(stripped) as ReadableStream<Uint8Array>, { status: 200, headers });
  }
}

/** Bytes of a log stored in parts: where its last part ends. */
function logSize(parts: readonly { key: string; size: number }[]): number {
  let end = 0;
  for (const p of parts) {
    const offset = logPartOffset(p.key);
    if (offset !== null) end = Math.max(end, offset + p.size);
  }
  return end;
}

const TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.csv': 'text/csv; charset=utf-8',
  '.yaml': 'text/yaml; charset=utf-8',
  '.json': 'application/json',
  '.log': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/** Every media type a job's file is sent as (without parameters), for the API's document. */
export function fileMediaTypes(): string[] {
  return [...new Set([...Object.values(TYPES), 'application/octet-stream'].map((t) => t.split(';')[0]!))];
}

export function contentType(name: string): string {
  return TYPES[path.extname(name).toLowerCase()] ?? 'application/octet-stream';
}
