/**
 * COCO run-length encoded masks, as pycocotools writes them (and SAM2's tools, which use it):
 * `{"size": [h, w], "counts": …}`. The mask is read column by column (Fortran order), the
 * runs alternate background and object starting with background (a mask whose first pixel is
 * set starts with a run of 0), and they add up to h*w.
 *
 * `counts` is either the plain array of runs (pycocotools' "uncompressed RLE", what
 * `binary_mask_to_rle` style exporters write) or pycocotools' compressed string: each run, after
 * the third, stored as its difference from the run two before, in 5-bit groups written as
 * characters from '0' (48), 0x20 meaning "more follows" and 0x10 the sign of the last group.
 * Arithmetic here uses plain numbers, not 32-bit shifts: a 7-group value needs 35 bits.
 */

export type Rle = { size: [number, number]; counts: number[] | string };

export class RleError extends Error {
  override readonly name = 'RleError';
}

/** The runs of a compressed counts string (pycocotools' rleFrString). */
export function decodeCounts(s: string): number[] {
  const counts: number[] = [];
  let p = 0;
  while (p < s.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      if (p >= s.length) throw new RleError('the counts string ends inside a value');
      const c = s.charCodeAt(p) - 48;
      if (c < 0 || c > 63) throw new RleError(`character ${JSON.stringify(s[p])} at ${p} is not part of a COCO counts string`);
      x += (c & 0x1f) * 2 ** (5 * k);
      more = (c & 0x20) !== 0;
      p++;
      k++;
      if (!more && (c & 0x10) !== 0) x -= 2 ** (5 * k);
      if (k > 8) throw new RleError('a run in the counts string is too long');
    }
    if (counts.length > 2) x += counts[counts.length - 2]!;
    counts.push(x);
  }
  return counts;
}

/** The compressed string of a list of runs (pycocotools' rleToString). */
export function encodeCounts(counts: readonly number[]): string {
  let s = '';
  for (let i = 0; i < counts.length; i++) {
    let x = counts[i]!;
    if (i > 2) x -= counts[i - 2]!;
    let more = true;
    while (more) {
      let c = ((x % 32) + 32) % 32;
      x = Math.floor(x / 32);
      more = (c & 0x10) !== 0 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      s += String.fromCharCode(c + 48);
    }
  }
  return s;
}

/** The runs of an RLE in either form, checked to cover exactly h*w pixels. */
export function runsOf(rle: Rle): number[] {
  const [h, w] = rle.size;
  if (!Number.isInteger(h) || !Number.isInteger(w) || h <= 0 || w <= 0) throw new RleError(`size must be two positive integers [height, width], not ${JSON.stringify(rle.size)}`);
  const counts = typeof rle.counts === 'string' ? decodeCounts(rle.counts) : rle.counts;
  let total = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i]!;
    if (!Number.isInteger(c) || c < 0) throw new RleError(`run ${i} is ${c}: runs are whole numbers, never negative`);
    total += c;
  }
  if (total !== h * w) throw new RleError(`the runs cover ${total} pixels, but size [${h}, ${w}] has ${h * w}`);
  return counts;
}

/** A mask (row-major, 1 byte a pixel, non-zero = object) as runs, column by column like pycocotools. */
export function encodeMask(mask: Uint8Array, h: number, w: number): number[] {
  if (mask.length !== h * w) throw new RleError(`the mask holds ${mask.length} pixels, not ${h}x${w}`);
  const counts: number[] = [];
  let current = 0;
  let run = 0;
  for (let x = 0; x < w; x++) {
    for (let y = 0; y < h; y++) {
      const v = mask[y * w + x] ? 1 : 0;
      if (v !== current) {
        counts.push(run);
        run = 0;
        current = v;
      }
      run++;
    }
  }
  counts.push(run);
  return counts;
}

/** The mask of an RLE, row-major, 1 byte a pixel. */
export function decodeMask(rle: Rle): Uint8Array {
  const [h, w] = rle.size;
  const runs = runsOf(rle);
  const mask = new Uint8Array(h * w);
  let i = 0;
  for (let r = 0; r < runs.length; r++) {
    const n = runs[r]!;
    if (r % 2 === 1) {
      for (let j = i; j < i + n; j++) mask[(j % h) * w + Math.floor(j / h)] = 1;
    }
    i += n;
  }
  return mask;
}

/** Pixels of the object. */
export function area(rle: Rle): number {
  return runsOf(rle).reduce((sum, n, i) => (i % 2 === 1 ? sum + n : sum), 0);
}

/**
 * The tight box of the object as COCO writes it, [x, y, w, h] in pixels, or null for an empty
 * mask (pycocotools' toBbox, without decoding the mask: a run that crosses into the next column
 * touches the first and the last row).
 */
export function maskBbox(rle: Rle): [number, number, number, number] | null {
  const [h] = rle.size;
  const runs = runsOf(rle);
  let xmin = Infinity, xmax = -Infinity, ymin = Infinity, ymax = -Infinity;
  let start = 0;
  for (let r = 0; r < runs.length; r++) {
    const n = runs[r]!;
    if (r % 2 === 1 && n > 0) {
      const end = start + n - 1;
      const x0 = Math.floor(start / h), x1 = Math.floor(end / h);
      xmin = Math.min(xmin, x0);
      xmax = Math.max(xmax, x1);
      if (x0 === x1) {
        ymin = Math.min(ymin, start % h);
        ymax = Math.max(ymax, end % h);
      } else {
        ymin = 0;
        ymax = h - 1;
      }
    }
    start += n;
  }
  if (xmin === Infinity) return null;
  return [xmin, ymin, xmax - xmin + 1, ymax - ymin + 1];
}
