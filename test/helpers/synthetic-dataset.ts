/**
 * Synthetic YOLO datasets for tests and benches: one filled shape kind and one colour per
 * class (rectangle, circle, triangle, repeating) on coloured noise, 1–3 objects per image.
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

export type SyntheticOptions = {
  task: 'detect' | 'segment';
  train: number;
  val: number;
  imgsz: number;
  classes: string[];
  seed: number;
  layout?: 'ultralytics' | 'roboflow';
  format?: 'png' | 'jpg';
};

/** mulberry32: small, fast, good enough for test pictures; seeded so output is reproducible. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PALETTE: readonly [number, number, number][] = [
  [230, 25, 25], [25, 200, 40], [30, 60, 235], [245, 220, 20], [220, 30, 220],
  [20, 220, 220], [250, 130, 0], [120, 40, 180], [255, 255, 255], [0, 0, 0],
];

type Shape = 'rect' | 'circle' | 'triangle';
const SHAPES: readonly Shape[] = ['rect', 'circle', 'triangle'];

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

function inside(shape: Shape, o: Obj, px: number, py: number): boolean {
  if (shape === 'rect') return px >= o.x0 && px < o.x1 && py >= o.y0 && py < o.y1;
  if (shape === 'circle') {
    const cx = (o.x0 + o.x1) / 2, cy = (o.y0 + o.y1) / 2, r = (o.x1 - o.x0) / 2;
    return (px - cx) ** 2 + (py - cy) ** 2 <= r * r;
  }
  // Triangle: same sign of the three edge functions.
  const [a, b, c] = o.poly as [[number, number], [number, number], [number, number]];
  const e = (p: [number, number], q: [number, number]) => (q[0] - p[0]) * (py - p[1]) - (q[1] - p[1]) * (px - p[0]);
  const d1 = e(a, b), d2 = e(b, c), d3 = e(c, a);
  return (d1 >= 0 && d2 >= 0 && d3 >= 0) || (d1 <= 0 && d2 <= 0 && d3 <= 0);
}

function overlaps(a: Obj, b: Obj): boolean {
  const ix = Math.max(0, Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0));
  const iy = Math.max(0, Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0));
  return ix * iy > 0.1 * Math.min((a.x1 - a.x0) * (a.y1 - a.y0), (b.x1 - b.x0) * (b.y1 - b.y0));
}

/** One image: RGB pixels and its label lines. */
export function drawSample(rand: () => number, imgsz: number, nc: number, task: 'detect' | 'segment') {
  const rgb = Buffer.alloc(imgsz * imgsz * 3);
  // Noise: one random draw gives the three channels of a pixel (speed: 10,000-image benches).
  for (let i = 0; i < rgb.length; i += 3) {
    const r = Math.floor(rand() * 0x1000000);
    rgb[i] = 70 + ((r & 0xff) % 110);
    rgb[i + 1] = 70 + (((r >> 8) & 0xff) % 110);
    rgb[i + 2] = 70 + (((r >> 16) & 0xff) % 110);
  }
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
  for (const o of objs) {
    const shape = SHAPES[o.cls % SHAPES.length]!;
    const [r, g, b] = colourOf(o.cls);
    for (let y = o.y0; y < o.y1; y++) {
      for (let x = o.x0; x < o.x1; x++) {
        if (!inside(shape, o, x + 0.5, y + 0.5)) continue;
        const i = (y * imgsz + x) * 3;
        rgb[i] = r; rgb[i + 1] = g; rgb[i + 2] = b;
      }
    }
  }
  const f = (v: number) => Math.min(1, Math.max(0, v / imgsz)).toFixed(6);
  const lines = objs.map((o) =>
    task === 'detect'
      ? `${o.cls} ${f((o.x0 + o.x1) / 2)} ${f((o.y0 + o.y1) / 2)} ${f(o.x1 - o.x0)} ${f(o.y1 - o.y0)}`
      : `${o.cls} ${o.poly.map(([x, y]) => `${f(x)} ${f(y)}`).join(' ')}`,
  );
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
      const { rgb, lines } = drawSample(rand, opts.imgsz, opts.classes.length, opts.task);
      const stem = `${split}_${String(i).padStart(5, '0')}`;
      await writeFile(path.join(d.images, `${stem}.${format}`), encodeImage(rgb, opts.imgsz, format));
      await writeFile(path.join(d.labels, `${stem}.txt`), lines.length ? lines.join('\n') + '\n' : '');
    }
  }
  const names = opts.classes.map((n) => `  - ${JSON.stringify(n)}`).join('\n');
  // Ultralytics layout: an absolute path so Ultralytics itself can train on the folder as is.
  // Roboflow layout: its export's "../train/images" paths and no `path:` key, as Roboflow writes them.
  const yaml =
    layout === 'ultralytics'
      ? `path: ${JSON.stringify(root)}\ntrain: images/train\nval: images/val\nnc: ${opts.classes.length}\nnames:\n${names}\n`
      : `train: ../train/images\nval: ../valid/images\nnc: ${opts.classes.length}\nnames:\n${names}\n`;
  const dataYaml = path.join(root, 'data.yaml');
  await writeFile(dataYaml, yaml);
  return { root, dataYaml };
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
