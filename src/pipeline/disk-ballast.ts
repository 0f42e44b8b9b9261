/**
 * Part of the disk reserve held as a file (workdir/disk-reserve). A worker can still fill the
 * disk between two of the service's checks (a checkpoint is written in one go), and then the
 * embedded database, which lives on the same disk, cannot record why the job failed. Deleting
 * this file gives that write its room back; the file is made again before a later job, once the
 * disk has space for it beyond the reserve.
 */
import { open, rename, rm, stat } from 'node:fs/promises';
import { readDisk } from '../monitor/system.js';

const CHUNK = 1024 * 1024;

export class DiskBallast {
  private making: Promise<boolean> | null = null;

  constructor(
    private readonly file: string,
    readonly bytes: number,
  ) {}

  /** Makes the file when it is missing and the disk keeps `keepFree` bytes free beside it. */
  ensure(keepFree: number): Promise<boolean> {
    // Jobs starting together share one attempt: two writers of the same file would race.
    this.making ??= this.make(keepFree).finally(() => {
      this.making = null;
    });
    return this.making;
  }

  private async make(keepFree: number): Promise<boolean> {
    if (this.bytes <= 0) return false;
    const held = await stat(this.file).catch(() => null);
    if (held?.size === this.bytes) return true;
    const disk = await readDisk(this.file.slice(0, this.file.lastIndexOf('/')) || '/');
    if (!disk || disk.freeBytes + (held?.size ?? 0) < this.bytes + keepFree) return false;
    const tmp = `${this.file}.tmp`;
    const fd = await open(tmp, 'w');
    try {
      // Written, not truncated to size: a sparse file would hold no blocks at all.
      const chunk = Buffer.alloc(CHUNK);
      for (let done = 0; done < this.bytes; done += CHUNK) await fd.write(chunk, 0, Math.min(CHUNK, this.bytes - done));
      await fd.sync();
    } catch {
      await fd.close();
      await rm(tmp, { force: true });
      return false;
    }
    await fd.close();
    await rename(tmp, this.file);
    return true;
  }

  /** Deletes the file; true when there was one to delete. */
  async release(): Promise<boolean> {
    const held = await stat(this.file).catch(() => null);
    if (!held) return false;
    await rm(this.file, { force: true });
    return true;
  }
}

/** Whether a database or file-system error says the disk is full. */
export function isDiskFull(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown; cause?: unknown } | null;
  if (!e) return false;
  // ENOSPC/EDQUOT from Node; 53100 is PostgreSQL's disk_full; PGlite keeps the OS's words.
  if (e.code === 'ENOSPC' || e.code === 'EDQUOT' || e.code === '53100') return true;
  if (typeof e.message === 'string' && /No space left on device|Disk quota exceeded/.test(e.message)) return true;
  return e.cause !== undefined && e.cause !== err && isDiskFull(e.cause);
}
