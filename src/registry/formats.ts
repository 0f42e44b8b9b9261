/**
 * Prediction results as JSON, CSV or COCO (seed 001 §6.2, ResultsExporter), from the records
 * worker/predict.py returns. Pure.
 *
 * - json: seed 001's export_json records (image_path, image_size, inference_time, model_name,
 *   timestamp, detections [{class_id, class_name, confidence, bbox, area}]) plus, for segment
 *   models, each detection's polygon [[x, y], …]. bbox is [x1, y1, x2, y2] in pixels.
 * - csv: seed 001's columns image_path, class_id, class_name, confidence, x1, y1, x2, y2, area,
 *   plus `polygon` ("x y x y …") for segment models.
 * - coco: images / annotations / categories as in seed 001's export_coco_format (image ids from
 *   0 in upload order, annotation ids from 1, category_id = class id, bbox [x, y, w, h],
 *   score), every class of the model as a category, and `segmentation` [[x, y, …]] for segment.
 */

export interface Detection {
  class_id: number;
  class_name: string;
  confidence: number;
  box: [number, number, number, number];
  polygon?: [number, number][];
}

export interface ImageResult {
  name: string;
  width: number;
  height: number;
  seconds: number;
  speed_ms?: Record<string, number>;
  detections: Detection[];
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
    })),
  }));
}

function csvField(v: string | number): string {
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(run: PredictionRun): string {
  const segment = run.task === 'segment';
  const header = ['image_path', 'class_id', 'class_name', 'confidence', 'x1', 'y1', 'x2', 'y2', 'area', ...(segment ? ['polygon'] : [])];
  const lines = [header.join(',')];
  for (const r of run.results) {
    for (const d of r.detections) {
      const row: (string | number)[] = [r.name, d.class_id, d.class_name, d.confidence, ...d.box, area(d.box)];
      if (segment) row.push((d.polygon ?? []).map(([x, y]) => `${x} ${y}`).join(' '));
      lines.push(row.map(csvField).join(','));
    }
  }
  return `${lines.join('\r\n')}\r\n`;
}

export function toCoco(run: PredictionRun) {
  let annotationId = 1;
  const segment = run.task === 'segment';
  return {
    info: { description: `predictions of ${run.model_name} (${run.model_id})`, date_created: run.timestamp },
    images: run.results.map((r, id) => ({ id, file_name: r.name, width: r.width, height: r.height })),
    annotations: run.results.flatMap((r, imageId) =>
      r.detections.map((d) => {
        const [x1, y1, x2, y2] = d.box;
        return {
          id: annotationId++,
          image_id: imageId,
          category_id: d.class_id,
          bbox: [x1, y1, x2 - x1, y2 - y1],
          area: area(d.box),
          score: d.confidence,
          iscrowd: 0,
          ...(segment ? { segmentation: d.polygon && d.polygon.length >= 3 ? [d.polygon.flat()] : [] } : {}),
        };
      }),
    ),
    categories: run.names.map((name, id) => ({ id, name, supercategory: 'none' })),
  };
}
