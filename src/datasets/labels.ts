/**
 * YOLO label files, line by line, as Ultralytics' verify_image_label reads them (ULTRALYTICS.md):
 *  - detect: `cls cx cy w h`; a longer line is a polygon `cls x1 y1 … xn yn` (Ultralytics turns
 *    it into its bounding box), so it is accepted with an even coordinate count and ≥ 3 points.
 *  - segment: polygons only (≥ 3 points, even count); a bare box line would make Ultralytics
 *    drop every mask of the dataset, so it is a problem here.
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

export type LabelTask = 'detect' | 'segment';

export type LabelResult = {
  /** Valid object lines. */
  instances: number;
  duplicates: number;
  problems: number;
};

const isSpace = (c: number) => c === 32 || c === 9 || c === 13 || c === 11 || c === 12;

/**
 * Checks one label file's text; adds per-class instance counts into `counts` (index = class);
 * reports each bad line through `problem(line, message)` (1-based line numbers).
 */
export function checkLabelText(
  text: string,
  task: LabelTask,
  nc: number,
  counts: number[],
  problem: (line: number, message: string) => void,
): LabelResult {
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
    if (checkLine(text, starts, ends, k, lineNo, task, nc, report)) {
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

function checkLine(
  text: string,
  starts: number[],
  ends: number[],
  k: number,
  line: number,
  task: LabelTask,
  nc: number,
  report: (line: number, message: string) => void,
): boolean {
  const coords = k - 1;
  if (task === 'detect') {
    if (k !== 5 && k < 7) {
      report(line, `expected 5 values (cls cx cy w h) or a polygon (cls x1 y1 x2 y2 x3 y3 …), got ${k}`);
      return false;
    }
  } else if (k === 5) {
    report(line, 'a segment dataset needs polygons (cls x1 y1 x2 y2 x3 y3 …); this line is a box');
    return false;
  } else if (k < 7) {
    report(line, `a polygon needs a class and at least 3 points (7 values), got ${k}`);
    return false;
  }
  if (k > 5 || task === 'segment') {
    if (coords % 2 !== 0) {
      report(line, `polygon has an odd number of coordinates (${coords}); expected x y pairs`);
      return false;
    }
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
  for (let t = 1; t < k; t++) {
    const s = starts[t]!, e = ends[t]!;
    const v = numeric(text, s, e);
    if (!Number.isFinite(v)) {
      report(line, `value ${t + 1} "${text.slice(s, e)}" is not a finite number`);
      return false;
    }
    if (v < COORD_MIN || v > COORD_MAX) {
      report(line, `coordinate ${text.slice(s, e)} (value ${t + 1}) is outside [0, 1]; YOLO labels are normalized to the image size`);
      return false;
    }
  }
  return true;
}
