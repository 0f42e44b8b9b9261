/**
 * A server with its files in S3 (moto on 127.0.0.1), on PGlite and PostgreSQL: a job trains
 * (the toy engine, real torch), its checkpoints, artifacts, log and registered model land in
 * the bucket before it is marked completed, and once this node's copies are gone the API still
 * serves them from the bucket (302 to a presigned URL: STORAGE_PUBLIC defaults to true), and
 * the job stream's completed frame still links to the model.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setupPython } from '../scripts/setup-python.mjs';
import { BUILTIN_ENGINES } from '../src/engines/index.js';
import type { S3Storage } from '../src/storage/index.js';
import { toyEngine } from './engines/toy/index.js';
import { backends } from './helpers/database.js';
import { serveFile, startFileServer, type FileServer } from './helpers/file-server.js';
import { startS3Server, type S3Server } from './helpers/s3-server.js';
import { TOKEN, api, startTestServer, tempDir, type TestServer } from './helpers/server.js';
import { writeSyntheticClassifyDataset, zipDirectory } from './helpers/synthetic-dataset.js';
import { waitFor } from './helpers/wait.js';

const BUCKET = 'trainhook-server-test';

let s3: S3Server;
let host: FileServer;
before(async () => {
  await setupPython();
  s3 = await startS3Server();
  const dir = tempDir('trainhook-storage-toy-');
  await writeSyntheticClassifyDataset(path.join(dir, 'src'), { train: 12, val: 6, imgsz: 32, classes: ['box', 'disc'], seed: 5 });
  await zipDirectory(path.join(dir, 'src'), path.join(dir, 'toy.zip'));
  host = await startFileServer();
  host.route('/toy.zip', serveFile(path.join(dir, 'toy.zip')));
});
after(async () => {
  await host?.close();
  await s3?.close();
});

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

/** The data of the first `completed` frame of an SSE stream (the wire format read by hand). */
async function completedFrame(url: string): Promise<any> {
  const ac = new AbortController();
  const res = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}`, accept: 'text/event-stream' }, signal: AbortSignal.any([ac.signal, AbortSignal.timeout(20_000)]) });
  assert.equal(res.status, 200);
  let buf = '';
  try {
    for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      for (const block of buf.split('\n\n').slice(0, -1)) {
        const lines = block.split('\n');
        if (!lines.includes('event: completed')) continue;
        return JSON.parse(lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n'));
      }
    }
  } finally {
    ac.abort();
  }
  throw new Error(`no completed frame in ${buf}`);
}

for (const backend of backends()) {
  describe(`a server keeping its files in S3, on ${backend}`, { timeout: 5 * 60_000 }, () => {
    let server: TestServer;
    let bucket: S3Storage;
    const prefix = `srv-${backend}-${crypto.randomBytes(3).toString('hex')}`;

    before(async () => {
      bucket = s3.storage(BUCKET, prefix);
      await bucket.ensureBucket();
      server = await startTestServer({
        backend,
        env: {
          DEVICES: 'cpu',
          ...s3.env(BUCKET, prefix),
        },
        overrides: { engines: [...BUILTIN_ENGINES, toyEngine] },
      });
    });
    after(async () => {
      await server?.stop();
      bucket?.destroy();
    });

    test('completion means the files are in the bucket; with the local copies gone they are served from it', async () => {
      const call = api(server.url);
      const submit = await call('/api/v1/train', {
        method: 'POST',
        json: { model_config: { framework: 'toy', name: 'toy-s3', epochs: 3 }, dataset: { url: host.url('/toy.zip') }, resources: { device: 'cpu', workers: 0 } },
      });
      assert.equal(submit.status, 202, submit.text);
      const id = submit.json.job_id;
      const job = await waitFor('the toy job', async () => {
        const j = await call(`/api/v1/jobs/${id}`);
        return ['completed', 'failed'].includes(j.json.status) && j.json;
      }, 240_000);
      assert.equal(job.status, 'completed', JSON.stringify(job.error));

      // In the bucket when the job reads completed: nothing waited for afterwards.
      const keys = (await bucket.list(`jobs/${id}/`)).map((o) => o.key.slice(`jobs/${id}/`.length));
      for (const k of ['files/best.pt', 'files/last.pt', 'files/metrics.csv']) assert.ok(keys.includes(k), `${k} in ${keys.join()}`);
      assert.ok(keys.some((k) => k.startsWith('log/')), 'the log in parts');
      const localBest = fs.readFileSync(path.join(server.workdir, 'jobs', id, 'best.pt'));
      const storedBest = await bucket.getStream(`jobs/${id}/files/best.pt`);
      const chunks: Buffer[] = [];
      for await (const c of storedBest!.body) chunks.push(c as Buffer);
      assert.equal(sha256(Buffer.concat(chunks)), sha256(localBest), 'the final best.pt, not an earlier epoch');

      const model = await waitFor('the registered model', async () => {
        const list = await call(`/api/v1/models?job_id=${id}`);
        return list.json?.models?.[0];
      });
      // Registered right after completion, and copied to the bucket as it is.
      await waitFor('the registered model in the bucket', async () => !!(await bucket.head(`models/${model.model_id}/best.pt`))).catch((err) => {
        throw new Error(`${err.message}\n${server.logs.filter((l) => /regist|storage/.test(l)).join('\n')}`);
      });
      const localLog = fs.readFileSync(path.join(server.workdir, 'jobs', id, 'worker.log'), 'utf8');

      // This node loses its copies (as a node that never ran the job has none).
      fs.rmSync(path.join(server.workdir, 'jobs', id), { recursive: true, force: true });
      fs.rmSync(path.join(server.workdir, 'models', model.model_id), { recursive: true, force: true });

      const direct = await call(`/api/v1/jobs/${id}/model?download=true`, { redirect: 'manual' });
      assert.equal(direct.status, 302);
      const location = direct.headers.get('location')!;
      assert.ok(location.startsWith(`${s3.endpoint}/${BUCKET}/${prefix}/jobs/${id}/files/best.pt?`), location);
      const fetched = Buffer.from(await (await fetch(location)).arrayBuffer());
      assert.equal(sha256(fetched), sha256(localBest));

      // The stream's completed frame (what a client connecting now gets) links to the model too.
      const completed = await completedFrame(`${server.url}/stream/progress/${id}`);
      assert.match(completed.model_url ?? '', /\/downloads\/.+\/best\.pt\?exp=\d+&sig=/, JSON.stringify(completed));
      const streamLink = await fetch(completed.model_url, { redirect: 'manual' });
      assert.equal(streamLink.status, 302, 'the stream\'s link redirects to the bucket');
      assert.equal(sha256(Buffer.from(await (await fetch(streamLink.headers.get('location')!)).arrayBuffer())), sha256(localBest));

      const link = await call(`/api/v1/jobs/${id}/artifacts/metrics.csv`);
      assert.equal(link.status, 200, link.text);
      const viaLink = await fetch(link.json.url, { redirect: 'manual' });
      assert.equal(viaLink.status, 302, 'the signed link redirects to the bucket');
      assert.match(await (await fetch(viaLink.headers.get('location')!)).text(), /^epoch,loss,accuracy\n1,/);

      const listing = await call(`/api/v1/jobs/${id}/artifacts`);
      assert.deepEqual(listing.json.files.map((f: { name: string }) => f.name).sort(), ['best.pt', 'last.pt', 'metrics.csv', 'worker.log']);

      const checkpoints = await call(`/api/v1/jobs/${id}/checkpoints`);
      assert.deepEqual(checkpoints.json.checkpoints.map((c: { name: string }) => c.name).sort(), ['best.pt', 'last.pt']);
      assert.equal(checkpoints.json.checkpoints.find((c: { name: string }) => c.name === 'best.pt').size, localBest.length);

      const logs = await call(`/api/v1/jobs/${id}/logs?limit=5000`);
      assert.equal(logs.status, 200);
      assert.equal(logs.json.total_lines, localLog.split('\n').filter((_, i, a) => i < a.length - 1 || a[i] !== '').length);
      assert.ok(logs.json.total_lines > 0);
      const logFile = await call(`/api/v1/jobs/${id}/logs/download`);
      assert.equal(logFile.text.length > 0, true);

      // The registered model: its signed link redirects to the bucket too.
      const detail = await call(`/api/v1/models/${model.model_id}`);
      const modelLink = await fetch(detail.json.download.url, { redirect: 'manual' });
      assert.equal(modelLink.status, 302);
      const modelBytes = Buffer.from(await (await fetch(modelLink.headers.get('location')!)).arrayBuffer());
      assert.equal(sha256(modelBytes), detail.json.sha256);
    });
  });
}
