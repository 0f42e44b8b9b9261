import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../core/config.js';
import { JobError } from '../core/errors.js';
import { hubCacheDir, parseHubId } from '../engines/hub.js';
import { createOutboundDispatcher } from '../net/outbound.js';
import { childEnv } from '../worker/process.js';
import { MAX_INFO_REDIRECTS, hubSnapshot, selectHubFiles, type HubOptions } from './hub-snapshot.js';

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

test('the Hub token: HF_TOKEN, else HUGGING_FACE_HUB_TOKEN (its older name); neither reaches a worker', () => {
  assert.equal(loadConfig({ HUGGING_FACE_HUB_TOKEN: 'hf_old' }).hub.token, 'hf_old');
  assert.equal(loadConfig({ HF_TOKEN: 'hf_new', HUGGING_FACE_HUB_TOKEN: 'hf_old' }).hub.token, 'hf_new');
  assert.equal(loadConfig({}).hub.token, undefined);
  const saved = { HF_TOKEN: process.env['HF_TOKEN'], HUGGING_FACE_HUB_TOKEN: process.env['HUGGING_FACE_HUB_TOKEN'] };
  try {
    process.env['HF_TOKEN'] = 'hf_new';
    process.env['HUGGING_FACE_HUB_TOKEN'] = 'hf_old';
    const env = childEnv({ HUGGING_FACE_HUB_TOKEN: 'hf_passed', SOMETHING: 'kept' });
    assert.equal(env['HF_TOKEN'], undefined);
    assert.equal(env['HUGGING_FACE_HUB_TOKEN'], undefined);
    assert.equal(env['SOMETHING'], 'kept');
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
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
  /** The authorization header of each request, by URL, on the Hub and on another origin. */
  const auth: Array<{ url: string; origin: 'hub' | 'other'; authorization: string | null }> = [];
  // Another origin the model info may be redirected to: it must never see the token.
  let other: http.Server;
  let otherUrl: string;
  const listing = () => JSON.stringify({ sha: 'b'.repeat(40), siblings: [...served.keys()].map((rfilename) => ({ rfilename })) });
  before(async () => {
    other = http.createServer((req, res) => {
      auth.push({ url: req.url ?? '', origin: 'other', authorization: req.headers.authorization ?? null });
      if (req.url === '/api/models/org/m/revision/main') return void res.writeHead(200, { 'content-type': 'application/json' }).end(listing());
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    otherUrl = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
    hub = http.createServer((req, res) => {
      requests.push(req.url ?? '');
      auth.push({ url: req.url ?? '', origin: 'hub', authorization: req.headers.authorization ?? null });
      // As the Hub answers a renamed repo: a 307 to the new name, for its info and its files.
      const renamed = /^\/(api\/models\/)?org\/(old|older)\/(.*)$/.exec(req.url ?? '');
      if (renamed) {
        const to = renamed[2] === 'older' ? 'old' : 'm';
        return void res.writeHead(307, { location: `/${renamed[1] ?? ''}org/${to}/${renamed[3]}` }).end();
      }
      if (req.url === '/api/models/org/loop/revision/main') return void res.writeHead(307, { location: req.url }).end();
      if (req.url === '/api/models/org/elsewhere/revision/main') return void res.writeHead(302, { location: `${otherUrl}/api/models/org/m/revision/main` }).end();
      // 127.0.0.2 is loopback too, but not allowed: the guard refuses the hop before connecting.
      if (req.url === '/api/models/org/inside/revision/main') return void res.writeHead(307, { location: `http://127.0.0.2:${(hub.address() as AddressInfo).port}/api/models/org/m/revision/main` }).end();
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
  after(async () => {
    await new Promise<void>((r) => hub.close(() => r()));
    await new Promise<void>((r) => other.close(() => r()));
  });

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
      const record = path.join(got.dir, '.trainhook-snapshot.json');
      const longAgo = new Date(Date.now() - 30 * 24 * 3600 * 1000);
      fs.utimesSync(record, longAgo, longAgo);
      const again = await hubSnapshot(ref, options(workdir, { offline: true }));
      assert.equal(again.downloaded, false, 'the cached snapshot, even offline');
      assert.ok(Date.now() - fs.statSync(record).mtimeMs < 60_000, 'each use marks it used (the retention sweep reads when)');
      assert.equal(requests.length, 4, 'one listing and three files, once');
    } finally {
      fs.rmSync(workdir, { recursive: true, force: true });
    }
  });

  test("the model info follows a renamed repo's redirects (a few at most, each guarded), with the token only on the endpoint's origin", async () => {
    const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'trainhook-hub-unit-'));
    const token = 'hf_unit_token';
    try {
      auth.length = 0;
      const renamed = { repo: 'org/older', revision: 'main' };
      const got = await hubSnapshot(renamed, options(workdir, { token }));
      assert.equal(got.sha, 'b'.repeat(40));
      assert.equal(got.dir, hubCacheDir(workdir, renamed), 'cached under the name asked for');
      assert.deepEqual(fs.readdirSync(got.dir).sort(), ['.trainhook-snapshot.json', 'config.json', 'model.safetensors', 'tokenizer.json']);
      assert.deepEqual(auth.slice(0, 3).map((a) => a.url), ['/api/models/org/older/revision/main', '/api/models/org/old/revision/main', '/api/models/org/m/revision/main']);
      assert.ok(auth.every((a) => a.origin === 'hub' && a.authorization === `Bearer ${token}`), JSON.stringify(auth));

      // To another origin: followed, without the token.
      auth.length = 0;
      const elsewhere = await hubSnapshot({ repo: 'org/elsewhere', revision: 'main' }, options(workdir, { token })).then(
        () => null,
        (e: unknown) => e,
      );
      assert.deepEqual(auth.slice(0, 2).map((a) => [a.origin, a.url, a.authorization]), [
        ['hub', '/api/models/org/elsewhere/revision/main', `Bearer ${token}`],
        ['other', '/api/models/org/m/revision/main', null],
      ]);
      // The listing was read there; its files, under the name asked for, this Hub does not have.
      assert.ok(elsewhere instanceof JobError, String(elsewhere));
      assert.match(elsewhere.message, /: config\.json: download of .+ failed: HTTP 404/);

      requests.length = 0;
      const loop = await hubSnapshot({ repo: 'org/loop', revision: 'main' }, options(workdir)).then(() => null, (e: unknown) => e);
      assert.ok(loop instanceof JobError, String(loop));
      assert.equal(loop.code, 'MODEL_DOWNLOAD_FAILED');
      assert.match(loop.message, new RegExp(`too many redirects \\(more than ${MAX_INFO_REDIRECTS}\\) from the model info API`));
      assert.equal(requests.length, MAX_INFO_REDIRECTS + 1);

      const inside = await hubSnapshot({ repo: 'org/inside', revision: 'main' }, options(workdir)).then(() => null, (e: unknown) => e);
      assert.ok(inside instanceof JobError, String(inside));
      assert.match(inside.message, /network error: SSRF_BLOCKED refused to connect to 127\.0\.0\.2/);
      assert.equal((inside.details as { transient?: boolean }).transient, false);
      assert.deepEqual(fs.readdirSync(path.join(workdir, 'hf-cache', 'org')).sort(), ['older@main'], 'nothing else kept');
    } finally {
      fs.rmSync(workdir, { recursive: true, force: true });
    }
  });
});
