/**
 * Takeover through the bucket (PostgreSQL: nodes share the queue). Node A trains an Ultralytics
 * job with its files in S3 (moto on 127.0.0.1) and is SIGKILLed once epoch 2 is recorded, its
 * disk thrown away. Node B, with an empty workdir, claims the job once A's lease expires, fetches last.pt
 * and the run's state files from the bucket before its worker starts, and resumes: every epoch
 * recorded once. Node C runs no jobs and cannot reach the bucket's clients (STORAGE_PUBLIC=false):
 * it still serves the job's model and log, streamed from the bucket.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { setupPython } from '../scripts/setup-python.mjs';
import { S3Storage } from '../src/storage/index.js';
import { freshPostgresDatabase } from './helpers/database.js';
import { serveFile, startFileServer, type FileServer } from './helpers/file-server.js';
import { S3_TEST_CREDENTIALS, startS3Server, type S3Server } from './helpers/s3-server.js';
import { TOKEN, api, startChildServer, startTestServer, tempDir, trainBody, type ChildServer, type TestServer } from './helpers/server.js';
import { writeSyntheticDataset, zipDirectory } from './helpers/synthetic-dataset.js';
import { waitFor } from './helpers/wait.js';

const BUCKET = 'trainhook-takeover';
/** Enough that node A is still training when it is killed, a few seconds after epoch 2. */
const EPOCHS = 8;
const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

describe('takeover of a dead node\'s job from the bucket', { skip: !process.env['TEST_DATABASE_URL'] && 'needs TEST_DATABASE_URL (nodes share PostgreSQL)', timeout: 15 * 60_000 }, () => {
  let s3: S3Server;
  let host: FileServer;
  let db: { url: string; drop: () => Promise<void> };
  let python: string;
  let a: ChildServer | undefined;
  let b: TestServer | undefined;
  let c: TestServer | undefined;
  let bucket: S3Storage;
  const prefix = `takeover-${crypto.randomBytes(3).toString('hex')}`;
  let shared: Record<string, string>;

  before(async () => {
    python = await setupPython();
    s3 = await startS3Server();
    bucket = new S3Storage({
      bucket: BUCKET,
      prefix,
      endpoint: s3.endpoint,
      region: S3_TEST_CREDENTIALS.region,
      forcePathStyle: true,
      credentials: S3_TEST_CREDENTIALS,
      public: true,
    });
    await bucket.ensureBucket();
    const dir = tempDir('trainhook-takeover-');
    await writeSyntheticDataset(path.join(dir, 'src'), { task: 'detect', train: 48, val: 8, imgsz: 64, classes: ['red-box', 'green-disc'], seed: 7 });
    await zipDirectory(path.join(dir, 'src'), path.join(dir, 'detect.zip'));
    host = await startFileServer();
    host.route('/detect.zip', serveFile(path.join(dir, 'detect.zip')));
    db = await freshPostgresDatabase();
    shared = {
      DATABASE_URL: db.url,
      API_TOKEN: TOKEN,
      DEVICES: 'cpu',
      OUTBOUND_ALLOW: '127.0.0.1',
      PYTHON: python,
      LEASE_SECONDS: '5',
      STORAGE_URL: `s3://${BUCKET}/${prefix}`,
      S3_ENDPOINT: s3.endpoint,
      AWS_ACCESS_KEY_ID: S3_TEST_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3_TEST_CREDENTIALS.secretAccessKey,
    };
  });
  after(async () => {
    await a?.kill();
    await b?.stop();
    await c?.stop();
    await db?.drop();
    await host?.close();
    bucket?.destroy();
    await s3?.close();
  });

  test('node B resumes from the stored last.pt with nothing on its disk; node C serves the files', async () => {
    const workdirA = tempDir('trainhook-node-a-');
    a = await startChildServer({ ...shared, WORKDIR: workdirA, NODE_ID: 'node-a' });
    const callA = api(a.url);
    const r = await callA('/api/v1/train', {
      method: 'POST',
      json: trainBody({
        model_config: { name: 'takeover', base_model: 'yolo11n.yaml', epochs: EPOCHS, batch_size: 8, image_size: 64, seed: 1, augmentation: { mosaic: 0 } },
        dataset: { url: host.url('/detect.zip') },
        resources: { device: 'cpu', workers: 0 },
      }),
    });
    assert.equal(r.status, 202, r.text);
    const id = r.json.job_id;
    await waitFor('epoch 2 on node A', async () => (await callA(`/api/v1/jobs/${id}`)).json.current_epoch >= 2, 8 * 60_000);
    // last.pt goes up first, then at once the state files describing it and the log.
    await waitFor('last.pt and its state files in the bucket', async () => {
      const keys = (await bucket.list(`jobs/${id}/`)).map((o) => o.key);
      return ['files/weights/last.pt', 'files/results.csv', 'files/trainhook-state.json'].every((k) => keys.includes(`jobs/${id}/${k}`)) && keys.some((k) => k.includes('/log/'));
    });
    await a.kill('SIGKILL');
    a = undefined;
    fs.rmSync(workdirA, { recursive: true, force: true });
    // The epochs the stored last.pt holds: what node B must resume from.
    const stored = path.join(tempDir('trainhook-stored-'), 'last.pt');
    assert.ok(await bucket.getToFile(`jobs/${id}/files/weights/last.pt`, stored));
    const { stdout } = await promisify(execFile)(python, ['-c', 'import sys, torch; print(int(torch.load(sys.argv[1], weights_only=False)["epoch"]) + 1)', stored]);
    const storedEpochs = Number(stdout.trim().split('\n').pop());
    assert.ok(storedEpochs >= 1 && storedEpochs < EPOCHS, `the bucket holds epoch ${storedEpochs}`);

    const workdirB = tempDir('trainhook-node-b-');
    b = await startTestServer({ env: { ...shared, WORKDIR: workdirB, NODE_ID: 'node-b' } });
    const callB = api(b.url);
    const job = await waitFor(
      'node B to finish the job',
      async () => {
        const j = await callB(`/api/v1/jobs/${id}`);
        return ['completed', 'failed'].includes(j.json.status) && j.json;
      },
      8 * 60_000,
    );
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    const logs = b.logs.flatMap((l) => {
      try {
        return [JSON.parse(l) as { msg?: string; job_id?: string; files?: number; resumed_from_epoch?: number | null }];
      } catch {
        return [];
      }
    });
    const restored = logs.find((l) => l.msg === 'job files restored from storage' && l.job_id === id);
    assert.ok(restored && restored.files! >= 2, JSON.stringify(restored));
    const started = logs.find((l) => l.msg === 'worker started' && l.job_id === id);
    const from = started?.resumed_from_epoch;
    assert.equal(from, storedEpochs, 'resumed from the stored last.pt');
    const epochs = (await callB(`/api/v1/jobs/${id}/metrics`)).json.epochs.map((e: { epoch: number }) => e.epoch);
    const all = Array.from({ length: EPOCHS }, (_, i) => i + 1);
    assert.deepEqual(epochs, all, 'no epoch counted twice');
    const csv = fs.readFileSync(path.join(workdirB, 'jobs', id, 'results.csv'), 'utf8').trim().split('\n');
    assert.deepEqual(csv.slice(1).map((line) => Number(line.split(',')[0])), all);
    const logB = fs.readFileSync(path.join(workdirB, 'jobs', id, 'worker.log'), 'utf8');
    assert.match(logB, /[Rr]esum/);

    // Node C: API only, clients cannot reach the bucket: files are streamed through it.
    c = await startTestServer({ env: { ...shared, WORKDIR: tempDir('trainhook-node-c-'), NODE_ID: 'node-c', RUN_JOBS: 'false', STORAGE_PUBLIC: 'false' } });
    const callC = api(c.url);
    const model = await callC(`/api/v1/jobs/${id}/model?download=true`, { redirect: 'manual' });
    assert.equal(model.status, 200);
    const bestB = fs.readFileSync(path.join(workdirB, 'jobs', id, 'weights', 'best.pt'));
    const res = await fetch(`${c.url}/api/v1/jobs/${id}/model?download=true`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), sha256(bestB));
    const page = await callC(`/api/v1/jobs/${id}/logs?limit=5000`);
    assert.equal(page.status, 200);
    // The log holds node A's first epochs and node B's resume, in that order.
    const text = page.json.lines.join('\n');
    assert.ok(text.length > 0);
    assert.match(text, /[Rr]esum/);
    assert.equal(page.json.total_lines, logB.replace(/\n$/, '').split('\n').length);
  });
});
