/**
 * YOLO label files, line by line, as Ultralytics' verify_image_label reads them:
 *  - detect: `cls cx cy w h`; a longer line is a polygon `cls x1 y1 … xn yn` (Ultralytics turns
 *    it into its bounding box), so it is accepted with an even coordinate count and ≥ 3 points.
 *  - segment: polygons only (≥ 3 points, even count); a bare box line would make Ultralytics
 *    drop every mask of the dataset, so it is a problem here.
 *  - pose: `cls cx cy w h` then K keypoints of D values each (`x y`, or `x y visibility`), with
 *    [K, D] from data.yaml's kpt_shape; exactly 5 + K·D values, as Ultralytics requires.
 *    Visibility must be 0, 1 or 2 (COCO's not labelled / hidden / visible). Ultralytics only
 *    asks it to be ≥ 0 and treats any non-zero value as visible; anything else is a typo or a
 *    confidence score here, so it is refused (deliberately stricter).
 *  - obb: `cls x1 y1 x2 y2 x3 y3 x4 y4`, the 4 corners. Ultralytics checks the axis-aligned box
 *    around the corners (centre and size within the tolerance below), not each corner: a rotated
 *    object cut by the image border has corners outside [0, 1], and trains fine. The same rule
 *    here. Longer polygons, which Ultralytics would fit a rotated box to, are refused
 *    (deliberately stricter: an OBB label is its 4 corners).
 *  - class: an integer in 0..nc-1. Coordinates: finite, within [-0.01, 1.01], Ultralytics'
 *    own tolerance (it clips afterwards); refusing 1.0000001 from a Roboflow export would
 *    reject datasets that train fine.
 *  - empty file or only blank lines: a background image. Duplicate rows: counted (Ultralytics
 *    drops them with a warning).
 *
 * Written as a char-code scanner: 10,000 files of a few lines each must parse in milliseconds,
 * with no regex or split() per line.
 */

export const COORD_MIN = -0.01;
export const COORD_MAX = 1.01;

export type LabelTask = 'detect' | 'segment' | 'pose' | 'obb';

/** Keypoints per object and values per keypoint (2: x y, 3: x y visibility): data.yaml's kpt_shape. */
export type KptShape = readonly [number, number];

export type LabelResult = {
  /** Valid object lines. */
  instances: number;
  duplicates: number;
  problems: number;
};

const isSpace = (c: number) => c === 32 || c === 9 || c === 13 || c === 11 || c === 12;

/**
 * Checks one label file's text; adds per-class instance counts into `counts` (index = class);
 * reports each bad line through `problem(line, message)` (1-based line numbers). A pose check
 * needs the dataset's kpt_shape.
 */
export function checkLabelText(
  text: string,
  task: LabelTask,
  nc: number,
  counts: number[],
  problem: (line: number, message: string) => void,
  kptShape?: KptShape,
): LabelResult {
  if (task === 'pose' && !kptShape) throw new Error('checkLabelText: a pose check needs kpt_shape');
  const result: LabelResult = { instances: 0, duplicates: 0, problems: 0 };
  const report = (line: number, message: string) => {
    result.problems++;
    problem(line, message);
  };
  let seen: Set<string> | null = null;
  let firstLine: string | null = null;
  const starts: number[] = [];
  const ends: number[] = [];
  const n = text.length;
  let pos = text.charCodeAt(0) === 0xfeff ? 1 : 0; // BOM
  for (let lineNo = 1; pos <= n; lineNo++) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = n;
    // Tokenize [pos, end) into start/end offsets (reused arrays, no substrings yet).
    starts.length = 0;
    ends.length = 0;
    for (let i = pos; i < end; ) {
      while (i < end && isSpace(text.charCodeAt(i))) i++;
      if (i >= end) break;
      const s = i;
      while (i < end && !isSpace(text.charCodeAt(i))) i++;
      starts.push(s);
      ends.push(i);
    }
    pos = end + 1;
    const k = starts.length;
    if (k === 0) continue; // blank line
    if (checkLine(text, starts, ends, k, lineNo, task, nc, report, kptShape)) {
      const cls = Number(text.slice(starts[0]!, ends[0]!));
      counts[cls] = (counts[cls] ?? 0) + 1;
      result.instances++;
      // Duplicate rows: compare the line's tokens; a Set only once a file has a second line.
      const key = text.slice(starts[0]!, ends[k - 1]!);
      if (firstLine === null) firstLine = key;
      else {
        if (!seen) seen = new Set([firstLine]);
        if (seen.has(key)) result.duplicates++;
        else seen.add(key);
      }
    }
  }
  return result;
}

/** Python's float() grammar, roughly: digits, sign, dot, exponent. Rejects JS-only forms like 0x10 or Infinity. */
function numeric(text: string, s: number, e: number): number {
  for (let i = s; i < e; i++) {
    const c = text.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || c === 46 || c === 43 || c === 45 || c === 101 || c === 69)) return NaN;
  }
  return Number(text.slice(s, e));
}

/** The value count a task wants on a line, or the message for a line that has another count. */
function countProblem(k: number, task: LabelTask, kpt: KptShape | undefined): string | null {
  const coords = k - 1;
  switch (task) {
    case 'detect':
      if (k !== 5 && k < 7) return `expected 5 values (cls cx cy w h) or a polygon (cls x1 y1 x2 y2 x3 y3 …), got ${k}`;
      if (k > 5 && coords % 2 !== 0) return `polygon has an odd number of coordinates (${coords}); expected x y pairs`;
      return null;
    case 'segment':
      if (k === 5) return 'a segment dataset needs polygons (cls x1 y1 x2 y2 x3 y3 …); this line is a box';
      if (k < 7) return `a polygon needs a class and at least 3 points (7 values), got ${k}`;
      if (coords % 2 !== 0) return `polygon has an odd number of coordinates (${coords}); expected x y pairs`;
      return null;
    case 'pose': {
      const [nk, nd] = kpt!;
      const want = 5 + nk * nd;
      if (k === want) return null;
      const each = nd === 3 ? 'x y visibility' : 'x y';
      const what = `cls cx cy w h, then ${nk} keypoint${nk === 1 ? '' : 's'} of ${nd} values (${each}), as data.yaml's kpt_shape [${nk}, ${nd}] says`;
      return k === 5 ? `this line is a box without keypoints; expected ${want} values (${what})` : `expected ${want} values (${what}), got ${k}`;
    }
    case 'obb':
      if (k === 9) return null;
      if (k === 5) return 'an obb dataset needs the 4 corners (cls x1 y1 x2 y2 x3 y3 x4 y4); this line is an axis-aligned box (cls cx cy w h)';
      return `expected 9 values (cls x1 y1 x2 y2 x3 y3 x4 y4: the 4 corners of the rotated box), got ${k}`;
  }
}

function checkLine(
  text: string,
  starts: number[],
  ends: number[],
  k: number,
  line: number,
  task: LabelTask,
  nc: number,
  report: (line: number, message: string) => void,
  kpt?: KptShape,
): boolean {
  const wrongCount = countProblem(k, task, kpt);
  if (wrongCount) {
    report(line, wrongCount);
    return false;
  }
  const clsText = text.slice(starts[0]!, ends[0]!);
  const cls = numeric(text, starts[0]!, ends[0]!);
  if (!Number.isInteger(cls)) {
    report(line, `class "${clsText}" is not an integer`);
    return false;
  }
  if (cls < 0 || cls >= nc) {
    report(line, `class ${clsText} is out of range (data.yaml has ${nc} class${nc === 1 ? '' : 'es'}: 0..${nc - 1})`);
    return false;
  }
  // Pose with visibility: every third value after the box is a visibility flag, not a coordinate.
  const visibilityAt = task === 'pose' && kpt![1] === 3 ? 2 : -1;
  let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
  for (let t = 1; t < k; t++) {
    const s = starts[t]!, e = ends[t]!;
    const v = numeric(text, s, e);
    if (!Number.isFinite(v)) {
      report(line, `value ${t + 1} "${text.slice(s, e)}" is not a finite number`);
      return false;
    }
    if (t >= 5 && (t - 5) % 3 === visibilityAt) {
      if (v !== 0 && v !== 1 && v !== 2) {
        report(
          line,
          `keypoint ${Math.floor((t - 5) / 3) + 1} visibility "${text.slice(s, e)}" (value ${t + 1}) must be 0, 1 or 2 (not labelled, labelled but hidden, visible)`,
        );
        return false;
      }
      continue;
    }
    if (task === 'obb') {
      // Judged below on the box around the corners, as Ultralytics does.
      if (t % 2 === 1) {
        minX = Math.min(minX, v);
        maxX = Math.max(maxX, v);
      } else {
        minY = Math.min(minY, v);
        maxY = Math.max(maxY, v);
      }
      continue;
    }
    if (v < COORD_MIN || v > COORD_MAX) {
      report(line, `coordinate ${text.slice(s, e)} (value ${t + 1}) is outside [0, 1]; YOLO labels are normalized to the image size`);
      return false;
    }
  }
  if (task === 'obb') {
    const box = [(minX + maxX) / 2, (minY + maxY) / 2, maxX - minX, maxY - minY];
    if (box.some((v) => v < COORD_MIN || v > COORD_MAX)) {
      const r = (v: number) => String(Math.round(v * 1e4) / 1e4);
      report(
        line,
        `corners span x ${r(minX)}..${r(maxX)}, y ${r(minY)}..${r(maxY)}: not normalized to the image size (the box around them needs its centre and size within [0, 1])`,
      );
      return false;
    }
  }
  return true;
}
