/**
 * What an Ultralytics job's base_model names, and where its file comes from.
 *
 *   yolo11n.pt, yolov8s-seg.pt…  an official weight: the release asset the pinned Ultralytics
 *                                itself would download (presets/assets-<version>.json), fetched
 *                                by the service into workdir/base-models/ once for all jobs
 *   other.pt                     a file someone placed in workdir/base-models/
 *   https://…/weights.pt         fetched by the service (cached by the URL's hash)
 *   yolo11n.yaml                 an architecture built from scratch by the worker
 *   model:<id>                   a model of trainhook's registry
 *
 * The worker never downloads anything.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { z } from 'zod';
import type { BaseModelSource } from '../types.js';
import { PRESETS_DIR, ULTRALYTICS_VERSION } from './catalog.js';

const AssetsFile = z.object({
  ultralytics_version: z.string(),
  url_prefix: z.string().url(),
  assets: z.array(z.object({ name: z.string(), task: z.string() })),
});

let assets: { urlPrefix: string; byName: Map<string, string> } | undefined;
function officialAssets() {
  if (!assets) {
    const file = AssetsFile.parse(JSON.parse(fs.readFileSync(`${PRESETS_DIR}assets-${ULTRALYTICS_VERSION}.json`, 'utf8')));
    assets = { urlPrefix: file.url_prefix, byName: new Map(file.assets.map((a) => [a.name, a.task])) };
  }
  return assets;
}

/**
 * Ultralytics renames YOLOv5 and YOLOv3 weights to their anchor-free "u" releases
 * (check_yolov5u_filename): yolov5s.pt is yolov5su.pt.
 */
export function officialName(name: string): string {
  if (/^yolov5[nsmlx]6?\.pt$/.test(name)) return name.replace(/\.pt$/, 'u.pt');
  if (/^yolov3(-spp|-tiny)?\.pt$/.test(name)) return name.replace(/\.pt$/, 'u.pt');
  return name;
}

/** The task of an official weight, or undefined for a name Ultralytics does not publish. */
export function officialTask(name: string): string | undefined {
  return officialAssets().byName.get(officialName(name));
}

/** Official weights, for a task or all. */
export function officialWeights(task?: string): string[] {
  return [...officialAssets().byName].filter(([, t]) => !task || t === task).map(([n]) => n);
}

export function ultralyticsBaseModel(baseModel: string, sha256?: string): BaseModelSource {
  const registered = /^model:([\w-]{1,100})$/.exec(baseModel);
  if (registered) return { kind: 'registered', id: registered[1]! };
  if (/^https:\/\//.test(baseModel)) {
    const file = `url-${crypto.createHash('sha256').update(baseModel).digest('hex').slice(0, 16)}.pt`;
    return { kind: 'file', file, url: baseModel, sha256 };
  }
  if (/\.ya?ml$/.test(baseModel)) return { kind: 'builtin', value: baseModel };
  const name = officialName(baseModel);
  if (officialAssets().byName.has(name)) {
    return { kind: 'file', file: name, url: `${officialAssets().urlPrefix}${name}`, sha256, mirrorName: name };
  }
  return { kind: 'file', file: baseModel, sha256 };
}
