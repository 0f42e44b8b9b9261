/**
 * Storage, on both backends: a folder (LocalStorage) and a real S3-compatible server (moto's
 * server mode on 127.0.0.1, test/helpers/s3-server.ts). The same checks run on each: objects in
 * and out, ranges, listing by prefix, deletion, links; then a job's files going up in the
 * background while it "trains" and coming back on another node's empty workdir.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../src/core/config.js';
import { DatasetStore } from '../src/datasets/store.js';
import { createLoggers } from '../src/core/logger.js';
import { BUILTIN_ENGINES, Engines } from '../src/engines/index.js';
import { isTorn, jobFilesPrefix, jobLogPrefix } from '../src/jobs/file-sync.js';
import { JobFiles } from '../src/jobs/files.js';
import { createStorage, LocalStorage, type S3Storage, type Storage } from '../src/storage/index.js';
import { S3_TEST_CREDENTIALS, startS3Server, type S3Server } from './helpers/s3-server.js';
import { tempDir } from './helpers/server.js';
import { zipDirectory } from './helpers/synthetic-dataset.js';

const { logger } = createLoggers('silent');

async function bytes(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
const text = async (r: Readable): Promise<string> => (await bytes(r)).toString('utf8');

let s3: S3Server;
before(async () => {
  s3 = await startS3Server();
});
after(async () => {
  await s3?.close();
});

function s3Storage(opts: { bucket?: string; prefix?: string; public?: boolean } = {}): S3Storage {
  return s3.storage(opts.bucket ?? 'trainhook-test', opts.prefix ?? 'cluster-a', { public: opts.public ?? true });
}

const BACKENDS: { name: string; make: () => Promise<Storage> }[] = [
  { name: 'local folder', make: async () => new LocalStorage(tempDir('trainhook-storage-'), true) },
  {
    name: 's3 (moto)',
    make: async () => {
      const s = s3Storage({ prefix: `p-${crypto.randomBytes(4).toString('hex')}` });
      await s.ensureBucket();
      return s;
    },
  },
];

test('STORAGE_URL is parsed into a storage config, and bad values are refused with the key named', () => {
  assert.deepEqual(loadConfig({}).storage, { kind: 'local', path: undefined });
  const s3c = loadConfig({ STORAGE_URL: 's3://my-bucket/a/b/', S3_ENDPOINT: 'http://10.0.0.5:9000', AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's' }).storage;
  assert.equal(s3c.kind, 's3');
  if (s3c.kind === 's3') {
    assert.equal(s3c.bucket, 'my-bucket');
    assert.equal(s3c.prefix, 'a/b');
    assert.equal(s3c.forcePathStyle, true, 'path style by default with an endpoint');
    assert.equal(s3c.public, true);
    assert.equal(s3c.region, 'us-east-1');
    assert.deepEqual(s3c.checksums, { request: 'WHEN_REQUIRED', response: 'WHEN_REQUIRED' }, 'an S3-compatible store gets no optional checksums');
  }
  const aws = loadConfig({ STORAGE_URL: 's3://my-bucket' }).storage;
  assert.deepEqual(aws.kind === 's3' && aws.checksums, { request: 'WHEN_SUPPORTED', response: 'WHEN_SUPPORTED' }, 'AWS keeps the SDK default');
  const chosen = loadConfig({ STORAGE_URL: 's3://my-bucket', S3_ENDPOINT: 'http://10.0.0.5:9000', AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_SUPPORTED' }).storage;
  assert.deepEqual(chosen.kind === 's3' && chosen.checksums, { request: 'WHEN_SUPPORTED', response: 'WHEN_REQUIRED' });
  assert.throws(() => loadConfig({ AWS_REQUEST_CHECKSUM_CALCULATION: 'ALWAYS' }), /AWS_REQUEST_CHECKSUM_CALCULATION/);
  const file = loadConfig({ STORAGE_URL: 'file:///mnt/shared/th' }).storage;
  assert.deepEqual(file, { kind: 'local', path: '/mnt/shared/th' });
  assert.equal(createStorage(loadConfig({ WORKDIR: '/tmp/x' })).remote, false, 'the default storage is the workdir: nothing copied');
  assert.equal(createStorage(loadConfig({ STORAGE_URL: 'file:///mnt/shared/th' })).remote, true);
  assert.throws(() => loadConfig({ STORAGE_URL: 'ftp://x' }), /STORAGE_URL: must be local, file:\/\/\/path or s3:\/\/bucket\/prefix/);
  assert.throws(() => loadConfig({ STORAGE_URL: 's3://bucket/../x' }), /STORAGE_URL: the prefix/);
  assert.throws(() => loadConfig({ STORAGE_URL: 's3://bucket', AWS_ACCESS_KEY_ID: 'k' }), /AWS_SECRET_ACCESS_KEY/);
  assert.throws(() => loadConfig({ S3_ENDPOINT: 'ftp://x' }), /S3_ENDPOINT/);
});

test('uploads carry a CRC checksum by default, and none with WHEN_REQUIRED (what S3-compatible stores get)', async () => {
  const file = path.join(tempDir('trainhook-cksum-'), 'last.pt');
  fs.writeFileSync(file, crypto.randomBytes(100_000));
  const { S3Client, HeadObjectCommand } = await import('@aws-sdk/client-s3');
  const { region, ...credentials } = S3_TEST_CREDENTIALS;
  const raw = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region, credentials });
  const stored: Record<string, string | undefined> = {};
  for (const request of ['WHEN_SUPPORTED', 'WHEN_REQUIRED'] as const) {
    const prefix = `cksum-${request.toLowerCase()}`;
    const storage = s3.storage('trainhook-test', prefix, { checksums: { request, response: request } });
    await storage.ensureBucket();
    await storage.putFile('last.pt', file);
    const head = await raw.send(new HeadObjectCommand({ Bucket: 'trainhook-test', Key: `${prefix}/last.pt`, ChecksumMode: 'ENABLED' }));
    stored[request] = head.ChecksumCRC32 ?? head.ChecksumCRC32C ?? head.ChecksumCRC64NVME;
    const back = await storage.getStream('last.pt');
    assert.ok((await bytes(back!.body)).equals(fs.readFileSync(file)), `${request}: the object comes back whole`);
  }
  raw.destroy();
  assert.ok(stored['WHEN_SUPPORTED'], 'the default sends a checksum the store keeps');
  assert.equal(stored['WHEN_REQUIRED'], undefined);
});

for (const backend of BACKENDS) {
  describe(`storage: ${backend.name}`, () => {
    let storage: Storage;
    before(async () => {
      storage = await backend.make();
    });

    test('objects go in from files and streams and come back whole, by range, and as files', async () => {
      const dir = tempDir('trainhook-storage-src-');
      const src = path.join(dir, 'weights.bin');
      const bytes = crypto.randomBytes(300_000);
      fs.writeFileSync(src, bytes);
      await storage.putFile('jobs/j1/files/weights/last.pt', src);
      await storage.putStream('jobs/j1/log/000000000000000', Readable.from([Buffer.from('hello\nworld\n')]), { contentType: 'text/plain' });

      const head = await storage.head('jobs/j1/files/weights/last.pt');
      assert.equal(head?.size, bytes.length);
      assert.equal(head?.key, 'jobs/j1/files/weights/last.pt');
      assert.equal(await storage.head('jobs/j1/files/nope.pt'), null);

      const out = path.join(dir, 'back', 'last.pt');
      assert.equal(await storage.getToFile('jobs/j1/files/weights/last.pt', out), true);
      assert.ok(fs.readFileSync(out).equals(bytes));
      assert.equal(await storage.getToFile('jobs/j1/files/missing', path.join(dir, 'missing')), false);
      assert.equal(fs.existsSync(path.join(dir, 'missing')), false);

      const part = await storage.getStream('jobs/j1/log/000000000000000', { start: 6, end: 10 });
      assert.equal(await text(part!.body), 'world');
      assert.equal(part!.size, 5);
      assert.equal(await storage.getStream('jobs/j1/log/999999999999999'), null);
    });

    test('list answers a prefix in key order, and deletePrefix removes exactly it', async () => {
      for (const k of ['b/2', 'b/1', 'b/10/x', 'bb/1', 'a/1']) await storage.putStream(`t/${k}`, Readable.from([Buffer.from(k)]));
      const listed = (await storage.list('t/b/')).map((o) => o.key);
      assert.deepEqual(listed, ['t/b/1', 't/b/10/x', 't/b/2']);
      assert.equal(await storage.deletePrefix('t/b/'), 3);
      assert.deepEqual((await storage.list('t/')).map((o) => o.key), ['t/a/1', 't/bb/1']);
      assert.equal(await storage.deletePrefix('t/nothing/'), 0);
    });

    test('keys that could climb out of the root are refused', async () => {
      await assert.rejects(storage.putStream('jobs/../../etc/passwd', Readable.from([])), /invalid storage key segment/);
      await assert.rejects(storage.head('/abs'), /invalid storage key segment/);
    });

    test('links: presigned URLs from a bucket fetch the object; a folder has none (trainhook streams it)', async () => {
      await storage.putStream('links/model.pt', Readable.from([Buffer.from('weights!')]));
      const url = await storage.link('links/model.pt', { fileName: 'model.pt', contentType: 'application/octet-stream', ttlSeconds: 600 });
      if (storage.kind === 'local') {
        assert.equal(url, null);
        return;
      }
      assert.match(url!, /X-Amz-Signature=/);
      const res = await fetch(url!);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'weights!');
      assert.match(res.headers.get('content-disposition') ?? '', /attachment; filename="model.pt"/);
      assert.match(url!, /X-Amz-Expires=600/, "valid as long as trainhook's own links");
    });

    test("a job's files go up in the background as it trains, and another node's empty workdir gets them back", async () => {
      const engines = new Engines(BUILTIN_ENGINES);
      const nodeA = new JobFiles(tempDir('trainhook-node-a-'), engines, storage);
      const job = { id: crypto.randomUUID(), engine: 'ultralytics' };
      const dir = nodeA.dir(job.id);
      fs.mkdirSync(path.join(dir, 'weights'), { recursive: true });
      const sync = nodeA.sync(job, logger)!;
      assert.ok(sync, 'remote storage: a sync');

      // Three "epochs": last.pt each time, best.pt at epochs 1 and 3, a growing log and results.csv.
      const lastBytes: Buffer[] = [];
      for (let epoch = 1; epoch <= 3; epoch++) {
        const last = crypto.randomBytes(50_000 + epoch);
        lastBytes.push(last);
        fs.writeFileSync(path.join(dir, 'weights', 'last.pt'), last);
        if (epoch !== 2) fs.writeFileSync(path.join(dir, 'weights', 'best.pt'), last);
        fs.appendFileSync(nodeA.logFile(job.id), `epoch ${epoch} done\n`);
        fs.writeFileSync(path.join(dir, 'results.csv'), `epoch\n${Array.from({ length: epoch }, (_, i) => i + 1).join('\n')}\n`);
        fs.writeFileSync(path.join(dir, 'worker-spec.json'), '{}');
        const t0 = performance.now();
        sync.scan();
        assert.ok(performance.now() - t0 < 50, 'scan() never waits for an upload');
        await sync.flush();
      }
      const keys = (await storage.list(`jobs/${job.id}/`)).map((o) => o.key.slice(`jobs/${job.id}/`.length));
      assert.deepEqual(keys.filter((k) => k.startsWith('files/')), ['files/results.csv', 'files/weights/best.pt', 'files/weights/last.pt']);
      assert.equal(keys.filter((k) => k.startsWith('log/')).length, 3, 'one log part per epoch');
      // best.pt was unchanged at epoch 2: not sent again. 3 last.pt + 2 best.pt + 3 csv + 3 log parts.
      assert.equal(sync.stats.uploads, 11);
      sync.close();

      // Node B: nothing in its folder; restore brings last.pt, best.pt, the state file and the log.
      const nodeB = new JobFiles(tempDir('trainhook-node-b-'), engines, storage);
      assert.equal(fs.existsSync(nodeB.dir(job.id)), false);
      const restored = await nodeB.restore(job);
      assert.equal(restored.files, 3);
      assert.ok(fs.readFileSync(path.join(nodeB.dir(job.id), 'weights', 'last.pt')).equals(lastBytes[2]!));
      assert.equal(fs.readFileSync(nodeB.logFile(job.id), 'utf8'), 'epoch 1 done\nepoch 2 done\nepoch 3 done\n');
      assert.equal(restored.logBytes, fs.statSync(nodeB.logFile(job.id)).size);
      assert.equal(fs.existsSync(path.join(nodeB.dir(job.id), 'worker-spec.json')), false, "a node's own files stay its own");

      // B carries on: its next log part starts where A's parts ended.
      const syncB = nodeB.sync(job, logger, restored.logBytes)!;
      fs.appendFileSync(nodeB.logFile(job.id), 'epoch 4 done on B\n');
      await syncB.flush();
      syncB.close();

      // Node C (API only): reads the log from the parts, and finds files it never had.
      const nodeC = new JobFiles(tempDir('trainhook-node-c-'), engines, storage);
      const page = await nodeC.readLog(job.id, 1, 10);
      assert.deepEqual(page.lines, ['epoch 2 done', 'epoch 3 done', 'epoch 4 done on B']);
      assert.equal(page.total_lines, 4);
      const download = await nodeC.logDownload(job.id);
      assert.equal(await download.text(), 'epoch 1 done\nepoch 2 done\nepoch 3 done\nepoch 4 done on B\n');
      const row = {
        id: job.id,
        engine: 'ultralytics',
        model: { best: path.join(dir, 'weights', 'best.pt'), last: path.join(dir, 'weights', 'last.pt') },
        artifacts: [{ name: 'results.csv', path: path.join(dir, 'results.csv') }],
      } as never;
      const located = await nodeC.locate(row, 'best.pt');
      assert.equal(located?.where, 'remote');
      assert.equal(located?.size, lastBytes[2]!.length);
      const body = await nodeC.readLocated(job.id, located!);
      const chunks: Buffer[] = [];
      for await (const c of body) chunks.push(c as Buffer);
      assert.ok(Buffer.concat(chunks).equals(lastBytes[2]!));
      assert.equal((await nodeC.locate(row, 'worker.log'))?.where, 'remote-log');
      assert.equal(await nodeC.locate(row, 'confusion_matrix.png'), null);

      // Retention removes the files and keeps the log.
      await nodeC.removeRemote(job.id);
      assert.deepEqual(await storage.list(jobFilesPrefix(job.id)), []);
      assert.equal((await storage.list(jobLogPrefix(job.id))).length, 4);
    });

    test('a long log is sent whole again past 64 parts, and reads the same throughout', async () => {
      const files = new JobFiles(tempDir('trainhook-node-l-'), new Engines(BUILTIN_ENGINES), storage);
      const job = { id: crypto.randomUUID(), engine: 'ultralytics' };
      fs.mkdirSync(files.dir(job.id), { recursive: true });
      const sync = files.sync(job, logger)!;
      const reader = new JobFiles(tempDir('trainhook-node-l2-'), new Engines(BUILTIN_ENGINES), storage);
      let expected = '';
      for (let i = 1; i <= 70; i++) {
        const line = `line ${i}\n`;
        fs.appendFileSync(files.logFile(job.id), line);
        expected += line;
        await sync.flush();
        if (i % 10 === 0) assert.equal(await (await reader.logDownload(job.id)).text(), expected, `after ${i} parts`);
      }
      sync.close();
      const parts = await storage.list(jobLogPrefix(job.id));
      assert.ok(parts.length <= 8, `${parts.length} parts left`);
      assert.equal(parts[0]!.key.endsWith('/000000000000000'), true);
      assert.equal(await (await reader.logDownload(job.id)).text(), expected);
      assert.equal((await reader.readLog(job.id, 0, 100)).total_lines, 70);
    });

    test('a dataset archive adopted on one node is kept by its sha256 and fetched, checked, by another', async () => {
      const dir = tempDir('trainhook-storage-ds-');
      fs.mkdirSync(path.join(dir, 'src', 'a'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'src', 'a', 'x.txt'), 'hello');
      const zip = path.join(dir, 'ds.zip');
      await zipDirectory(path.join(dir, 'src'), zip);
      const sha = crypto.createHash('sha256').update(fs.readFileSync(zip)).digest('hex');
      const zipBytes = fs.statSync(zip).size;
      const limits = loadConfig({}).dataset;
      const nodeA = new DatasetStore(path.join(dir, 'a'), storage);
      await nodeA.adopt(zip, sha, limits);
      assert.equal((await storage.head(DatasetStore.archiveKey(sha)))?.size, zipBytes);
      const nodeB = new DatasetStore(path.join(dir, 'b'), storage);
      assert.equal(await nodeB.available(sha), false);
      assert.equal(await nodeB.fetchRemote(sha, limits), true);
      assert.equal(fs.readFileSync(path.join(nodeB.filesDir(sha), 'a', 'x.txt'), 'utf8'), 'hello');
      assert.equal(await nodeB.fetchRemote('0'.repeat(64), limits), false, 'not in storage');
      // Bytes that are not what their name says are refused, not extracted.
      const fake = 'f'.repeat(64);
      await storage.putStream(DatasetStore.archiveKey(fake), Readable.from([Buffer.from('not a zip')]));
      await assert.rejects(nodeB.fetchRemote(fake, limits), (err: unknown) => (err as { code?: string }).code === 'DATASET_CORRUPTED');
      assert.equal(await nodeB.available(fake), false);
    });
  });
}

test('a file past the single-PUT size goes up to S3 in parts, whole', async () => {
  const storage = s3.storage('trainhook-test', 'multipart', { singlePutMaxBytes: 1024 * 1024 });
  await storage.ensureBucket();
  const dir = tempDir('trainhook-storage-mp-');
  const big = crypto.randomBytes(20 * 1024 * 1024);
  fs.writeFileSync(path.join(dir, 'big.pt'), big);
  await storage.putFile('jobs/mp/files/big.pt', path.join(dir, 'big.pt'));
  assert.equal((await storage.head('jobs/mp/files/big.pt'))?.size, big.length);
  assert.equal(await storage.getToFile('jobs/mp/files/big.pt', path.join(dir, 'back.pt')), true);
  assert.ok(fs.readFileSync(path.join(dir, 'back.pt')).equals(big));
  storage.destroy();
});

test('uploads keep to their CPU budget between epochs (coalescing last.pt), and flush() does not wait for it', async () => {
  const storage = new LocalStorage(tempDir('trainhook-storage-budget-'), true);
  const files = new JobFiles(tempDir('trainhook-node-budget-'), new Engines(BUILTIN_ENGINES), storage);
  const job = { id: crypto.randomUUID(), engine: 'ultralytics' };
  const weights = path.join(files.dir(job.id), 'weights');
  fs.mkdirSync(weights, { recursive: true });
  const { JobFileSync } = await import('../src/jobs/file-sync.js');
  // A budget so small that any upload's CPU means a wait of seconds.
  const sync = new JobFileSync({ storage, jobId: job.id, dir: files.dir(job.id), logFile: files.logFile(job.id), checkpoints: ['weights/*.pt'], logger, cpuBudget: 1e-5 });
  fs.writeFileSync(path.join(weights, 'last.pt'), crypto.randomBytes(4_000_000));
  sync.scan();
  const key = `jobs/${job.id}/files/weights/last.pt`;
  const deadline = Date.now() + 5000;
  while (!sync.stats.byFile['weights/last.pt'] && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(sync.stats.byFile['weights/last.pt'], 1, 'the first upload starts at once');
  for (let epoch = 2; epoch <= 4; epoch++) {
    fs.writeFileSync(path.join(weights, 'last.pt'), Buffer.alloc(1_200_000 + epoch, epoch));
    sync.scan();
  }
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(sync.stats.byFile['weights/last.pt'], 1, 'epochs 2-4 wait for the budget');
  // A state file does not wait behind it (it is queued after last.pt, and small).
  fs.writeFileSync(path.join(files.dir(job.id), 'results.csv'), 'epoch\n1\n');
  sync.scan();
  const csvDeadline = Date.now() + 5000;
  while (!sync.stats.byFile['results.csv'] && Date.now() < csvDeadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(sync.stats.byFile['results.csv'], 1, 'small files go up at once');
  assert.equal(sync.stats.byFile['weights/last.pt'], 1);
  await sync.flush();
  assert.equal(sync.stats.byFile['weights/last.pt'], 2, 'then go up once, coalesced');
  assert.ok(sync.stats.flushCpuMs > 0 && sync.stats.flushCpuMs <= sync.stats.cpuMs, 'the flush counted apart');
  assert.equal((await storage.head(key))?.size, 1_200_004, "the latest epoch's");
  sync.close();
});

test('an upload that keeps failing is retried, then reported by flush(); the next flush sends it', async () => {
  // A bucket that does not exist: every put fails until it is created.
  const storage = s3Storage({ bucket: `missing-${crypto.randomBytes(4).toString('hex')}` });
  const files = new JobFiles(tempDir('trainhook-node-r-'), new Engines(BUILTIN_ENGINES), storage);
  const job = { id: crypto.randomUUID(), engine: 'ultralytics' };
  fs.mkdirSync(path.join(files.dir(job.id), 'weights'), { recursive: true });
  fs.writeFileSync(path.join(files.dir(job.id), 'weights', 'last.pt'), 'x');
  const { JobFileSync } = await import('../src/jobs/file-sync.js');
  const sync = new JobFileSync({
    storage,
    jobId: job.id,
    dir: files.dir(job.id),
    logFile: files.logFile(job.id),
    checkpoints: ['weights/*.pt'],
    logger,
    retryDelaysMs: [10, 10],
  });
  await assert.rejects(sync.flush(), /could not upload weights\/last.pt/);
  assert.equal(sync.stats.failures, 3, 'the first try and two retries');
  await storage.ensureBucket();
  await sync.flush();
  assert.equal((await storage.head(`jobs/${job.id}/files/weights/last.pt`))?.size, 1);
});

test('a checkpoint caught half-written is torn: empty, or a ZIP without its end record; a whole ZIP or another file is not', async () => {
  const dir = tempDir('trainhook-storage-torn-');
  fs.writeFileSync(path.join(dir, 'a.txt'), 'a');
  await zipDirectory(dir, path.join(dir, '..', `${path.basename(dir)}.zip`));
  const zip = fs.readFileSync(path.join(dir, '..', `${path.basename(dir)}.zip`));
  fs.rmSync(path.join(dir, '..', `${path.basename(dir)}.zip`));
  const write = (name: string, data: Buffer | string) => (fs.writeFileSync(path.join(dir, name), data), path.join(dir, name));
  assert.equal(isTorn(write('whole.pt', zip)), false);
  assert.equal(isTorn(write('cut.pt', zip.subarray(0, Math.floor(zip.length / 2)))), true);
  assert.equal(isTorn(write('empty.pt', '')), true);
  assert.equal(isTorn(write('state.json', '{"epoch": 3}')), false);
});
