/**
 * Where a job's files, registered models and dataset archives are kept beyond this node's disk.
 *
 * Keys are relative, `/`-separated names (`jobs/<id>/files/weights/last.pt`,
 * `models/<id>/best.pt`, `datasets/<sha256>.zip`); each backend adds its own root (a folder, a
 * bucket and prefix). Two backends: `local.ts` (a folder: the workdir itself by default, where
 * nothing is copied because the files are already there) and `s3.ts` (S3-compatible object
 * storage, for several nodes that share one queue).
 */
import type { Readable } from 'node:stream';

export interface StoredObject {
  key: string;
  size: number;
  modifiedAt: Date;
}

export interface LinkOptions {
  /** The name the browser saves it under. */
  fileName: string;
  contentType: string;
  ttlSeconds: number;
}

export interface Storage {
  readonly kind: 'local' | 's3';
  /**
   * Whether the storage lies outside this node's workdir (another folder, a bucket): only then
   * are files copied there and read back from there when missing here. The default local
   * storage is the workdir itself: nothing changes.
   */
  readonly remote: boolean;
  /** Where it is, for logs and /health (never a credential). */
  readonly location: string;
  putFile(key: string, file: string, opts?: { contentType?: string }): Promise<void>;
  putStream(key: string, body: Readable, opts?: { contentType?: string }): Promise<void>;
  /** Writes the object to `file` (through a temporary name); false when there is no such object. */
  getToFile(key: string, file: string): Promise<boolean>;
  /** The object's bytes (optionally [start, end], inclusive), or null when missing. */
  getStream(key: string, range?: { start: number; end: number }): Promise<{ body: Readable; size: number } | null>;
  head(key: string): Promise<StoredObject | null>;
  /** Every object whose key starts with prefix, sorted by key. */
  list(prefix: string): Promise<StoredObject[]>;
  /** Deletes every object whose key starts with prefix; answers how many. */
  deletePrefix(prefix: string): Promise<number>;
  /**
   * A URL the client can fetch the object from directly (a presigned S3 URL), or null when
   * trainhook must stream it itself (local storage, or STORAGE_PUBLIC=false).
   */
  link(key: string, opts: LinkOptions): Promise<string | null>;
}

const SEGMENT_RE = /^[\w][\w.=-]{0,199}$/;

/** Joins key segments, refusing anything that could climb out of the root. */
export function storageKey(...segments: string[]): string {
  const parts = segments.flatMap((s) => s.split('/'));
  for (const p of parts) {
    if (!SEGMENT_RE.test(p)) throw new Error(`invalid storage key segment ${JSON.stringify(p)}`);
  }
  return parts.join('/');
}
