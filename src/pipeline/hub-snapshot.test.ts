import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { JobError } from '../core/errors.js';
import { hubCacheDir, parseHubId } from '../engines/hub.js';
import { createOutboundDispatcher } from '../net/outbound.js';
import { hubSnapshot, selectHubFiles, type HubOptions } from './hub-snapshot.js';

test('Hub ids: owner/name[@revision], each part one safe path segment', () => {
  assert.deepEqual(parseHubId('TinyLlama/TinyLlama-1.1B-Chat-v1.0'), { repo: 'TinyLlama/TinyLlama-1.1B-Chat-v1.0', revision: 'main' });
  assert.deepEqual(parseHubId('org/model@v1.0'), { repo: 'org/model', revision: 'v1.0' });
  assert.deepEqual(parseHubId(`org/model@${'0123456789abcdef'.repeat(2)}01234567`), { repo: 'org/model', revision: `${'0123456789abcdef'.repeat(2)}01234567` });
  for (const bad of ['model', 'a/b/c', 'org/../x', '../x/y', 'org/x@', 'org/x@a/b', '-org/x', 'org/x-', 'org/.x', 'org/x--y', 'org/x@..', 'org/x y', '']) {
    assert.equal(parseHubId(bad), null, bad);
  }
  assert.equal(hubCacheDir('/w', { repo: 'org/model', revision: 'main' }), '/w/hf-cache/org/model@main');
});

test('a snapshot holds what a model loads: safetensors and support files at the top; pickles only without safetensors', () => {
  const repo = [
    '.gitattributes', 'README.md', 'config.json', 'generation_config.json', 'model-00001-of-00002.safetensors',
    'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json',
    'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model', 'preprocessor_config.json',
    'chat_template.jinja', 'merges.txt', 'vocab.json', 'flax_model.msgpack', 'tf_model.h5', 'modeling_custom.py',
    'onnx/model.onnx', 'original/consolidated.00.pth', 'original/params.json', '../escape.json', 'LICENSE',
  ];
  assert.deepEqual(selectHubFiles(repo), [
    'chat_template.jinja', 'config.json', 'generation_config.json', 'merges.txt', 'model-00001-of-00002.safetensors',
    'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'preprocessor_config.json', 'special_tokens_map.json',
    'tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'vocab.json',
  ]);
  assert.deepEqual(selectHubFiles(['config.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json', 'tokenizer.json', 'flax_model.msgpack']), [
    'config.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json', 'tokenizer.json',
  ]);
});

describe('hubSnapshot against a Hub on 127.0.0.1', () => {
  let hub: http.Server;
  let endpoint: string;
  const served = new Map<string, Buffer>([
    ['config.json', Buffer.from('{"model_type": "llama"}')],
    ['model.safetensors', Buffer.alloc(4096, 1)],
    ['tokenizer.json', Buffer.from('{}')],
  ]);
  const requests: string[] = [];
  before(async () => {
    hub = http.createServer((req, res) => {
      requests.push(req.url ?? '');
      if (req.url === '/api/models/org/m/revision/main') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sha: 'b'.repeat(40), siblings: [...served.keys()].map((rfilename) => ({ rfilename })) }));
        return;
      }
      const m = /^\/org\/m\/resolve\/b{40}\/(.+)$/.exec(req.url ?? '');
      const body = m ? served.get(m[1]!) : undefined;
      if (!body) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    await new Promise<void>((r) => hub.listen(0, '127.0.0.1', r));
    endpoint = `http://127.0.0.1:${(hub.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => hub.close(() => r())));

  const options = (workdir: string, extra: Partial<HubOptions> = {}): HubOptions => ({
    workdir,
    endpoint,
    offline: false,
    maxBytes: 1024 ** 2,
    dispatcher: createOutboundDispatcher(['127.0.0.1']),
    timeoutMs: 5000,
    retries: 0,
    ...extra,
  });
  const ref = { repo: 'org/m', revision: 'main' };

  test('the byte cap and the disk pre-flight stop a download and leave no folder behind; then it downloads once', async () => {
    const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'trainhook-hub-unit-'));
    try {
      const parent = path.join(workdir, 'hf-cache', 'org');
      const capped = await hubSnapshot(ref, options(workdir, { maxBytes: 2048 })).then(() => null, (e: unknown) => e);
      assert.ok(capped instanceof JobError, String(capped));
      assert.equal(capped.code, 'MODEL_DOWNLOAD_FAILED');
      assert.match(capped.message, /^could not download base model org\/m@main from http:\/\/127\.0\.0\.1:\d+: model\.safetensors takes the snapshot past its 2048-byte limit/);
      assert.deepEqual(fs.readdirSync(parent), [], 'no temporary folder left');

      const asked: number[] = [];
      const full = await hubSnapshot(ref, options(workdir, {
        checkSpace: async (bytes) => {
          asked.push(bytes);
          if (bytes > 1000) throw new JobError('INSUFFICIENT_DISK', `not enough disk for ${bytes} bytes`);
        },
      })).then(() => null, (e: unknown) => e);
      assert.ok(full instanceof JobError);
      assert.equal(full.code, 'INSUFFICIENT_DISK', 'the pre-flight keeps its own code');
      assert.ok(asked.includes(4096), JSON.stringify(asked));
      assert.deepEqual(fs.readdirSync(parent), []);

      requests.length = 0;
      const got = await hubSnapshot(ref, options(workdir));
      assert.equal(got.downloaded, true);
      assert.equal(got.bytes, 4096 + 23 + 2);
      assert.equal(got.dir, hubCacheDir(workdir, ref));
      assert.deepEqual(fs.readdirSync(got.dir).sort(), ['.trainhook-snapshot.json', 'config.json', 'model.safetensors', 'tokenizer.json']);
      const again = await hubSnapshot(ref, options(workdir, { offline: true }));
      assert.equal(again.downloaded, false, 'the cached snapshot, even offline');
      assert.equal(requests.length, 4, 'one listing and three files, once');
    } finally {
      fs.rmSync(workdir, { recursive: true, force: true });
    }
  });
});
