/**
 * The transformers engine (causal-lm, LoRA with peft) end to end through the API, on the CPU and
 * offline: the test builds a tiny random 2-layer LLaMA-style model and its byte-level BPE
 * tokenizer with the engine's own venv (test/engines/transformers/make_tiny_llama.py), places it
 * under the server's HF_MODELS_DIR, and trains it on a JSONL set it can memorise:
 *
 * - a LoRA job completes, its loss falls, its epochs carry train_loss, val_loss, learning_rate and
 *   val_token_accuracy, the best epoch is the lowest val_loss, the signed callbacks verify, and
 *   the adapter (adapter_model.safetensors + adapter_config.json in adapter.zip) downloads by its
 *   link and is registered;
 * - a single data.jsonl of chat messages is split by the server and trains;
 * - a bad line fails the job with DATASET_INVALID naming file and line;
 * - qlora and fp16 on this CPU-only server, Hub ids and paths as base_model are refused at submit.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { setupPython } from '../scripts/setup-python.mjs';
import { transformersEngine } from '../src/engines/transformers/index.js';
import { serveFile, startFileServer, type FileServer } from './helpers/file-server.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { api, startTestServer, tempDir, trainBody, type TestServer } from './helpers/server.js';
import { zipDirectory } from './helpers/synthetic-dataset.js';
import { waitFor } from './helpers/wait.js';

const SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
const verifier = new Webhook(SECRET);
const MAKE_MODEL = fileURLToPath(new URL('./engines/transformers/make_tiny_llama.py', import.meta.url));
const PAIRS = [
  ['cat', 'red'], ['dog', 'blue'], ['fox', 'green'], ['owl', 'yellow'],
  ['bee', 'purple'], ['cow', 'orange'], ['pig', 'black'], ['hen', 'white'],
] as const;
const SAMPLES = PAIRS.map(([animal, colour]) => ({ prompt: `What colour is the ${animal}? `, completion: `The ${animal} is ${colour}.` }));
/** Quick on one CPU thread, and enough for the tiny model to memorise the set. */
const FAST = {
  method: 'lora',
  lora_r: 16,
  lora_alpha: 32,
  lora_dropout: 0,
  target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'lm_head'],
  learning_rate: 0.02,
  batch_size: 8,
  warmup_ratio: 0,
  max_length: 64,
  seed: 1,
};

const jsonl = (rows: unknown[]) => rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n';

describe('transformers (causal-lm, LoRA) through the API', { timeout: 15 * 60_000 }, () => {
  let files: string;
  let host: FileServer;
  let receiver: Receiver;
  let server: TestServer;
  let call: ReturnType<typeof api>;

  const submit = (modelConfig: Record<string, unknown>, zip: string, hook?: string) =>
    call('/api/v1/train', {
      method: 'POST',
      json: trainBody({
        model_config: { framework: 'transformers', task: 'causal-lm', base_model: 'tiny-llama', ...modelConfig },
        dataset: { url: host.url(`/${zip}`) },
        ...(hook ? { callback_url: `${receiver.url}/${hook}`, callback_secret: SECRET } : {}),
      }),
    });
  const finished = (id: string) =>
    waitFor(`job ${id}`, async () => {
      const j = await call(`/api/v1/jobs/${id}`);
      return ['completed', 'failed', 'cancelled'].includes(j.json.status) && j.json;
    }, 300_000);

  before(async () => {
    // Two torch threads on a busy 2-core machine spin against each other (the worker inherits this).
    process.env['OMP_NUM_THREADS'] = '1';
    const python = await setupPython({ requirementsFile: transformersEngine.python.requirements });
    files = tempDir('trainhook-transformers-');
    const models = path.join(files, 'hf-models');
    fs.mkdirSync(models, { recursive: true });
    const texts = path.join(files, 'texts.json');
    fs.writeFileSync(texts, JSON.stringify(SAMPLES.map((s) => s.prompt + s.completion)));
    const built = spawnSync(python, [MAKE_MODEL, path.join(models, 'tiny-llama'), texts], { encoding: 'utf8', env: { ...process.env } });
    assert.equal(built.status, 0, built.stderr);

    const write = (name: string, contents: Record<string, string>) => {
      const dir = path.join(files, name);
      fs.mkdirSync(dir, { recursive: true });
      for (const [file, text] of Object.entries(contents)) fs.writeFileSync(path.join(dir, file), text);
    };
    write('memorise', { 'train.jsonl': jsonl([...SAMPLES, ...SAMPLES, ...SAMPLES, ...SAMPLES]), 'val.jsonl': jsonl(SAMPLES) });
    const chats = Array.from({ length: 20 }, (_, i) => {
      const [animal, colour] = PAIRS[i % PAIRS.length]!;
      return { messages: [{ role: 'system', content: 'Answer briefly.' }, { role: 'user', content: `Colour of the ${animal}?` }, { role: 'assistant', content: colour }] };
    });
    write('chat', { 'data.jsonl': jsonl(chats) });
    write('bad', { 'train.jsonl': jsonl([SAMPLES[0], SAMPLES[1], { prompt: 'no completion here' }, '{not json']), 'val.jsonl': jsonl([SAMPLES[2]]) });
    host = await startFileServer();
    for (const name of ['memorise', 'chat', 'bad']) {
      await zipDirectory(path.join(files, name), path.join(files, `${name}.zip`));
      host.route(`/${name}.zip`, serveFile(path.join(files, `${name}.zip`)));
    }
    receiver = await startReceiver();
    server = await startTestServer({ env: { DEVICES: 'cpu', HF_MODELS_DIR: models } });
    call = api(server.url);
  });
  after(async () => {
    await server?.stop();
    await receiver?.close();
    await host?.close();
  });

  test('GET /api/v1/engines lists transformers: causal-lm on jsonl, best by the lowest val_loss', async () => {
    const r = await call('/api/v1/engines');
    assert.equal(r.status, 200, r.text);
    const e = r.json.engines.find((x: any) => x.name === 'transformers');
    assert.ok(e, JSON.stringify(r.json.engines.map((x: any) => x.name)));
    assert.equal(e.license, 'Apache-2.0');
    assert.equal(e.version, '5.24.0');
    assert.deepEqual(e.tasks.map((t: any) => t.name), ['causal-lm']);
    assert.deepEqual(e.tasks[0].dataset_formats, ['jsonl']);
    assert.deepEqual(e.tasks[0].metrics.best, { key: 'val_loss', goal: 'min' });
  });

  test('requests this server cannot train are refused at submit, with the reason', async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ name: 'q', method: 'qlora' }, 'QLORA_NEEDS_CUDA', /CUDA/],
      [{ name: 'h', mixed_precision: 'fp16' }, 'FP16_NEEDS_CUDA', /CUDA/],
      [{ name: 'hub', base_model: 'meta-llama/Llama-3.2-1B' }, 'VALIDATION_ERROR', /HF_MODELS_DIR/],
      [{ name: 'up', base_model: '../tiny-llama' }, 'VALIDATION_ERROR', /HF_MODELS_DIR/],
      [{ name: 'dots', base_model: '..' }, 'VALIDATION_ERROR', /HF_MODELS_DIR/],
      [{ name: 'abs', base_model: '/etc' }, 'VALIDATION_ERROR', /HF_MODELS_DIR/],
      [{ name: 'k', lora_rank: 8 }, 'VALIDATION_ERROR', /lora_rank/],
    ];
    for (const [mc, code, message] of cases) {
      const r = await submit(mc, 'memorise.zip');
      assert.equal(r.status, 400, `${JSON.stringify(mc)}: ${r.text}`);
      assert.equal(r.json.error.code, code, r.text);
      assert.match(r.text, message, JSON.stringify(mc));
    }
    assert.equal((await call('/api/v1/jobs')).json.jobs.length, 0, 'nothing was queued');
  });

  test('its presets: the schema\'s defaults, a base model folder to name, the User mode\'s keys', async () => {
    const user = await call('/api/v1/config/default?framework=transformers&task=causal-lm&mode=user');
    assert.equal(user.status, 200, user.text);
    assert.deepEqual(user.json.editable, ['base_model', 'method', 'epochs', 'learning_rate', 'batch_size', 'max_length']);
    const dev = await call('/api/v1/config/default?framework=transformers&task=causal-lm&mode=developer');
    assert.equal(dev.status, 200, dev.text);
    assert.equal(dev.json.config.method, 'lora');
    assert.equal(dev.json.config.lora_r, 8);
    assert.equal(dev.json.config.mixed_precision, 'no');
  });

  test('a base model folder that is not on the server fails the job, saying where to place it', async () => {
    const r = await submit({ name: 'missing', base_model: 'not-here', epochs: 1 }, 'memorise.zip');
    assert.equal(r.status, 202, r.text);
    const job = await finished(r.json.job_id);
    assert.equal(job.status, 'failed');
    assert.equal(job.error.code, 'MODEL_DOWNLOAD_FAILED', JSON.stringify(job.error));
    assert.ok(job.error.message.includes(path.join(files, 'hf-models', 'not-here')), job.error.message);
  });

  test('LoRA on a memorisable set: loss falls, metrics stored, callbacks verify, the adapter downloads', async () => {
    const started = Date.now();
    const r = await submit({ name: 'lora-memorise', epochs: 12, ...FAST }, 'memorise.zip', 'lora');
    assert.equal(r.status, 202, r.text);
    const id = r.json.job_id;
    const job = await finished(id);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    const seconds = (Date.now() - started) / 1000;
    assert.equal(job.dataset_info.format, 'jsonl');
    assert.deepEqual(job.dataset_info.samples_per_split, { train: 32, val: 8 });

    const epochs = (await call(`/api/v1/jobs/${id}/metrics`)).json.epochs;
    assert.deepEqual(epochs.map((e: any) => e.epoch), Array.from({ length: 12 }, (_, i) => i + 1));
    for (const e of epochs) {
      for (const key of ['train_loss', 'val_loss', 'val_token_accuracy', 'learning_rate']) {
        assert.equal(typeof e.metrics[key], 'number', `epoch ${e.epoch}: ${key} in ${JSON.stringify(e.metrics)}`);
      }
    }
    const first = epochs[0].metrics.train_loss, last = epochs.at(-1).metrics.train_loss;
    console.log(`transformers LoRA: train_loss ${first.toFixed(3)} → ${last.toFixed(3)} over ${epochs.length} epochs, ${seconds.toFixed(1)} s submit→completed`);
    assert.ok(last < 0.6 * first, `train_loss fell from ${first} to ${last}`);
    const lowest = epochs.reduce((a: any, b: any) => (b.metrics.val_loss < a.metrics.val_loss ? b : a));
    assert.equal(job.metrics.best.epoch, lowest.epoch, JSON.stringify(job.metrics.best));
    assert.equal(job.metrics.best.val_loss, lowest.metrics.val_loss);

    await receiver.waitFor((all) => all.some((x) => x.path === '/lora' && x.json?.type === 'training_completed'), 60_000, 'completion');
    const mine = receiver.received.filter((x) => x.path === '/lora');
    for (const hook of mine) assert.deepEqual(verifier.verify(hook.body, hook.headers), hook.json);
    const done = mine.find((x) => x.json?.type === 'training_completed')!;
    assert.equal(done.json.model.format, 'huggingface-zip');
    assert.equal(done.json.final_metrics.best_epoch, lowest.epoch);
    assert.equal(typeof done.json.final_metrics.val_loss, 'number');
    assert.ok(done.json.artifacts.adapter, JSON.stringify(done.json.artifacts));
    assert.ok(done.json.artifacts.metrics_csv, JSON.stringify(done.json.artifacts));
    assert.ok(mine.some((x) => x.json?.type === 'epoch_completed' || x.json?.type === 'training_progress'), 'progress callbacks');

    // The model link of the callback downloads the adapter: a ZIP of peft's save_pretrained.
    const res = await fetch(done.json.model.download_url);
    assert.equal(res.status, 200);
    const zip = Buffer.from(await res.arrayBuffer());
    assert.equal(zip.subarray(0, 4).toString('latin1'), 'PK\u0003\u0004');
    for (const name of ['adapter_model.safetensors', 'adapter_config.json']) assert.ok(zip.includes(name), `${name} in adapter.zip`);
    const viaArtifact = await fetch(done.json.artifacts.adapter);
    assert.equal(viaArtifact.status, 200);
    assert.ok(Buffer.from(await viaArtifact.arrayBuffer()).equals(zip), 'the adapter artifact is the model');

    const model = await waitFor('registered model', async () => {
      const found = (await call(`/api/v1/models?job_id=${id}`)).json.models;
      return found.length > 0 && found[0];
    }, 30_000);
    assert.equal(model.framework, 'transformers');
    assert.equal(model.task, 'causal-lm');

    const page = await call(`/jobs/${id}`);
    assert.equal(page.status, 200);
    assert.match(page.text, /Train and validation loss by epoch/, 'the status page charts the losses');
  });

  test('method full trains every weight and delivers model.zip with its tokenizer', async () => {
    const { target_modules: _t, ...full } = FAST;
    const r = await submit({ name: 'full', epochs: 2, ...full, method: 'full', learning_rate: 0.001 }, 'memorise.zip');
    assert.equal(r.status, 202, r.text);
    const job = await finished(r.json.job_id);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    const link = await call(`/api/v1/jobs/${r.json.job_id}/model`);
    assert.equal(link.status, 200, link.text);
    const zip = Buffer.from(await (await fetch(link.json.url)).arrayBuffer());
    for (const name of ['model.safetensors', 'config.json', 'tokenizer.json']) assert.ok(zip.includes(name), `${name} in model.zip`);
    assert.ok(!zip.includes('adapter_config.json'));
  });

  test('cancel stops the worker at a step and keeps last.pt; retry resumes from it and completes', async () => {
    const r = await submit({ name: 'cancel-resume', epochs: 60, ...FAST, learning_rate: 0.002 }, 'memorise.zip');
    assert.equal(r.status, 202, r.text);
    const id = r.json.job_id;
    await waitFor('epoch 3', async () => (await call(`/api/v1/jobs/${id}`)).json.current_epoch >= 3, 120_000);
    assert.equal((await call(`/api/v1/jobs/${id}`, { method: 'DELETE' })).status, 200);
    const retried = await waitFor('the retry to be accepted', async () => {
      const again = await call(`/api/v1/jobs/${id}/retry`, { method: 'POST' });
      return !(again.status === 409 && again.json.error.code === 'JOB_STOPPING') && again;
    }, 60_000);
    assert.equal(retried.status, 202, retried.text);
    const job = await finished(id);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    assert.deepEqual(job.attempts.map((a: { outcome: string }) => a.outcome), ['cancelled', 'completed']);
    const log = (await call(`/api/v1/jobs/${id}/logs/download`)).text;
    const resumed = /resuming from \S+last\.pt: epoch (\d+), step (\d+)/.exec(log);
    assert.ok(resumed, 'the second attempt resumed from last.pt');
    assert.ok(Number(resumed[1]) >= 3 && Number(resumed[2]) > 0, resumed[0]);
    // Every epoch once: the resumed worker continued, it did not start over or resend recorded ones.
    const epochs = (await call(`/api/v1/jobs/${id}/metrics`)).json.epochs;
    assert.deepEqual(epochs.map((e: any) => e.epoch), Array.from({ length: 60 }, (_, i) => i + 1));
  });

  test('a single data.jsonl of chat messages, uploaded, is split by the server and trains by id', async () => {
    const zip = fs.readFileSync(path.join(files, 'chat.zip'));
    const up = await call('/api/v1/datasets?name=chat&framework=transformers&task=causal-lm', {
      method: 'POST',
      body: new Uint8Array(zip),
      headers: { 'content-type': 'application/zip' },
    });
    assert.equal(up.status, 201, up.text);
    assert.equal(up.json.format, 'jsonl');
    assert.deepEqual(up.json.info.samples_per_split, { train: 18, val: 2 });
    const r = await call('/api/v1/train', {
      method: 'POST',
      json: trainBody({
        model_config: { framework: 'transformers', task: 'causal-lm', base_model: 'tiny-llama', name: 'chat', epochs: 2, ...FAST },
        dataset: { id: up.json.dataset_id, format: 'jsonl' },
      }),
    });
    assert.equal(r.status, 202, r.text);
    const job = await finished(r.json.job_id);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    assert.deepEqual(job.dataset_info.samples_per_split, { train: 18, val: 2 });
    assert.equal(job.dataset_info.split.source, 'data.jsonl');
  });

  test('a bad line fails the job with DATASET_INVALID naming the file and the line', async () => {
    const r = await submit({ name: 'bad', epochs: 1, ...FAST }, 'bad.zip');
    assert.equal(r.status, 202, r.text);
    const job = await finished(r.json.job_id);
    assert.equal(job.status, 'failed');
    assert.equal(job.error.code, 'DATASET_INVALID', JSON.stringify(job.error));
    assert.match(job.error.message, /2 problems/);
    assert.match(job.error.message, /train\.jsonl:3: needs "prompt" and "completion"/);
    const problems = job.error.details.problems;
    assert.deepEqual(problems.map((p: any) => [p.file, p.line]), [['train.jsonl', 3], ['train.jsonl', 4]]);
    assert.match(problems[1].message, /not valid JSON/);
  });
});
