/**
 * RF-DETR, the second engine, end to end through the API on datasets the test generates, trained
 * for real on the CPU from random initialisation (`"pretrained": false`: nothing is downloaded)
 * with few queries so an epoch takes seconds:
 *
 * - detect on a YOLO zip: the job completes, its epochs carry RF-DETR's metrics, the signed
 *   callbacks verify, the registered model exports to ONNX (checked by the worker against the
 *   PyTorch model) and predicts; compare shows it beside an Ultralytics job's arguments.
 * - detect on a COCO JSON zip (Roboflow's layout), then fine-tuned as model:<id>; its checkpoint,
 *   served by a mirror on 127.0.0.1 under the published name rf-detr-nano.pth, then trains two
 *   `"base_model": "rfdetr-nano", "pretrained": true` jobs and is downloaded once.
 * - segment on YOLO polygons.
 * - requests RF-DETR cannot train are refused with the reason before anything is queued.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { setupPython } from '../scripts/setup-python.mjs';
import { rfdetrEngine } from '../src/engines/rfdetr/index.js';
import { serveFile, startFileServer, type FileServer } from './helpers/file-server.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { api, startTestServer, tempDir, trainBody, type TestServer } from './helpers/server.js';
import { writeSyntheticCocoDataset, writeSyntheticDataset, zipDirectory } from './helpers/synthetic-dataset.js';
import { waitFor } from './helpers/wait.js';

const CLASSES = ['red-box', 'green-disc'];
const SECRET = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;
const verifier = new Webhook(SECRET);
/** Small and quick on a CPU: few queries, one group, a fixed scale. */
const FAST = { pretrained: false, batch_size: 4, num_queries: 20, group_detr: 1, multi_scale: false, seed: 1 };

describe('RF-DETR through the API', { timeout: 30 * 60_000 }, () => {
  let files: string;
  let host: FileServer;
  let receiver: Receiver;
  let server: TestServer;
  let call: ReturnType<typeof api>;
  let valImage: string;

  const submit = async (modelConfig: Record<string, unknown>, zip: string, hook?: string) =>
    call('/api/v1/train', {
      method: 'POST',
      json: trainBody({
        model_config: { framework: 'rfdetr', ...modelConfig },
        dataset: { url: host.url(`/${zip}`) },
        ...(hook ? { callback_url: `${receiver.url}/${hook}`, callback_secret: SECRET } : {}),
      }),
    });
  const finished = (id: string) =>
    waitFor(`job ${id}`, async () => {
      const j = await call(`/api/v1/jobs/${id}`);
      return ['completed', 'failed', 'cancelled'].includes(j.json.status) && j.json;
    }, 900_000);
  const modelOf = (id: string) =>
    waitFor(`model of ${id}`, async () => {
      const found = (await call(`/api/v1/models?job_id=${id}`)).json.models;
      return found.length > 0 && found[0];
    }, 30_000);

  before(async () => {
    // Two torch threads on a busy 2-core machine spin against each other (the worker inherits this).
    process.env['OMP_NUM_THREADS'] = '1';
    await setupPython({ requirementsFile: rfdetrEngine.python.requirements });
    files = tempDir('trainhook-rfdetr-');
    host = await startFileServer();
    receiver = await startReceiver();
    const detect = path.join(files, 'detect');
    await writeSyntheticDataset(detect, { task: 'detect', train: 16, val: 8, imgsz: 64, classes: CLASSES, seed: 5 });
    valImage = path.join(detect, 'images', 'val', fs.readdirSync(path.join(detect, 'images', 'val')).sort()[0]!);
    await writeSyntheticDataset(path.join(files, 'segment'), { task: 'segment', train: 16, val: 8, imgsz: 48, classes: CLASSES, seed: 5 });
    await writeSyntheticCocoDataset(path.join(files, 'coco'), { task: 'detect', train: 16, val: 8, imgsz: 64, classes: CLASSES, seed: 6 });
    for (const name of ['detect', 'segment', 'coco']) {
      await zipDirectory(path.join(files, name), path.join(files, `${name}.zip`));
      host.route(`/${name}.zip`, serveFile(path.join(files, `${name}.zip`)));
    }
    server = await startTestServer({ env: { DEVICES: 'cpu', BASE_MODEL_MIRROR: host.url('/mirror/') } });
    call = api(server.url);
  });
  after(async () => {
    await server?.stop();
    await receiver?.close();
    await host?.close();
  });

  test('GET /api/v1/engines lists RF-DETR with its tasks, formats, checkpoints and license', async () => {
    const r = await call('/api/v1/engines');
    assert.equal(r.status, 200, r.text);
    const e = r.json.engines.find((x: any) => x.name === 'rfdetr');
    assert.ok(e, JSON.stringify(r.json.engines.map((x: any) => x.name)));
    assert.equal(e.license, 'Apache-2.0');
    assert.equal(e.default, false);
    assert.deepEqual(e.tasks.map((t: any) => t.name), ['detect', 'segment']);
    const detect = e.tasks.find((t: any) => t.name === 'detect');
    assert.deepEqual(detect.dataset_formats, ['yolo', 'coco']);
    assert.ok(detect.models.includes('rfdetr-nano'));
    assert.equal(detect.metrics.best.key, 'mAP50-95');
    assert.equal(e.tasks.find((t: any) => t.name === 'segment').metrics.best.key, 'mAP50-95(M)');
  });

  test('requests RF-DETR cannot train are refused with the reason', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ name: 'x', image_size: 100 }, /multiple of 32/],
      [{ name: 'x', base_model: 'rfdetr-huge' }, /unknown RF-DETR model rfdetr-huge/],
      [{ name: 'x', task: 'segment', base_model: 'rfdetr-nano' }, /is a detect model/],
      [{ name: 'x', base_model: 'model:abc' }, /model_size/],
      [{ name: 'x', lr0: 0.01 }, /lr0/],
      [{ name: 'x', task: 'pose' }, /task/],
    ];
    for (const [mc, message] of cases) {
      const r = await submit(mc, 'detect.zip');
      assert.equal(r.status, 400, `${JSON.stringify(mc)}: ${r.text}`);
      assert.equal(r.json.error.code, 'VALIDATION_ERROR');
      assert.match(r.text, message, JSON.stringify(mc));
    }
    assert.equal((await call('/api/v1/jobs')).json.jobs.length, 0, 'nothing was queued');
  });

  let detectJob: string;
  test('detect (YOLO): trains, records its metrics, calls back, exports to ONNX and predicts', async () => {
    const spec = rfdetrEngine.metrics('detect');
    const r = await submit({ name: 'rfdetr-detect', base_model: 'rfdetr-nano', image_size: 64, epochs: 2, ...FAST }, 'detect.zip', 'detect');
    assert.equal(r.status, 202, r.text);
    detectJob = r.json.job_id;
    const job = await finished(detectJob);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    assert.equal(job.dataset_info.format, 'yolo');

    const epochs = (await call(`/api/v1/jobs/${detectJob}/metrics`)).json.epochs;
    assert.deepEqual(epochs.map((e: any) => e.epoch), [1, 2]);
    for (const e of epochs) {
      for (const key of ['total_loss', 'cls_loss', 'box_loss', 'giou_loss', 'mAP50', 'mAP50-95', 'lr']) {
        assert.equal(typeof e.metrics[key], 'number', `epoch ${e.epoch}: ${key} in ${JSON.stringify(e.metrics)}`);
      }
    }
    assert.equal(typeof job.metrics.best['mAP50-95'], 'number');

    await receiver.waitFor((all) => all.some((x) => x.path === '/detect' && x.json?.type === 'training_completed'), 60_000, 'completion');
    const mine = receiver.received.filter((x) => x.path === '/detect');
    for (const hook of mine) assert.deepEqual(verifier.verify(hook.body, hook.headers), hook.json);
    const done = mine.find((x) => x.json?.type === 'training_completed')!;
    for (const key of spec.callback.final) assert.ok(key in done.json.final_metrics, key);
    assert.equal(done.json.model.format, 'pytorch');
    assert.ok(done.json.artifacts.results_csv, JSON.stringify(done.json.artifacts));
    assert.ok(mine.some((x) => x.json?.type === 'training_progress' || x.json?.type === 'epoch_completed'), 'progress callbacks');

    const model = await modelOf(detectJob);
    assert.equal(model.framework, 'rfdetr');
    assert.equal(model.imgsz, 64);
    assert.deepEqual(model.classes, CLASSES);
    const exported = await call(`/api/v1/models/${model.model_id}/export`, { method: 'POST', json: { format: 'onnx' } });
    assert.equal(exported.status, 201, exported.text);
    assert.equal(exported.json.check.passed, true, JSON.stringify(exported.json.check));
    const torchscript = await call(`/api/v1/models/${model.model_id}/export`, { method: 'POST', json: { format: 'torchscript' } });
    // A format of other engines' models: a conflict with this model, not a malformed request.
    assert.equal(torchscript.status, 409, torchscript.text);
    assert.equal(torchscript.json.error.code, 'EXPORT_UNSUPPORTED');

    const form = new FormData();
    form.append('images', new Blob([new Uint8Array(fs.readFileSync(valImage))], { type: 'image/png' }), 'val.png');
    const predicted = await call(`/api/v1/models/${model.model_id}/predict?format=json&conf=0.001`, { method: 'POST', body: form });
    assert.equal(predicted.status, 200, predicted.text);
    assert.equal(predicted.json.task, 'detect');
    const dets = predicted.json.results[0].detections;
    assert.ok(Array.isArray(dets) && dets.length > 0, predicted.text);
    for (const d of dets) {
      assert.ok(CLASSES.includes(d.class_name), JSON.stringify(d));
      assert.equal(d.bbox.length, 4);
    }
    const csv = await call(`/api/v1/models/${model.model_id}/predict?format=csv&conf=0.001`, { method: 'POST', body: form });
    assert.equal(csv.status, 200, csv.text);
    assert.match(csv.text.split('\r\n')[0]!, /^image_path,/);
    assert.equal(csv.text.trim().split('\r\n').length, dets.length + 1, 'a row per detection');
    const coco = await call(`/api/v1/models/${model.model_id}/predict?format=coco&conf=0.001`, { method: 'POST', body: form });
    assert.equal(coco.status, 200, coco.text);
    assert.deepEqual(coco.json.categories.map((c: any) => c.name), CLASSES);
    assert.equal(coco.json.annotations.length, dets.length);
  });

  test('compare shows an RF-DETR job beside an Ultralytics job, framework and all', async () => {
    const yolo = await call('/api/v1/train', {
      method: 'POST',
      json: trainBody({ model_config: { name: 'yolo-beside', epochs: 1, image_size: 64 }, dataset: { url: host.url('/detect.zip') } }),
    });
    assert.equal(yolo.status, 202, yolo.text);
    assert.equal((await finished(yolo.json.job_id)).status, 'completed');
    const r = await call(`/api/v1/jobs/compare?ids=${detectJob},${yolo.json.job_id}`);
    assert.equal(r.status, 200, r.text);
    assert.match(r.text, /rfdetr/);
    assert.match(r.text, /ultralytics/);
  });

  test('detect (COCO JSON), then fine-tuned from the registered model', async () => {
    const r = await submit({ name: 'rfdetr-coco', image_size: 64, epochs: 1, ...FAST }, 'coco.zip');
    assert.equal(r.status, 202, r.text);
    const job = await finished(r.json.job_id);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    assert.equal(job.dataset_info.format, 'coco');
    const model = await modelOf(r.json.job_id);

    const tuned = await submit(
      { name: 'rfdetr-tuned', base_model: `model:${model.model_id}`, model_size: 'nano', image_size: 64, epochs: 1, ...FAST, pretrained: true },
      'detect.zip',
    );
    assert.equal(tuned.status, 202, tuned.text);
    const done = await finished(tuned.json.job_id);
    assert.equal(done.status, 'completed', JSON.stringify(done.error));
    assert.equal((await modelOf(tuned.json.job_id)).framework, 'rfdetr');

    // Published weights by name, through the mirror: fetched once, shared by later jobs.
    const modelFolder = path.join(server.workdir, 'models', model.model_id);
    const weights = fs.readdirSync(modelFolder).find((f) => f.endsWith('.pth'));
    assert.ok(weights, `a .pth in ${fs.readdirSync(modelFolder).join(', ')}`);
    host.route('/mirror/rf-detr-nano.pth', serveFile(path.join(modelFolder, weights)));
    const byName = { name: 'rfdetr-by-name', base_model: 'rfdetr-nano', image_size: 64, epochs: 1, ...FAST, pretrained: true };
    for (const round of [1, 2]) {
      const r2 = await submit(byName, 'detect.zip');
      assert.equal(r2.status, 202, r2.text);
      const j = await finished(r2.json.job_id);
      assert.equal(j.status, 'completed', `round ${round}: ${JSON.stringify(j.error)}`);
      assert.equal(j.config.base_model_source, host.url('/mirror/rf-detr-nano.pth'));
    }
    assert.equal(host.hits('/mirror/rf-detr-nano.pth'), 1, 'downloaded once for both jobs');
  });

  test('segment (YOLO polygons): trains and records mask metrics', async () => {
    const r = await submit({ name: 'rfdetr-seg', task: 'segment', base_model: 'rfdetr-seg-nano', image_size: 48, epochs: 1, ...FAST }, 'segment.zip');
    assert.equal(r.status, 202, r.text);
    const job = await finished(r.json.job_id);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    const epochs = (await call(`/api/v1/jobs/${r.json.job_id}/metrics`)).json.epochs;
    assert.equal(typeof epochs[0].metrics['mAP50-95(M)'], 'number', JSON.stringify(epochs[0].metrics));
    assert.equal(typeof epochs[0].metrics['mask_dice_loss'], 'number');
  });

  test('a server stopped mid-training resumes the job from last.ckpt; a cancel stops one', async () => {
    const r = await submit({ name: 'rfdetr-resume', image_size: 64, epochs: 3, ...FAST }, 'detect.zip');
    assert.equal(r.status, 202, r.text);
    const id = r.json.job_id;
    await waitFor('the first epoch', async () => (await call(`/api/v1/jobs/${id}`)).json.current_epoch >= 1, 600_000);
    const env = server.env;
    await server.stop();
    server = await startTestServer({ env });
    call = api(server.url);
    const job = await finished(id);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    const spec = JSON.parse(fs.readFileSync(path.join(server.workdir, 'jobs', id, 'worker-spec.json'), 'utf8'));
    assert.equal(spec.resume, true, 'the second attempt resumed');
    const epochs = (await call(`/api/v1/jobs/${id}/metrics`)).json.epochs;
    assert.deepEqual(epochs.map((e: any) => e.epoch), [1, 2, 3], 'each epoch once');

    const long = await submit({ name: 'rfdetr-cancel', image_size: 64, epochs: 50, ...FAST }, 'detect.zip');
    assert.equal(long.status, 202, long.text);
    await waitFor('training', async () => (await call(`/api/v1/jobs/${long.json.job_id}`)).json.current_epoch >= 1, 600_000);
    const cancelled = await call(`/api/v1/jobs/${long.json.job_id}`, { method: 'DELETE' });
    assert.equal(cancelled.status, 200, cancelled.text);
    const gone = await finished(long.json.job_id);
    assert.equal(gone.status, 'cancelled');
    assert.ok(gone.current_epoch < 50);
  });
});
