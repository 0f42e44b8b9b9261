/**
 * Prediction results as JSON, CSV or COCO, from the records an engine's predict module returns
 * (the same shape for every engine). Pure.
 *
 * - json: per image: image_path, image_size, inference_time, model_name, timestamp, detections
 *   [{class_id, class_name, confidence, bbox, area}], bbox [x1, y1, x2, y2] in pixels; plus each
 *   detection's polygon [[x, y], …] (segment), keypoints [[x, y, confidence], …] (pose), corners
 *   [[x, y] ×4] and angle (obb), and an image's top-5 classifications (classify).
 * - csv: image_path, class_id, class_name, confidence, x1, y1, x2, y2, area, plus `polygon`,
 *   `keypoints` or `corners` ("x y x y …") for those tasks; classify: image_path, rank,
 *   class_id, class_name, confidence (its top 5).
 * - coco: images / annotations / categories (image ids from 0 in upload order, annotation ids
 *   from 1, category_id = class id, bbox [x, y, w, h], score), every class of the model as a
 *   category; `segmentation` [[x, y, …]] for segment (and obb: the corners), `keypoints`
 *   [x, y, v, …] and num_keypoints for pose; classify: one annotation per image, its top class.
 */

export interface Detection {
  class_id: number;
  class_name: string;
  confidence: number;
  box: [number, number, number, number];
  polygon?: [number, number][];
  keypoints?: number[][];
  corners?: [number, number][];
  angle?: number;
}

export interface Classification {
  class_id: number;
  class_name: string;
  confidence: number;
}

export interface ImageResult {
  name: string;
  width: number;
  height: number;
  seconds: number;
  speed_ms?: Record<string, number>;
  detections: Detection[];
  classifications?: Classification[];
}

export interface PredictionRun {
  model_id: string;
  model_name: string;
  task: string;
  names: string[];
  timestamp: string;
  results: ImageResult[];
}

export const PREDICT_FORMATS = ['json', 'csv', 'coco'] as const;
export type PredictFormat = (typeof PREDICT_FORMATS)[number];

const area = (b: Detection['box']) => Math.max(0, b[2] - b[0]) * Math.max(0, b[3] - b[1]);

export function toJsonResults(run: PredictionRun) {
  return run.results.map((r) => ({
    image_path: r.name,
    image_size: [r.width, r.height] as [number, number],
    inference_time: r.seconds,
    model_name: run.model_name,
    timestamp: run.timestamp,
    detections: r.detections.map((d) => ({
      class_id: d.class_id,
      class_name: d.class_name,
      confidence: d.confidence,
      bbox: d.box,
      area: area(d.box),
      ...(d.polygon ? { polygon: d.polygon } : {}),
      ...(d.keypoints ? { keypoints: d.keypoints } : {}),
      ...(d.corners ? { corners: d.corners, angle: d.angle ?? null } : {}),
    })),
    ...(r.classifications ? { classifications: r.classifications } : {}),
  }));
}

function csvField(v: string | number): string {
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The extra column of a task's detections, and how a detection fills it. */
const EXTRA_COLUMN: Record<string, { name: string; value: (d: Detection) => number[][] }> = {
  segment: { name: 'polygon', value: (d) => d.polygon ?? [] },
  pose: { name: 'keypoints', value: (d) => d.keypoints ?? [] },
  obb: { name: 'corners', value: (d) => d.corners ?? [] },
};

export function toCsv(run: PredictionRun): string {
  if (run.task === 'classify') {
    const lines = ['image_path,rank,class_id,class_name,confidence'];
    for (const r of run.results) {
      (r.classifications ?? []).forEach((c, i) => lines.push([r.name, i + 1, c.class_id, c.class_name, c.confidence].map(csvField).join(',')));
    }
    return `${lines.join('\r\n')}\r\n`;
  }
  const extra = EXTRA_COLUMN[run.task];
  const header = ['image_path', 'class_id', 'class_name', 'confidence', 'x1', 'y1', 'x2', 'y2', 'area', ...(extra ? [extra.name] : [])];
  const lines = [header.join(',')];
  for (const r of run.results) {
    for (const d of r.detections) {
      const row: (string | number)[] = [r.name, d.class_id, d.class_name, d.confidence, ...d.box, area(d.box)];
      if (extra) row.push(extra.value(d).map((p) => p.join(' ')).join(' '));
      lines.push(row.map(csvField).join(','));
    }
  }
  return `${lines.join('\r\n')}\r\n`;
}

export interface CocoAnnotation {
  id: number;
  image_id: number;
  category_id: number;
  score: number;
  bbox?: number[];
  area?: number;
  iscrowd?: number;
  segmentation?: number[][];
  keypoints?: number[];
  num_keypoints?: number;
}

export function toCoco(run: PredictionRun): {
  info: { description: string; date_created: string };
  images: { id: number; file_name: string; width: number; height: number }[];
  annotations: CocoAnnotation[];
  categories: { id: number; name: string; supercategory: string }[];
} {
  let annotationId = 1;
  const segment = run.task === 'segment';
  const polygonOf = (d: Detection) => (segment ? d.polygon : d.corners);
  const info = { description: `predictions of ${run.model_name} (${run.model_id})`, date_created: run.timestamp };
  const images = run.results.map((r, id) => ({ id, file_name: r.name, width: r.width, height: r.height }));
  const categories = run.names.map((name, id) => ({ id, name, supercategory: 'none' }));
  if (run.task === 'classify') {
    const annotations = run.results.flatMap((r, imageId) => {
      const top = r.classifications?.[0];
      return top ? [{ id: annotationId++, image_id: imageId, category_id: top.class_id, score: top.confidence }] : [];
    });
    return { info, images, annotations, categories };
  }
  return {
    info,
    images,
    annotations: run.results.flatMap((r, imageId) =>
      r.detections.map((d): CocoAnnotation => {
        const [x1, y1, x2, y2] = d.box;
        const polygon = polygonOf(d);
        return {
          id: annotationId++,
          image_id: imageId,
          category_id: d.class_id,
          bbox: [x1, y1, x2 - x1, y2 - y1],
          area: area(d.box),
          score: d.confidence,
          iscrowd: 0,
          ...(segment || run.task === 'obb' ? { segmentation: polygon && polygon.length >= 3 ? [polygon.flat()] : [] } : {}),
          ...(d.keypoints
            ? {
                // COCO's visibility: 2 = visible; a keypoint the model gives no confidence for counts as visible.
                keypoints: d.keypoints.flatMap(([x, y, c]) => [x ?? 0, y ?? 0, c === undefined || c >= 0.5 ? 2 : 1]),
                num_keypoints: d.keypoints.length,
              }
            : {}),
        };
      }),
    ),
    categories,
  };
}
