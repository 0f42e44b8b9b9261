/**
 * The SAM2 annotation export trainhook converts (docs/SAM2-EXPORT.md): a ZIP with
 * `annotations.json` at its root (or inside its single top-level folder) and the video frames
 * it names. Frames are paths relative to that folder; each frame lists its objects with a
 * label (the class), the SAM2 object id that follows it through the video, and a box, a mask
 * (COCO RLE, either counts form) or both.
 */
import { z } from 'zod';

/** Folder-safe: a video id becomes a folder name in the converted dataset. */
const VIDEO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

const Rle = z
  .object({
    size: z.tuple([z.number().int().positive(), z.number().int().positive()]),
    counts: z.union([z.string().min(1), z.array(z.number().int().nonnegative()).min(1)]),
  })
  .strict();

const SamObject = z
  .object({
    object_id: z.union([z.number().int().nonnegative(), z.string().min(1).max(100)]),
    label: z.string().trim().min(1).max(100),
    bbox: z.tuple([z.number().nonnegative(), z.number().nonnegative(), z.number().positive(), z.number().positive()]).optional(),
    segmentation: Rle.optional(),
    score: z.number().optional(),
  })
  .strict()
  .refine((o) => o.bbox !== undefined || o.segmentation !== undefined, { message: 'an object needs a bbox, a segmentation, or both' });

const Frame = z
  .object({
    index: z.number().int().nonnegative(),
    file: z.string().min(1).max(500),
    objects: z.array(SamObject).max(1000),
  })
  .strict();

const Video = z
  .object({
    id: z.string().regex(VIDEO_ID, 'letters, digits, ".", "_" and "-", starting with a letter or digit, at most 128'),
    frames: z.array(Frame).min(1).max(100_000),
  })
  .strict()
  .refine((v) => new Set(v.frames.map((f) => f.index)).size === v.frames.length, { message: 'two frames of the video have the same index' });

export const Sam2Export = z
  .object({
    version: z.string().optional(),
    videos: z.array(Video).min(1).max(10_000),
  })
  .strict()
  .refine((e) => new Set(e.videos.map((v) => v.id)).size === e.videos.length, { message: 'two videos have the same id' });

export type Sam2Export = z.infer<typeof Sam2Export>;
export type Sam2Object = z.infer<typeof SamObject>;
export type Sam2Frame = z.infer<typeof Frame>;

export const ANNOTATIONS_FILE = 'annotations.json';
