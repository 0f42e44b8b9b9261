/**
 * Model registry end to end (issue 6), on one tiny model trained for real through the API:
 * a config resolved by POST /api/v1/config/resolve is submitted as `config` (detect, 2 epochs,
 * imgsz 64, CPU), and then
 *   - the job ran with exactly the resolved arguments (Ultralytics' own args.yaml),
 *   - its best model is registered (fields, sha256, signed download),
 *   - ONNX and TorchScript exports are checked by the server and, independently here, by
 *     running the .pt and the .onnx through Ultralytics on the same images,
 *   - predictions in JSON, CSV and COCO equal Ultralytics' own predictions run directly,
 *   - a job fine-tunes from `model:<id>`, jobs compare side by side, models are deleted.
 *
 * Tolerances (measured values are printed as test diagnostics):
 *   - export vs .pt: every .pt detection with confidence ≥ 0.001 has an exported detection of
 *     the same class with box IoU ≥ 0.9 AND |Δconfidence| ≤ 0.05 (both, not either);
 *   - API predictions vs Ultralytics run directly (same .pt, same options): same detections
 *     in the same order, |Δconfidence| ≤ 1e-5, |Δcoordinate| ≤ 1e-3 px.
 * Two epochs from scratch make a nearly untrained model (confidences ~0.006), so comparisons
 * run at conf 0.001; what they check is that the exported graphs and the prediction pipeline
 * compute what the .pt computes, not that the model is any good.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { PNG } from 'pngjs';
import { setupPython } from '../scripts/setup-python.mjs';
import { configToWorkerArgs } from '../src/engines/ultralytics/config-args.js';
import { serveFile, startFileServer, type FileServer } from './helpers/file-server.js';
import { TOKEN, api, startTestServer, tempDir, type TestServer } from './helpers/server.js';
import { writeSyntheticDataset, zipDirectory } from './helpers/synthetic-dataset.js';
import { waitFor } from './helpers/wait.js';

const CLASSES = ['red-box', 'green-disc'];
const CONF = 0.001;
const IOU = 0.7;
const EXPORT_MIN_IOU = 0.9;
const EXPORT_MAX_CONF_DIFF = 0.05;
const PRED_CONF_TOL = 1e-5;
const PRED_BOX_TOL = 1e-3;

type Det = { cls: number; conf: number; box: number[]; polygon?: number[][] };

const sha256 = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

describe('model registry, export and prediction end to end', () => {
  let python: string;
  let files: string;
  let host: FileServer;
  let server: TestServer;
  let call: ReturnType<typeof api>;
  let resolved: { config: Record<string, unknown>; command: string; yaml: string };
  let jobId: string;
  let model: any;
  let fineTuneJobId: string;
  let valImages: string[];
  let busJpg: string;
  /** Ultralytics' own .pt predictions, by image path (filled by the ONNX test). */
  const truth = new Map<string, Det[]>();

  /**
   * Ultralytics run directly (not through trainhook) on images: the ground truth. One python
   * process for every (model, images) pair asked (each start costs seconds).
   */
  async function ultralyticsPredict(runs: { model: string; images: string[] }[], imgsz: number): Promise<Det[][][]> {
    const script = `
import json, sys
from ultralytics import YOLO
out = []
for run in json.loads(sys.argv[1]):
    m = YOLO(run['model'], task='detect')
    per_image = []
    for p in run['images']:
        r = m.predict(p, conf=${CONF}, iou=${IOU}, imgsz=int(sys.argv[2]), device='cpu', verbose=False)[0]
        b = r.boxes
        polys = r.masks.xy if r.masks is not None else None
        per_image.append([dict(cls=int(b.cls[i]), conf=float(b.conf[i]), box=[float(v) for v in b.xyxy[i].tolist()],
                               **({'polygon': polys[i].tolist()} if polys is not None else {})) for i in range(len(b))])
    out.append(per_image)
print('RESULT ' + json.dumps(out))
`;
    const { stdout } = await promisify(execFile)(python, ['-c', script, JSON.stringify(runs), String(imgsz)], {
      env: {
        ...process.env,
        YOLO_OFFLINE: 'true',
        YOLO_AUTOINSTALL: 'false',
        CUDA_VISIBLE_DEVICES: '',
        YOLO_CONFIG_DIR: path.join(server.workdir, 'ultralytics'),
      },
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
    assert.ok(line, stdout.slice(-2000));
    return JSON.parse(line.slice('RESULT '.length)) as Det[][][];
  }

  /**
   * A POST whose answer may come before the body is read (413): fetch would fail on the
   * closed socket, and poison its keep-alive pool for the next requests.
   */
  async function rawPost(pathname: string, form: FormData | { json: unknown }): Promise<{ status: number; json: any }> {
    const request =
      form instanceof FormData
        ? new Request('http://x/', { method: 'POST', body: form })
        : new Request('http://x/', { method: 'POST', body: JSON.stringify(form.json), headers: { 'content-type': 'application/json' } });
    const body = Buffer.from(await request.arrayBuffer());
    return new Promise((resolve, reject) => {
      let answered = false;
      const req = http.request(
        server.url + pathname,
        {
          method: 'POST',
          agent: false,
          headers: {
            authorization: `Bearer ${TOKEN}`,
            'content-type': request.headers.get('content-type')!,
            'content-length': String(body.length),
          },
        },
        (res) => {
          answered = true;
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          const done = () => resolve({ status: res.statusCode!, json: text ? JSON.parse(text) : null });
          res.on('end', done);
          res.on('error', done);
        },
      );
      req.on('error', (err) => {
        if (!answered) reject(err);
      });
      req.end(body);
    });
  }

  function iou(a: number[], b: number[]): number {
    const ix = Math.max(0, Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!));
    const iy = Math.max(0, Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!));
    const inter = ix * iy;
    const union = (a[2]! - a[0]!) * (a[3]! - a[1]!) + (b[2]! - b[0]!) * (b[3]! - b[1]!) - inter;
    return union > 0 ? inter / union : 0;
  }

  async function waitForJob(id: string) {
    return waitFor(
      `job ${id} to finish`,
      async () => {
        const j = await call(`/api/v1/jobs/${id}`);
        return ['completed', 'failed', 'cancelled'].includes(j.json.status) && j.json;
      },
      180_000,
    );
  }

  function upload(images: { name: string; data: Buffer; type?: string }[]): FormData {
    const form = new FormData();
    for (const img of images) form.append('images', new Blob([new Uint8Array(img.data)], { type: img.type ?? 'image/png' }), img.name);
    return form;
  }

  before(async () => {
    python = await setupPython();
    files = tempDir('trainhook-registry-');
    const root = path.join(files, 'detect-src');
    await writeSyntheticDataset(root, { task: 'detect', train: 16, val: 8, imgsz: 64, classes: CLASSES, seed: 7 });
    await zipDirectory(root, path.join(files, 'detect.zip'));
    valImages = fs.readdirSync(path.join(root, 'images', 'val')).sort().map((f) => path.join(root, 'images', 'val', f));
    const { stdout } = await promisify(execFile)(python, ['-c', 'from ultralytics.utils import ASSETS; print(ASSETS / "bus.jpg")'], {
      env: { ...process.env, YOLO_OFFLINE: 'true', YOLO_CONFIG_DIR: path.join(files, 'ultralytics') },
      encoding: 'utf8',
    });
    busJpg = stdout.trim().split('\n').pop()!;
    host = await startFileServer();
    host.route('/detect.zip', serveFile(path.join(files, 'detect.zip')));
    server = await startTestServer({ env: { DEVICES: 'cpu', PREDICT_MAX_BYTES: String(3 * 1024 * 1024) } });
    call = api(server.url);

    const r = await call('/api/v1/config/resolve', {
      method: 'POST',
      json: {
        task: 'detect',
        mode: 'developer',
        overrides: { epochs: 2, imgsz: 64, batch: 8, seed: 1, mosaic: 0, workers: 0, device: 'cpu', cos_lr: true, lr0: 0.02 },
      },
    });
    assert.equal(r.status, 200, r.text);
    resolved = r.json;
    const t = await call('/api/v1/train', {
      method: 'POST',
      json: { name: 'registry-e2e', task: 'detect', config: resolved.config, dataset: { url: host.url('/detect.zip') } },
    });
    assert.equal(t.status, 202, t.text);
    jobId = t.json.job_id;
    const job = await waitForJob(jobId);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    model = await waitFor('the model to be registered', async () => (await call(`/api/v1/models?job_id=${jobId}`)).json.models[0], 30_000);
  });
  after(async () => {
    await server?.stop();
    await host?.close();
  });

  test('the job trained with exactly the resolved config', () => {
    const run = path.join(server.workdir, 'jobs', jobId);
    const spec = JSON.parse(fs.readFileSync(path.join(run, 'worker-spec.json'), 'utf8'));
    assert.deepEqual(spec.args, configToWorkerArgs(resolved.config, 'cpu'));
    // Ultralytics' own record of the run's arguments.
    const args = parseYaml(fs.readFileSync(path.join(run, 'args.yaml'), 'utf8')) as Record<string, unknown>;
    for (const [key, value] of Object.entries(resolved.config)) {
      if (key === 'model' || key === 'device' || key === 'amp') continue;
      assert.deepEqual(args[key], value, `args.yaml ${key}`);
    }
    assert.equal(args['amp'], false, 'no AMP on the CPU');
    assert.match(resolved.command, /^yolo detect train data=data\.yaml model=yolo11n\.yaml .*epochs=2 .*cos_lr=True/);
  });

  test('the completed job registered its best model', async () => {
    assert.equal(model.name, 'registry-e2e');
    assert.equal(model.task, 'detect');
    assert.equal(model.framework, 'ultralytics');
    assert.equal(model.format, 'pytorch');
    assert.deepEqual(model.classes, CLASSES);
    assert.equal(model.imgsz, 64);
    assert.equal(model.source_job_id, jobId);
    assert.equal(model.base_model, 'yolo11n.yaml');
    assert.equal(model.base_model_ref, `model:${model.model_id}`);
    for (const key of ['precision', 'recall', 'mAP50', 'mAP50-95']) assert.equal(typeof model.metrics[key], 'number', key);
    assert.ok(Date.parse(model.created_at) > 0);

    const registered = path.join(server.workdir, 'models', model.model_id, 'best.pt');
    const jobBest = path.join(server.workdir, 'jobs', jobId, 'weights', 'best.pt');
    assert.equal(model.size_bytes, fs.statSync(registered).size);
    assert.equal(model.sha256, sha256(registered));
    assert.equal(model.sha256, sha256(jobBest), 'a copy of the job best.pt');

    const one = await call(`/api/v1/models/${model.model_id}`);
    assert.equal(one.status, 200);
    assert.equal(one.json.sha256, model.sha256);
    const list = await call('/api/v1/models?task=detect');
    assert.ok(list.json.models.some((m: { model_id: string }) => m.model_id === model.model_id));
    assert.equal((await call(`/api/v1/models/${crypto.randomUUID()}`)).status, 404);

    // The signed link needs no token; an edited one is refused.
    const res = await fetch(model.download.url);
    assert.equal(res.status, 200);
    assert.equal(crypto.createHash('sha256').update(Buffer.from(await res.arrayBuffer())).digest('hex'), model.sha256);
    const tampered = await fetch(model.download.url.replace(/exp=(\d+)/, (_m: string, e: string) => `exp=${Number(e) + 1}`));
    assert.equal(tampered.status, 403);
  });

  test('ONNX export: checked by the server, and predicting like the .pt here', async (t) => {
    const r = await call(`/api/v1/models/${model.model_id}/export`, { method: 'POST', json: { format: 'onnx' } });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json.format, 'onnx');
    assert.equal(r.json.check.passed, true, JSON.stringify(r.json.check));
    assert.ok(r.json.check.compared > 0, 'the check compared detections');
    t.diagnostic(`server check: ${JSON.stringify({ compared: r.json.check.compared, min_iou: r.json.check.min_iou, max_conf_diff: r.json.check.max_confidence_diff })}`);

    const onnx = path.join(server.workdir, 'models', model.model_id, 'best.onnx');
    assert.equal(r.json.sha256, sha256(onnx));
    const dl = await fetch(r.json.download.url);
    assert.equal(dl.status, 200);
    assert.equal(Number(dl.headers.get('content-length')), fs.statSync(onnx).size);
    await dl.arrayBuffer();
    const again = await call(`/api/v1/models/${model.model_id}/export`, { method: 'POST', json: { format: 'onnx' } });
    assert.equal(again.status, 200, 'an existing export is returned');
    assert.equal(again.json.sha256, r.json.sha256);

    // Independent check: Ultralytics on the .pt and on the .onnx, same images (a square val
    // image and a 810x1080 photo, which exercises letterboxing and box scaling back). The .pt
    // runs on the prediction test's images too.
    const images = [valImages[0]!, busJpg];
    const ptFile = path.join(server.workdir, 'models', model.model_id, 'best.pt');
    const predictImages = [valImages[1]!, valImages[2]!, busJpg];
    const [ptAll, ox] = await ultralyticsPredict(
      [
        { model: ptFile, images: [...images, ...predictImages] },
        { model: onnx, images },
      ],
      64,
    );
    [...images, ...predictImages].forEach((p, i) => truth.set(p, ptAll![i]!));
    const pt = images.map((p) => truth.get(p)!);
    let minIou = 1;
    let maxDiff = 0;
    let compared = 0;
    for (const [i, ref] of pt.entries()) {
      assert.ok(ref.length > 0, `the .pt finds something on image ${i} at conf ${CONF}`);
      assert.deepEqual([...new Set(ox![i]!.map((d) => d.cls))].sort(), [...new Set(ref.map((d) => d.cls))].sort(), 'same classes');
      for (const d of ref) {
        const candidates = ox![i]!.filter((e) => e.cls === d.cls).map((e) => ({ e, v: iou(d.box, e.box) }));
        const best = candidates.sort((a, b) => b.v - a.v)[0];
        assert.ok(best, `an ONNX detection of class ${d.cls}`);
        const diff = Math.abs(best.e.conf - d.conf);
        assert.ok(best.v >= EXPORT_MIN_IOU, `IoU ${best.v}`);
        assert.ok(diff <= EXPORT_MAX_CONF_DIFF, `confidence diff ${diff}`);
        minIou = Math.min(minIou, best.v);
        maxDiff = Math.max(maxDiff, diff);
        compared++;
      }
    }
    t.diagnostic(`.pt vs .onnx: ${compared} detections, min IoU ${minIou.toFixed(6)}, max |Δconf| ${maxDiff.toExponential(2)}`);
  });

  test('TorchScript export', async () => {
    const r = await call(`/api/v1/models/${model.model_id}/export`, { method: 'POST', json: { format: 'torchscript' } });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json.check.passed, true, JSON.stringify(r.json.check));
    const got = (await call(`/api/v1/models/${model.model_id}`)).json;
    assert.deepEqual(got.exports.map((e: { format: string }) => e.format).sort(), ['onnx', 'torchscript']);
    assert.equal((await call(`/api/v1/models/${model.model_id}/export`, { method: 'POST', json: { format: 'tflite' } })).status, 400);
  });

  test('predictions as JSON, CSV and COCO equal Ultralytics run directly', async (t) => {
    const images = [valImages[1]!, valImages[2]!, busJpg];
    const uploads = images.map((p, i) => ({
      name: i === 2 ? 'bus photo.jpg' : path.basename(p),
      data: fs.readFileSync(p),
      type: p.endsWith('.jpg') ? 'image/jpeg' : 'image/png',
    }));
    const names = uploads.map((u) => u.name);
    const expected = images.map((p) => truth.get(p)!);
    assert.ok(expected.every(Boolean), 'ground truth from the ONNX test');
    const predict = (format: string) =>
      call(`/api/v1/models/${model.model_id}/predict?format=${format}&conf=${CONF}&iou=${IOU}`, { method: 'POST', body: upload(uploads) });
    const started = Date.now();
    const [json, csv, coco] = [await predict('json'), await predict('csv'), await predict('coco')];
    t.diagnostic(`three prediction requests (3 images each): ${Date.now() - started} ms`);
    const close = (a: number, b: number, tol: number, what: string) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

    // JSON (seed 001 §6.2 export_json records)
    assert.equal(json.status, 200, json.text);
    assert.equal(json.json.task, 'detect');
    assert.equal(json.json.results.length, 3);
    let total = 0;
    for (const [i, r] of json.json.results.entries()) {
      assert.equal(r.image_path, names[i]);
      assert.equal(r.model_name, 'registry-e2e');
      assert.deepEqual(r.image_size, i === 2 ? [810, 1080] : [64, 64]);
      assert.equal(r.detections.length, expected[i]!.length, `image ${i}: as many detections`);
      for (const [k, d] of r.detections.entries()) {
        const g = expected[i]![k]!;
        assert.equal(d.class_id, g.cls);
        assert.equal(d.class_name, CLASSES[g.cls]);
        close(d.confidence, g.conf, PRED_CONF_TOL, 'confidence');
        d.bbox.forEach((v: number, j: number) => close(v, g.box[j]!, PRED_BOX_TOL, 'bbox'));
        close(d.area, (g.box[2]! - g.box[0]!) * (g.box[3]! - g.box[1]!), 1e-2, 'area');
        assert.equal(d.polygon, undefined, 'no polygon for a detect model');
      }
      total += r.detections.length;
    }
    assert.ok(total > 0);

    // CSV: seed 001's columns, one row per detection
    assert.equal(csv.status, 200, csv.text);
    assert.match(csv.headers.get('content-type') ?? '', /^text\/csv/);
    const lines = csv.text.trim().split(/\r?\n/);
    assert.equal(lines[0], 'image_path,class_id,class_name,confidence,x1,y1,x2,y2,area');
    assert.equal(lines.length - 1, total);
    const rows = lines.slice(1).map((l) => l.split(','));
    let row = 0;
    for (const [i, dets] of expected.entries()) {
      for (const g of dets) {
        const cells = rows[row++]!;
        assert.equal(cells[0], names[i]);
        assert.equal(Number(cells[1]), g.cls);
        assert.equal(cells[2], CLASSES[g.cls]);
        close(Number(cells[3]), g.conf, PRED_CONF_TOL, 'csv confidence');
        for (let j = 0; j < 4; j++) close(Number(cells[4 + j]), g.box[j]!, PRED_BOX_TOL, 'csv box');
      }
    }

    // COCO: images, annotations (bbox xywh, score), every class as a category
    assert.equal(coco.status, 200, coco.text);
    assert.deepEqual(
      coco.json.images,
      names.map((n, id) => ({ id, file_name: n, width: id === 2 ? 810 : 64, height: id === 2 ? 1080 : 64 })),
    );
    assert.deepEqual(coco.json.categories, CLASSES.map((name, id) => ({ id, name, supercategory: 'none' })));
    assert.equal(coco.json.annotations.length, total);
    let a = 0;
    for (const [i, dets] of expected.entries()) {
      for (const g of dets) {
        const ann = coco.json.annotations[a++];
        assert.equal(ann.id, a);
        assert.equal(ann.image_id, i);
        assert.equal(ann.category_id, g.cls);
        assert.equal(ann.iscrowd, 0);
        close(ann.score, g.conf, PRED_CONF_TOL, 'coco score');
        const [x1, y1, x2, y2] = g.box as [number, number, number, number];
        [x1, y1, x2 - x1, y2 - y1].forEach((v, j) => close(ann.bbox[j], v, PRED_BOX_TOL, 'coco bbox'));
      }
    }
  });

  test('prediction uploads and generate requests: their own body limit, and refusals', async () => {
    // A noisy 720x720 PNG is ~1.5 MB: over MAX_BODY_BYTES (1 MiB), under PREDICT_MAX_BYTES (3 MiB).
    const png = new PNG({ width: 720, height: 720 });
    crypto.randomFillSync(png.data);
    for (let i = 3; i < png.data.length; i += 4) png.data[i] = 255;
    const big = PNG.sync.write(png);
    assert.ok(big.length > 1024 * 1024 && big.length < 3 * 1024 * 1024, String(big.length));
    const url = `/api/v1/models/${model.model_id}/predict`;
    const ok = await call(url, { method: 'POST', body: upload([{ name: 'big.png', data: big }]) });
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual(ok.json.results[0].image_size, [720, 720]);
    const tooBig = await rawPost(url, upload([{ name: 'a.png', data: big }, { name: 'b.png', data: big }]));
    assert.equal(tooBig.status, 413);
    assert.equal(tooBig.json.error.code, 'PAYLOAD_TOO_LARGE');
    assert.match(tooBig.json.error.message, /PREDICT_MAX_BYTES/);
    // Everything else under /api keeps MAX_BODY_BYTES.
    const elsewhere = await rawPost(`/api/v1/models/${model.model_id}/export`, upload([{ name: 'big.png', data: big }]));
    assert.equal(elsewhere.status, 413);
    assert.doesNotMatch(elsewhere.json.error.message, /PREDICT_MAX_BYTES/);

    const notImage = await call(url, { method: 'POST', body: upload([{ name: 'notes.txt', data: Buffer.from('hello'), type: 'text/plain' }]) });
    assert.equal(notImage.status, 422, notImage.text);
    assert.equal(notImage.json.error.code, 'INVALID_IMAGE');
    assert.equal(notImage.json.error.details[0].name, 'notes.txt');
    const none = new FormData();
    none.append('conf', '0.5');
    assert.equal((await call(url, { method: 'POST', body: none })).json.error.code, 'NO_IMAGES');
    const badOpt = await call(`${url}?format=xml`, { method: 'POST', body: upload([{ name: 'x.png', data: fs.readFileSync(valImages[0]!) }]) });
    assert.equal(badOpt.status, 400);
    const unknown = await call(`/api/v1/models/${crypto.randomUUID()}/predict`, { method: 'POST', body: upload([{ name: 'x.png', data: fs.readFileSync(valImages[0]!) }]) });
    assert.equal(unknown.status, 404);
    const noAuth = await api(server.url, '')(url, { method: 'POST', body: upload([{ name: 'x.png', data: fs.readFileSync(valImages[0]!) }]) });
    assert.equal(noAuth.status, 401);
    // Text generation is for the engines whose models generate (transformers): an image model refuses it.
    const generate = await call(`/api/v1/models/${model.model_id}/generate`, { method: 'POST', json: { prompt: 'hello' } });
    assert.equal(generate.status, 409, generate.text);
    assert.equal(generate.json.error.code, 'GENERATE_UNSUPPORTED');
    // Generate's image (base64) has the same limit: ~2 MB of body reaches the model's own check, not 413.
    const generateUrl = `/api/v1/models/${model.model_id}/generate`;
    const withImage = await rawPost(generateUrl, { json: { prompt: 'what is this?', image: big.toString('base64') } });
    assert.equal(withImage.status, 409, JSON.stringify(withImage.json));
    assert.equal(withImage.json.error.code, 'GENERATE_UNSUPPORTED');
    const generateTooBig = await rawPost(generateUrl, { json: { prompt: 'what is this?', image: Buffer.concat([big, big]).toString('base64') } });
    assert.equal(generateTooBig.status, 413);
    assert.equal(generateTooBig.json.error.code, 'PAYLOAD_TOO_LARGE');
    assert.match(generateTooBig.json.error.message, /^generate request over 3145728 bytes \(PREDICT_MAX_BYTES\)$/);
  });

  test('a job fine-tunes from the registry (base_model "model:<id>"), and the model stays while it trains', async () => {
    const r = await call('/api/v1/train', {
      method: 'POST',
      json: {
        model_config: {
          name: 'registry-finetune',
          task: 'detect',
          base_model: `model:${model.model_id}`,
          epochs: 1,
          batch_size: 8,
          image_size: 64,
          seed: 2,
          augmentation: { mosaic: 0 },
        },
        dataset: { url: host.url('/detect.zip') },
        resources: { device: 'cpu', workers: 0 },
      },
    });
    assert.equal(r.status, 202, r.text);
    fineTuneJobId = r.json.job_id;
    const busy = await call(`/api/v1/models/${model.model_id}`, { method: 'DELETE' });
    assert.equal(busy.status, 409, busy.text);
    assert.equal(busy.json.error.code, 'MODEL_IN_USE');
    assert.deepEqual(busy.json.error.details.jobs, [fineTuneJobId]);

    const job = await waitForJob(fineTuneJobId);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    const spec = JSON.parse(fs.readFileSync(path.join(server.workdir, 'jobs', fineTuneJobId, 'worker-spec.json'), 'utf8'));
    assert.equal(spec.model, path.join(server.workdir, 'models', model.model_id, 'best.pt'));
    const child = await waitFor('the fine-tuned model', async () => (await call(`/api/v1/models?job_id=${fineTuneJobId}`)).json.models[0], 30_000);
    assert.equal(child.base_model, `model:${model.model_id}`);
    assert.deepEqual(child.classes, CLASSES);
    assert.notEqual(child.sha256, model.sha256);
  });

  test('jobs compare side by side', async () => {
    const r = await call(`/api/v1/jobs/compare?ids=${jobId},${fineTuneJobId}`);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.job_ids, [jobId, fineTuneJobId]);
    const diff = r.json.config.differences;
    assert.deepEqual(diff.epochs, { [jobId]: 2, [fineTuneJobId]: 1 });
    assert.deepEqual(diff.model, { [jobId]: 'yolo11n.yaml', [fineTuneJobId]: `model:${model.model_id}` });
    assert.deepEqual(diff.cos_lr, { [jobId]: true, [fineTuneJobId]: false });
    assert.equal(r.json.config.same.imgsz, 64);
    assert.equal(r.json.config.same['dataset.url'], host.url('/detect.zip'));
    for (const id of [jobId, fineTuneJobId]) assert.equal(typeof r.json.metrics.final.mAP50[id], 'number');
    assert.equal(r.json.jobs[0].model_id, model.model_id);
    assert.equal((await call(`/api/v1/jobs/compare?ids=${jobId}`)).status, 400);
    const missing = await call(`/api/v1/jobs/compare?ids=${jobId},${crypto.randomUUID()}`);
    assert.equal(missing.status, 404);
    // /jobs/{id} still answers next to /jobs/compare.
    assert.equal((await call(`/api/v1/jobs/${jobId}`)).json.job_id, jobId);
  });

  test('deleting a model removes its files and links; a job based on it then fails fast', async () => {
    const child = (await call(`/api/v1/models?job_id=${fineTuneJobId}`)).json.models[0];
    const del = await call(`/api/v1/models/${child.model_id}`, { method: 'DELETE' });
    assert.equal(del.status, 200, del.text);
    assert.equal((await call(`/api/v1/models/${child.model_id}`)).status, 404);
    assert.ok(!fs.existsSync(path.join(server.workdir, 'models', child.model_id)));
    assert.equal((await fetch(child.download.url)).status, 404);
    assert.equal((await call(`/api/v1/models/${child.model_id}`, { method: 'DELETE' })).status, 404);

    const r = await call('/api/v1/train', {
      method: 'POST',
      json: {
        model_config: { name: 'orphan', base_model: `model:${child.model_id}`, epochs: 1, batch_size: 8, image_size: 64 },
        dataset: { url: host.url('/detect.zip') },
        resources: { device: 'cpu', workers: 0 },
      },
    });
    const job = await waitForJob(r.json.job_id);
    assert.equal(job.status, 'failed');
    assert.equal(job.error.code, 'MODEL_DOWNLOAD_FAILED');
    assert.match(job.error.message, /registered model .* not found/);
  });
});
