/**
 * Safe, streaming ZIP extraction (yauzl, lazy entries, read from the file on disk).
 *
 * Memory stays flat whatever the archive size: one entry at a time is piped to disk. Nothing
 * in an entry's header is trusted for the caps: inflated bytes are counted as they stream
 * (headers are only used to refuse early), and the CRC-32 of every file is checked (yauzl
 * does not).
 *
 * Error codes:
 *  - DATASET_CORRUPTED: the archive cannot be read: not a ZIP, truncated, bad CRC, broken
 *    deflate data, sizes that disagree with the data.
 *  - DATASET_INVALID, details {entry, reason}: a readable archive with a hostile or unsupported
 *    entry: absolute path, drive letter, `..`, NUL, symlink, device/FIFO/socket, encryption,
 *    an unknown compression method, too many entries, too many bytes, a compression ratio
 *    over the cap (zip bombs).
 * Skipped silently: macOS metadata (__MACOSX/, .DS_Store, AppleDouble `._*`) and Thumbs.db.
 */
import { closeSync, createWriteStream, fstatSync, openSync, readSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import yauzl from 'yauzl';
import { JobError } from '../core/errors.js';

export type ExtractLimits = {
  maxEntries: number;
  maxUncompressedBytes: number;
  maxCompressionRatio: number;
};

export type ExtractResult = { files: number; directories: number; bytes: number; skipped: number };

/** Entries smaller than this are not held to the ratio cap: small text files (labels) compress very well legitimately. */
const RATIO_FLOOR_BYTES = 1024 * 1024;

/** Entries up to this size are read whole and written in one call; larger ones stream. */
const SMALL_ENTRY_BYTES = 1024 * 1024;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

function invalid(entry: string, reason: string, message: string): JobError {
  return new JobError('DATASET_INVALID', `the dataset ZIP has a refused entry "${entry}": ${message}`, { entry, reason });
}

function corrupted(message: string, entry?: string, cause?: unknown): JobError {
  const where = entry ? ` (at entry "${entry}")` : '';
  return new JobError(
    'DATASET_CORRUPTED',
    `the dataset file is not a readable ZIP archive${where}: ${message}; re-create the ZIP and upload it again`,
    entry ? { entry } : null,
    { cause },
  );
}

/**
 * The entry's path, made safe, or a refusal. Backslashes become slashes first (Windows
 * PowerShell 5 writes them), so `..\\x` and `C:\\x` are judged as the paths they would become.
 * Returns null for entries to skip.
 */
export function safeEntryPath(name: string): { rel: string; dir: boolean } | null {
  if (/[\u0000-\u001f]/.test(name)) throw invalid(name, 'CONTROL_CHARACTER', 'control characters in the name');
  const slashed = name.replace(/\\/g, '/');
  if (slashed.startsWith('/')) throw invalid(name, 'ABSOLUTE_PATH', 'absolute path');
  if (/^[a-zA-Z]:/.test(slashed)) throw invalid(name, 'ABSOLUTE_PATH', 'drive-letter path');
  const parts = slashed.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw invalid(name, 'PATH_TRAVERSAL', '".." in the path');
  if (parts.length === 0) return null;
  const base = parts[parts.length - 1]!;
  if (parts.includes('__MACOSX') || base === '.DS_Store' || base.startsWith('._') || base === 'Thumbs.db') return null;
  return { rel: parts.join('/'), dir: slashed.endsWith('/') };
}

function entryKind(entry: yauzl.Entry, name: string): 'file' | 'dir' {
  // Unix mode lives in the high 16 bits; judged whenever set, whatever host wrote the archive.
  const mode = (entry.externalFileAttributes >>> 16) & S_IFMT;
  if (mode === S_IFLNK) throw invalid(name, 'SYMLINK', 'symbolic links are not allowed');
  if (mode !== 0 && mode !== S_IFREG && mode !== S_IFDIR) {
    throw invalid(name, 'SPECIAL_FILE', 'device, FIFO and socket entries are not allowed');
  }
  // MS-DOS directory attribute (0x10) or a trailing slash mark a directory.
  return mode === S_IFDIR || (entry.externalFileAttributes & 0x10) !== 0 ? 'dir' : 'file';
}

function openZip(file: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) => {
    yauzl.open(
      file,
      { lazyEntries: true, autoClose: false, decodeStrings: false, validateEntrySizes: true },
      (err, zip) => (err ? reject(corrupted(err.message, undefined, err)) : resolve(zip)),
    );
  });
}

function nextEntry(zip: yauzl.ZipFile): Promise<yauzl.Entry | null> {
  return new Promise((resolve, reject) => {
    const done = () => {
      zip.off('entry', onEntry);
      zip.off('end', onEnd);
      zip.off('error', onError);
    };
    const onEntry = (e: yauzl.Entry) => (done(), resolve(e));
    const onEnd = () => (done(), resolve(null));
    const onError = (err: Error) => (done(), reject(corrupted(err.message, undefined, err)));
    zip.on('entry', onEntry);
    zip.once('end', onEnd);
    zip.once('error', onError);
    zip.readEntry();
  });
}

function openEntry(zip: yauzl.ZipFile, entry: yauzl.Entry, name: string) {
  return new Promise<NodeJS.ReadableStream>((resolve, reject) => {
    zip.openReadStream(entry, (err, stream) => (err ? reject(corrupted(err.message, name, err)) : resolve(stream)));
  });
}

export async function extractZip(
  zipPath: string,
  destDir: string,
  limits: ExtractLimits,
  opts: { onProgress?: (done: number, total: number) => void; signal?: AbortSignal } = {},
): Promise<ExtractResult> {
  const root = path.resolve(destDir);
  await mkdir(root, { recursive: true });
  const zip = await openZip(zipPath);
  // Without a listener, an error yauzl emits between our reads would crash the process.
  zip.on('error', () => {});
  const result: ExtractResult = { files: 0, directories: 0, bytes: 0, skipped: 0 };
  const counted = { bytes: 0 };
  // Small entries are read and written with plain synchronous calls on this descriptor: a few
  // system calls each, where streams cost several thread-pool round trips per file. Each takes
  // well under a millisecond, and the central directory's reads between them keep the event
  // loop turning.
  const fd = openSync(zipPath, 'r');
  const zipSize = fstatSync(fd).size;
  try {
    if (zip.entryCount > limits.maxEntries) {
      throw invalid('(archive)', 'TOO_MANY_ENTRIES', `${zip.entryCount} entries, over the limit of ${limits.maxEntries}`);
    }
    const madeDirs = new Set<string>([root]);
    const ensureDir = async (dir: string) => {
      if (madeDirs.has(dir)) return;
      await mkdir(dir, { recursive: true });
      madeDirs.add(dir);
    };
    for (let index = 0; ; index++) {
      if (opts.signal?.aborted) throw new JobError('CANCELLED', 'extraction cancelled');
      const entry = await nextEntry(zip);
      if (!entry) break;
      opts.onProgress?.(index, zip.entryCount);
      const raw = entry.fileName as unknown as Buffer; // decodeStrings: false
      const name = yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, raw, entry.extraFields, true);
      if (index + 1 > limits.maxEntries) throw invalid(name, 'TOO_MANY_ENTRIES', `more than ${limits.maxEntries} entries`);
      const safe = safeEntryPath(name);
      const kind = entryKind(entry, name);
      if (!safe) {
        result.skipped++;
        continue;
      }
      const target = path.join(root, safe.rel);
      // Belt and braces: whatever the checks above missed, nothing lands outside root.
      if (!target.startsWith(root + path.sep)) throw invalid(name, 'PATH_TRAVERSAL', 'path leaves the dataset folder');
      if (safe.dir || kind === 'dir') {
        await ensureDir(target);
        result.directories++;
        continue;
      }
      if ((entry.generalPurposeBitFlag & 0x1) !== 0) throw invalid(name, 'ENCRYPTED', 'encrypted entries are not supported');
      if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
        throw invalid(name, 'UNSUPPORTED_COMPRESSION', `compression method ${entry.compressionMethod} is not supported (use deflate or store)`);
      }
      // Early refusals from the headers; the counted bytes below are what is enforced.
      if (counted.bytes + entry.uncompressedSize > limits.maxUncompressedBytes) {
        throw invalid(name, 'TOO_LARGE', `the archive expands past the ${limits.maxUncompressedBytes}-byte limit`);
      }
      if (entry.uncompressedSize > RATIO_FLOOR_BYTES && entry.uncompressedSize > limits.maxCompressionRatio * Math.max(1, entry.compressedSize)) {
        throw invalid(name, 'COMPRESSION_RATIO', `compression ratio over ${limits.maxCompressionRatio}:1 (zip bomb?)`);
      }
      await ensureDir(path.dirname(target));
      if (entry.uncompressedSize > SMALL_ENTRY_BYTES) {
        // Large entries stream to disk: memory stays flat.
        await writeEntry(zip, entry, name, target, limits, counted);
      } else {
        const data = readSmallEntry(fd, zipSize, entry, name, limits, counted);
        try {
          writeFileSync(target, data);
        } catch (err) {
          throw writeError(err, name);
        }
      }
      result.files++;
    }
    result.bytes = counted.bytes;
    opts.onProgress?.(zip.entryCount, zip.entryCount);
    return result;
  } finally {
    closeSync(fd);
    zip.close();
  }
}

/** Counts and checks an entry's inflated bytes as they pass: the caps and its CRC-32. */
function entryMeter(entry: yauzl.Entry, name: string, limits: ExtractLimits, counted: { bytes: number }) {
  let bytes = 0;
  let crc = 0;
  const maxForEntry = Math.max(RATIO_FLOOR_BYTES, limits.maxCompressionRatio * Math.max(1, entry.compressedSize));
  const meter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      counted.bytes += chunk.length;
      if (counted.bytes > limits.maxUncompressedBytes) {
        return cb(invalid(name, 'TOO_LARGE', `the archive expands past the ${limits.maxUncompressedBytes}-byte limit`));
      }
      if (bytes > maxForEntry) {
        return cb(invalid(name, 'COMPRESSION_RATIO', `compression ratio over ${limits.maxCompressionRatio}:1 (zip bomb?)`));
      }
      crc = zlib.crc32(chunk, crc);
      cb(null, chunk);
    },
  });
  const checkCrc = () => {
    if (crc >>> 0 !== entry.crc32 >>> 0) throw corrupted('CRC-32 mismatch', name);
  };
  return { meter, checkCrc };
}

/** A failure to write an entry, as the archive's fault or the server's. */
function writeError(err: unknown, name: string): unknown {
  if (err instanceof JobError) return err;
  const code = (err as { code?: string }).code;
  if (code === 'ENOTDIR' || code === 'EISDIR' || code === 'EEXIST') {
    return invalid(name, 'PATH_CONFLICT', 'a file and a folder share this path');
  }
  if (code === 'ENOSPC' || code === 'EDQUOT') return err; // the server's problem, not the archive's
  return corrupted((err as Error).message, name, err);
}

const LOCAL_HEADER_BYTES = 30;
const LOCAL_HEADER_SIGNATURE = 0x04034b50;

/**
 * A small entry's bytes, read straight from the archive and checked as the streaming path checks
 * them: the caps, the declared size (inflation stops just past it, so memory stays bounded by
 * SMALL_ENTRY_BYTES whatever the data says) and the CRC-32.
 */
function readSmallEntry(fd: number, zipSize: number, entry: yauzl.Entry, name: string, limits: ExtractLimits, counted: { bytes: number }): Buffer {
  const head = Buffer.alloc(LOCAL_HEADER_BYTES);
  const at = entry.relativeOffsetOfLocalHeader;
  if (readSync(fd, head, 0, LOCAL_HEADER_BYTES, at) !== LOCAL_HEADER_BYTES || head.readUInt32LE(0) !== LOCAL_HEADER_SIGNATURE) {
    throw corrupted('invalid local file header', name);
  }
  const start = at + LOCAL_HEADER_BYTES + head.readUInt16LE(26) + head.readUInt16LE(28);
  if (start + entry.compressedSize > zipSize) throw corrupted('the entry runs past the end of the file', name);
  const raw = Buffer.allocUnsafe(entry.compressedSize);
  if (entry.compressedSize > 0 && readSync(fd, raw, 0, entry.compressedSize, start) !== entry.compressedSize) {
    throw corrupted('the entry runs past the end of the file', name);
  }
  let data: Buffer;
  if (entry.compressionMethod === 0) {
    data = raw;
  } else {
    try {
      data = zlib.inflateRawSync(raw, { maxOutputLength: entry.uncompressedSize + 1 });
    } catch (err) {
      const tooLong = (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE';
      throw corrupted(tooLong ? 'the entry inflates past its declared size' : (err as Error).message, name, err);
    }
  }
  if (data.length !== entry.uncompressedSize) {
    throw corrupted(`the entry holds ${data.length} bytes, its header says ${entry.uncompressedSize}`, name);
  }
  counted.bytes += data.length;
  if (counted.bytes > limits.maxUncompressedBytes) {
    throw invalid(name, 'TOO_LARGE', `the archive expands past the ${limits.maxUncompressedBytes}-byte limit`);
  }
  if ((zlib.crc32(data) >>> 0) !== (entry.crc32 >>> 0)) throw corrupted('CRC-32 mismatch', name);
  return data;
}

async function writeEntry(
  zip: yauzl.ZipFile,
  entry: yauzl.Entry,
  name: string,
  target: string,
  limits: ExtractLimits,
  counted: { bytes: number },
): Promise<void> {
  const input = await openEntry(zip, entry, name);
  const { meter, checkCrc } = entryMeter(entry, name, limits, counted);
  try {
    await pipeline(input, meter, createWriteStream(target));
  } catch (err) {
    throw writeError(err, name);
  }
  checkCrc();
}

/**
 * What the archive says it expands to, from its central directory alone (no entry is inflated):
 * the sum of the entries' declared uncompressed sizes. Read before extracting, to tell whether
 * the disk can hold the result; extraction itself still counts the bytes it writes.
 */
export async function zipDeclaredSize(zipPath: string): Promise<{ entries: number; uncompressedBytes: number }> {
  const zip = await openZip(zipPath);
  zip.on('error', () => {});
  try {
    let uncompressedBytes = 0;
    let entries = 0;
    for (;;) {
      const entry = await nextEntry(zip);
      if (!entry) break;
      entries++;
      uncompressedBytes += entry.uncompressedSize;
    }
    return { entries, uncompressedBytes };
  } finally {
    zip.close();
  }
}
