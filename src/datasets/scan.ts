/**
 * What every dataset check shares, whatever its layout: the problem list (first 50 kept, all
 * counted), time-sliced synchronous scanning, image headers of train and val, and the search
 * for identical images in both.
 *
 * Speed: only image headers (4 KB) are read, with synchronous calls run in time slices of a
 * few milliseconds between which the event loop gets control back (so the server keeps
 * answering while a 100,000-image dataset is checked). Thread-pool fs calls cost 3-7x more
 * per file than the reads themselves (numbers in images.ts). Content is hashed only for
 * train/val files whose sizes and first-4-KB CRCs collide.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { JobError } from '../core/errors.js';
import { checkImage, imageScratch, type ImageCheck } from './images.js';

export const MAX_REPORTED_PROBLEMS = 50;

export type Problem = { file: string; line: number | null; message: string };

export class Problems {
  readonly problems: Problem[] = [];
  total = 0;
  readonly files = new Set<string>();

  add(file: string, line: number | null, message: string): void {
    this.total++;
    this.files.add(file);
    if (this.problems.length < MAX_REPORTED_PROBLEMS) this.problems.push({ file, line, message });
  }

  /** DATASET_INVALID naming the first problem, with all kept problems and the dataset's info in details. */
  throwIfAny(info: unknown): void {
    if (this.total === 0) return;
    const first = this.problems[0]!;
    const where = first.line ? `${first.file}:${first.line}` : first.file;
    const n = this.total, f = this.files.size;
    throw new JobError(
      'DATASET_INVALID',
      `${n} problem${n === 1 ? '' : 's'} in ${f} file${f === 1 ? '' : 's'}, first: ${where}: ${first.message}`,
      { problems: this.problems, total_problems: n, files_with_problems: f, dataset_info: info },
    );
  }
}

const SLICE_MS = 8;

/**
 * Runs a synchronous fn over items, handing the event loop back every SLICE_MS so timers,
 * HTTP requests and SSE heartbeats are never held up longer than that (plus one file).
 */
export async function eachInSlices<T>(items: readonly T[], fn: (item: T, i: number) => void, signal?: AbortSignal) {
  let sliceStart = performance.now();
  for (let i = 0; i < items.length; i++) {
    fn(items[i]!, i);
    if (performance.now() - sliceStart > SLICE_MS) {
      await new Promise<void>((r) => setImmediate(r));
      if (signal?.aborted) throw new JobError('CANCELLED', 'dataset check cancelled');
      sliceStart = performance.now();
    }
  }
}

/** Counts done items; calls onProgress at most every 100 ms (the caller reports the end itself). */
export function throttledProgress(total: number, onProgress?: (done: number, total: number) => void): () => void {
  let done = 0;
  let last = 0;
  return () => {
    done++;
    if (!onProgress) return;
    const now = Date.now();
    if (now - last > 100) {
      last = now;
      onProgress(done, total);
    }
  };
}

function hashFile(file: string): string {
  return createHash('sha1').update(readFileSync(file)).digest('hex');
}

/**
 * Checks image headers of train and val (problems go to `problems`) and keeps, per size and
 * head CRC, which files each split holds: the candidates for identical images.
 */
export class ImageScan {
  truncatedJpegs = 0;
  private readonly buf = imageScratch();
  private readonly buckets = new Map<string, { train: string[]; val: string[] }>();

  constructor(
    private readonly problems: Problems,
    private readonly rel: (p: string) => string,
  ) {}

  check(split: 'train' | 'val', image: string): ImageCheck {
    const img = checkImage(image, this.buf);
    if (!img.ok) {
      this.problems.add(this.rel(image), null, img.message);
      return img;
    }
    if (img.truncatedJpeg) this.truncatedJpegs++;
    const key = `${img.size}:${img.headCrc}`;
    let bucket = this.buckets.get(key);
    if (!bucket) this.buckets.set(key, (bucket = { train: [], val: [] }));
    bucket[split].push(image);
    return img;
  }

  /** Val files whose bytes equal a different train file: hashed only where size and head CRC collide. */
  async duplicates(signal?: AbortSignal): Promise<{ count: number; examples: { train: string; val: string }[] }> {
    const examples: { train: string; val: string }[] = [];
    let count = 0;
    const toHash = [...this.buckets.values()].filter((b) => b.train.length && b.val.length);
    await eachInSlices(
      toHash,
      (bucket) => {
        const byHash = new Map<string, string>();
        for (const f of bucket.train) byHash.set(hashFile(f), f);
        for (const f of bucket.val) {
          const twin = byHash.get(hashFile(f));
          if (twin !== undefined && twin !== f) {
            count++;
            if (examples.length < 10) examples.push({ train: this.rel(twin), val: this.rel(f) });
          }
        }
      },
      signal,
    );
    return { count, examples };
  }
}
