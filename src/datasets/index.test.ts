/**
 * prepareDataset end to end: generated ZIPs served over real HTTP from 127.0.0.1
 * (allow-listed), through download → extract → layout → check → normalized data.yaml.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import type { Config } from '../core/config.js';
import { JobError } from '../core/errors.js';
import { createOutboundDispatcher } from '../net/outbound.js';
import { serveBytes, startFileServer, type FileServer } from '../../test/helpers/file-server.js';
import { rawZip } from '../../test/helpers/raw-zip.js';
import { writeSyntheticClassifyDataset, writeSyntheticDataset, zipDirectory } from '../../test/helpers/synthetic-dataset.js';
import { prepareDataset, type DatasetTask, type PrepareOptions } from './index.js';
import { DatasetStore } from './store.js';

const limits: Config['dataset'] = {
  maxDownloadBytes: 50 * 1024 * 1024,
  maxUncompressedBytes: 100 * 1024 * 1024,
  maxEntries: 10_000,
  maxCompressionRatio: 200,
  downloadTimeoutMs: 5000,
  downloadRetries: 2,
};

let srv: FileServer;
let tmp: string;
let store: DatasetStore;
const shaOf = (name: string) => createHash('sha256').update(zips.get(name)!).digest('hex');
const dispatcher = createOutboundDispatcher(['127.0.0.1']);
const zips = new Map<string, Buffer>();

async function serveDataset(name: string, opts: Parameters<typeof writeSyntheticDataset>[1], prefix?: string, mutate?: (root: string) => Promise<void>) {
  const root = path.join(tmp, 'src', name);
  await writeSyntheticDataset(root, opts);
  if (mutate) await mutate(root);
  const zip = path.join(tmp, 'zips', `${name}.zip`);
  await zipDirectory(root, zip, { prefix });
  const bytes = await readFile(zip);
  zips.set(name, bytes);
  srv.route(`/${name}.zip`, serveBytes(bytes));
}
function serveRaw(name: string, bytes: Buffer) {
  zips.set(name, bytes);
  srv.route(`/${name}.zip`, serveBytes(bytes));
}

before(async () => {
  srv = await startFileServer();
  tmp = await mkdtemp(path.join(os.tmpdir(), 'trainhook-prepare-'));
  store = new DatasetStore(path.join(tmp, 'store'));
  const classes = ['circle', 'square', 'triangle'];
  await serveDataset('detect-ul', { task: 'detect', train: 12, val: 6, imgsz: 48, classes, seed: 1 }, 'my-dataset');
  await serveDataset('detect-rf', { task: 'detect', layout: 'roboflow', format: 'jpg', train: 9, val: 3, imgsz: 48, classes, seed: 2 });
  await serveDataset('segment-ul', { task: 'segment', train: 8, val: 4, imgsz: 48, classes, seed: 3 });
  await serveDataset('segment-rf', { task: 'segment', layout: 'roboflow', train: 7, val: 5, imgsz: 48, classes, seed: 4 }, 'export');
  await serveDataset('no-val', { task: 'detect', train: 3, val: 1, imgsz: 32, classes, seed: 5 }, undefined, async (root) => {
    await writeFile(path.join(root, 'data.yaml'), 'train: images/train\nnames: [a, b, c]\n');
  });
  await serveDataset('bad-labels', { task: 'detect', train: 3, val: 1, imgsz: 32, classes, seed: 6 }, 'ds', async (root) => {
    await writeFile(path.join(root, 'labels/train/train_00001.txt'), '0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.2 0.2\n');
  });
  serveRaw('zip-slip', rawZip([{ name: 'data.yaml', data: 'train: a\nval: b\nnames: [a]\n' }, { name: '../evil.txt', data: 'pwned' }]));
  serveRaw('symlink', rawZip([{ name: 'ds/link', data: '/etc/passwd', unixMode: 0o120777, method: 0 }]));
  serveRaw('bomb', rawZip([{ name: 'big.bin', data: Buffer.alloc(20 * 1024 * 1024) }]));
  serveRaw('not-a-zip', Buffer.from('<html><body>Access Denied</body></html>'));
  srv.route('/flaky.zip', (req, res, hit) => (hit === 1 ? res.writeHead(502).end() : serveBytes(zips.get('detect-ul')!)(req, res, hit)));
});
after(async () => {
  await srv.close();
  await dispatcher.close();
  await rm(tmp, { recursive: true, force: true });
});

let n = 0;
const jobDir = () => path.join(tmp, 'jobs', `job-${n++}`);
const opts = (task: DatasetTask, o: Partial<PrepareOptions> = {}): PrepareOptions => ({
  dispatcher,
  limits,
  task,
  formats: task === 'classify' ? ['classify'] : ['yolo'],
  backoffMs: 10,
  store,
  ...o,
});

async function expectJobError(p: Promise<unknown>, code: string, check?: (e: JobError) => void) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof JobError, String(e));
    assert.equal(e.code, code, e.message);
    check?.(e);
    return true;
  });
}

describe('prepareDataset', () => {
  const cases = [
    { name: 'detect-ul', task: 'detect', train: 12, val: 6 },
    { name: 'detect-rf', task: 'detect', train: 9, val: 3 },
    { name: 'segment-ul', task: 'segment', train: 8, val: 4 },
    { name: 'segment-rf', task: 'segment', train: 7, val: 5 },
  ] as const;
  for (const c of cases) {
    it(`prepares ${c.name}: counts, normalized data.yaml, ZIP deleted`, async () => {
      const dir = jobDir();
      const fractions: number[] = [];
      const sha256 = createHash('sha256').update(zips.get(c.name)!).digest('hex');
      const r = await prepareDataset({ url: srv.url(`/${c.name}.zip?sig=secret`), sha256 }, dir, opts(c.task, { onPhaseProgress: (f) => fractions.push(f) }));
      assert.equal(r.info.train_images, c.train);
      assert.equal(r.info.val_images, c.val);
      assert.equal(r.info.total_images, c.train + c.val);
      assert.deepEqual(r.info.classes, ['circle', 'square', 'triangle']);
      assert.ok(Object.values(r.info.class_distribution).reduce((a, b) => a + b) >= c.train + c.val);
      assert.deepEqual(r.warnings, []);
      assert.equal(r.data, path.join(dir, 'data.yaml'));
      const doc = YAML.parse(await readFile(r.data, 'utf8')) as Record<string, string>;
      assert.deepEqual(Object.keys(doc), ['path', 'train', 'val', 'nc', 'names']);
      for (const k of ['path', 'train', 'val'] as const) {
        assert.ok(path.isAbsolute(doc[k]!) && doc[k]!.startsWith(store.filesDir(sha256)), doc[k]);
        assert.ok(existsSync(doc[k]!));
      }
      assert.equal(r.sha256, sha256);
      assert.deepEqual(readdirSync(path.join(store.root, '.tmp')), [], 'no ZIP left behind');
      assert.equal(fractions.at(-1), 1);
      assert.ok(fractions.every((f, i) => i === 0 || f >= fractions[i - 1]!), 'progress only goes up');
    });
  }

  it('returns the stored result on re-entry without downloading again', async () => {
    const dir = jobDir();
    const first = await prepareDataset({ url: srv.url('/detect-ul.zip') }, dir, opts('detect'));
    const hits = srv.hits('/detect-ul.zip');
    const again = await prepareDataset({ url: srv.url('/detect-ul.zip') }, dir, opts('detect'));
    assert.equal(srv.hits('/detect-ul.zip'), hits);
    assert.deepEqual(again, first);
  });

  it('retries a 502 and then succeeds', async () => {
    const r = await prepareDataset({ url: srv.url('/flaky.zip') }, jobDir(), opts('detect'));
    assert.equal(r.info.total_images, 18);
    assert.equal(srv.hits('/flaky.zip'), 2);
  });

  it('fails a 404 without retrying', async () => {
    await expectJobError(prepareDataset({ url: srv.url('/nope.zip') }, jobDir(), opts('detect')), 'DATASET_DOWNLOAD_FAILED');
    assert.equal(srv.hits('/nope.zip'), 1);
  });

  it('fails a sha256 mismatch', async () => {
    await expectJobError(prepareDataset({ url: srv.url('/detect-ul.zip'), sha256: 'a'.repeat(64) }, jobDir(), opts('detect')), 'DATASET_DOWNLOAD_FAILED', (e) =>
      assert.match(e.message, /sha256 mismatch/),
    );
  });

  it('refuses 127.0.0.1 when not allow-listed and 169.254.169.254 always', async () => {
    const strict = createOutboundDispatcher([]);
    try {
      await expectJobError(prepareDataset({ url: srv.url('/detect-ul.zip') }, jobDir(), opts('detect', { dispatcher: strict })), 'DATASET_DOWNLOAD_FAILED', (e) =>
        assert.equal((e.details as { reason: string }).reason, 'SSRF_BLOCKED'),
      );
      await expectJobError(prepareDataset({ url: 'http://169.254.169.254/latest/meta-data/' }, jobDir(), opts('detect')), 'DATASET_DOWNLOAD_FAILED', (e) =>
        assert.match(e.message, /link-local/),
      );
    } finally {
      await strict.close();
    }
  });

  it('refuses hostile archives and cleans up', async () => {
    const cases = [
      ['zip-slip', 'DATASET_INVALID', '../evil.txt'],
      ['symlink', 'DATASET_INVALID', 'ds/link'],
      ['bomb', 'DATASET_INVALID', 'big.bin'],
      ['not-a-zip', 'DATASET_CORRUPTED', undefined],
    ] as const;
    for (const [name, code, entry] of cases) {
      const dir = jobDir();
      await expectJobError(prepareDataset({ url: srv.url(`/${name}.zip`) }, dir, opts('detect')), code, (e) => {
        if (entry) assert.equal((e.details as { entry: string }).entry, entry);
      });
      assert.ok(!store.list().includes(shaOf(name)), `${name} is not in the store`);
      assert.deepEqual(readdirSync(path.join(store.root, '.tmp')), [], 'nothing left in the scratch folder');
      assert.equal(existsSync(path.join(store.root, 'evil.txt')) || existsSync(path.join(store.root, '..', 'evil.txt')), false);
    }
  });

  it('refuses a dataset without a val split', async () => {
    await expectJobError(prepareDataset({ url: srv.url('/no-val.zip') }, jobDir(), opts('detect')), 'DATASET_INVALID', (e) =>
      assert.match(e.message, /no val split/),
    );
  });

  it('reports bad label lines with file, line and dataset_info', async () => {
    const dir = jobDir();
    await expectJobError(prepareDataset({ url: srv.url('/bad-labels.zip') }, dir, opts('detect')), 'DATASET_INVALID', (e) => {
      const d = e.details as { problems: { file: string; line: number; message: string }[]; total_problems: number; dataset_info: { total_images: number } };
      assert.deepEqual(d.problems, [
        { file: 'ds/labels/train/train_00001.txt', line: 2, message: 'class 5 is out of range (data.yaml has 3 classes: 0..2)' },
      ]);
      assert.equal(d.total_problems, 1);
      assert.equal(d.dataset_info.total_images, 4);
    });
    assert.equal(existsSync(path.join(dir, 'data.yaml')), false);
    assert.equal(existsSync(path.join(dir, 'dataset-info.json')), false);
  });
});

describe('prepareDataset: pose, obb and classify', () => {
  const classes = ['circle', 'square', 'triangle'];
  before(async () => {
    await serveDataset('pose-ul', { task: 'pose', train: 6, val: 3, imgsz: 48, classes, seed: 11 }, 'poses');
    await serveDataset('obb-rf', { task: 'obb', layout: 'roboflow', train: 6, val: 3, imgsz: 48, classes, seed: 12 });
    for (const [name, prefix] of [['classify-nested', 'shapes'], ['classify-root', undefined]] as const) {
      const root = path.join(tmp, 'src', name);
      await writeSyntheticClassifyDataset(root, { train: 9, val: 6, imgsz: 32, classes, seed: 13 });
      const zip = path.join(tmp, 'zips', `${name}.zip`);
      await zipDirectory(root, zip, { prefix });
      serveRaw(name, await readFile(zip));
    }
  });

  it('pose: data.yaml keeps kpt_shape and flip_idx; info has kpt_shape', async () => {
    const dir = jobDir();
    const r = await prepareDataset({ url: srv.url('/pose-ul.zip') }, dir, opts('pose'));
    assert.equal(r.format, 'yolo');
    assert.equal(r.data, path.join(dir, 'data.yaml'));
    assert.equal(r.dataYaml, r.data);
    assert.deepEqual(r.info.kpt_shape, [4, 3]);
    const doc = YAML.parse(await readFile(r.data, 'utf8')) as Record<string, unknown>;
    assert.deepEqual(Object.keys(doc), ['path', 'train', 'val', 'nc', 'names', 'kpt_shape', 'flip_idx']);
    assert.deepEqual(doc.kpt_shape, [4, 3]);
    assert.deepEqual(doc.flip_idx, [0, 3, 2, 1]);
  });

  it('obb: the 4-corner labels pass', async () => {
    const r = await prepareDataset({ url: srv.url('/obb-rf.zip') }, jobDir(), opts('obb'));
    assert.equal(r.info.task, 'obb');
    assert.equal(r.info.total_images, 9);
    assert.deepEqual(r.warnings, []);
  });

  it('obb: a detect dataset is refused with its first bad line', async () => {
    await expectJobError(prepareDataset({ url: srv.url('/detect-ul.zip') }, jobDir(), opts('obb')), 'DATASET_INVALID', (e) =>
      assert.match(e.message, /first: my-dataset\/labels\/train\/train_00000.txt:1: an obb dataset needs the 4 corners/),
    );
  });

  it('classify: data is the folder holding train/ and val/, there is no data.yaml, and re-entry reads the marker', async () => {
    for (const [name, sub] of [['classify-nested', 'shapes'], ['classify-root', '']] as const) {
      const dir = jobDir();
      const r = await prepareDataset({ url: srv.url(`/${name}.zip`) }, dir, opts('classify'));
      assert.equal(r.format, 'classify');
      assert.equal(r.data, path.join(store.filesDir(shaOf(name)), sub));
      assert.equal(r.dataYaml, null);
      assert.ok(existsSync(path.join(r.data, 'train/circle')));
      assert.equal(existsSync(path.join(dir, 'data.yaml')), false);
      assert.deepEqual(r.info.classes, classes);
      assert.deepEqual(r.info.images_per_split, { train: 9, val: 6 });
      assert.deepEqual(r.info.class_distribution, { circle: 5, square: 5, triangle: 5 });
      const hits = srv.hits(`/${name}.zip`);
      const again = await prepareDataset({ url: srv.url(`/${name}.zip`) }, dir, opts('classify'));
      assert.deepEqual(again, r);
      assert.equal(srv.hits(`/${name}.zip`), hits);
    }
  });

  it('classify: a YOLO dataset is refused with a hint', async () => {
    await expectJobError(prepareDataset({ url: srv.url('/detect-ul.zip') }, jobDir(), opts('classify')), 'DATASET_INVALID', (e) =>
      assert.match(e.message, /no train folder found: .* looks like a YOLO dataset/),
    );
  });

  it('reads a marker written before formats existed as a yolo dataset', async () => {
    const dir = jobDir();
    const first = await prepareDataset({ url: srv.url('/detect-ul.zip') }, dir, opts('detect'));
    const marker = path.join(dir, 'dataset-info.json');
    const { format: _f, data: _d, ...old } = JSON.parse(await readFile(marker, 'utf8')) as Record<string, unknown>;
    await writeFile(marker, JSON.stringify(old));
    const hits = srv.hits('/detect-ul.zip');
    assert.deepEqual(await prepareDataset({ url: srv.url('/detect-ul.zip') }, dir, opts('detect')), first);
    assert.equal(srv.hits('/detect-ul.zip'), hits);
  });
});

describe('prepareDataset: the shared store', () => {
  const classes = ['circle', 'square', 'triangle'];
  before(async () => {
    await serveDataset('shared', { task: 'detect', train: 6, val: 3, imgsz: 48, classes, seed: 21 });
    await serveDataset('concurrent', { task: 'detect', train: 6, val: 3, imgsz: 48, classes, seed: 22 });
  });

  it('two jobs on one ZIP with its sha256: one download, one extraction, both train on the same folder', async () => {
    const sha256 = shaOf('shared');
    const archives: string[] = [];
    const first = await prepareDataset({ url: srv.url('/shared.zip'), sha256 }, jobDir(), opts('detect', { onArchive: async (s) => void archives.push(s) }));
    const second = await prepareDataset({ url: srv.url('/shared.zip?other=link'), sha256 }, jobDir(), opts('detect', { onArchive: async (s) => void archives.push(s) }));
    assert.equal(srv.hits('/shared.zip'), 1);
    assert.deepEqual(archives, [sha256, sha256]);
    assert.deepEqual(second.info, first.info);
    const paths = async (r: typeof first) => (YAML.parse(await readFile(r.data, 'utf8')) as { path: string }).path;
    assert.equal(await paths(second), await paths(first));
    assert.equal((await paths(first)).startsWith(store.filesDir(sha256)), true);
  });

  it('concurrent jobs on the same URL share one download and one extraction', async () => {
    const [a, b, c] = await Promise.all([0, 1, 2].map(() => prepareDataset({ url: srv.url('/concurrent.zip') }, jobDir(), opts('detect'))));
    assert.equal(srv.hits('/concurrent.zip'), 1);
    assert.equal(a!.sha256, shaOf('concurrent'));
    assert.deepEqual(b!.info, a!.info);
    assert.deepEqual(c!.info, a!.info);
    assert.deepEqual(readdirSync(path.join(store.root, '.tmp')), []);
  });

  it("reuses a check's result for the same format and task, and checks again for another request", async () => {
    const sha256 = shaOf('shared');
    // Broken after the first check: a job that reuses the stored result does not read it again.
    await writeFile(path.join(store.filesDir(sha256), 'labels/train/train_00000.txt'), '9 0.5 0.5 0.2 0.2\n');
    const again = await prepareDataset({ url: srv.url('/shared.zip'), sha256 }, jobDir(), opts('detect'));
    assert.equal(again.info.total_images, 9);
    assert.equal(srv.hits('/shared.zip'), 1);
    // Naming the format is another request: checked afresh, it finds the broken line.
    await expectJobError(prepareDataset({ url: srv.url('/shared.zip'), sha256, format: 'yolo' }, jobDir(), opts('detect')), 'DATASET_INVALID', (e) =>
      assert.match(e.message, /class 9 is out of range/),
    );
    // A refusal is stored too: the same bytes fail the same way without a second scan.
    await writeFile(path.join(store.filesDir(sha256), 'labels/train/train_00000.txt'), '0 0.5 0.5 0.2 0.2\n');
    await expectJobError(prepareDataset({ url: srv.url('/shared.zip'), sha256, format: 'yolo' }, jobDir(), opts('detect')), 'DATASET_INVALID', (e) =>
      assert.match(e.message, /class 9 is out of range/),
    );
  });

  it('an archive is not removed while a preparation runs, and is once nothing keeps it', async () => {
    const sha256 = shaOf('concurrent');
    const release = store.preparing();
    assert.equal(await store.remove(sha256), false);
    release();
    assert.equal(await store.remove(sha256, async () => true), false);
    assert.equal(await store.remove(sha256), true);
    assert.equal(await store.has(sha256), false);
  });
});

describe('prepareDataset: a URL seen before', () => {
  const classes = ['circle', 'square', 'triangle'];
  let bytes: Buffer;
  let etag = '"v1"';
  let full = 0;
  before(async () => {
    await serveDataset('etag', { task: 'detect', train: 6, val: 3, imgsz: 48, classes, seed: 31 });
    bytes = zips.get('etag')!;
    srv.route('/etag.zip', (req, res) => {
      if (req.headers['if-none-match'] === etag) return void res.writeHead(304, { etag }).end();
      full++;
      res.writeHead(200, { 'content-type': 'application/zip', 'content-length': bytes.length, etag });
      res.end(bytes);
    });
  });

  it('is revalidated: a 304 reuses the stored archive, a changed file is downloaded again', async () => {
    const first = await prepareDataset({ url: srv.url('/etag.zip?token=a') }, jobDir(), opts('detect'));
    const second = await prepareDataset({ url: srv.url('/etag.zip?token=a') }, jobDir(), opts('detect'));
    assert.equal(full, 1, 'one download');
    assert.equal(srv.hits('/etag.zip'), 2, 'the second job only asked whether it changed');
    assert.equal(second.sha256, first.sha256);
    // No URL or token is written down: the memo is named by a hash.
    const memos = readdirSync(path.join(store.root, '.urls'));
    assert.ok(memos.every((n) => /^[a-f0-9]{64}\.json$/.test(n)));
    for (const n of memos) assert.doesNotMatch(await readFile(path.join(store.root, '.urls', n), 'utf8'), /token|etag\.zip/);

    etag = '"v2"';
    bytes = zips.get('detect-ul')!;
    const third = await prepareDataset({ url: srv.url('/etag.zip?token=a') }, jobDir(), opts('detect'));
    assert.equal(full, 2);
    assert.equal(third.sha256, shaOf('detect-ul'));
  });
});
