/**
 * The Hub snapshots this node keeps in workdir/hf-cache/<owner>/<name>@<revision>/ (written by
 * pipeline/hub-snapshot.ts), as the retention sweep sees them: each with when it was last used
 * (its record's mtime, touched on every use), and their removal.
 *
 * A removal re-reads that time first and renames the folder out of the way before deleting it:
 * a job that took the snapshot after the sweep decided touches the record (kept), and one that
 * looks while the files are being deleted finds no folder and downloads it again, never half of one.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SNAPSHOT_RECORD, hubCacheDir, parseHubId } from '../engines/hub.js';

export interface CachedSnapshot {
  /** The Hub id it is the snapshot of (owner/name@revision). */
  id: string;
  dir: string;
  lastUsed: Date;
}

/** The complete snapshots in the cache (folders without a record, or of another shape, are left alone). */
export function listHubSnapshots(workdir: string): CachedSnapshot[] {
  const root = path.join(path.resolve(workdir), 'hf-cache');
  const out: CachedSnapshot[] = [];
  for (const owner of readDirs(root)) {
    for (const folder of readDirs(path.join(root, owner))) {
      // What a removal cut short (the process stopped) is finished here.
      if (folder.startsWith('.') && folder.includes('.removing-')) {
        fs.rmSync(path.join(root, owner, folder), { recursive: true, force: true });
        continue;
      }
      const at = folder.lastIndexOf('@');
      if (at <= 0) continue;
      const ref = parseHubId(`${owner}/${folder.slice(0, at)}@${folder.slice(at + 1)}`);
      // Temporary folders of a download (dot names) and anything else never parse as an id.
      if (!ref) continue;
      const dir = hubCacheDir(workdir, ref);
      if (dir !== path.join(root, owner, folder)) continue;
      const lastUsed = recordTime(dir);
      if (lastUsed) out.push({ id: `${ref.repo}@${ref.revision}`, dir, lastUsed });
    }
  }
  return out;
}

/** The folder of the snapshot a Hub id names, or null when the text is not a Hub id. */
export function hubSnapshotDir(workdir: string, id: string): string | null {
  const ref = parseHubId(id);
  return ref ? hubCacheDir(workdir, ref) : null;
}

/**
 * Removes a snapshot unless it was used after `cutoff` (looked at again now); answers whether it
 * was removed.
 */
export function removeHubSnapshot(dir: string, cutoff: Date): boolean {
  const lastUsed = recordTime(dir);
  if (!lastUsed || lastUsed >= cutoff) return false;
  const doomed = path.join(path.dirname(dir), `.${path.basename(dir)}.removing-${crypto.randomBytes(4).toString('hex')}`);
  try {
    fs.renameSync(dir, doomed);
  } catch {
    return false;
  }
  fs.rmSync(doomed, { recursive: true, force: true });
  return true;
}

function recordTime(dir: string): Date | null {
  try {
    return fs.statSync(path.join(dir, SNAPSHOT_RECORD)).mtime;
  } catch {
    return null;
  }
}

function readDirs(dir: string): string[] {
  try {
    return fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
  } catch {
    return [];
  }
}
