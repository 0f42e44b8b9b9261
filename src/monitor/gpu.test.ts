import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { parseGpuCsv, queryGpus } from './gpu.js';

const MIB = 1024 * 1024;

test('parses nvidia-smi CSV, names with commas and [N/A] fields included', () => {
  const out = parseGpuCsv(
    [
      '0, NVIDIA GeForce RTX 4090, 87, 12595, 24564, 72, 285.42',
      '1, NVIDIA A100-SXM4-80GB, 3, 1024, 81920, 41, [N/A]',
      '2, Tesla T4, Rev. B, [Not Supported], 15, 15360, 55, 27.10',
      '',
      'garbage line',
    ].join('\n'),
  );
  assert.equal(out.length, 3);
  assert.deepEqual(out[0], {
    index: 0,
    device: 'cuda:0',
    name: 'NVIDIA GeForce RTX 4090',
    utilizationPercent: 87,
    memoryUsedBytes: 12595 * MIB,
    memoryTotalBytes: 24564 * MIB,
    temperatureC: 72,
    powerWatts: 285.42,
  });
  assert.equal(out[1]!.powerWatts, null);
  assert.equal(out[2]!.name, 'Tesla T4, Rev. B');
  assert.equal(out[2]!.utilizationPercent, null);
  assert.equal(out[2]!.memoryUsedBytes, 15 * MIB);
});

test('a machine without nvidia-smi reads as missing; a failing one as an error', async () => {
  const missing = await queryGpus({ command: '/nonexistent/nvidia-smi' });
  assert.deepEqual(missing.ok ? null : missing.missing, true);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-smi-'));
  const script = path.join(dir, 'nvidia-smi');
  fs.writeFileSync(script, '#!/bin/sh\necho "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver." >&2\nexit 9\n', { mode: 0o755 });
  const failed = await queryGpus({ command: script });
  assert.equal(failed.ok, false);
  assert.equal(failed.ok ? null : failed.missing, false);
  fs.rmSync(dir, { recursive: true, force: true });
});
