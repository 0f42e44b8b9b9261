/**
 * A SAM2 annotation export (format.ts, already extracted with the ZIP guards) turned into a
 * vision-language dataset folder in trainhook's jsonl layout:
 *
 *   images/<video>/<frame index, 6 digits>.<ext>   the frames, copied
 *   data.jsonl   one {"image", "prompt", "completion", "meta": {video, frame, classes, template}}
 *                a line (POST /datasets/{id}/split makes train/val/test of it)
 *   llava.json   the same samples as LLaVA conversations
 *
 * Every frame is checked to be a readable image, and every mask to be a valid RLE of the
 * frame's size; the first problem refuses the export with SAM2_INVALID naming the file and the
 * field. An object whose mask is empty is not in view in that frame (SAM2 keeps tracking ids
 * through occlusions) and is left out of it.
 */
import { copyFile, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { checkImage, extensionOf, imageScratch } from '../images.js';
import { llavaEntry, llavaJson, type LlavaEntry } from '../llava.js';
import { PrepareError } from '../prepare/errors.js';
import { safeImagePath } from '../prepare/samples.js';
import { ANNOTATIONS_FILE, Sam2Export, type Sam2Object } from './format.js';
import { maskBbox, RleError, runsOf } from './rle.js';
import { frameSamples, TEMPLATES, type FrameObject, type Template } from './templates.js';

export type ConvertStats = {
  samples: number;
  videos: number;
  frames: number;
  classes: string[];
  /** Object instances per class over every frame. */
  class_distribution: Record<string, number>;
  samples_per_template: Record<string, number>;
  /** Objects left out because their mask was empty in that frame. */
  empty_masks: number;
};

const invalid = (file: string, field: string, message: string) =>
  new PrepareError('SAM2_INVALID', `${file}: ${field ? `${field}: ` : ''}${message}`, { file, field });

const isFile = (p: string) => stat(p).then((s) => s.isFile(), () => false);

/** The folder holding annotations.json: the root of the export, or its single top-level folder. */
async function exportRoot(dir: string): Promise<string> {
  if (await isFile(path.join(dir, ANNOTATIONS_FILE))) return dir;
  const entries = await readdir(dir, { withFileTypes: true });
  const dirs = entries.filter((e) => e.isDirectory());
  if (dirs.length === 1 && (await isFile(path.join(dir, dirs[0]!.name, ANNOTATIONS_FILE)))) return path.join(dir, dirs[0]!.name);
  throw invalid(ANNOTATIONS_FILE, '', `not found at the root of the ZIP or inside its single top-level folder (found: ${entries.map((e) => e.name).join(', ') || 'nothing'})`);
}

function fieldOf(p: readonly PropertyKey[]): string {
  return p.map((k, i) => (typeof k === 'number' ? `[${k}]` : `${i ? '.' : ''}${String(k)}`)).join('');
}

export async function parseExport(dir: string): Promise<{ root: string; exported: Sam2Export }> {
  const root = await exportRoot(dir);
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path.join(root, ANNOTATIONS_FILE), 'utf8'));
  } catch (err) {
    throw invalid(ANNOTATIONS_FILE, '', `not valid JSON (${(err as Error).message})`);
  }
  const parsed = Sam2Export.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw invalid(ANNOTATIONS_FILE, fieldOf(issue.path), issue.message);
  }
  return { root, exported: parsed.data };
}

/** The object's box in whole pixels [x0, y0, x1, y1] inside the image, or null when its mask is empty. */
function boxOf(o: Sam2Object, width: number, height: number, field: string): FrameObject['box'] | null {
  let box: [number, number, number, number] | null = null;
  if (o.segmentation) {
    const [h, w] = o.segmentation.size;
    if (h !== height || w !== width) throw invalid(ANNOTATIONS_FILE, `${field}.segmentation.size`, `is [${h}, ${w}] but the frame is ${width}x${height} (size is [height, width])`);
    try {
      runsOf(o.segmentation);
      box = maskBbox(o.segmentation);
    } catch (err) {
      if (err instanceof RleError) throw invalid(ANNOTATIONS_FILE, `${field}.segmentation.counts`, err.message);
      throw err;
    }
    if (!box && !o.bbox) return null;
  }
  if (o.bbox) box = o.bbox;
  const [x, y, w, h] = box!;
  if (x + w > width + 1 || y + h > height + 1) throw invalid(ANNOTATIONS_FILE, `${field}.bbox`, `[${o.bbox!.join(', ')}] reaches past the ${width}x${height} frame ([x, y, width, height] in pixels)`);
  const clamp = (v: number, max: number) => Math.min(max, Math.max(0, Math.round(v)));
  return [clamp(x, width), clamp(y, height), clamp(x + w, width), clamp(y + h, height)];
}

export async function convertSam2Export(
  extracted: string,
  outDir: string,
  opts: { templates?: readonly Template[] | undefined; signal?: AbortSignal | undefined } = {},
): Promise<ConvertStats> {
  const templates = opts.templates?.length ? opts.templates : TEMPLATES;
  const { root, exported } = await parseExport(extracted);
  const scratch = imageScratch();
  const lines: string[] = [];
  const llava: LlavaEntry[] = [];
  const stats: ConvertStats = { samples: 0, videos: exported.videos.length, frames: 0, classes: [], class_distribution: {}, samples_per_template: {}, empty_masks: 0 };
  for (const [vi, video] of exported.videos.entries()) {
    const videoClasses = [...new Set(video.frames.flatMap((f) => f.objects.map((o) => o.label)))].sort();
    const frames = video.frames.map((f, fi) => ({ f, fi })).sort((a, b) => a.f.index - b.f.index);
    let previous: FrameObject[] | null = null;
    for (const { f, fi } of frames) {
      if (opts.signal?.aborted) throw new Error('conversion cancelled');
      const field = `videos[${vi}].frames[${fi}]`;
      const rel = safeImagePath(f.file);
      if (!rel) throw invalid(ANNOTATIONS_FILE, `${field}.file`, `"${f.file}" must be a path relative to the export's root, without ".."`);
      const src = path.join(root, rel);
      const image = checkImage(src, scratch);
      if (!image.ok) throw invalid(rel, `${field}.file`, image.message);
      const seen = new Set<string>();
      const objects: FrameObject[] = [];
      for (const [oi, o] of f.objects.entries()) {
        const id = String(o.object_id);
        if (seen.has(id)) throw invalid(ANNOTATIONS_FILE, `${field}.objects[${oi}].object_id`, `object ${id} appears twice in the frame`);
        seen.add(id);
        const box = boxOf(o, image.width, image.height, `${field}.objects[${oi}]`);
        if (!box) {
          stats.empty_masks++;
          continue;
        }
        objects.push({ objectId: id, label: o.label, box });
        stats.class_distribution[o.label] = (stats.class_distribution[o.label] ?? 0) + 1;
      }
      const imagePath = `images/${video.id}/${String(f.index).padStart(6, '0')}.${extensionOf(rel)}`;
      await mkdir(path.join(outDir, 'images', video.id), { recursive: true });
      await copyFile(src, path.join(outDir, imagePath));
      stats.frames++;
      for (const s of frameSamples({ objects, width: image.width, height: image.height, previous, videoClasses }, templates)) {
        const meta = { video: video.id, frame: f.index, classes: s.classes, template: s.template };
        lines.push(JSON.stringify({ image: imagePath, prompt: s.prompt, completion: s.completion, meta }));
        llava.push(llavaEntry(`${video.id}-${f.index}-${stats.samples}`, { image: imagePath, prompt: s.prompt, completion: s.completion }));
        stats.samples++;
        stats.samples_per_template[s.template] = (stats.samples_per_template[s.template] ?? 0) + 1;
      }
      previous = objects;
    }
  }
  if (stats.samples < 2) throw invalid(ANNOTATIONS_FILE, 'videos', `the export gives ${stats.samples} sample(s): at least 2 are needed to train and validate`);
  stats.classes = Object.keys(stats.class_distribution).sort();
  await writeFile(path.join(outDir, 'data.jsonl'), `${lines.join('\n')}\n`);
  await writeFile(path.join(outDir, 'llava.json'), llavaJson(llava));
  return stats;
}
