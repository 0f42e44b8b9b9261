/**
 * The shared dataset store under real training (tiny YOLO on the CPU): two jobs on one ZIP
 * download it once, an uploaded ZIP trains by id, and retention then removes the jobs' files
 * while their rows and registered models stay.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setupPython } from '../scripts/setup-python.mjs';
import { startFileServer, type FileServer } from './helpers/file-server.js';
import { api, startTestServer, tempDir, trainBody, type TestServer } from './helpers/server.js';
import { waitFor } from './helpers/wait.js';
import { writeSyntheticDataset, zipDirectory } from './helpers/synthetic-dataset.js';

const DAY = 24 * 3600 * 1000;

function body(dataset: Record<string, unknown>, name: string) {
  return trainBody({
    model_config: { name, task: 'detect', base_model: 'yolo11n.yaml', epochs: 1, batch_size: 8, image_size: 64, seed: 1, augmentation: { mosaic: 0 } },
    dataset,
    resources: { device: 'cpu', workers: 0 },
  });
}

describe('datasets under training', () => {
  let server: TestServer;
  let call: ReturnType<typeof api>;
  let host: FileServer;
  let zip: Buffer;
  let downloads = 0;

  before(async () => {
    await setupPython();
    const dir = tempDir('trainhook-ds-train-');
    const root = path.join(dir, 'src');
    await writeSyntheticDataset(root, { task: 'detect', train: 8, val: 4, imgsz: 64, classes: ['red-box', 'green-disc'], seed: 7 });
    await zipDirectory(root, path.join(dir, 'detect.zip'));
    zip = fs.readFileSync(path.join(dir, 'detect.zip'));
    // As a static file host serves it (Python's http.server, nginx, S3): with Last-Modified,
    // answering 304 to a request that already has the file.
    const lastModified = new Date('2026-01-01T00:00:00Z').toUTCString();
    host = await startFileServer();
    host.route('/detect.zip', (req, res) => {
      if (req.headers['if-modified-since'] === lastModified) return void res.writeHead(304).end();
      downloads++;
      res.writeHead(200, { 'content-type': 'application/zip', 'content-length': zip.length, 'last-modified': lastModified });
      res.end(zip);
    });
    server = await startTestServer({ env: { DEVICES: 'cpu', RETENTION_DAYS: '1', RETENTION_SWEEP_SECONDS: '86400' } });
    call = api(server.url);
  });
  after(async () => {
    await server?.stop();
    await host?.close();
  });

  const finished = (id: string) =>
    waitFor(
      `job ${id} to finish`,
      async () => {
        const j = await call(`/api/v1/jobs/${id}`);
        return ['completed', 'failed', 'cancelled'].includes(j.json.status) && j.json;
      },
      300_000,
    );

  test('two jobs on one ZIP: the file server sees one download, the store one archive', async () => {
    const ids: string[] = [];
    for (const name of ['first', 'second']) {
      const r = await call('/api/v1/train', { method: 'POST', json: body({ url: host.url('/detect.zip') }, name) });
      assert.equal(r.status, 202, r.text);
      ids.push(r.json.job_id);
    }
    for (const id of ids) {
      const job = await finished(id);
      assert.equal(job.status, 'completed', JSON.stringify(job.error));
      assert.equal(job.dataset_info.train_images, 8);
      assert.ok(job.disk_bytes > 0, 'the disk the job uses is measured at finish');
    }
    assert.equal(downloads, 1);
    assert.deepEqual(server.deps.files.datasets.list().length, 1);
  });

  test('an uploaded ZIP trains by id, and cannot be deleted while its job runs', async () => {
    // The same bytes as the URL's: the upload finds the archive already stored.
    const up = await call('/api/v1/datasets?name=shapes', { method: 'POST', body: new Uint8Array(zip), headers: { 'content-type': 'application/zip' } });
    assert.equal(up.status, 201, up.text);
    assert.equal(up.json.format, 'yolo');
    assert.equal(up.json.info.total_images, 12);
    const r = await call('/api/v1/train', { method: 'POST', json: body({ id: up.json.dataset_id }, 'by-id') });
    assert.equal(r.status, 202, r.text);
    const busy = await call(`/api/v1/datasets/${up.json.dataset_id}`, { method: 'DELETE' });
    assert.equal(busy.status, 409);
    const job = await finished(r.json.job_id);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    assert.equal(job.dataset_info.total_images, 12);
    assert.equal(downloads, 1);
    await waitFor('its model to be registered', async () => (await call('/api/v1/models')).json.models?.some((m: { source_job_id: string }) => m.source_job_id === r.json.job_id));
  });

  test('retention removes the jobs\' files and the archive no upload keeps; rows and models stay', async () => {
    const jobs = (await call('/api/v1/jobs?status=completed')).json.jobs as { job_id: string }[];
    assert.equal(jobs.length, 3);
    const report = await server.deps.retention.sweep(new Date(Date.now() + 2 * DAY));
    assert.equal(report.jobs, 3);
    assert.equal(report.archives, 0, 'the upload keeps the archive');
    for (const { job_id: id } of jobs) {
      assert.deepEqual(fs.readdirSync(server.deps.files.dir(id)), ['worker.log']);
      const job = (await call(`/api/v1/jobs/${id}`)).json;
      assert.equal(job.status, 'completed');
      assert.ok(job.files_removed_at);
    }
    const models = (await call('/api/v1/models')).json.models as { model_id: string; source_job_id: string }[];
    assert.equal(models.length, 3);
    for (const m of models) {
      const one = await call(`/api/v1/models/${m.model_id}`);
      assert.equal(one.status, 200);
      assert.ok(fs.readdirSync(path.join(server.workdir, 'models', m.model_id)).some((f) => f.endsWith('.pt')), 'the model file stays');
    }
    // Deleting the upload now removes the archive: no job with files refers to it.
    const ds = (await call('/api/v1/datasets')).json.datasets[0];
    assert.equal((await call(`/api/v1/datasets/${ds.dataset_id}`, { method: 'DELETE' })).status, 200);
    assert.deepEqual(server.deps.files.datasets.list(), []);
  });
});
