/**
 * The dataset layouts trainhook reads. Each engine says which ones a task trains on; the
 * dataset step finds which one an archive is in and checks it before any training.
 *
 *   yolo      data.yaml + images/ and labels/ folders per split (Ultralytics or Roboflow export)
 *   coco      a COCO JSON annotation file per split beside its images (Roboflow COCO export)
 *   classify  one folder per split, one folder per class inside, images in them
 *   jsonl     text samples, one JSON object a line: train.jsonl and val.jsonl, or one data.jsonl
 *             split in two (jsonl.ts)
 */
export const DATASET_FORMATS = ['yolo', 'coco', 'classify', 'jsonl'] as const;
export type DatasetFormat = (typeof DATASET_FORMATS)[number];
