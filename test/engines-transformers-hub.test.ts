/**
 * A transformers base model named by its Hugging Face Hub id (owner/name[@revision]), downloaded
 * by the service (pipeline/hub-snapshot.ts) from a Hub on 127.0.0.1: a real HTTP server in the
 * Hub's URL layout (`/api/models/{repo}/revision/{rev}` and `/{repo}/resolve/{sha}/{file}`)
 * serving the tiny random LLaMA the engine's tests build, which checks the bearer token.
 *
 * - a LoRA job on `tiny-org/tiny-llama` downloads only the files a model needs (no pickled
 *   weights beside safetensors, nothing in subfolders, no README), once, into
 *   workdir/hf-cache/tiny-org/tiny-llama@main/, trains on it and completes; a second job reuses
 *   the folder; the token goes to the Hub and not to a CDN it redirects to; the registered
 *   model exports merged from that folder;
 * - invalid ids are refused at submit (400);
 * - a dead endpoint, a wrong token and HF_HUB_OFFLINE fail the job with MODEL_DOWNLOAD_FAILED
 *   naming the repo and the cause.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setupPython } from '../scripts/setup-python.mjs';
import { transformersEngine } from '../src/engines/transformers/index.js';
import { serveFile, startFileServer, type FileServer } from './helpers/file-server.js';
import { api, startTestServer, tempDir, trainBody, type TestServer } from './helpers/server.js';
import { makeTinyLlama } from './helpers/tiny-models.js';
import { zipDirectory } from './helpers/synthetic-dataset.js';
import { jobEnded, waitFor } from './helpers/wait.js';

const TOKEN = 'hf_test_token_0123456789';
const SHA = 'a'.repeat(40);
const REPO = 'tiny-org/tiny-llama';
const SAMPLES = [
  { prompt: 'What colour is the cat? ', completion: 'The cat is red.' },
  { prompt: 'What colour is the dog? ', completion: 'The dog is blue.' },
  { prompt: 'What colour is the fox? ', completion: 'The fox is green.' },
];
const FAST = { method: 'lora', lora_r: 4, lora_alpha: 8, lora_dropout: 0, learning_rate: 0.01, batch_size: 4, warmup_ratio: 0, max_length: 48, epochs: 1 };
/** Files a Hub repo also holds that a model does not need (or that must not be loaded). */
const DECOYS = ['pytorch_model.bin', 'flax_model.msgpack', 'README.md', '.gitattributes', 'onnx/model.onnx', 'original/consolidated.pth'];

const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

describe('transformers base models from a Hugging Face Hub', { timeout: 10 * 60_000 }, () => {
  let files: string;
  let hub: FileServer;
  let cdn: FileServer;
  let host: FileServer;
  let server: TestServer;
  let call: ReturnType<typeof api>;
  let modelFiles: string[];
  const authSeen: (string | undefined)[] = [];
  const cdnAuth: (string | undefined)[] = [];

  const authorised = (req: http.IncomingMessage, res: http.ServerResponse) => {
    authSeen.push(req.headers.authorization);
    if (req.headers.authorization === `Bearer ${TOKEN}`) return true;
    res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"Invalid credentials in Authorization header"}');
    return false;
  };

  const submitTo = (c: ReturnType<typeof api>, baseModel: string, name: string) =>
    c('/api/v1/train', {
      method: 'POST',
      json: trainBody({
        model_config: { framework: 'transformers', task: 'causal-lm', base_model: baseModel, name, ...FAST },
        dataset: { url: host.url('/memorise.zip') },
      }),
    });
  const finishedOn = (c: ReturnType<typeof api>, id: string) => jobEnded(c, id);

  before(async () => {
    process.env['OMP_NUM_THREADS'] = '1';
    const python = await setupPython({ requirementsFile: transformersEngine.python.requirements });
    files = tempDir('trainhook-hub-');
    const model = path.join(files, 'tiny-llama');
    makeTinyLlama(python, model, SAMPLES.map((s) => s.prompt + s.completion));
    modelFiles = fs.readdirSync(model).sort();
    assert.ok(modelFiles.includes('model.safetensors') && modelFiles.includes('config.json'), modelFiles.join(', '));

    cdn = await startFileServer();
    hub = await startFileServer();
    hub.route(`/api/models/${REPO}/revision/main`, (req, res) => {
      if (!authorised(req, res)) return;
      const siblings = [...modelFiles, ...DECOYS].map((rfilename) => ({ rfilename }));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: REPO, sha: SHA, siblings }));
    });
    for (const file of [...modelFiles, ...DECOYS]) {
      const resolve = `/${REPO}/resolve/${SHA}/${file}`;
      if (file === 'model.safetensors') {
        // As the Hub does for large files: a redirect to a CDN of another origin, which must not get the token.
        hub.route(resolve, (req, res) => {
          if (!authorised(req, res)) return;
          res.writeHead(302, { location: cdn.url(`/blobs/${file}`) }).end();
        });
        const serve = serveFile(path.join(model, file));
        cdn.route(`/blobs/${file}`, (req, res, n) => {
          cdnAuth.push(req.headers.authorization);
          serve(req, res, n);
        });
      } else if (modelFiles.includes(file)) {
        const serve = serveFile(path.join(model, file));
        hub.route(resolve, (req, res, n) => authorised(req, res) && serve(req, res, n));
      } else {
        hub.route(resolve, (_req, res) => res.writeHead(200).end('not for a model'));
      }
    }

    const set = path.join(files, 'memorise');
    fs.mkdirSync(set);
    fs.writeFileSync(path.join(set, 'train.jsonl'), jsonl([...SAMPLES, ...SAMPLES]));
    fs.writeFileSync(path.join(set, 'val.jsonl'), jsonl(SAMPLES));
    await zipDirectory(set, path.join(files, 'memorise.zip'));
    host = await startFileServer();
    host.route('/memorise.zip', serveFile(path.join(files, 'memorise.zip')));

    server = await startTestServer({ env: { DEVICES: 'cpu', HF_ENDPOINT: hub.url(''), HF_TOKEN: TOKEN, HF_MODELS_DIR: path.join(files, 'hf-models') } });
    call = api(server.url);
  });
  after(async () => {
    await server?.stop();
    await host?.close();
    await hub?.close();
    await cdn?.close();
  });

  test('invalid Hub ids are refused at submit', async () => {
    for (const bad of ['a/b/c', 'org/../x', 'org/x@', '-org/x', 'org/x.', 'org/x@rev/sub', 'org//x', 'org/x--y', '/abs/path']) {
      const r = await submitTo(call, bad, 'bad-id');
      assert.equal(r.status, 400, `${bad}: ${r.text}`);
      assert.equal(r.json.error.code, 'VALIDATION_ERROR', r.text);
      assert.match(r.text, /Hugging Face Hub model id/, bad);
    }
    assert.equal((await call('/api/v1/jobs')).json.jobs.length, 0);
  });

  test('a Hub id is downloaded once by the service (only what a model needs), trained on, reused, and exported from', async () => {
    const r = await submitTo(call, REPO, 'from-hub');
    assert.equal(r.status, 202, r.text);
    const job = await finishedOn(call, r.json.job_id);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));

    const dir = path.join(server.workdir, 'hf-cache', 'tiny-org', 'tiny-llama@main');
    const got = fs.readdirSync(dir).sort();
    assert.deepEqual(got.filter((f) => f !== '.trainhook-snapshot.json'), modelFiles, 'exactly the model folder, nothing else');
    const record = JSON.parse(fs.readFileSync(path.join(dir, '.trainhook-snapshot.json'), 'utf8'));
    assert.equal(record.sha, SHA);
    assert.equal(record.repo, REPO);
    for (const decoy of DECOYS) assert.equal(hub.hits(`/${REPO}/resolve/${SHA}/${decoy}`), 0, `${decoy} was not fetched`);
    // No temporary folder left beside it.
    assert.deepEqual(fs.readdirSync(path.dirname(dir)), ['tiny-llama@main']);
    // The worker was handed the folder, as a directory base model.
    const spec = JSON.parse(fs.readFileSync(path.join(server.workdir, 'jobs', r.json.job_id, 'worker-spec.json'), 'utf8'));
    assert.equal(spec.model, dir);
    // The token went to the Hub on every request, and not to the CDN it redirected to.
    assert.ok(authSeen.length >= modelFiles.length + 1 && authSeen.every((a) => a === `Bearer ${TOKEN}`), JSON.stringify(authSeen));
    assert.deepEqual(cdnAuth, [undefined]);
    assert.equal(hub.hits(`/api/models/${REPO}/revision/main`), 1);

    // A second job uses the cached snapshot: nothing is asked of the Hub.
    const again = await submitTo(call, REPO, 'from-hub-again');
    assert.equal((await finishedOn(call, again.json.job_id)).status, 'completed');
    assert.equal(hub.hits(`/api/models/${REPO}/revision/main`), 1, 'the model info was not asked again');
    assert.equal(cdn.hits('/blobs/model.safetensors'), 1, 'the weights were not downloaded again');

    // The registered adapter's base model is the snapshot: a merged export finds it there.
    const model = await waitFor('registered model', async () => (await call(`/api/v1/models?job_id=${r.json.job_id}`)).json.models[0], 30_000);
    assert.equal(model.base_model, REPO);
    const merged = await call(`/api/v1/models/${model.model_id}/export`, { method: 'POST', json: { format: 'merged' } });
    assert.equal(merged.status, 201, merged.text);
    assert.equal(merged.json.check.passed, true, JSON.stringify(merged.json.check));
  });

  test('a dead endpoint, a wrong token and HF_HUB_OFFLINE fail the job with MODEL_DOWNLOAD_FAILED naming the repo and the cause', async () => {
    const cases: [string, Record<string, string>, RegExp][] = [
      ['dead endpoint', { HF_ENDPOINT: 'http://127.0.0.1:9' }, /network error: ECONNREFUSED/],
      ['wrong token', { HF_ENDPOINT: hub.url(''), HF_TOKEN: 'hf_wrong' }, /HTTP 401: the repo is private or gated, or HF_TOKEN is not allowed to read it/],
      ['no token', { HF_ENDPOINT: hub.url('') }, /HTTP 401: .*HF_TOKEN is not set/],
      ['offline', { HF_ENDPOINT: hub.url(''), HF_TOKEN: TOKEN, HF_HUB_OFFLINE: 'true' }, /HF_HUB_OFFLINE is set and the snapshot is not in the cache/],
      ['unknown revision', { HF_ENDPOINT: hub.url(''), HF_TOKEN: TOKEN }, /HTTP 404: no model repo tiny-org\/tiny-llama with revision v9/],
    ];
    for (const [what, env, cause] of cases) {
      const other = await startTestServer({ env: { DEVICES: 'cpu', DOWNLOAD_RETRIES: '0', JOB_MAX_ATTEMPTS: '1', ...env } });
      try {
        const c = api(other.url);
        const baseModel = what === 'unknown revision' ? `${REPO}@v9` : REPO;
        const r = await submitTo(c, baseModel, what.replace(/ /g, '-'));
        assert.equal(r.status, 202, r.text);
        const job = await finishedOn(c, r.json.job_id);
        assert.equal(job.status, 'failed', what);
        assert.equal(job.error.code, 'MODEL_DOWNLOAD_FAILED', `${what}: ${JSON.stringify(job.error)}`);
        assert.ok(job.error.message.startsWith(`could not download base model ${baseModel.includes('@') ? baseModel : `${REPO}@main`} from ${env['HF_ENDPOINT']}`), job.error.message);
        assert.match(job.error.message, cause, what);
        assert.ok(!job.error.message.includes('hf_wrong') && !JSON.stringify(job.error).includes(TOKEN), 'no token in the error');
        assert.ok(!fs.existsSync(path.join(other.workdir, 'hf-cache', 'tiny-org', 'tiny-llama@main')), `${what}: nothing cached`);
      } finally {
        await other.stop();
      }
    }
  });
});
