/**
 * A SAM2 annotation export as docs/SAM2-EXPORT.md describes it, drawn for tests: videos of
 * coloured rectangles moving over noise, the frames as real JPEG or PNG files, each object
 * annotated the ways exporters write it (a mask as a compressed COCO counts string, a mask as
 * a counts array with its box, a box alone), and one object hidden (an empty mask) in a frame.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { encodeCounts, encodeMask } from '../../src/datasets/sam2/rle.js';
import { encodeImage, prng } from './synthetic-dataset.js';

export type DrawnObject = { object_id: number; label: string; box: [number, number, number, number] };
export type DrawnFrame = { video: string; index: number; file: string; objects: DrawnObject[] };

const COLOURS: Record<string, [number, number, number]> = { car: [230, 40, 40], person: [40, 200, 60], dog: [40, 80, 230] };

export async function writeSam2Export(
  dir: string,
  opts: { videos: number; frames: number; size?: number; format?: 'jpg' | 'png'; seed?: number; labels?: string[] },
): Promise<{ annotations: any; frames: DrawnFrame[] }> {
  const size = opts.size ?? 48;
  const rand = prng(opts.seed ?? 1);
  const labels = opts.labels ?? ['car', 'person', 'dog'];
  const format = opts.format ?? 'jpg';
  const videos: any[] = [];
  const drawn: DrawnFrame[] = [];
  for (let v = 0; v < opts.videos; v++) {
    const id = `video${v + 1}`;
    // Object k starts somewhere and moves a few pixels a frame.
    const tracks = labels.map((label, k) => ({
      label,
      object_id: k + 1,
      w: 8 + Math.floor(rand() * 6),
      h: 8 + Math.floor(rand() * 6),
      x: Math.floor(rand() * (size / 2)),
      y: Math.floor(rand() * (size / 2)),
      dx: 1 + Math.floor(rand() * 3),
    }));
    const frames: any[] = [];
    for (let f = 0; f < opts.frames; f++) {
      const rgb = Buffer.alloc(size * size * 3);
      for (let i = 0; i < rgb.length; i++) rgb[i] = 90 + Math.floor(rand() * 40);
      const objects: any[] = [];
      const drawnObjects: DrawnObject[] = [];
      for (const [k, t] of tracks.entries()) {
        const x0 = Math.min(size - t.w, t.x + f * t.dx), y0 = t.y;
        const box: [number, number, number, number] = [x0, y0, x0 + t.w, y0 + t.h];
        // The last object is out of view in the second frame: SAM2 writes an empty mask.
        const hidden = k === tracks.length - 1 && f === 1;
        const mask = new Uint8Array(size * size);
        if (!hidden) {
          for (let y = box[1]; y < box[3]; y++) for (let x = box[0]; x < box[2]; x++) {
            mask[y * size + x] = 1;
            rgb.set(COLOURS[t.label] ?? [200, 200, 200], (y * size + x) * 3);
          }
          drawnObjects.push({ object_id: t.object_id, label: t.label, box });
        }
        const counts = encodeMask(mask, size, size);
        if (k % 3 === 0 || hidden) objects.push({ object_id: t.object_id, label: t.label, segmentation: { size: [size, size], counts: encodeCounts(counts) } });
        else if (k % 3 === 1) objects.push({ object_id: t.object_id, label: t.label, bbox: [box[0], box[1], t.w, t.h], segmentation: { size: [size, size], counts } });
        else objects.push({ object_id: t.object_id, label: t.label, bbox: [box[0], box[1], t.w, t.h] });
      }
      const file = `frames/${id}/${String(f).padStart(5, '0')}.${format}`;
      await mkdir(path.join(dir, 'frames', id), { recursive: true });
      await writeFile(path.join(dir, file), encodeImage(rgb, size, format));
      frames.push({ index: f, file, objects });
      drawn.push({ video: id, index: f, file, objects: drawnObjects });
    }
    videos.push({ id, frames });
  }
  const annotations = { version: '1', videos };
  await writeFile(path.join(dir, 'annotations.json'), JSON.stringify(annotations));
  return { annotations, frames: drawn };
}
