/**
 * Uploaded datasets, retention, purge and pruning through the API of a real server (an
 * API-only node: jobs are driven by the test's job driver, without Python). The training side
 * (an uploaded dataset trained on, two jobs on one ZIP) is in test/datasets-training.test.ts.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { callbackAttempts, callbackEvents, models, seenSignatures } from '../src/db/schema.js';
import { backends } from './helpers/database.js';
import { jobDriver } from './helpers/job-driver.js';
import { rawZip } from './helpers/raw-zip.js';
import { api, startTestServer, tempDir, TOKEN, trainBody, type TestServer } from './helpers/server.js';
import { waitFor } from './helpers/wait.js';
import { writeSyntheticDataset, zipDirectory } from './helpers/synthetic-dataset.js';

const DAY = 24 * 3600 * 1000;

async function datasetZip(dir: string, name: string, seed: number): Promise<Buffer> {
  const root = path.join(dir, name);
  await writeSyntheticDataset(root, { task: 'detect', train: 6, val: 3, imgsz: 32, classes: ['a', 'b'], seed });
  const zip = path.join(dir, `${name}.zip`);
  await zipDirectory(root, zip);
  return fs.readFileSync(zip);
}

const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

for (const backend of backends()) {
  describe(`uploaded datasets, retention and purge on ${backend}`, () => {
    let server: TestServer;
    let call: ReturnType<typeof api>;
    let zipA: Buffer;
    let zipB: Buffer;
    let cap: number;
    const upload = (body: Buffer | ReadableStream<Uint8Array>, query = '', headers: Record<string, string> = { 'content-type': 'application/zip' }) =>
      call(`/api/v1/datasets${query}`, {
        method: 'POST',
        body: body instanceof ReadableStream ? body : new Uint8Array(body),
        headers,
        ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
      } as RequestInit);

    before(async () => {
      const dir = tempDir('trainhook-datasets-');
      zipA = await datasetZip(dir, 'a', 1);
      zipB = await datasetZip(dir, 'b', 2);
      cap = Math.max(zipA.length, zipB.length) + 4096;
      server = await startTestServer({
        backend,
        env: {
          RUN_JOBS: 'false',
          DATASET_MAX_DOWNLOAD_BYTES: String(cap),
          RETENTION_DAYS: '1',
          // Sweeps run when the test asks, with its own clock.
          RETENTION_SWEEP_SECONDS: '86400',
          CALLBACK_HISTORY_DAYS: '7',
        },
      });
      call = api(server.url);
    });
    after(() => server.stop());

    test('an upload is stored once by sha256, checked, listed and readable', async () => {
      const r = await upload(zipA, '?name=shapes');
      assert.equal(r.status, 201, r.text);
      assert.match(r.json.dataset_id, /^[0-9a-f-]{36}$/);
      assert.equal(r.json.sha256, sha(zipA));
      assert.equal(r.json.format, 'yolo');
      assert.equal(r.json.task, 'detect');
      assert.equal(r.json.name, 'shapes');
      assert.equal(r.json.info.total_images, 9);
      assert.deepEqual(r.json.info.classes, ['a', 'b']);
      assert.equal(r.json.archive_bytes, zipA.length);
      assert.ok(r.json.disk_bytes > 0);
      assert.ok(fs.existsSync(path.join(server.workdir, 'datasets', sha(zipA), 'files')));

      const again = await upload(zipA);
      assert.equal(again.status, 200, 'the same bytes are the same dataset');
      assert.equal(again.json.dataset_id, r.json.dataset_id);

      const list = await call('/api/v1/datasets');
      assert.equal(list.status, 200);
      assert.equal(list.json.total, 1);
      assert.equal(list.json.datasets[0].dataset_id, r.json.dataset_id);
      const one = await call(`/api/v1/datasets/${r.json.dataset_id}`);
      assert.deepEqual(one.json, r.json);
      assert.equal((await call(`/api/v1/datasets/${crypto.randomUUID()}`)).status, 404);
    });

    test('hostile, broken, oversized and mistyped uploads are refused with their codes', async () => {
      const slip = await upload(rawZip([{ name: 'data.yaml', data: 'train: a\nval: b\nnames: [a]\n' }, { name: '../evil.txt', data: 'pwned' }]));
      assert.equal(slip.status, 422, slip.text);
      assert.equal(slip.json.error.code, 'DATASET_INVALID');
      assert.equal(slip.json.error.details.entry, '../evil.txt');
      assert.equal(fs.existsSync(path.join(server.workdir, 'evil.txt')) || fs.existsSync(path.join(server.workdir, 'datasets', 'evil.txt')), false);

      const html = await upload(Buffer.from('<html>Access Denied</html>'));
      assert.equal(html.status, 422);
      assert.equal(html.json.error.code, 'DATASET_CORRUPTED');

      // A readable ZIP that is no dataset: the checks refuse it, and it is not kept.
      const bare = rawZip([{ name: 'readme.txt', data: 'hello' }]);
      const notDataset = await upload(bare);
      assert.equal(notDataset.status, 422);
      assert.equal(notDataset.json.error.code, 'DATASET_INVALID');
      assert.equal(fs.existsSync(path.join(server.workdir, 'datasets', sha(bare))), false);

      const big = await upload(Buffer.alloc(cap + 1));
      assert.equal(big.status, 413);
      // Without a Content-Length the cap is counted as the body streams in.
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          for (let i = 0; i < 4; i++) controller.enqueue(new Uint8Array(Math.ceil(cap / 3)));
          controller.close();
        },
      });
      const chunked = await upload(stream);
      assert.equal(chunked.status, 413, chunked.text);

      assert.equal((await upload(zipB, '', { 'content-type': 'application/json' })).status, 415);
      assert.equal((await upload(zipB, '?task=nope')).status, 400);
      const anonymous = await fetch(`${server.url}/api/v1/datasets`, { method: 'POST', body: new Uint8Array(zipB), headers: { 'content-type': 'application/zip' } });
      assert.equal(anonymous.status, 401);
      assert.deepEqual(
        fs.readdirSync(path.join(server.workdir, 'datasets', '.tmp')),
        [],
        'no upload left in the scratch folder',
      );
    });

    test('a job names an upload by id; deleting it is refused while the job is queued', async () => {
      const { json: ds } = await upload(zipB, '?name=to-delete');
      const missing = await call('/api/v1/train', { method: 'POST', json: trainBody({ dataset: { id: crypto.randomUUID() } }) });
      assert.equal(missing.status, 400);
      assert.equal(missing.json.error.code, 'DATASET_NOT_FOUND');
      const both = await call('/api/v1/train', { method: 'POST', json: trainBody({ dataset: { id: ds.dataset_id, url: 'http://127.0.0.1:9/x.zip' } }) });
      assert.equal(both.status, 400, 'a dataset is a URL or an id, not both');

      const job = await call('/api/v1/train', { method: 'POST', json: trainBody({ dataset: { id: ds.dataset_id } }) });
      assert.equal(job.status, 202, job.text);
      const refused = await call(`/api/v1/datasets/${ds.dataset_id}`, { method: 'DELETE' });
      assert.equal(refused.status, 409);
      assert.equal(refused.json.error.code, 'DATASET_IN_USE');
      assert.deepEqual(refused.json.error.details.jobs, [job.json.job_id]);

      assert.equal((await call(`/api/v1/jobs/${job.json.job_id}`, { method: 'DELETE' })).status, 200);
      const deleted = await call(`/api/v1/datasets/${ds.dataset_id}`, { method: 'DELETE' });
      assert.equal(deleted.status, 200, deleted.text);
      assert.equal(fs.existsSync(path.join(server.workdir, 'datasets', sha(zipB))), false, 'its files went with it');
      assert.equal((await call(`/api/v1/datasets/${ds.dataset_id}`, { method: 'DELETE' })).status, 404);
    });

    /** A job the driver runs to its end with the files a real run leaves. */
    async function finishedJob(archive: string | null, state: 'completed' | 'failed' = 'completed'): Promise<string> {
      const r = await call('/api/v1/train', { method: 'POST', json: trainBody() });
      assert.equal(r.status, 202, r.text);
      const driver = jobDriver(server, server.store.nodeId);
      const job = await driver.start();
      assert.equal(job.id, r.json.job_id);
      const dir = server.deps.files.dir(job.id);
      fs.mkdirSync(path.join(dir, 'weights'), { recursive: true });
      for (const [name, bytes] of [['weights/best.pt', 5000], ['weights/last.pt', 5000], ['results.png', 2000], ['worker.log', 300]] as const) {
        fs.writeFileSync(path.join(dir, name), Buffer.alloc(bytes, 1));
      }
      if (archive) await driver.record(job.id, { datasetSha256: archive }, 'progress');
      await driver.finish(job.id, state, { diskBytes: server.deps.files.diskUsage(job.id) });
      return job.id;
    }

    test('DELETE ?purge=true removes a finished job\'s files now, and refuses a queued one', async () => {
      const id = await finishedJob(null);
      const before = (await call(`/api/v1/jobs/${id}`)).json;
      assert.equal(before.disk_bytes, 12300);
      assert.equal(before.files_removed_at, null);

      const purged = await call(`/api/v1/jobs/${id}?purge=true`, { method: 'DELETE' });
      assert.equal(purged.status, 200, purged.text);
      assert.equal(purged.json.purged, true);
      assert.equal(purged.json.status, 'completed');
      assert.equal(purged.json.disk_bytes, 300, 'the log stays');
      const dir = server.deps.files.dir(id);
      assert.deepEqual(fs.readdirSync(dir), ['worker.log']);
      const after = (await call(`/api/v1/jobs/${id}`)).json;
      assert.equal(after.status, 'completed', 'the row stays');
      assert.equal(after.disk_bytes, 300);
      assert.ok(after.files_removed_at);
      const page = await fetch(`${server.url}/jobs/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      assert.match(await page.text(), /Disk used<\/dt><dd data-f="disk">300 B · files removed/);

      const queued = await call('/api/v1/train', { method: 'POST', json: trainBody() });
      const refused = await call(`/api/v1/jobs/${queued.json.job_id}?purge=true`, { method: 'DELETE' });
      assert.equal(refused.status, 409);
      assert.equal(refused.json.error.code, 'JOB_NOT_FINISHED');
      assert.equal((await call(`/api/v1/jobs/${queued.json.job_id}`)).json.status, 'queued', 'a purge never cancels');
      assert.equal((await call(`/api/v1/jobs/${crypto.randomUUID()}?purge=true`, { method: 'DELETE' })).status, 404);
      assert.equal((await call(`/api/v1/jobs/${queued.json.job_id}?purge=maybe`, { method: 'DELETE' })).status, 400);
      assert.equal((await call(`/api/v1/jobs/${queued.json.job_id}`, { method: 'DELETE' })).status, 200);
    });

    test('the retention sweep removes expired jobs\' files and unreferenced archives, keeps rows and uploads, and prunes old rows', async () => {
      const store = server.deps.files.datasets;
      const { db } = server.deps.database;
      // An archive only jobs refer to (a downloaded ZIP), and the upload of the first test.
      const orphanZip = store.tmpPath('.zip');
      fs.mkdirSync(path.dirname(orphanZip), { recursive: true });
      const zipC = rawZip([{ name: 'data.yaml', data: 'train: images\nval: images\nnames: [a]\n' }]);
      fs.writeFileSync(orphanZip, zipC);
      await store.adopt(orphanZip, sha(zipC), server.deps.config.dataset);
      const old = await finishedJob(sha(zipC), 'failed');
      const alsoOld = await finishedJob(sha(zipA));

      // Nothing has expired yet.
      let report = await server.deps.retention.sweep();
      assert.equal(report.jobs, 0);
      assert.ok(fs.existsSync(path.join(server.deps.files.dir(old), 'weights', 'best.pt')));

      // Old rows to prune: attempts of a delivered event, a signature past its window; and fresh ones.
      const eventId = `evt_${crypto.randomUUID()}`;
      await db.insert(callbackEvents).values({ id: eventId, jobId: old, type: 'training_failed', payload: {}, state: 'delivered' });
      const longAgo = new Date(Date.now() - 30 * DAY);
      await db.insert(callbackAttempts).values([
        { eventId, attemptedAt: longAgo, statusCode: 500 },
        { eventId, attemptedAt: new Date(), statusCode: 200 },
      ]);
      await db.insert(seenSignatures).values([
        { signature: `old-${crypto.randomUUID()}`, expiresAt: new Date(Date.now() - 1000) },
        { signature: `new-${crypto.randomUUID()}`, expiresAt: new Date(Date.now() + 3 * DAY) },
      ]);

      // Two days on (RETENTION_DAYS=1): both jobs have expired.
      report = await server.deps.retention.sweep(new Date(Date.now() + 2 * DAY));
      assert.equal(report.jobs, 2, JSON.stringify(report));
      for (const id of [old, alsoOld]) {
        assert.deepEqual(fs.readdirSync(server.deps.files.dir(id)), ['worker.log']);
        const job = (await call(`/api/v1/jobs/${id}`)).json;
        assert.ok(job.job_id === id && job.files_removed_at, 'the row stays, saying its files are gone');
        assert.equal(job.disk_bytes, 300);
      }
      assert.equal(await store.has(sha(zipC)), false, 'no unexpired job refers to the downloaded archive');
      assert.equal(await store.has(sha(zipA)), true, 'an upload stays until deleted');
      assert.equal(report.pruned['callback_attempts'], 1);
      assert.equal(report.pruned['seen_signatures'], 1);
      const attempts = await db.select().from(callbackAttempts).where(sql`${callbackAttempts.eventId} = ${eventId}`);
      assert.deepEqual(attempts.map((a) => a.statusCode), [200]);
      const sigs = await db.select().from(seenSignatures);
      assert.ok(sigs.every((s) => s.signature.startsWith('new-')));

      // A second sweep has nothing left to do.
      report = await server.deps.retention.sweep(new Date(Date.now() + 2 * DAY));
      assert.equal(report.jobs, 0);
      assert.equal(report.archives, 0);
    });

    test('the sweep removes Hub snapshots unused for RETENTION_DAYS that no unfinished job and no registered model uses', async () => {
      const cache = path.join(server.workdir, 'hf-cache');
      /** A snapshot folder as hub-snapshot.ts leaves it, last used `daysAgo` days ago. */
      const snapshot = (owner: string, folder: string, daysAgo: number) => {
        const dir = path.join(cache, owner, folder);
        fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(path.join(dir, 'config.json'), '{}');
        const record = path.join(dir, '.trainhook-snapshot.json');
        fs.writeFileSync(record, '{}');
        const at = new Date(Date.now() - daysAgo * DAY);
        fs.utimesSync(record, at, at);
        return dir;
      };
      const hubJob = (baseModel: string) =>
        call('/api/v1/train', {
          method: 'POST',
          json: trainBody({
            model_config: { framework: 'transformers', task: 'causal-lm', base_model: baseModel, name: `hub-${baseModel}`, epochs: 1 },
            dataset: { url: 'http://127.0.0.1:9/never.zip' },
          }),
        });
      const dirs = {
        old: snapshot('org', 'old@main', 3),
        finished: snapshot('org', 'finished@main', 3),
        queued: snapshot('org', 'queued@main', 3),
        registered: snapshot('org', 'registered@v1', 3),
        recent: snapshot('org', 'recent@main', 0.5),
        noRecord: path.join(cache, 'org', 'partial@main'),
        download: path.join(cache, 'org', '.busy@main.tmp-1-abcd'),
      };
      fs.mkdirSync(dirs.noRecord);
      fs.mkdirSync(dirs.download);
      // A job that trained from org/finished has ended; one from org/queued waits its turn.
      const finished = await hubJob('org/finished');
      assert.equal(finished.status, 202, finished.text);
      const driver = jobDriver(server, server.store.nodeId);
      await driver.finish((await driver.start()).id, 'completed');
      assert.equal((await hubJob('org/queued')).status, 202);
      await server.deps.database.db.insert(models).values({
        id: crypto.randomUUID(),
        name: 'adapter',
        framework: 'transformers',
        task: 'causal-lm',
        fileName: 'adapter.zip',
        classes: [],
        sizeBytes: 1,
        sha256: '0'.repeat(64),
        baseModel: 'org/registered@v1',
      });

      const report = await server.deps.retention.sweep();
      assert.equal(report.hubSnapshots, 2, JSON.stringify(report));
      const left = (dir: string) => fs.existsSync(dir);
      assert.equal(left(dirs.old), false, 'used by nothing');
      assert.equal(left(dirs.finished), false, 'used by a finished job only');
      assert.equal(left(dirs.queued), true, 'an unfinished job trains from it');
      assert.equal(left(dirs.registered), true, 'a registered model names it');
      assert.equal(left(dirs.recent), true, 'used less than RETENTION_DAYS ago');
      assert.equal(left(dirs.noRecord) && left(dirs.download), true, 'not a complete snapshot: left alone');
      assert.deepEqual(fs.readdirSync(path.join(cache, 'org')).filter((f) => f.includes('.removing-')), []);
      assert.equal((await server.deps.retention.sweep()).hubSnapshots, 0);
    });
  });
}

describe('the periodic retention sweep', () => {
  let server: TestServer;
  before(async () => {
    // A fraction of a day: about 0.9 s. The sweep runs on its own every 0.2 s.
    server = await startTestServer({ env: { RUN_JOBS: 'false', RETENTION_DAYS: '0.00001', RETENTION_SWEEP_SECONDS: '0.2' } });
  });
  after(() => server.stop());

  test('removes a finished job\'s files on its own once RETENTION_DAYS have passed', async () => {
    const call = api(server.url);
    assert.equal(server.deps.config.retention.days, 0.00001);
    const r = await call('/api/v1/train', { method: 'POST', json: trainBody() });
    assert.equal(r.status, 202, r.text);
    const driver = jobDriver(server, server.store.nodeId);
    const job = await driver.start();
    const dir = server.deps.files.dir(job.id);
    fs.mkdirSync(path.join(dir, 'weights'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'weights', 'last.pt'), Buffer.alloc(1000));
    fs.writeFileSync(path.join(dir, 'worker.log'), 'done\n');
    await driver.finish(job.id, 'completed');
    const swept = await waitFor('the sweep to remove its files', async () => {
      const j = (await call(`/api/v1/jobs/${job.id}`)).json;
      return j.files_removed_at ? j : null;
    });
    assert.deepEqual(fs.readdirSync(dir), ['worker.log']);
    assert.equal(swept.disk_bytes, 5);
    assert.equal(swept.status, 'completed');
  });
});
