/**
 * What the pinned rfdetr offers, read from the engine's worker folder so the service and the
 * worker share one table: its model sizes per task (variants.json: a resolution must be a
 * multiple of the size's block) and its published checkpoints (weights.json).
 */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

export const WORKER = fileURLToPath(new URL('../../../worker/engines/rfdetr/', import.meta.url));

const VariantsFile = z.object({
  variants: z.array(
    z.object({ task: z.string(), size: z.string(), patch_size: z.number(), num_windows: z.number(), default_resolution: z.number() }),
  ),
});
const WeightsFile = z.object({
  rfdetr: z.string(),
  weights: z.array(
    z.object({
      name: z.string(),
      file: z.string(),
      task: z.string(),
      size: z.string().nullable(),
      trainable: z.boolean(),
      url: z.string().url(),
      md5: z.string().optional(),
    }),
  ),
});

export interface Variant {
  task: string;
  size: string;
  /** A resolution must be a multiple of this (patch size × windows). */
  block: number;
  defaultResolution: number;
}

export interface PublishedWeight {
  name: string;
  file: string;
  task: string;
  size: string;
  url: string;
}

let cache: { version: string; variants: Variant[]; weights: PublishedWeight[] } | undefined;
function load() {
  if (!cache) {
    const v = VariantsFile.parse(JSON.parse(fs.readFileSync(`${WORKER}variants.json`, 'utf8')));
    const w = WeightsFile.parse(JSON.parse(fs.readFileSync(`${WORKER}weights.json`, 'utf8')));
    cache = {
      version: w.rfdetr,
      variants: v.variants.map((x) => ({ task: x.task, size: x.size, block: x.patch_size * x.num_windows, defaultResolution: x.default_resolution })),
      // Only checkpoints a trainable size builds: the others are listed there for completeness.
      weights: w.weights.filter((x) => x.trainable && x.size).map((x) => ({ name: x.name, file: x.file, task: x.task, size: x.size!, url: x.url })),
    };
  }
  return cache;
}

export const RFDETR_VERSION = (): string => load().version;
export const variants = (task?: string): Variant[] => load().variants.filter((v) => !task || v.task === task);
export const variant = (task: string, size: string): Variant | undefined => load().variants.find((v) => v.task === task && v.size === size);
export const publishedWeights = (task?: string): PublishedWeight[] => load().weights.filter((w) => !task || w.task === task);
export const publishedWeight = (name: string): PublishedWeight | undefined => load().weights.find((w) => w.name === name);
