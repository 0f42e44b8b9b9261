/**
 * Pre-flight and health through the API: a job this host cannot hold is refused with its code
 * before any download or training (RAM, GPU memory), a worker past resources.max_memory_gb is
 * stopped, MIN_FREE_DISK_GB refuses new jobs with 503, and /health says healthy, degraded or
 * unhealthy with its reasons. This machine has no GPU: a fake nvidia-smi on PATH prints what a
 * hot, nearly full 8 GB card prints. The full-disk drill is test/disk-full.test.ts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setupPython } from '../scripts/setup-python.mjs';
import { backends } from './helpers/database.js';
import { serveFile, startFileServer, type FileServer } from './helpers/file-server.js';
import { api, startTestServer, tempDir, trainBody, type TestServer } from './helpers/server.js';
import { writeSyntheticDataset, zipDirectory } from './helpers/synthetic-dataset.js';
import { waitFor } from './helpers/wait.js';

const FAKE_SMI = `#!/bin/sh
# A fake nvidia-smi: one 8 GB card at 90 °C with 100 MiB of its memory free.
case "$*" in
  *utilization.gpu*) echo "0, NVIDIA Fake 8GB, 97, 8092, 8192, 90, 210.5" ;;
  *) echo "0, NVIDIA Fake 8GB" ;;
esac
`;

function body(url: string, resources: Record<string, unknown>) {
  return trainBody({
    model_config: { name: 'preflight', base_model: 'yolo11n.yaml', epochs: 3, batch_size: 4, image_size: 64, augmentation: { mosaic: 0 } },
    dataset: { url },
    resources: { device: 'cpu', workers: 0, ...resources },
  });
}

async function finished(call: ReturnType<typeof api>, id: string) {
  return waitFor(
    `job ${id} to end`,
    async () => {
      const j = await call(`/api/v1/jobs/${id}`);
      return ['completed', 'failed', 'cancelled'].includes(j.json.status) && j.json;
    },
    300_000,
  );
}

describe('pre-flight and health', () => {
  let files: string;
  let host: FileServer;
  let fakeDir: string;
  let savedPath: string | undefined;

  before(async () => {
    await setupPython();
    files = tempDir('trainhook-preflight-');
    const root = path.join(files, 'src');
    await writeSyntheticDataset(root, { task: 'detect', train: 8, val: 4, imgsz: 64, classes: ['a', 'b'], seed: 3 });
    await zipDirectory(root, path.join(files, 'detect.zip'));
    host = await startFileServer();
    host.route('/detect.zip', serveFile(path.join(files, 'detect.zip')));
    fakeDir = tempDir('fake-nvidia-smi-');
    fs.writeFileSync(path.join(fakeDir, 'nvidia-smi'), FAKE_SMI, { mode: 0o755 });
    savedPath = process.env['PATH'];
    process.env['PATH'] = `${fakeDir}:${savedPath}`;
  });
  after(async () => {
    process.env['PATH'] = savedPath;
    await host.close();
    fs.rmSync(fakeDir, { recursive: true, force: true });
    fs.rmSync(files, { recursive: true, force: true });
  });

  describe('on the CPU', () => {
    let server: TestServer;
    let call: ReturnType<typeof api>;
    before(async () => {
      server = await startTestServer({ env: { DEVICES: 'cpu', MONITOR_INTERVAL_SECONDS: '3600', GPU_TEMP_WARN_C: '85', CANCEL_GRACE_SECONDS: '5' } });
      call = api(server.url);
    });
    after(() => server.stop());

    test('/health is degraded by a hot GPU, with its reason, and keeps its fields', async () => {
      await server.deps.monitor.sampleNow();
      const h = await api(server.url, '')('/health');
      assert.equal(h.status, 200, 'degraded still serves');
      assert.equal(h.json.status, 'degraded');
      assert.deepEqual(h.json.reasons.map((r: { code: string }) => r.code), ['GPU_HOT']);
      assert.match(h.json.reasons[0].message, /cuda:0 \(NVIDIA Fake 8GB\) is at 90 °C \(GPU_TEMP_WARN_C 85\)/);
      assert.equal(h.json.database.ok, true);
      assert.equal(typeof h.json.database.latency_ms, 'number');
      assert.equal(h.json.queue_size, 0);
      assert.equal(typeof h.json.gpu_available, 'boolean');
      assert.ok(h.json.disk.free_bytes > 0);
      assert.equal(h.json.disk.min_free_bytes, 1024 ** 3);
    });

    test('a job asking more RAM than the host has is refused before its download', async () => {
      const r = await call('/api/v1/train', { method: 'POST', json: body(host.url('/detect.zip'), { max_memory_gb: 4000 }) });
      assert.equal(r.status, 202, r.text);
      const job = await finished(call, r.json.job_id);
      assert.equal(job.status, 'failed');
      assert.equal(job.error.code, 'INSUFFICIENT_MEMORY');
      assert.match(job.error.message, /needs 3\.9 TiB of RAM \(resources\.max_memory_gb\), [\d.]+ GiB available/);
      assert.equal(job.error.details.kind, 'ram');
      assert.equal(host.hits('/detect.zip'), 0, 'refused before the download');
    });

    test('a worker whose process group passes resources.max_memory_gb is stopped with INSUFFICIENT_MEMORY', async () => {
      const hits = host.hits('/detect.zip');
      // The worker's Python with PyTorch and Ultralytics loaded takes about 370 MB on its own.
      const r = await call('/api/v1/train', { method: 'POST', json: body(host.url('/detect.zip'), { max_memory_gb: 0.2 }) });
      assert.equal(r.status, 202, r.text);
      const id = r.json.job_id;
      const job = await finished(call, id);
      assert.equal(job.status, 'failed');
      assert.equal(job.error.code, 'INSUFFICIENT_MEMORY', JSON.stringify(job.error));
      assert.match(job.error.message, /the worker used [\d.]+ MiB of RAM, over resources\.max_memory_gb \(204\.8 MiB\); it was stopped/);
      assert.ok(job.error.details.used_bytes > job.error.details.limit_bytes);
      assert.equal(host.hits('/detect.zip'), hits + 1, 'the pre-flight let it through: the dataset was downloaded');
      const log = await call(`/api/v1/jobs/${id}/logs/download`);
      assert.match(log.text, /stopped by the service: INSUFFICIENT_MEMORY/);
      // The worker and its whole group are gone: no process still runs this job's spec.
      const spec = server.deps.files.specFile(id);
      const alive = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
        try {
          return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(spec);
        } catch {
          return false;
        }
      });
      assert.deepEqual(alive, []);
    });
  });

  describe('on a GPU with too little free memory', () => {
    let server: TestServer;
    let call: ReturnType<typeof api>;
    before(async () => {
      server = await startTestServer({ env: { DEVICES: 'cuda:0', MONITOR_INTERVAL_SECONDS: '3600', MIN_FREE_GPU_MEMORY_GB: '1' } });
      call = api(server.url);
    });
    after(() => server.stop());

    test('the job is refused with INSUFFICIENT_MEMORY before its download, saying needed and free', async () => {
      const r = await call('/api/v1/train', { method: 'POST', json: body(host.url('/detect.zip'), { device: 'cuda:0' }) });
      assert.equal(r.status, 202, r.text);
      const hits = host.hits('/detect.zip');
      const job = await finished(call, r.json.job_id);
      assert.equal(job.error.code, 'INSUFFICIENT_MEMORY');
      assert.match(job.error.message, /not enough GPU memory on cuda:0 \(NVIDIA Fake 8GB\): needs 1\.0 GiB free \(MIN_FREE_GPU_MEMORY_GB\), 100\.0 MiB free of 8\.0 GiB/);
      assert.equal(job.error.details.kind, 'gpu');
      assert.equal(host.hits('/detect.zip'), hits, 'refused before the download');
    });
  });

  for (const backend of backends()) {
    describe(`MIN_FREE_DISK_GB and an unreachable database (${backend})`, () => {
      let server: TestServer;
      let call: ReturnType<typeof api>;
      before(async () => {
        process.env['PATH'] = savedPath; // no GPU here: only the disk speaks
        // More than any disk this test runs on has free.
        server = await startTestServer({ backend, env: { RUN_JOBS: 'false', MIN_FREE_DISK_GB: '1000000', MONITOR_INTERVAL_SECONDS: '3600' } });
        call = api(server.url);
      });
      after(async () => {
        process.env['PATH'] = `${fakeDir}:${savedPath}`;
        await server.stop().catch(() => {});
      });

      test('POST /train answers 503 INSUFFICIENT_DISK with the reason; nothing is queued', async () => {
        const r = await call('/api/v1/train', { method: 'POST', json: body(host.url('/detect.zip'), {}) });
        assert.equal(r.status, 503, r.text);
        assert.equal(r.json.error.code, 'INSUFFICIENT_DISK');
        assert.match(r.json.error.message, /low on disk: [\d.]+ GiB free in its work directory, under MIN_FREE_DISK_GB \(1000000\.00 GiB\)/);
        assert.ok(Number(r.headers.get('retry-after')) > 0);
        assert.equal((await call('/api/v1/jobs')).json.total, 0);
      });

      test('/health is degraded by low disk, then unhealthy (503) when the database does not answer', async () => {
        const h = await api(server.url, '')('/health');
        assert.equal(h.status, 200);
        assert.equal(h.json.status, 'degraded');
        assert.deepEqual(h.json.reasons.map((r: { code: string }) => r.code), ['DISK_LOW']);
        await server.deps.database.close();
        const down = await api(server.url, '')('/health');
        assert.equal(down.status, 503);
        assert.equal(down.json.status, 'unhealthy');
        assert.deepEqual(down.json.reasons.map((r: { code: string }) => r.code), ['DATABASE_UNREACHABLE', 'DISK_LOW']);
        assert.equal(down.json.database.ok, false);
        assert.equal(down.json.queue_size, null);
      });
    });
  }
});
