/**
 * Base weights by name, through a mirror on 127.0.0.1 (BASE_MODEL_MIRROR): a real checkpoint
 * served under an official name trains a job, a second job reuses the cached file (the mirror
 * sees one request), the job records the file's sha256 and source, and what cannot be used
 * fails with MODEL_DOWNLOAD_FAILED before any training: a mirror without the file (the message
 * names the URL and where to place it), an HTML page saved under a weight's name (removed, so
 * it poisons no later job), a pinned sha256 that differs, a weight of another task (refused at
 * submit). Concurrent downloads of one file are one download.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { setupPython } from '../scripts/setup-python.mjs';
import { createOutboundDispatcher } from '../src/net/outbound.js';
import { resolveBaseModel } from '../src/pipeline/base-model.js';
import { serveBytes, serveFile, startFileServer, type FileServer } from './helpers/file-server.js';
import { api, startTestServer, tempDir, trainBody, type TestServer } from './helpers/server.js';
import { writeSyntheticDataset, zipDirectory } from './helpers/synthetic-dataset.js';
import { waitFor } from './helpers/wait.js';

describe('base weights by name', { timeout: 15 * 60_000 }, () => {
  let dir: string;
  let host: FileServer;
  let server: TestServer;
  let call: ReturnType<typeof api>;
  let checkpoint: string;

  const finished = async (id: string) =>
    waitFor(`job ${id}`, async () => {
      const j = await call(`/api/v1/jobs/${id}`);
      return ['completed', 'failed'].includes(j.json.status) && j.json;
    }, 600_000);
  const submit = async (modelConfig: Record<string, unknown>) => {
    const r = await call('/api/v1/train', {
      method: 'POST',
      json: trainBody({
        model_config: { name: 'weights', epochs: 1, batch_size: 8, image_size: 64, ...modelConfig },
        dataset: { url: host.url('/detect.zip') },
      }),
    });
    assert.equal(r.status, 202, r.text);
    return r.json.job_id as string;
  };

  before(async () => {
    const python = await setupPython();
    dir = tempDir('trainhook-weights-');
    // A real Ultralytics checkpoint (untrained yolov8n), as the official file would be.
    checkpoint = path.join(dir, 'yolov8n.pt');
    await promisify(execFile)(python, ['-c', 'import sys; from ultralytics import YOLO; YOLO("yolov8n.yaml").save(sys.argv[1])', checkpoint], {
      env: { ...process.env, YOLO_OFFLINE: 'true', YOLO_CONFIG_DIR: path.join(dir, 'ycfg') },
    });
    await writeSyntheticDataset(path.join(dir, 'src'), { task: 'detect', train: 16, val: 8, imgsz: 64, classes: ['a', 'b'], seed: 3 });
    await zipDirectory(path.join(dir, 'src'), path.join(dir, 'detect.zip'));
    host = await startFileServer();
    host.route('/detect.zip', serveFile(path.join(dir, 'detect.zip')));
    host.route('/mirror/yolov8n.pt', serveFile(checkpoint));
    host.route('/mirror/yolov8s.pt', serveBytes(Buffer.from('<html><body>Sign in to continue</body></html>'.repeat(100))));
    server = await startTestServer({ env: { DEVICES: 'cpu', BASE_MODEL_MIRROR: host.url('/mirror/') } });
    call = api(server.url);
  });
  after(async () => {
    await server?.stop();
    await host?.close();
  });

  test('an official name trains from the mirror once; the next job reuses the file', async () => {
    const sha256 = crypto.createHash('sha256').update(fs.readFileSync(checkpoint)).digest('hex');
    const first = await finished(await submit({ base_model: 'yolov8n.pt' }));
    assert.equal(first.status, 'completed', JSON.stringify(first.error));
    assert.equal(first.config.base_model_sha256, sha256);
    assert.equal(first.config.base_model_source, host.url('/mirror/yolov8n.pt'));
    const cached = path.join(server.workdir, 'base-models', 'yolov8n.pt');
    assert.ok(fs.existsSync(cached));
    const second = await finished(await submit({ base_model: 'yolov8n.pt', base_model_sha256: sha256.toUpperCase() }));
    assert.equal(second.status, 'completed', JSON.stringify(second.error));
    assert.equal(host.hits('/mirror/yolov8n.pt'), 1, 'downloaded once for both jobs');
  });

  test('a pinned sha256 that differs fails before training', async () => {
    const job = await finished(await submit({ base_model: 'yolov8n.pt', base_model_sha256: 'a'.repeat(64) }));
    assert.equal(job.status, 'failed');
    assert.equal(job.error.code, 'MODEL_DOWNLOAD_FAILED');
    assert.equal(job.error.phase, 'preparing');
    assert.match(job.error.message, /not the pinned a{64}/);
  });

  test('a page saved under a weight name is refused and removed; a missing one names the URL and the path', async () => {
    const html = await finished(await submit({ base_model: 'yolov8s.pt' }));
    assert.equal(html.status, 'failed');
    assert.equal(html.error.code, 'MODEL_DOWNLOAD_FAILED');
    assert.match(html.error.message, /not an Ultralytics checkpoint/);
    assert.ok(!fs.existsSync(path.join(server.workdir, 'base-models', 'yolov8s.pt')), 'no poisoned copy stays');
    assert.equal(html.current_epoch, 0);

    const missing = await finished(await submit({ base_model: 'yolo11m.pt' }));
    assert.equal(missing.error.code, 'MODEL_DOWNLOAD_FAILED');
    assert.ok(missing.error.message.includes(host.url('/mirror/yolo11m.pt')), missing.error.message);
    assert.ok(missing.error.message.includes(path.join(server.workdir, 'base-models', 'yolo11m.pt')), missing.error.message);
  });

  test('a weight of another task is refused at submit, naming one that fits', async () => {
    const r = await call('/api/v1/train', {
      method: 'POST',
      json: trainBody({ model_config: { name: 'x', task: 'detect', base_model: 'yolo11n-seg.pt' } }),
    });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error.message, /yolo11n-seg\.pt is a segment model/);
  });

  test('two jobs asking for one file at once share one download', async () => {
    const workdir = tempDir('trainhook-weights-once-');
    const dispatcher = createOutboundDispatcher(['127.0.0.1']);
    host.route('/mirror/yolov8m.pt', serveFile(checkpoint));
    const opts = { workdir, task: 'detect', dispatcher, maxBytes: 1e9, timeoutMs: 60_000, retries: 0, registered: async () => ({ problem: 'none' }) };
    const source = { kind: 'file' as const, file: 'yolov8m.pt', url: host.url('/mirror/yolov8m.pt') };
    const [a, b] = await Promise.all([resolveBaseModel(source, opts), resolveBaseModel(source, opts)]);
    assert.equal(a.model, b.model);
    assert.equal(a.sha256, b.sha256);
    assert.equal(host.hits('/mirror/yolov8m.pt'), 1);
    await dispatcher.close();
  });
});
