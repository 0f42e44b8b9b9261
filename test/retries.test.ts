/**
 * Watchdog and retries, with real workers: a toy engine whose first attempt hangs after an
 * epoch (registered by this test only), real Ultralytics training on a tiny synthetic dataset
 * for a worker SIGKILLed mid-run, and a scriptable dataset host for download failures.
 *
 * - a hung worker is stopped with WORKER_STALLED and the job is retried to completion;
 * - a transient download failure (5xx) is retried, and after JOB_MAX_ATTEMPTS the job fails
 *   with one training_failed callback; a permanent one (404) is not retried;
 * - a cancelled job started again by POST /jobs/{id}/retry completes with its history kept;
 * - a job past JOB_MAX_HOURS fails for good with JOB_TIMEOUT;
 * - a SIGKILLed worker is retried and resumes from last.pt: no epoch is run or counted twice.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setupPython } from '../scripts/setup-python.mjs';
import type { JobRow } from '../src/db/schema.js';
import { BUILTIN_ENGINES } from '../src/engines/index.js';
import { toyEngine } from './engines/toy/index.js';
import { backends } from './helpers/database.js';
import { serveFile, startFileServer, type FileServer } from './helpers/file-server.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { api, startTestServer, tempDir, trainBody, type TestServer } from './helpers/server.js';
import { writeSyntheticClassifyDataset, writeSyntheticDataset, zipDirectory } from './helpers/synthetic-dataset.js';
import { waitFor } from './helpers/wait.js';

const SECRET = `whsec_${Buffer.alloc(32, 4).toString('base64')}`;
const ENGINES = [...BUILTIN_ENGINES, toyEngine];

type Call = ReturnType<typeof api>;

function toyJob(url: string, extra: Record<string, unknown> = {}, config: Record<string, unknown> = {}) {
  return {
    model_config: { framework: 'toy', name: 'toy-retry', epochs: 3, ...config },
    dataset: { url },
    resources: { device: 'cpu', workers: 0 },
    ...extra,
  };
}

async function submit(call: Call, body: unknown): Promise<string> {
  const r = await call('/api/v1/train', { method: 'POST', json: body });
  assert.equal(r.status, 202, r.text);
  return r.json.job_id;
}

async function finished(call: Call, id: string, timeoutMs = 5 * 60_000) {
  return waitFor(
    `job ${id} to finish`,
    async () => {
      const j = await call(`/api/v1/jobs/${id}`);
      return ['completed', 'failed', 'cancelled'].includes(j.json.status) && j.json;
    },
    timeoutMs,
  );
}

async function callbackTypes(call: Call, id: string): Promise<string[]> {
  const r = await call(`/api/v1/jobs/${id}/callbacks?limit=200`);
  assert.equal(r.status, 200, r.text);
  return r.json.events.map((e: { type: string }) => e.type);
}

let toyZip = '';
let detectZip = '';

before(async () => {
  await setupPython();
  const dir = tempDir('trainhook-retries-');
  await writeSyntheticClassifyDataset(path.join(dir, 'toy'), { train: 12, val: 6, imgsz: 32, classes: ['box', 'disc'], seed: 9 });
  toyZip = path.join(dir, 'toy.zip');
  await zipDirectory(path.join(dir, 'toy'), toyZip);
  await writeSyntheticDataset(path.join(dir, 'detect'), { task: 'detect', train: 16, val: 8, imgsz: 64, classes: ['red-box', 'green-disc'], seed: 7 });
  detectZip = path.join(dir, 'detect.zip');
  await zipDirectory(path.join(dir, 'detect'), detectZip);
});

for (const backend of backends()) {
  describe(`watchdog and retries on ${backend}`, { timeout: 15 * 60_000 }, () => {
    let host: FileServer;
    let receiver: Receiver;
    let server: TestServer;
    let call: Call;
    const retrying: JobRow[] = [];

    before(async () => {
      host = await startFileServer();
      host.route('/toy.zip', serveFile(toyZip));
      receiver = await startReceiver();
      server = await startTestServer({
        backend,
        env: {
          DEVICES: 'cpu',
          WORKER_STALL_SECONDS: '20',
          CANCEL_GRACE_SECONDS: '1',
          JOB_RETRY_BACKOFF_SECONDS: '1',
          JOB_MAX_ATTEMPTS: '3',
          DOWNLOAD_RETRIES: '0',
        },
        overrides: { engines: ENGINES },
      });
      server.deps.events.on((e) => {
        if (e.change === 'retrying') retrying.push(e.job);
      });
      call = api(server.url);
    });
    after(async () => {
      await server?.stop();
      await receiver?.close();
      await host?.close();
    });

    test('a hung worker is stopped with WORKER_STALLED and the job is retried to completion', async () => {
      const id = await submit(
        call,
        toyJob(host.url('/toy.zip'), { callback_url: `${receiver.url}/stall`, callback_secret: SECRET }, { hang_after_epoch: 1 }),
      );
      const job = await finished(call, id);
      assert.equal(job.status, 'completed', JSON.stringify(job.error));
      assert.equal(job.attempts.length, 2, JSON.stringify(job.attempts));
      const [first, second] = job.attempts;
      assert.equal(first.outcome, 'retrying');
      assert.equal(first.error.code, 'WORKER_STALLED');
      assert.equal(first.end_epoch, 1, 'the first attempt hung after its first epoch');
      assert.ok(first.ended_at && first.ended_at <= second.started_at);
      assert.equal(second.outcome, 'completed');
      assert.equal(second.error, null);
      assert.equal(job.retry_at, null);

      // While it waited, it was queued with the time of its next attempt.
      const waiting = retrying.find((r) => r.id === id);
      assert.ok(waiting, 'a retrying change was announced');
      assert.equal(waiting.state, 'queued');
      assert.ok(waiting.retryAt && waiting.retryAt.getTime() > Date.parse(first.ended_at), 'it was not to be claimed before its backoff');

      const metrics = await call(`/api/v1/jobs/${id}/metrics`);
      assert.deepEqual(metrics.json.epochs.map((e: { epoch: number }) => e.epoch), [1, 2, 3]);
      // A retried attempt is no failure of the job: no training_failed, one training_completed.
      const types = await callbackTypes(call, id);
      assert.equal(types.filter((t) => t === 'training_failed').length, 0, types.join());
      assert.equal(types.filter((t) => t === 'training_completed').length, 1, types.join());

      const page = await call(`/jobs/${id}`);
      assert.equal(page.status, 200);
      assert.match(page.text, /Attempts/);
      assert.match(page.text, /WORKER_STALLED/);
    });

    test('a cancelled job started again by POST /retry completes, same id, its history kept', async () => {
      const id = await submit(call, toyJob(host.url('/toy.zip'), {}, { hang_after_epoch: 1 }));
      await waitFor('the job to hang after its first epoch', async () => (await call(`/api/v1/jobs/${id}`)).json.current_epoch >= 1);
      assert.equal((await call(`/api/v1/jobs/${id}`, { method: 'DELETE' })).status, 200);

      const refusedAnon = await api(server.url, '')(`/api/v1/jobs/${id}/retry`, { method: 'POST' });
      assert.equal(refusedAnon.status, 401);
      const page = await call(`/jobs/${id}`);
      assert.match(page.text, new RegExp(`action="/jobs/${id}/retry"`), 'the page offers a retry');
      // Until its worker has stopped, a cancelled run keeps the job: the retry is refused for now.
      const retried = await waitFor('the retry to be accepted', async () => {
        const r = await call(`/api/v1/jobs/${id}/retry`, { method: 'POST' });
        return !(r.status === 409 && r.json.error.code === 'JOB_STOPPING') && r;
      });
      assert.equal(retried.status, 202, retried.text);
      assert.equal(retried.json.job_id, id);
      assert.equal(retried.json.status, 'queued');

      const job = await finished(call, id);
      assert.equal(job.status, 'completed', JSON.stringify(job.error));
      assert.deepEqual(
        job.attempts.map((a: { outcome: string }) => a.outcome),
        ['cancelled', 'completed'],
      );
      assert.equal(job.attempts[0].error.code, 'CANCELLED');
      assert.equal(job.error, null);

      const again = await call(`/api/v1/jobs/${id}/retry`, { method: 'POST' });
      assert.equal(again.status, 409);
      assert.equal(again.json.error.code, 'JOB_NOT_RETRYABLE');
      const missing = await call(`/api/v1/jobs/00000000-0000-4000-8000-000000000000/retry`, { method: 'POST' });
      assert.equal(missing.status, 404);
    });

    test('a 5xx on the dataset download is retried; once the attempts are spent, one training_failed', async () => {
      // Fails once, then serves the file.
      host.route('/flaky.zip', (req, res, hit) => (hit === 1 ? res.writeHead(503).end('busy') : serveFile(toyZip)(req, res, hit)));
      const flaky = await submit(call, toyJob(host.url('/flaky.zip')));
      const ok = await finished(call, flaky);
      assert.equal(ok.status, 'completed', JSON.stringify(ok.error));
      assert.deepEqual(ok.attempts.map((a: { outcome: string }) => a.outcome), ['retrying', 'completed']);
      assert.equal(ok.attempts[0].error.code, 'DATASET_DOWNLOAD_FAILED');
      assert.equal(host.hits('/flaky.zip'), 2);

      host.route('/down.zip', (_req, res) => res.writeHead(502).end('bad gateway'));
      const down = await submit(call, toyJob(host.url('/down.zip'), { callback_url: `${receiver.url}/down`, callback_secret: SECRET }));
      const failed = await finished(call, down);
      assert.equal(failed.status, 'failed');
      assert.equal(failed.error.code, 'DATASET_DOWNLOAD_FAILED');
      assert.deepEqual(failed.attempts.map((a: { outcome: string }) => a.outcome), ['retrying', 'retrying', 'failed']);
      assert.equal(host.hits('/down.zip'), 3);
      const types = await callbackTypes(call, down);
      assert.equal(types.filter((t) => t === 'training_failed').length, 1, types.join());
    });

    test('a permanent failure is not retried', async () => {
      // No route: 404, the same answer every time.
      const id = await submit(call, toyJob(host.url('/missing.zip')));
      const job = await finished(call, id);
      assert.equal(job.status, 'failed');
      assert.equal(job.error.code, 'DATASET_DOWNLOAD_FAILED');
      assert.equal(job.attempts.length, 1);
      assert.equal(job.attempts[0].outcome, 'failed');
      assert.equal(host.hits('/missing.zip'), 1);
    });
  });

  describe(`JOB_MAX_HOURS on ${backend}`, { timeout: 10 * 60_000 }, () => {
    let host: FileServer;
    let server: TestServer;

    before(async () => {
      host = await startFileServer();
      host.route('/toy.zip', serveFile(toyZip));
      server = await startTestServer({
        backend,
        // 0.003 h: about 11 s, and a stall watchdog far beyond it.
        env: { DEVICES: 'cpu', JOB_MAX_HOURS: '0.003', WORKER_STALL_SECONDS: '3600', CANCEL_GRACE_SECONDS: '1', JOB_RETRY_BACKOFF_SECONDS: '1' },
        overrides: { engines: ENGINES },
      });
    });
    after(async () => {
      await server?.stop();
      await host?.close();
    });

    test('a job past its time limit fails for good with JOB_TIMEOUT', async () => {
      const call = api(server.url);
      const id = await submit(call, toyJob(host.url('/toy.zip'), {}, { hang_after_epoch: 1 }));
      const job = await finished(call, id);
      assert.equal(job.status, 'failed');
      assert.equal(job.error.code, 'JOB_TIMEOUT');
      assert.equal(job.attempts.length, 1, 'not retried');
      assert.equal(job.attempts[0].outcome, 'failed');
      assert.equal(job.attempts[0].error.code, 'JOB_TIMEOUT');
      assert.equal(job.retry_at, null);
    });
  });

  describe(`a SIGKILLed Ultralytics worker on ${backend}`, { timeout: 15 * 60_000 }, () => {
    let host: FileServer;
    let server: TestServer;

    before(async () => {
      host = await startFileServer();
      host.route('/detect.zip', serveFile(detectZip));
      server = await startTestServer({ backend, env: { DEVICES: 'cpu', JOB_RETRY_BACKOFF_SECONDS: '1' } });
    });
    after(async () => {
      await server?.stop();
      await host?.close();
    });

    test('is retried, resumes from last.pt and completes without counting an epoch twice', async () => {
      const call = api(server.url);
      const epochs = 5;
      const id = await submit(
        call,
        trainBody({
          model_config: { name: 'killed', base_model: 'yolo11n.yaml', epochs, batch_size: 8, image_size: 64, seed: 1, augmentation: { mosaic: 0 } },
          dataset: { url: host.url('/detect.zip') },
        }),
      );
      const started = (n: number) =>
        server.logs
          .flatMap((l) => {
            try {
              return [JSON.parse(l) as { msg?: string; job_id?: string; worker_pid?: number; resumed_from_epoch?: number | null }];
            } catch {
              return [];
            }
          })
          .filter((l) => l.msg === 'worker started' && l.job_id === id)[n];
      await waitFor('a first epoch', async () => (await call(`/api/v1/jobs/${id}`)).json.current_epoch >= 1, 5 * 60_000);
      const pid = started(0)?.worker_pid;
      assert.ok(pid, 'the worker pid is logged');
      process.kill(pid, 'SIGKILL');

      const job = await finished(call, id, 10 * 60_000);
      assert.equal(job.status, 'completed', JSON.stringify(job.error));
      assert.deepEqual(job.attempts.map((a: { outcome: string }) => a.outcome), ['retrying', 'completed']);
      const [first, second] = job.attempts;
      assert.equal(first.error.code, 'WORKER_CRASHED');
      assert.match(first.error.message, /SIGKILL/);
      assert.ok(first.end_epoch >= 1 && first.end_epoch < epochs, JSON.stringify(first));
      assert.equal(second.start_epoch, first.end_epoch);

      const resumedFrom = started(1)?.resumed_from_epoch;
      assert.ok(typeof resumedFrom === 'number' && resumedFrom >= first.end_epoch, `resumed from epoch ${resumedFrom}`);
      const metrics = await call(`/api/v1/jobs/${id}/metrics`);
      assert.deepEqual(
        metrics.json.epochs.map((e: { epoch: number }) => e.epoch),
        Array.from({ length: epochs }, (_, i) => i + 1),
      );
      assert.equal(job.current_epoch, epochs);
    });
  });
}
