import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { JobError } from '../core/errors.js';
import { rawZip, type RawEntry } from '../../test/helpers/raw-zip.js';
import { writeSyntheticDataset, zipDirectory } from '../../test/helpers/synthetic-dataset.js';
import { extractZip, type ExtractLimits } from './extract.js';

const LIMITS: ExtractLimits = { maxEntries: 1000, maxUncompressedBytes: 64 * 1024 * 1024, maxCompressionRatio: 200 };

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'trainhook-extract-'));
});
after(() => rm(tmp, { recursive: true, force: true }));

let n = 0;
async function extractRaw(entries: RawEntry[] | Buffer, limits: Partial<ExtractLimits> = {}) {
  const dir = path.join(tmp, `case-${n++}`);
  const zip = `${dir}.zip`;
  await writeFile(zip, Buffer.isBuffer(entries) ? entries : rawZip(entries));
  const out = path.join(dir, 'out');
  return { out, dir, result: extractZip(zip, out, { ...LIMITS, ...limits }) };
}

async function expectRefused(p: Promise<unknown>, code: string, entry?: string, reason?: string) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof JobError, String(e));
    assert.equal(e.code, code, e.message);
    const d = e.details as { entry?: string; reason?: string } | null;
    if (entry !== undefined) assert.equal(d?.entry, entry, e.message);
    if (reason !== undefined) assert.equal(d?.reason, reason, e.message);
    return true;
  });
}

describe('extractZip', () => {
  it('extracts a yazl-made dataset archive', async () => {
    const src = path.join(tmp, 'src-ok');
    await writeSyntheticDataset(src, { task: 'detect', train: 4, val: 2, imgsz: 32, classes: ['a', 'b'], seed: 1 });
    await zipDirectory(src, path.join(tmp, 'ok.zip'), { prefix: 'my-ds' });
    const out = path.join(tmp, 'ok-out');
    const r = await extractZip(path.join(tmp, 'ok.zip'), out, LIMITS);
    assert.equal(r.files, 13);
    assert.deepEqual(await readdir(out), ['my-ds']);
    assert.deepEqual(await readFile(path.join(out, 'my-ds/data.yaml')), await readFile(path.join(src, 'data.yaml')));
  });

  it('skips macOS metadata and turns backslashes into folders', async () => {
    const { out, result } = await extractRaw([
      { name: 'ds/' },
      { name: 'ds\\labels\\a.txt', data: '0 0.5 0.5 0.1 0.1\n' },
      { name: '__MACOSX/ds/._a.txt', data: 'junk' },
      { name: 'ds/.DS_Store', data: 'junk' },
      { name: 'ds/._b.jpg', data: 'junk' },
    ]);
    const r = await result;
    assert.deepEqual(r, { files: 1, directories: 1, bytes: 18, skipped: 3 });
    assert.equal(await readFile(path.join(out, 'ds/labels/a.txt'), 'utf8'), '0 0.5 0.5 0.1 0.1\n');
    assert.equal(existsSync(path.join(out, '__MACOSX')), false);
  });

  for (const name of ['../evil.txt', 'ds/../../evil.txt', '..\\evil.txt', 'ds/..']) {
    it(`refuses zip-slip ${JSON.stringify(name)}`, async () => {
      const { dir, result } = await extractRaw([{ name: 'ok.txt', data: 'x' }, { name, data: 'pwned' }]);
      await expectRefused(result, 'DATASET_INVALID', name, 'PATH_TRAVERSAL');
      assert.equal(existsSync(path.join(dir, 'evil.txt')), false);
    });
  }
  for (const name of ['/tmp/evil.txt', '//server/share/evil.txt', 'C:/evil.txt', 'c:\\evil.txt', '\\evil.txt']) {
    it(`refuses absolute path ${JSON.stringify(name)}`, async () => {
      await expectRefused((await extractRaw([{ name, data: 'x' }])).result, 'DATASET_INVALID', name, 'ABSOLUTE_PATH');
    });
  }
  it('refuses NUL in names', async () => {
    await expectRefused((await extractRaw([{ name: 'a.txt\u0000.jpg', data: 'x' }])).result, 'DATASET_INVALID', undefined, 'CONTROL_CHARACTER');
  });
  it('refuses symlink entries', async () => {
    const { out, result } = await extractRaw([{ name: 'ds/link', data: '/etc/passwd', unixMode: 0o120777, method: 0 }]);
    await expectRefused(result, 'DATASET_INVALID', 'ds/link', 'SYMLINK');
    assert.equal(existsSync(path.join(out, 'ds/link')), false);
  });
  it('refuses FIFO and device entries', async () => {
    await expectRefused((await extractRaw([{ name: 'fifo', unixMode: 0o010644 }])).result, 'DATASET_INVALID', 'fifo', 'SPECIAL_FILE');
    await expectRefused((await extractRaw([{ name: 'dev', unixMode: 0o020644 }])).result, 'DATASET_INVALID', 'dev', 'SPECIAL_FILE');
  });
  it('accepts regular unix modes', async () => {
    const { result } = await extractRaw([{ name: 'd/', unixMode: 0o040755 }, { name: 'd/f.txt', data: 'x', unixMode: 0o100644 }]);
    assert.equal((await result).files, 1);
  });
  it('refuses encrypted entries', async () => {
    await expectRefused((await extractRaw([{ name: 'secret.txt', data: 'x', flags: 1 }])).result, 'DATASET_INVALID', 'secret.txt', 'ENCRYPTED');
  });
  it('refuses unknown compression methods', async () => {
    await expectRefused((await extractRaw([{ name: 'a.bin', data: 'x', method: 14 }])).result, 'DATASET_INVALID', 'a.bin', 'UNSUPPORTED_COMPRESSION');
  });

  it('extracts large entries (streamed) and small ones (read whole) byte for byte', async () => {
    const big = randomBytes(3 * 1024 * 1024);
    const small = randomBytes(20_000);
    const { out, result } = await extractRaw([
      { name: 'ds/big.bin', data: big, method: 8 },
      { name: 'ds/small.bin', data: small, method: 8 },
      { name: 'ds/stored.bin', data: small, method: 0 },
    ]);
    const r = await result;
    assert.equal(r.files, 3);
    assert.equal(r.bytes, big.length + 2 * small.length);
    assert.deepEqual(await readFile(path.join(out, 'ds/big.bin')), big);
    assert.deepEqual(await readFile(path.join(out, 'ds/small.bin')), small);
    assert.deepEqual(await readFile(path.join(out, 'ds/stored.bin')), small);
  });

  it('refuses a zip bomb by compression ratio', async () => {
    const zeros = Buffer.alloc(32 * 1024 * 1024);
    await expectRefused((await extractRaw([{ name: 'bomb.bin', data: zeros }])).result, 'DATASET_INVALID', 'bomb.bin', 'COMPRESSION_RATIO');
  });
  it('refuses a zip bomb whose header lies about its size, counting the real bytes', async () => {
    const zeros = Buffer.alloc(32 * 1024 * 1024);
    const { out, result } = await extractRaw([{ name: 'bomb.bin', data: zeros, uncompressedSize: 1000 }], { maxCompressionRatio: 100000 });
    await assert.rejects(result, (e: unknown) => e instanceof JobError && /DATASET_(INVALID|CORRUPTED)/.test(e.code));
    const written = existsSync(path.join(out, 'bomb.bin')) ? (await readFile(path.join(out, 'bomb.bin'))).length : 0;
    assert.ok(written <= 1024 * 1024, `wrote ${written} bytes`);
  });
  it('refuses an archive over the total uncompressed cap', async () => {
    const entries = [0, 1, 2].map((i) => ({ name: `f${i}.bin`, data: randomBytes(400 * 1024) }));
    await expectRefused((await extractRaw(entries, { maxUncompressedBytes: 1024 * 1024 })).result, 'DATASET_INVALID', 'f2.bin', 'TOO_LARGE');
  });
  it('refuses too many entries', async () => {
    const entries = Array.from({ length: 11 }, (_, i) => ({ name: `f${i}.txt`, data: 'x' }));
    await expectRefused((await extractRaw(entries, { maxEntries: 10 })).result, 'DATASET_INVALID', '(archive)', 'TOO_MANY_ENTRIES');
  });

  it('reports a truncated archive as corrupted', async () => {
    const full = rawZip([{ name: 'a.bin', data: randomBytes(50_000) }, { name: 'b.bin', data: randomBytes(50_000) }]);
    await expectRefused((await extractRaw(full.subarray(0, 60_000))).result, 'DATASET_CORRUPTED');
  });
  it('reports a truncated entry (central directory intact) as corrupted', async () => {
    const full = rawZip([{ name: 'a.bin', data: randomBytes(50_000) }]);
    // Cut the middle out of the data: the central directory still points past the end.
    const cut = Buffer.concat([full.subarray(0, 20_000), full.subarray(full.length - 22 - 46 - 5)]);
    await expectRefused((await extractRaw(cut)).result, 'DATASET_CORRUPTED');
  });
  it('reports not-a-zip as corrupted', async () => {
    await expectRefused((await extractRaw(Buffer.from('<html>Access denied</html>'))).result, 'DATASET_CORRUPTED');
    await expectRefused((await extractRaw(Buffer.alloc(0))).result, 'DATASET_CORRUPTED');
  });
  it('reports a bad CRC as corrupted, naming the entry', async () => {
    await expectRefused((await extractRaw([{ name: 'a.txt', data: 'hello world', crc32: 1234 }])).result, 'DATASET_CORRUPTED', 'a.txt');
  });
  it('reports broken deflate data as corrupted', async () => {
    const z = rawZip([{ name: 'a.bin', data: randomBytes(5000), method: 8 }]);
    z.fill(0xff, 40, 200); // scramble the deflate stream
    await expectRefused((await extractRaw(z)).result, 'DATASET_CORRUPTED', 'a.bin');
  });
});
