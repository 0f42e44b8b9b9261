/**
 * Ultralytics' tasks end to end through the API: segment (polygons), classify (a folder per
 * class), pose (keypoints with kpt_shape) and obb (4-corner lines), each on a dataset the test generates,
 * trained for real on the CPU. For each: the job completes, its epochs carry the metrics the
 * engine declares for the task, the signed callbacks verify, and the registered best model
 * exports to ONNX (checked by the server) and predicts with the task's own output.
 * Detect has the same path in registry.test.ts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { setupPython } from '../scripts/setup-python.mjs';
import { ultralyticsEngine } from '../src/engines/ultralytics/index.js';
import { serveFile, startFileServer, type FileServer } from './helpers/file-server.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { api, startTestServer, tempDir, trainBody, type TestServer } from './helpers/server.js';
import { writeSyntheticClassifyDataset, writeSyntheticDataset, zipDirectory } from './helpers/synthetic-dataset.js';
import { waitFor } from './helpers/wait.js';

const CLASSES = ['red-box', 'green-disc'];
const SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
const verifier = new Webhook(SECRET);

type Task = 'segment' | 'classify' | 'pose' | 'obb';
/** What each task's prediction adds to a result, beside the common fields. */
const PREDICTED: Record<Task, (result: any) => void> = {
  segment: (r) => {
    for (const d of r.detections) assert.ok(Array.isArray(d.polygon), JSON.stringify(d));
  },
  classify: (r) => {
    assert.ok(Array.isArray(r.classifications) && r.classifications.length === CLASSES.length, JSON.stringify(r));
    assert.ok(CLASSES.includes(r.classifications[0].class_name));
  },
  pose: (r) => {
    for (const d of r.detections) assert.equal(d.keypoints.length, 4, 'kpt_shape [4, 3]');
  },
  obb: (r) => {
    for (const d of r.detections) {
      assert.equal(d.corners.length, 4);
      assert.equal(typeof d.angle, 'number');
    }
  },
};

describe('Ultralytics segment, classify, pose and obb through the API', { timeout: 20 * 60_000 }, () => {
  let files: string;
  let host: FileServer;
  let receiver: Receiver;
  let server: TestServer;
  let call: ReturnType<typeof api>;
  const valImage = new Map<Task, string>();

  before(async () => {
    await setupPython();
    files = tempDir('trainhook-tasks-');
    host = await startFileServer();
    receiver = await startReceiver();
    for (const task of ['segment', 'pose', 'obb'] as const) {
      const root = path.join(files, task);
      await writeSyntheticDataset(root, { task, train: 16, val: 8, imgsz: 64, classes: CLASSES, seed: 11 });
      valImage.set(task, path.join(root, 'images', 'val', fs.readdirSync(path.join(root, 'images', 'val')).sort()[0]!));
    }
    const cls = path.join(files, 'classify');
    await writeSyntheticClassifyDataset(cls, { train: 16, val: 8, imgsz: 64, classes: CLASSES, seed: 11 });
    valImage.set('classify', path.join(cls, 'val', CLASSES[0]!, fs.readdirSync(path.join(cls, 'val', CLASSES[0]!)).sort()[0]!));
    for (const task of ['segment', 'classify', 'pose', 'obb'] as const) {
      await zipDirectory(path.join(files, task), path.join(files, `${task}.zip`));
      host.route(`/${task}.zip`, serveFile(path.join(files, `${task}.zip`)));
    }
    server = await startTestServer({ env: { DEVICES: 'cpu' } });
    call = api(server.url);
  });
  after(async () => {
    await server?.stop();
    await receiver?.close();
    await host?.close();
  });

  test('GET /api/v1/engines lists every Ultralytics task with its formats, weights and metrics', async () => {
    const r = await call('/api/v1/engines');
    assert.equal(r.status, 200, r.text);
    const ul = r.json.engines.find((e: any) => e.name === 'ultralytics');
    assert.equal(ul.default, true);
    assert.deepEqual(ul.tasks.map((t: any) => t.name), ['detect', 'segment', 'classify', 'pose', 'obb']);
    const byName = new Map(ul.tasks.map((t: any) => [t.name, t]));
    assert.deepEqual((byName.get('classify') as any).dataset_formats, ['classify']);
    assert.ok((byName.get('pose') as any).models.includes('yolo11n-pose.pt'));
    assert.equal((byName.get('classify') as any).metrics.best.key, 'accuracy_top1');
    assert.equal(ul.config_schema.properties.framework.default, 'ultralytics');
  });

  for (const task of ['segment', 'classify', 'pose', 'obb'] as const) {
    test(`${task}: trains, records its metrics, calls back, exports and predicts`, async () => {
      const spec = ultralyticsEngine.metrics(task);
      const submit = await call('/api/v1/train', {
        method: 'POST',
        json: trainBody({
          model_config: { name: `tasks-${task}`, task, base_model: `yolo11n-${{ segment: 'seg', classify: 'cls', pose: 'pose', obb: 'obb' }[task]}.yaml`, epochs: 2, batch_size: 8, image_size: 64, seed: 1 },
          dataset: { url: host.url(`/${task}.zip`) },
          callback_url: `${receiver.url}/${task}`,
          callback_secret: SECRET,
        }),
      });
      assert.equal(submit.status, 202, submit.text);
      const id = submit.json.job_id;
      const job = await waitFor(`${task} job`, async () => {
        const j = await call(`/api/v1/jobs/${id}`);
        return ['completed', 'failed'].includes(j.json.status) && j.json;
      }, 600_000);
      assert.equal(job.status, 'completed', JSON.stringify(job.error));
      assert.equal(job.dataset_info.task, task);

      // Per-epoch metrics under the engine's names for the task.
      const epochs = (await call(`/api/v1/jobs/${id}/metrics`)).json.epochs;
      assert.deepEqual(epochs.map((e: any) => e.epoch), [1, 2]);
      for (const e of epochs) {
        for (const key of [...spec.losses, spec.best.key]) assert.equal(typeof e.metrics[key], 'number', `${task} epoch ${e.epoch}: ${key}`);
      }
      assert.equal(typeof job.metrics.best[spec.best.key], 'number');

      // The completion callback: signed, with the task's final metrics and a model link.
      await receiver.waitFor((all) => all.some((r) => r.path === `/${task}` && r.json?.type === 'training_completed'), 60_000, `${task} completion`);
      const done = receiver.received.find((r) => r.path === `/${task}` && r.json?.type === 'training_completed')!;
      assert.deepEqual(verifier.verify(done.body, done.headers), done.json);
      for (const key of spec.callback.final) assert.ok(key in done.json.final_metrics, key);
      assert.ok(done.json.model.download_url);

      // The registered model exports and predicts as a model of its task.
      // Registered right after the completion commits.
      const models = await waitFor(`${task} model`, async () => {
        const found = (await call(`/api/v1/models?job_id=${id}`)).json.models;
        return found.length > 0 && found;
      }, 30_000);
      assert.equal(models.length, 1);
      assert.equal(models[0].task, task);
      const exported = await call(`/api/v1/models/${models[0].model_id}/export`, { method: 'POST', json: { format: 'onnx' } });
      assert.equal(exported.status, 201, exported.text);
      assert.equal(exported.json.check.passed, true, JSON.stringify(exported.json.check));
      const form = new FormData();
      form.append('images', new Blob([new Uint8Array(fs.readFileSync(valImage.get(task)!))], { type: 'image/png' }), 'val.png');
      const predicted = await call(`/api/v1/models/${models[0].model_id}/predict?format=json&conf=0.001`, { method: 'POST', body: form });
      assert.equal(predicted.status, 200, predicted.text);
      assert.equal(predicted.json.task, task);
      PREDICTED[task](predicted.json.results[0]);
      const csv = await call(`/api/v1/models/${models[0].model_id}/predict?format=csv&conf=0.001`, { method: 'POST', body: form });
      assert.equal(csv.status, 200);
      const header = { segment: /,polygon$/, classify: /^image_path,rank,class_id/, pose: /,keypoints$/, obb: /,corners$/ }[task];
      assert.match(csv.text.split('\r\n')[0]!, header);
    });
  }
});
