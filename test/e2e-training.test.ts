/**
 * End to end through the API (issue 3): a generated dataset ZIP served from 127.0.0.1,
 * submitted with POST /api/v1/train, trained for real by Ultralytics on the CPU; then the
 * cancel and resume drills, through the API and a SIGKILLed server.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setupPython } from '../scripts/setup-python.mjs';
import { TOKEN, api, startChildServer, startTestServer, tempDir, trainBody, type ChildServer, type TestServer } from './helpers/server.js';
import { serveFile, startFileServer, type FileServer } from './helpers/file-server.js';
import { waitFor } from './helpers/wait.js';
import { writeSyntheticDataset, zipDirectory } from './helpers/synthetic-dataset.js';

const CLASSES = ['red-box', 'green-disc'];

async function datasetZip(dir: string, task: 'detect' | 'segment', train = 16, val = 8): Promise<void> {
  const root = path.join(dir, `${task}-src`);
  await writeSyntheticDataset(root, { task, train, val, imgsz: 64, classes: CLASSES, seed: 7 });
  await zipDirectory(root, path.join(dir, `${task}.zip`));
}

function body(url: string, task: 'detect' | 'segment', epochs: number, extra: Record<string, unknown> = {}) {
  return trainBody({
    model_config: {
      name: `e2e-${task}`,
      task,
      base_model: task === 'segment' ? 'yolo11n-seg.yaml' : 'yolo11n.yaml',
      epochs,
      batch_size: 8,
      image_size: 64,
      seed: 1,
      augmentation: { mosaic: 0 },
    },
    dataset: { url },
    resources: { device: 'cpu', workers: 0 },
    ...extra,
  });
}

describe('training end to end', () => {
  let files: string;
  let host: FileServer;
  let python: string;

  before(async () => {
    python = await setupPython();
    files = tempDir('trainhook-e2e-');
    await datasetZip(files, 'detect');
    await datasetZip(files, 'segment');
    host = await startFileServer();
    for (const task of ['detect', 'segment']) host.route(`/${task}.zip`, serveFile(path.join(files, `${task}.zip`)));
  });
  after(() => host.close());

  describe('through one server', () => {
    let server: TestServer;
    let call: ReturnType<typeof api>;
    before(async () => {
      server = await startTestServer({ env: { DEVICES: 'cpu', CANCEL_GRACE_SECONDS: '20' } });
      call = api(server.url);
    });
    after(() => server.stop());

    for (const task of ['detect', 'segment'] as const) {
      test(`${task}: completes with per-epoch metrics, a loadable best.pt and artifacts`, async () => {
        const r = await call('/api/v1/train', { method: 'POST', json: body(host.url(`/${task}.zip`), task, 2) });
        assert.equal(r.status, 202, r.text);
        const id = r.json.job_id;
        const job = await waitFor(
          `${task} job to finish`,
          async () => {
            const j = await call(`/api/v1/jobs/${id}`);
            return ['completed', 'failed'].includes(j.json.status) && j.json;
          },
          300_000,
        );
        assert.equal(job.status, 'completed', JSON.stringify(job.error));
        assert.equal(job.progress, 100);
        assert.equal(job.current_epoch, 2);
        assert.equal(job.dataset_info.train_images, 16);
        assert.equal(job.dataset_info.val_images, 8);
        assert.deepEqual(job.dataset_info.classes, CLASSES);

        const metrics = await call(`/api/v1/jobs/${id}/metrics`);
        assert.deepEqual(metrics.json.epochs.map((e: { epoch: number }) => e.epoch), [1, 2]);
        for (const e of metrics.json.epochs) {
          for (const key of ['box_loss', 'cls_loss', 'dfl_loss', 'precision', 'recall', 'mAP50', 'mAP50-95']) {
            assert.equal(typeof e.metrics[key], 'number', `epoch ${e.epoch} has ${key}`);
          }
          assert.ok(e.epoch_seconds > 0);
        }
        if (task === 'segment') assert.equal(typeof metrics.json.epochs[0].metrics.seg_loss, 'number');

        const best = path.join(server.workdir, 'jobs', id, 'weights', 'best.pt');
        assert.ok(fs.existsSync(best), 'best.pt under workdir/jobs/{id}/weights/');
        assert.ok(job.model.size_bytes > 0);
        const names = job.artifacts.map((a: { name: string }) => a.name);
        assert.ok(names.includes('results.csv'), names.join());
        assert.ok(names.some((n: string) => /confusion_matrix/.test(n)), names.join());

        const image = fs.readdirSync(path.join(files, `${task}-src`, 'images', 'val'))[0]!;
        // Async: a blocking call would freeze this process's server and its keep-alive sockets.
        const { stdout: out } = await promisify(execFile)(
          python,
          [
            '-c',
            `import sys; from ultralytics import YOLO
m = YOLO(sys.argv[1]); r = m.predict(sys.argv[2], imgsz=64, conf=0.001, verbose=False)[0]
print(m.task, len(m.names), len(r.boxes))`,
            best,
            path.join(files, `${task}-src`, 'images', 'val', image),
          ],
          { env: { ...process.env, YOLO_OFFLINE: 'true', YOLO_CONFIG_DIR: path.join(server.workdir, 'ultralytics') }, encoding: 'utf8' },
        );
        const [loadedTask, nc] = out.trim().split('\n').pop()!.split(' ');
        assert.equal(loadedTask, task);
        assert.equal(Number(nc), CLASSES.length);
      });
    }

    test('cancel: the worker stops within the grace period and last.pt is kept', async () => {
      const r = await call('/api/v1/train', { method: 'POST', json: body(host.url('/detect.zip'), 'detect', 50) });
      const id = r.json.job_id;
      await waitFor('the first epoch', async () => (await call(`/api/v1/jobs/${id}`)).json.current_epoch >= 1, 300_000);
      const cancelledAt = Date.now();
      const del = await call(`/api/v1/jobs/${id}`, { method: 'DELETE' });
      assert.equal(del.status, 200);
      await waitFor('the worker to be gone', async () => !server.scheduler.isRunningHere(id), 25_000);
      assert.ok(Date.now() - cancelledAt < 20_000, 'gone within the grace period');
      const job = (await call(`/api/v1/jobs/${id}`)).json;
      assert.equal(job.status, 'cancelled');
      assert.equal(job.error.code, 'CANCELLED');
      assert.ok(job.metrics.current, 'partial metrics kept');
      assert.ok(fs.existsSync(path.join(server.workdir, 'jobs', id, 'weights', 'last.pt')), 'last.pt kept');
    });
  });

  describe('resume after the server is SIGKILLed mid-training', () => {
    let server: ChildServer | undefined;
    after(() => server?.kill());

    test('the job finishes with all its epochs, none counted twice', async () => {
      const env = { WORKDIR: tempDir(), API_TOKEN: TOKEN, DEVICES: 'cpu', OUTBOUND_ALLOW: '127.0.0.1', PYTHON: python };
      server = await startChildServer(env);
      let call = api(server.url);
      const r = await call('/api/v1/train', { method: 'POST', json: body(host.url('/detect.zip'), 'detect', 4) });
      const id = r.json.job_id;
      await waitFor('epoch 2', async () => (await call(`/api/v1/jobs/${id}`)).json.current_epoch >= 2, 300_000);
      await server.kill('SIGKILL');

      server = await startChildServer(env);
      call = api(server.url);
      const job = await waitFor(
        'the resumed job to finish',
        async () => {
          const j = await call(`/api/v1/jobs/${id}`);
          return ['completed', 'failed'].includes(j.json.status) && j.json;
        },
        300_000,
      );
      assert.equal(job.status, 'completed', JSON.stringify(job.error));
      const epochs = (await call(`/api/v1/jobs/${id}/metrics`)).json.epochs.map((e: { epoch: number }) => e.epoch);
      assert.deepEqual(epochs, [1, 2, 3, 4]);
      // Ultralytics' own record of the run: one row per epoch, none repeated.
      const csv = fs.readFileSync(path.join(env.WORKDIR, 'jobs', id, 'results.csv'), 'utf8').trim().split('\n');
      const csvEpochs = csv.slice(1).map((line) => Number(line.split(',')[0]));
      assert.deepEqual(csvEpochs, [1, 2, 3, 4]);
      const log = fs.readFileSync(path.join(env.WORKDIR, 'jobs', id, 'worker.log'), 'utf8');
      assert.match(log, /[Rr]esum/);
    });
  });
});
