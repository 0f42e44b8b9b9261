/**
 * Synthetic datasets for tests and benches: one filled shape kind and one colour per class
 * (rectangle, circle, triangle, repeating) on coloured noise.
 *  - detect / segment: 1–3 shapes per image, labelled by box or polygon.
 *  - pose: the same shapes, each with 4 keypoints (top, right, bottom, left extremity),
 *    kpt_shape [4, 3] (or [4, 2]) and the flip_idx that swaps right and left.
 *  - obb: 1–3 rotated rectangles (class = colour), labelled by their 4 corners.
 *  - classify (writeSyntheticClassifyDataset): one large shape per image, a folder per class.
 * Deterministic: the same options and seed give byte-identical files, so tests can assert
 * counts and benches compare runs. Shapes are large, saturated and never overlap much, so a
 * tiny model learns them in a few CPU epochs at imgsz 64.
 */
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { PNG } from 'pngjs';
import yazl from 'yazl';
import { encodeJpeg } from './jpeg-encode.js';
import { rng } from '../../src/datasets/prepare/split.js';

export type SyntheticTask = 'detect' | 'segment' | 'pose' | 'obb';

export type SyntheticOptions = {
  task: SyntheticTask;
  train: number;
  val: number;
  imgsz: number;
  classes: string[];
  seed: number;
  layout?: 'ultralytics' | 'roboflow';
  format?: 'png' | 'jpg';
  /** pose: 3 writes x y visibility per keypoint, 2 writes x y (default 3). */
  kptDims?: 2 | 3;
};

/** The synthetic pose keypoints: each shape's top, right, bottom and left extremity. */
export const POSE_KEYPOINTS = ['top', 'right', 'bottom', 'left'] as const;
/** Mirroring an image left-right swaps the right and left keypoints. */
export const POSE_FLIP_IDX = [0, 3, 2, 1] as const;

/** Seeded, so the pictures are reproducible: the split's own generator. */
export const prng = rng;

const PALETTE: readonly [number, number, number][] = [
  [230, 25, 25], [25, 200, 40], [30, 60, 235], [245, 220, 20], [220, 30, 220],
  [20, 220, 220], [250, 130, 0], [120, 40, 180], [255, 255, 255], [0, 0, 0],
];

type Shape = 'rect' | 'circle' | 'triangle';
const SHAPES: readonly Shape[] = ['rect', 'circle', 'triangle'];
/** `polygon`: any convex polygon (the rotated rectangles of obb). */
type Fill = Shape | 'polygon';

type Obj = { cls: number; x0: number; y0: number; x1: number; y1: number; poly: [number, number][] };

function colourOf(cls: number): [number, number, number] {
  const base = PALETTE[cls % PALETTE.length]!;
  // Past the palette, shift the hue a little so every class stays distinct.
  const k = Math.floor(cls / PALETTE.length);
  return [(base[0] + 97 * k) % 256, (base[1] + 53 * k) % 256, (base[2] + 151 * k) % 256];
}

function polygonOf(shape: Shape, x0: number, y0: number, x1: number, y1: number): [number, number][] {
  if (shape === 'rect') return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]];
  if (shape === 'triangle') return [[(x0 + x1) / 2, y0], [x1, y1], [x0, y1]];
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, r = (x1 - x0) / 2;
  const pts: [number, number][] = [];
  for (let i = 0; i < 16; i++) {
    const t = (i / 16) * 2 * Math.PI;
    pts.push([cx + r * Math.cos(t), cy + r * Math.sin(t)]);
  }
  return pts;
}

function inside(shape: Fill, o: Obj, px: number, py: number): boolean {
  if (shape === 'rect') return px >= o.x0 && px < o.x1 && py >= o.y0 && py < o.y1;
  if (shape === 'circle') {
    const cx = (o.x0 + o.x1) / 2, cy = (o.y0 + o.y1) / 2, r = (o.x1 - o.x0) / 2;
    return (px - cx) ** 2 + (py - cy) ** 2 <= r * r;
  }
  // Triangle or convex polygon: the same sign for every edge function.
  let pos = true, neg = true;
  for (let i = 0; i < o.poly.length; i++) {
    const p = o.poly[i]!, q = o.poly[(i + 1) % o.poly.length]!;
    const d = (q[0] - p[0]) * (py - p[1]) - (q[1] - p[1]) * (px - p[0]);
    if (d < 0) pos = false;
    if (d > 0) neg = false;
  }
  return pos || neg;
}

function overlaps(a: Obj, b: Obj): boolean {
  const ix = Math.max(0, Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0));
  const iy = Math.max(0, Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0));
  return ix * iy > 0.1 * Math.min((a.x1 - a.x0) * (a.y1 - a.y0), (b.x1 - b.x0) * (b.y1 - b.y0));
}

/** Coloured noise: one random draw gives the three channels of a pixel (speed: 10,000-image benches). */
function noise(rand: () => number, imgsz: number): Buffer {
  const rgb = Buffer.alloc(imgsz * imgsz * 3);
  for (let i = 0; i < rgb.length; i += 3) {
    const r = Math.floor(rand() * 0x1000000);
    rgb[i] = 70 + ((r & 0xff) % 110);
    rgb[i + 1] = 70 + (((r >> 8) & 0xff) % 110);
    rgb[i + 2] = 70 + (((r >> 16) & 0xff) % 110);
  }
  return rgb;
}

function paint(rgb: Buffer, imgsz: number, o: Obj, shape: Fill) {
  const [r, g, b] = colourOf(o.cls);
  for (let y = Math.max(0, o.y0); y < Math.min(imgsz, o.y1); y++) {
    for (let x = Math.max(0, o.x0); x < Math.min(imgsz, o.x1); x++) {
      if (!inside(shape, o, x + 0.5, y + 0.5)) continue;
      const i = (y * imgsz + x) * 3;
      rgb[i] = r; rgb[i + 1] = g; rgb[i + 2] = b;
    }
  }
}

/** top, right, bottom, left extremity of a shape drawn in its box (order of POSE_KEYPOINTS). */
function keypointsOf(shape: Shape, o: Obj): [number, number][] {
  const cx = (o.x0 + o.x1) / 2, cy = (o.y0 + o.y1) / 2;
  if (shape === 'triangle') return [[cx, o.y0], [o.x1, o.y1], [cx, o.y1], [o.x0, o.y1]];
  return [[cx, o.y0], [o.x1, cy], [cx, o.y1], [o.x0, cy]];
}

/** One image: RGB pixels and its label lines. */
export function drawSample(rand: () => number, imgsz: number, nc: number, task: SyntheticTask, kptDims: 2 | 3 = 3) {
  if (task === 'obb') return drawRotated(rand, imgsz, nc);
  const rgb = noise(rand, imgsz);
  const want = 1 + Math.floor(rand() * 3);
  const objs: Obj[] = [];
  for (let tries = 0; objs.length < want && tries < 30; tries++) {
    const cls = Math.floor(rand() * nc);
    const side = Math.round(imgsz * (0.25 + rand() * 0.2));
    const x0 = Math.floor(rand() * (imgsz - side)), y0 = Math.floor(rand() * (imgsz - side));
    const o: Obj = { cls, x0, y0, x1: x0 + side, y1: y0 + side, poly: [] };
    o.poly = polygonOf(SHAPES[cls % SHAPES.length]!, o.x0, o.y0, o.x1, o.y1);
    if (objs.some((p) => overlaps(p, o))) continue;
    objs.push(o);
  }
  for (const o of objs) paint(rgb, imgsz, o, SHAPES[o.cls % SHAPES.length]!);
  const f = (v: number) => Math.min(1, Math.max(0, v / imgsz)).toFixed(6);
  const box = (o: Obj) => `${o.cls} ${f((o.x0 + o.x1) / 2)} ${f((o.y0 + o.y1) / 2)} ${f(o.x1 - o.x0)} ${f(o.y1 - o.y0)}`;
  const lines = objs.map((o) => {
    if (task === 'detect') return box(o);
    if (task === 'segment') return `${o.cls} ${o.poly.map(([x, y]) => `${f(x)} ${f(y)}`).join(' ')}`;
    const kpts = keypointsOf(SHAPES[o.cls % SHAPES.length]!, o);
    return `${box(o)} ${kpts.map(([x, y]) => `${f(x)} ${f(y)}${kptDims === 3 ? ' 2' : ''}`).join(' ')}`;
  });
  return { rgb, lines };
}

/**
 * Oriented boxes: 1–3 rotated rectangles (class = colour) whose corners all lie inside the
 * image, labelled `cls x1 y1 x2 y2 x3 y3 x4 y4` in drawing order.
 */
function drawRotated(rand: () => number, imgsz: number, nc: number) {
  const rgb = noise(rand, imgsz);
  const want = 1 + Math.floor(rand() * 3);
  const objs: (Obj & { corners: [number, number][] })[] = [];
  for (let tries = 0; objs.length < want && tries < 30; tries++) {
    const cls = Math.floor(rand() * nc);
    const w = imgsz * (0.3 + rand() * 0.2), h = w * (0.35 + rand() * 0.25);
    const angle = rand() * Math.PI;
    const cos = Math.cos(angle), sin = Math.sin(angle);
    const r = Math.hypot(w, h) / 2;
    const cx = r + 1 + rand() * (imgsz - 2 * r - 2), cy = r + 1 + rand() * (imgsz - 2 * r - 2);
    const corners = ([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]] as const).map(
      ([dx, dy]) => [cx + dx * cos - dy * sin, cy + dx * sin + dy * cos] as [number, number],
    );
    const xs = corners.map((c) => c[0]), ys = corners.map((c) => c[1]);
    const o = {
      cls, corners, poly: corners,
      x0: Math.floor(Math.min(...xs)), y0: Math.floor(Math.min(...ys)), x1: Math.ceil(Math.max(...xs)), y1: Math.ceil(Math.max(...ys)),
    };
    if (objs.some((p) => overlaps(p, o))) continue;
    objs.push(o);
  }
  for (const o of objs) paint(rgb, imgsz, o, 'polygon');
  const f = (v: number) => Math.min(1, Math.max(0, v / imgsz)).toFixed(6);
  const lines = objs.map((o) => `${o.cls} ${o.corners.map(([x, y]) => `${f(x)} ${f(y)}`).join(' ')}`);
  return { rgb, lines };
}

export function encodeImage(rgb: Buffer, size: number, format: 'png' | 'jpg'): Buffer {
  if (format === 'jpg') return encodeJpeg(rgb, size, size, 90);
  const png = new PNG({ width: size, height: size, colorType: 2, inputColorType: 2, inputHasAlpha: false });
  // pngjs keeps RGBA internally even for colour type 2.
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    png.data[j] = rgb[i]!; png.data[j + 1] = rgb[i + 1]!; png.data[j + 2] = rgb[i + 2]!; png.data[j + 3] = 255;
  }
  return PNG.sync.write(png, { colorType: 2, inputColorType: 6 });
}

export async function writeSyntheticDataset(
  dir: string,
  opts: SyntheticOptions,
): Promise<{ root: string; dataYaml: string }> {
  const layout = opts.layout ?? 'ultralytics';
  const format = opts.format ?? 'png';
  const root = path.resolve(dir);
  const rand = prng(opts.seed);
  const splitDirs = (split: 'train' | 'val') => {
    if (layout === 'ultralytics') {
      return { images: path.join(root, 'images', split), labels: path.join(root, 'labels', split) };
    }
    const s = split === 'val' ? 'valid' : 'train';
    return { images: path.join(root, s, 'images'), labels: path.join(root, s, 'labels') };
  };
  for (const [split, count] of [['train', opts.train], ['val', opts.val]] as const) {
    const d = splitDirs(split);
    await mkdir(d.images, { recursive: true });
    await mkdir(d.labels, { recursive: true });
    for (let i = 0; i < count; i++) {
      const { rgb, lines } = drawSample(rand, opts.imgsz, opts.classes.length, opts.task, opts.kptDims);
      const stem = `${split}_${String(i).padStart(5, '0')}`;
      await writeFile(path.join(d.images, `${stem}.${format}`), encodeImage(rgb, opts.imgsz, format));
      await writeFile(path.join(d.labels, `${stem}.txt`), lines.length ? lines.join('\n') + '\n' : '');
    }
  }
  const names = opts.classes.map((n) => `  - ${JSON.stringify(n)}`).join('\n');
  const keypoints =
    opts.task === 'pose' ? `kpt_shape: [${POSE_KEYPOINTS.length}, ${opts.kptDims ?? 3}]\nflip_idx: [${POSE_FLIP_IDX.join(', ')}]\n` : '';
  // Ultralytics layout: an absolute path so Ultralytics itself can train on the folder as is.
  // Roboflow layout: its export's "../train/images" paths and no `path:` key, as Roboflow writes them.
  const yaml =
    layout === 'ultralytics'
      ? `path: ${JSON.stringify(root)}\ntrain: images/train\nval: images/val\n${keypoints}nc: ${opts.classes.length}\nnames:\n${names}\n`
      : `train: ../train/images\nval: ../valid/images\n${keypoints}nc: ${opts.classes.length}\nnames:\n${names}\n`;
  const dataYaml = path.join(root, 'data.yaml');
  await writeFile(dataYaml, yaml);
  return { root, dataYaml };
}

export type SyntheticClassifyOptions = {
  /** Images in train and in the validation folder; class i % nc for image i, so every class gets its share. */
  train: number;
  val: number;
  imgsz: number;
  /** Class names, used as folder names. */
  classes: string[];
  seed: number;
  format?: 'png' | 'jpg';
  /** The validation folder's name (Ultralytics reads val, validation or valid, else test). */
  valFolder?: 'val' | 'validation' | 'valid' | 'test';
};

/**
 * A classification dataset as Ultralytics reads it: `train/<class>/*.png` and
 * `val/<class>/*.png`, one large shape per image (shape kind and colour by class, as above).
 * Returns the folder to pass as `data=`.
 */
export async function writeSyntheticClassifyDataset(dir: string, opts: SyntheticClassifyOptions): Promise<{ root: string }> {
  const format = opts.format ?? 'png';
  const root = path.resolve(dir);
  const rand = prng(opts.seed);
  const nc = opts.classes.length;
  for (const [split, count] of [['train', opts.train], [opts.valFolder ?? 'val', opts.val]] as const) {
    for (const name of opts.classes) await mkdir(path.join(root, split, name), { recursive: true });
    for (let i = 0; i < count; i++) {
      const cls = i % nc;
      const rgb = noise(rand, opts.imgsz);
      const side = Math.round(opts.imgsz * (0.5 + rand() * 0.2));
      const x0 = Math.floor(rand() * (opts.imgsz - side)), y0 = Math.floor(rand() * (opts.imgsz - side));
      const shape = SHAPES[cls % SHAPES.length]!;
      const o: Obj = { cls, x0, y0, x1: x0 + side, y1: y0 + side, poly: polygonOf(shape, x0, y0, x0 + side, y0 + side) };
      paint(rgb, opts.imgsz, o, shape);
      const file = path.join(root, split, opts.classes[cls]!, `${split}_${String(i).padStart(5, '0')}.${format}`);
      await writeFile(file, encodeImage(rgb, opts.imgsz, format));
    }
  }
  return { root };
}

async function listFiles(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(path.join(dir, rel), { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(dir, r)));
    else if (e.isFile()) out.push(r);
  }
  return out;
}

/** Zips every regular file under dir (sorted, fixed mtime: reproducible bytes), optionally under a prefix folder. */
export async function zipDirectory(dir: string, zipPath: string, opts: { prefix?: string } = {}): Promise<void> {
  const zip = new yazl.ZipFile();
  const prefix = opts.prefix ? opts.prefix.replace(/\/+$/, '') + '/' : '';
  const mtime = new Date('2024-01-01T00:00:00Z');
  for (const rel of await listFiles(dir)) {
    const full = path.join(dir, rel);
    const st = await stat(full);
    // Images are already compressed; deflating them again costs time for nothing.
    const compress = !/\.(png|jpe?g)$/i.test(rel);
    zip.addFile(full, prefix + rel, { mtime, mode: st.mode & 0o777 | 0o100000, compress });
  }
  zip.end();
  await mkdir(path.dirname(path.resolve(zipPath)), { recursive: true });
  await pipeline(zip.outputStream, createWriteStream(zipPath));
}

export type SyntheticCocoOptions = {
  task: 'detect' | 'segment';
  train: number;
  val: number;
  imgsz: number;
  classes: string[];
  seed: number;
  /** The validation folder's name (Roboflow writes valid). */
  valFolder?: 'valid' | 'val';
};

/**
 * A COCO dataset in Roboflow's COCO export layout: train/ and valid/, each with its images and
 * `_annotations.coco.json` (bbox [x, y, w, h] in pixels; polygons for segment), category ids
 * from 1 in class order. The same pictures as writeSyntheticDataset draws for the seed.
 */
export async function writeSyntheticCocoDataset(dir: string, opts: SyntheticCocoOptions): Promise<{ root: string }> {
  const root = path.resolve(dir);
  const rand = prng(opts.seed);
  const categories = opts.classes.map((name, i) => ({ id: i + 1, name, supercategory: 'objects' }));
  for (const [split, count] of [['train', opts.train], [opts.valFolder ?? 'valid', opts.val]] as const) {
    const folder = path.join(root, split);
    await mkdir(folder, { recursive: true });
    const images: Record<string, unknown>[] = [];
    const annotations: Record<string, unknown>[] = [];
    for (let i = 0; i < count; i++) {
      const { rgb, lines } = drawSample(rand, opts.imgsz, opts.classes.length, opts.task);
      const file = `${split}_${String(i).padStart(5, '0')}.png`;
      await writeFile(path.join(folder, file), encodeImage(rgb, opts.imgsz, 'png'));
      images.push({ id: i, file_name: file, width: opts.imgsz, height: opts.imgsz });
      for (const line of lines) {
        const [cls, ...v] = line.split(' ').map(Number) as [number, ...number[]];
        const px = v.map((c) => c * opts.imgsz);
        let bbox: number[];
        let segmentation: number[][] | undefined;
        if (opts.task === 'detect') {
          const [cx, cy, w, h] = px as [number, number, number, number];
          bbox = [cx - w / 2, cy - h / 2, w, h];
        } else {
          const xs = px.filter((_, k) => k % 2 === 0), ys = px.filter((_, k) => k % 2 === 1);
          bbox = [Math.min(...xs), Math.min(...ys), Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys)];
          segmentation = [px];
        }
        annotations.push({ id: annotations.length + 1, image_id: i, category_id: cls + 1, bbox, area: bbox[2]! * bbox[3]!, iscrowd: 0, ...(segmentation ? { segmentation } : {}) });
      }
    }
    await writeFile(path.join(folder, '_annotations.coco.json'), JSON.stringify({ images, annotations, categories }));
  }
  return { root };
}
