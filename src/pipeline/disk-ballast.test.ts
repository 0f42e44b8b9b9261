import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { DiskBallast, isDiskFull } from './disk-ballast.js';

test('the disk-reserve file is made at its size, only with room beside it, and released', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trainhook-ballast-'));
  try {
    const file = path.join(dir, 'disk-reserve');
    const ballast = new DiskBallast(file, 3 * 1024 * 1024 + 5);
    assert.equal(await ballast.ensure(Number.MAX_SAFE_INTEGER), false, 'no disk keeps that much free');
    assert.ok(!fs.existsSync(file));
    const [a, b] = await Promise.all([ballast.ensure(0), ballast.ensure(0)]);
    assert.ok(a && b);
    assert.equal(fs.statSync(file).size, 3 * 1024 * 1024 + 5);
    assert.ok(fs.statSync(file).blocks * 512 >= 3 * 1024 * 1024, 'blocks held, not a sparse file');
    assert.deepEqual(fs.readdirSync(dir), ['disk-reserve']);
    assert.equal(await ballast.release(), true);
    assert.equal(await ballast.release(), false);
    assert.ok(!fs.existsSync(file));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a full disk is recognised from Node, PostgreSQL and PGlite errors', () => {
  assert.ok(isDiskFull(Object.assign(new Error('write'), { code: 'ENOSPC' })));
  assert.ok(isDiskFull(Object.assign(new Error('could not extend file'), { code: '53100' })));
  assert.ok(isDiskFull(new Error('could not extend file "base/5/16384": No space left on device')));
  assert.ok(isDiskFull(new Error('query failed', { cause: Object.assign(new Error('x'), { code: 'EDQUOT' }) })));
  assert.ok(!isDiskFull(new Error('connection refused')));
  assert.ok(!isDiskFull(null));
});
