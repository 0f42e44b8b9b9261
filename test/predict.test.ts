/**
 * Prediction outputs and the prediction worker (issue 6):
 *   - the JSON, CSV and COCO shapes (seed 001 §6.2) for detect and segment results (pure);
 *   - the Ultralytics engine's predict.py, served through PythonServer, on a segment model: polygons equal
 *     Ultralytics' masks.xy run directly; a timeout kills the worker and the next request
 *     starts a new one. (The detect path end to end, with the API: test/registry.test.ts.)
 *
 * The segment model is yolo11n-seg built from its .yaml and saved untrained, with a few biases
 * set so that it outputs boxes and masks: all a comparison of pipelines needs.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { setupPython } from '../scripts/setup-python.mjs';
import { toCoco, toCsv, toJsonResults, type PredictionRun } from '../src/registry/formats.js';
import { ultralyticsEngine } from '../src/engines/ultralytics/index.js';
import { PythonServer } from '../src/worker/serve.js';
import { ToolError } from '../src/worker/tool.js';
import { tempDir } from './helpers/server.js';
import { encodeImage, drawSample, prng } from './helpers/synthetic-dataset.js';

const run: PredictionRun = {
  model_id: 'm1',
  model_name: 'seg, "quoted"',
  task: 'segment',
  names: ['crack', 'hole'],
  timestamp: '2026-01-01T00:00:00.000Z',
  results: [
    {
      name: 'a,1.png',
      width: 100,
      height: 50,
      seconds: 0.1,
      detections: [
        { class_id: 1, class_name: 'hole', confidence: 0.9, box: [10, 5, 30, 25], polygon: [[10, 5], [30, 5], [30, 25]] },
        { class_id: 0, class_name: 'crack', confidence: 0.5, box: [0, 0, 1, 2], polygon: [] },
      ],
    },
    { name: 'b.jpg', width: 64, height: 64, seconds: 0.2, detections: [] },
  ],
};

describe('prediction output formats', () => {
  test('json: seed 001 records, polygon for segment', () => {
    const out = toJsonResults(run);
    assert.deepEqual(out[0], {
      image_path: 'a,1.png',
      image_size: [100, 50],
      inference_time: 0.1,
      model_name: 'seg, "quoted"',
      timestamp: run.timestamp,
      detections: [
        { class_id: 1, class_name: 'hole', confidence: 0.9, bbox: [10, 5, 30, 25], area: 400, polygon: [[10, 5], [30, 5], [30, 25]] },
        { class_id: 0, class_name: 'crack', confidence: 0.5, bbox: [0, 0, 1, 2], area: 2, polygon: [] },
      ],
    });
    assert.deepEqual(out[1]!.detections, []);
    const detect = toJsonResults({ ...run, task: 'detect', results: [{ ...run.results[0]!, detections: [{ ...run.results[0]!.detections[0]!, polygon: undefined }] }] });
    assert.ok(!('polygon' in detect[0]!.detections[0]!));
  });

  test('csv: one row per detection, quoted where needed, polygon column for segment', () => {
    const lines = toCsv(run).split('\r\n');
    assert.equal(lines[0], 'image_path,class_id,class_name,confidence,x1,y1,x2,y2,area,polygon');
    assert.equal(lines[1], '"a,1.png",1,hole,0.9,10,5,30,25,400,10 5 30 5 30 25');
    assert.equal(lines[2], '"a,1.png",0,crack,0.5,0,0,1,2,2,');
    assert.equal(lines.length, 4, 'two rows and the final line break');
    assert.equal(toCsv({ ...run, task: 'detect' }).split('\r\n')[0], 'image_path,class_id,class_name,confidence,x1,y1,x2,y2,area');
  });

  test('coco: images, annotations (xywh, score, segmentation), all classes as categories', () => {
    const coco = toCoco(run);
    assert.deepEqual(coco.images, [
      { id: 0, file_name: 'a,1.png', width: 100, height: 50 },
      { id: 1, file_name: 'b.jpg', width: 64, height: 64 },
    ]);
    assert.deepEqual(coco.categories, [
      { id: 0, name: 'crack', supercategory: 'none' },
      { id: 1, name: 'hole', supercategory: 'none' },
    ]);
    assert.deepEqual(coco.annotations[0], {
      id: 1, image_id: 0, category_id: 1, bbox: [10, 5, 20, 20], area: 400, score: 0.9, iscrowd: 0, segmentation: [[10, 5, 30, 5, 30, 25]],
    });
    assert.deepEqual(coco.annotations[1]!.segmentation, [], 'a degenerate polygon is no segmentation');
    assert.ok(!('segmentation' in toCoco({ ...run, task: 'detect' }).annotations[0]!));
  });
});

describe('the prediction worker', () => {
  let python: string;
  let dir: string;
  let model: string;
  const images: { path: string; name: string }[] = [];
  let worker: PythonServer;
  const cacheDir = () => path.join(dir, 'ultralytics');

  before(async () => {
    python = await setupPython();
    dir = tempDir('trainhook-predict-');
    model = path.join(dir, 'seg.pt');
    const rand = prng(3);
    for (let i = 0; i < 2; i++) {
      const { rgb } = drawSample(rand, 96, 2, 'segment');
      const p = path.join(dir, `img-${i}.png`);
      fs.writeFileSync(p, encodeImage(rgb, 96, 'png'));
      images.push({ path: p, name: `img ${i}.png` });
    }
    // Untrained, with class scores raised (Ultralytics initializes them far below conf 0.001)
    // and positive mask prototypes and coefficients, so that there are boxes and every box has
    // a mask (random ones are mostly empty after cropping), hence a polygon to compare.
    const build = `import sys, torch
from ultralytics import YOLO
m = YOLO('yolo11n-seg.yaml')
head = m.model.model[-1]
with torch.no_grad():
    head.proto.cv3.bn.bias.fill_(3.0)
    for seq in head.cv4:
        seq[-1].bias.fill_(1.0)
    for seq in head.cv3:
        seq[-1].bias.fill_(-2.0)
m.save(sys.argv[1])`;
    await promisify(execFile)(python, ['-c', build, model], {
      env: { ...process.env, YOLO_OFFLINE: 'true', YOLO_CONFIG_DIR: path.join(dir, 'ultralytics') },
    });
    worker = new PythonServer({ python: () => python, entry: ultralyticsEngine.python.predict!, cwd: path.join(dir, 'ultralytics'), logFile: path.join(dir, 'predict.log') });
  });
  after(() => worker?.close());

  test('segment: boxes and polygons equal Ultralytics run directly', async (t) => {
    const spec = { model, task: 'segment', images, conf: 0.001, iou: 0.7, imgsz: 96, max_det: 50, device: 'cpu', cache_dir: cacheDir() };
    const started = Date.now();
    const out = await worker.request<{ task: string; names: string[]; results: any[] }>(spec, 120_000);
    const first = Date.now() - started;
    const again = Date.now();
    await worker.request(spec, 120_000);
    t.diagnostic(`first request ${first} ms (starts the worker), second ${Date.now() - again} ms`);
    assert.equal(out.task, 'segment');
    assert.equal(out.names.length, 80, 'yolo11n-seg.yaml: the 80 COCO classes');

    const { stdout } = await promisify(execFile)(
      python,
      [
        '-c',
        `import json, sys
from ultralytics import YOLO
m = YOLO(sys.argv[1], task='segment')
out = []
for p in sys.argv[2:]:
    r = m.predict(p, conf=0.001, iou=0.7, imgsz=96, max_det=50, device='cpu', verbose=False)[0]
    out.append([dict(cls=int(r.boxes.cls[i]), conf=float(r.boxes.conf[i]), box=r.boxes.xyxy[i].tolist(), polygon=r.masks.xy[i].tolist()) for i in range(len(r.boxes))])
print('RESULT ' + json.dumps(out))`,
        model,
        ...images.map((i) => i.path),
      ],
      { env: { ...process.env, YOLO_OFFLINE: 'true', CUDA_VISIBLE_DEVICES: '', YOLO_CONFIG_DIR: path.join(dir, 'ultralytics') }, maxBuffer: 64 << 20 },
    );
    const truth = JSON.parse(stdout.split('\n').find((l) => l.startsWith('RESULT '))!.slice(7));
    let polygons = 0;
    for (const [i, r] of out.results.entries()) {
      assert.equal(r.name, images[i]!.name);
      assert.equal(r.detections.length, truth[i].length);
      for (const [k, d] of r.detections.entries()) {
        const g = truth[i][k];
        assert.equal(d.class_id, g.cls);
        assert.ok(Math.abs(d.confidence - g.conf) <= 1e-5);
        d.box.forEach((v: number, j: number) => assert.ok(Math.abs(v - g.box[j]) <= 1e-3));
        assert.equal(d.polygon.length, g.polygon.length);
        d.polygon.forEach(([x, y]: number[], j: number) => {
          assert.ok(Math.abs(x! - g.polygon[j][0]) <= 1e-3 && Math.abs(y! - g.polygon[j][1]) <= 1e-3);
        });
        if (d.polygon.length >= 3) polygons++;
      }
    }
    assert.ok(polygons > 0, 'some detections carry a polygon');
  });

  test('a missing model is an error answer; the worker keeps serving', async () => {
    await assert.rejects(
      worker.request({ model: path.join(dir, 'nope.pt'), task: 'detect', images, cache_dir: cacheDir() }, 60_000),
      (err: unknown) => err instanceof ToolError && err.code === 'MODEL_NOT_FOUND',
    );
    const out = await worker.request<{ results: unknown[] }>({ model, task: 'segment', images: images.slice(0, 1), imgsz: 96, cache_dir: cacheDir() }, 60_000);
    assert.equal(out.results.length, 1);
  });

  test('a request past its timeout kills the worker; the next request starts a new one', async () => {
    await assert.rejects(
      worker.request({ model, task: 'segment', images, imgsz: 96, cache_dir: cacheDir() }, 1),
      (err: unknown) => err instanceof ToolError && err.code === 'TIMEOUT',
    );
    const out = await worker.request<{ results: unknown[] }>({ model, task: 'segment', images: images.slice(0, 1), imgsz: 96, cache_dir: cacheDir() }, 120_000);
    assert.equal(out.results.length, 1);
  });
});
