/**
 * Image files: which ones a split holds (as Ultralytics globs them) and whether each is an
 * image Ultralytics can train on, judged from its header only (first 4 KB, more only for
 * JPEGs whose EXIF pushes the size marker further) plus its last two bytes for JPEGs.
 *
 * checkImage uses synchronous reads on purpose; the caller runs it in short time slices (see
 * check.ts). Measured on 10,000 small JPEGs (2 vCPU): open+fstat+read+read+close cost 23 µs
 * per image synchronously, 76 µs through fs callbacks and 167 µs through FileHandle promises
 * with 32 in flight; the libuv thread-pool round trip, not the disk, was the cost.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import zlib from 'node:zlib';
import path from 'node:path';
import { imageSize } from 'image-size';

/** Ultralytics' IMG_FORMATS (by extension, case-insensitive), minus pfm (never seen in the wild). */
export const IMAGE_EXTENSIONS = new Set(['bmp', 'dng', 'jpeg', 'jpg', 'mpo', 'png', 'tif', 'tiff', 'webp', 'heic']);
/** Formats by content (image-size's names) that Ultralytics (PIL + OpenCV) trains on offline. */
const TRAINABLE = new Set(['jpg', 'png', 'bmp', 'tiff', 'webp']);
const MIN_SIDE = 10;
const HEAD_BYTES = 4096;
const MAX_HEAD_BYTES = 1024 * 1024;

export function extensionOf(file: string): string {
  const dot = file.lastIndexOf('.');
  return dot < 0 ? '' : file.slice(dot + 1).toLowerCase();
}

/** Ultralytics' img2label_paths: the last /images/ becomes /labels/, the extension .txt. */
export function labelPathFor(image: string): string {
  const sa = `${path.sep}images${path.sep}`;
  const i = image.lastIndexOf(sa);
  const p = i < 0 ? image : `${image.slice(0, i)}${path.sep}labels${path.sep}${image.slice(i + sa.length)}`;
  const dot = p.lastIndexOf('.');
  return `${dot > p.lastIndexOf(path.sep) ? p.slice(0, dot) : p}.txt`;
}

/**
 * Image files under a folder, recursively and sorted, like Ultralytics' glob("**\/*.*"):
 * hidden files are skipped (glob does), files with other extensions are counted as ignored.
 */
export async function listImages(dir: string, extensions: ReadonlySet<string> = IMAGE_EXTENSIONS): Promise<{ images: string[]; ignored: string[] }> {
  const images: string[] = [];
  const ignored: string[] = [];
  const walk = async (d: string) => {
    const entries = await readdir(d, { withFileTypes: true });
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const full = path.join(d, e.name);
      if (e.isDirectory()) await walk(full);
      else if (e.isFile()) (extensions.has(extensionOf(e.name)) ? images : ignored).push(full);
    }
  };
  await walk(dir);
  images.sort();
  return { images, ignored };
}

export type ImageCheck =
  | { ok: true; size: number; width: number; height: number; format: string; truncatedJpeg: boolean; headCrc: number }
  | { ok: false; size: number; message: string };

/** A scratch buffer per concurrent reader, so 10,000 checks allocate almost nothing. */
export function imageScratch(): Buffer {
  return Buffer.allocUnsafe(HEAD_BYTES);
}

function sizeOf(buf: Uint8Array): ReturnType<typeof imageSize> | null {
  try {
    return imageSize(buf);
  } catch {
    return null;
  }
}

export function checkImage(file: string, scratch: Buffer): ImageCheck {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    return { ok: false, size: 0, message: `cannot open the image (${(err as NodeJS.ErrnoException).code ?? 'error'})` };
  }
  try {
    const bytesRead = readSync(fd, scratch, 0, scratch.length, 0);
    // A short read means the whole file is in the buffer: no fstat, no second read for the tail.
    const whole = bytesRead < scratch.length;
    const size = whole ? bytesRead : fstatSync(fd).size;
    if (size === 0) return { ok: false, size, message: 'the image file is empty (0 bytes)' };
    // A cheap fingerprint of the first bytes: only files whose size and fingerprint match
    // across train and val are hashed whole when looking for duplicates.
    const headCrc = zlib.crc32(scratch.subarray(0, bytesRead));
    let dims = sizeOf(scratch.subarray(0, bytesRead));
    if (!dims && size > bytesRead) {
      // A JPEG's size marker can sit after a large EXIF/ICC block: read further, bounded.
      const more = Buffer.allocUnsafe(Math.min(size, MAX_HEAD_BYTES));
      dims = sizeOf(more.subarray(0, readSync(fd, more, 0, more.length, 0)));
    }
    if (!dims || !dims.type) return { ok: false, size, message: 'not a readable image (unknown format or damaged header)' };
    const format = dims.type;
    if (format === 'heif') return { ok: false, size, message: 'HEIC/HEIF images are not supported offline; convert them to JPEG or PNG' };
    if (!TRAINABLE.has(format)) return { ok: false, size, message: `${format.toUpperCase()} is not an image format Ultralytics trains on (use JPEG or PNG)` };
    // EXIF orientations 5–8 swap width and height, as Ultralytics' exif_size does.
    const swap = (dims.orientation ?? 1) >= 5;
    const width = swap ? dims.height : dims.width;
    const height = swap ? dims.width : dims.height;
    if (!(width >= MIN_SIDE && height >= MIN_SIDE)) {
      return { ok: false, size, message: `the image is ${width}x${height}; both sides must be at least ${MIN_SIDE} px` };
    }
    let truncatedJpeg = false;
    if (format === 'jpg' && size >= 4) {
      // Ultralytics re-saves a JPEG that does not end in FFD9 (a warning there, so here too).
      const at = whole ? size - 2 : 0;
      const n = whole ? 2 : readSync(fd, scratch, 0, 2, size - 2);
      truncatedJpeg = !(n === 2 && scratch[at] === 0xff && scratch[at + 1] === 0xd9);
    }
    return { ok: true, size, width, height, format, truncatedJpeg, headCrc };
  } catch (err) {
    return { ok: false, size: 0, message: `cannot read the image (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
  } finally {
    closeSync(fd);
  }
}
