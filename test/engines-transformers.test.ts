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
 * - qlora and fp16 on this CPU-only server, paths and malformed Hub ids as base_model are refused
 *   at submit (Hub ids themselves: engines-transformers-hub.test.ts);
 * - the registered LoRA model exports to adapter, merged and int8 ZIPs (model card, inference.py,
 *   requirements.txt), whose inference.py generates offline with the venv's python; the merged
 *   model's logits match the adapter on its base (the export's check); POST …/generate answers
 *   text, is deterministic with a seed, and greedy decoding gives back a memorised completion;
 *   a model trained in full exports merged and int8, not adapter.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { PNG } from 'pngjs';
import { Webhook } from 'standardwebhooks';
import { setupPython } from '../scripts/setup-python.mjs';
import { transformersEngine } from '../src/engines/transformers/index.js';
import { serveFile, startFileServer, type FileServer } from './helpers/file-server.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { api, startTestServer, tempDir, trainBody, type TestServer } from './helpers/server.js';
import { makeTinyLlama } from './helpers/tiny-models.js';
import { zipDirectory } from './helpers/synthetic-dataset.js';
import { jobEnded, retryWhenStopped, waitFor } from './helpers/wait.js';

const execFileAsync = promisify(execFile);
const SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
const verifier = new Webhook(SECRET);
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
  let python: string;
  /** The registered models of the LoRA job and of the full job (set by their tests). */
  let loraModel: any;
  let fullModel: any;

  const submit = (modelConfig: Record<string, unknown>, zip: string, hook?: string) =>
    call('/api/v1/train', {
      method: 'POST',
      json: trainBody({
        model_config: { framework: 'transformers', task: 'causal-lm', base_model: 'tiny-llama', ...modelConfig },
        dataset: { url: host.url(`/${zip}`) },
        ...(hook ? { callback_url: `${receiver.url}/${hook}`, callback_secret: SECRET } : {}),
      }),
    });
  const finished = (id: string) => jobEnded(call, id);

  before(async () => {
    // Two torch threads on a busy 2-core machine spin against each other (the worker inherits this).
    process.env['OMP_NUM_THREADS'] = '1';
    python = await setupPython({ requirementsFile: transformersEngine.python.requirements });
    files = tempDir('trainhook-transformers-');
    const models = path.join(files, 'hf-models');
    fs.mkdirSync(models, { recursive: true });
    makeTinyLlama(python, path.join(models, 'tiny-llama'), SAMPLES.map((s) => s.prompt + s.completion));

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
    assert.deepEqual(e.tasks.map((t: any) => t.name), ['causal-lm', 'vision-lm']);
    assert.deepEqual(e.tasks[0].dataset_formats, ['jsonl']);
    assert.deepEqual(e.tasks[0].metrics.best, { key: 'val_loss', goal: 'min' });
  });

  test('requests this server cannot train are refused at submit, with the reason', async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ name: 'q', method: 'qlora' }, 'QLORA_NEEDS_CUDA', /CUDA/],
      [{ name: 'h', mixed_precision: 'fp16' }, 'FP16_NEEDS_CUDA', /CUDA/],
      [{ name: 'hub', base_model: 'meta-llama/Llama/3.2-1B' }, 'VALIDATION_ERROR', /HF_MODELS_DIR/],
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
    loraModel = model;

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
    fullModel = await waitFor('registered full model', async () => {
      const found = (await call(`/api/v1/models?job_id=${r.json.job_id}`)).json.models;
      return found.length > 0 && found[0];
    }, 30_000);
  });

  /**
   * Runs the deployment package's inference.py with the venv's python, offline, in its unzipped
   * folder (asynchronously: the server runs in this process and must keep answering).
   */
  const runPackage = async (dir: string, args: string[]) => {
    const env = { ...process.env, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1', OMP_NUM_THREADS: '1' };
    const out = await execFileAsync(python, ['inference.py', ...args, '--json'], { cwd: dir, encoding: 'utf8', env, timeout: 120_000 });
    return JSON.parse(out.stdout.trim().split('\n').at(-1)!) as { text: string; tokens: number; token_ids: number[] };
  };
  const unzip = (zip: string, dir: string) => execFileAsync(python, ['-m', 'zipfile', '-e', zip, dir], { encoding: 'utf8' });
  const CAT = SAMPLES[0]!;

  test('the LoRA model exports adapter, merged and int8: model card, a package whose inference.py generates, merged logits = adapter on base', async () => {
    assert.ok(loraModel, 'the LoRA test registered a model');
    const archiveSha = crypto.createHash('sha256').update(fs.readFileSync(path.join(files, 'memorise.zip'))).digest('hex');
    const texts: Record<string, string> = {};
    for (const format of ['adapter', 'merged', 'int8']) {
      const started = Date.now();
      const r = await call(`/api/v1/models/${loraModel.model_id}/export`, { method: 'POST', json: { format } });
      assert.equal(r.status, 201, r.text);
      assert.equal(r.json.format, format);
      assert.equal(r.json.check.passed, true, JSON.stringify(r.json.check));
      assert.equal(r.json.check.prompt, SAMPLES[0]!.prompt, 'the check ran on the first validation prompt');
      console.log(`transformers export ${format}: ${r.json.size_bytes} bytes in ${Date.now() - started} ms, max |Δlogit| vs adapter on base ${r.json.check.max_abs_logit_diff}, argmax agreement ${r.json.check.argmax_agreement}`);
      if (format === 'merged') {
        assert.equal(r.json.check.compared_to, 'adapter on its base model');
        assert.ok(r.json.check.max_abs_logit_diff <= 1e-3, `merged logits within 1e-3 of the adapter on its base: ${r.json.check.max_abs_logit_diff}`);
      }
      // Asked again: the same export, not a new one.
      const again = await call(`/api/v1/models/${loraModel.model_id}/export`, { method: 'POST', json: { format } });
      assert.equal(again.status, 200, again.text);
      assert.equal(again.json.sha256, r.json.sha256);

      const res = await fetch(r.json.download.url);
      assert.equal(res.status, 200);
      const dir = path.join(files, `export-${format}`);
      fs.writeFileSync(`${dir}.zip`, Buffer.from(await res.arrayBuffer()));
      await unzip(`${dir}.zip`, dir);
      for (const f of ['README.md', 'inference.py', 'requirements.txt']) assert.ok(fs.existsSync(path.join(dir, f)), `${f} in the ${format} ZIP`);
      const weights = { adapter: ['adapter_model.safetensors', 'adapter_config.json'], merged: ['model.safetensors', 'config.json'], int8: ['model_int8.pt', 'config.json'] }[format]!;
      for (const f of [...weights, 'tokenizer.json']) assert.ok(fs.existsSync(path.join(dir, 'model', f)), `model/${f} in the ${format} ZIP`);
      if (format !== 'adapter') assert.ok(!fs.existsSync(path.join(dir, 'model', 'adapter_config.json')), 'no adapter left in a merged model');
      assert.match(fs.readFileSync(path.join(dir, 'requirements.txt'), 'utf8'), /^transformers==5\.24\.0$/m);

      const card = fs.readFileSync(path.join(dir, 'README.md'), 'utf8');
      assert.match(card, /Base model: `tiny-llama`/);
      assert.match(card, /- Name: memorise\.zip/);
      assert.ok(card.includes(`- sha256: ${archiveSha}`), 'the dataset archive sha256');
      assert.match(card, /- Samples: train: 32, val: 8/);
      assert.match(card, /"lora_r": 16/);
      assert.match(card, /"learning_rate": 0\.02/);
      const cardLoss = Number(/^\| val_loss \| (\S+) \|$/m.exec(card)?.[1]);
      const finalLoss = loraModel.metrics.val_loss;
      assert.ok(Math.abs(cardLoss - finalLoss) <= 1e-5 * Math.abs(finalLoss), `the card's final val_loss ${cardLoss} is the model's ${finalLoss}`);
      assert.match(card, /## License[\s\S]*base model `tiny-llama`/);
      if (format === 'int8') assert.match(card, /quantize_dynamic[\s\S]*load_state_dict/, 'the card says how to load the int8 model');

      const out = await runPackage(dir, [CAT.prompt, '--max-new-tokens', '12', ...(format === 'adapter' ? ['--base', path.join(files, 'hf-models', 'tiny-llama')] : [])]);
      assert.ok(out.tokens > 0 && out.text.length > 0, `${format}: ${JSON.stringify(out)}`);
      texts[format] = out.text;
    }
    console.log(`transformers packages generate: ${JSON.stringify(texts)}`);
    // Greedy decoding on logits within 1e-3 of each other: the merged model says what the adapter says.
    assert.equal(texts['merged'], texts['adapter']);
  });

  test('POST /models/{id}/generate: text in a worker, deterministic with a seed, a memorised completion by greedy decoding', async () => {
    // The LoRA test's 12 epochs make the loss fall, not memorise (val_token_accuracy ≈ 0.3): this
    // job trains until it has (150 epochs at 5e-3 reach val_token_accuracy 1.0 and val_loss ≈ 1e-3).
    let started = Date.now();
    const r = await submit({ name: 'memorised', ...FAST, epochs: 150, learning_rate: 0.005 }, 'memorise.zip');
    assert.equal(r.status, 202, r.text);
    const job = await finished(r.json.job_id);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    const memorised = await waitFor('registered memorised model', async () => {
      const found = (await call(`/api/v1/models?job_id=${r.json.job_id}`)).json.models;
      return found.length > 0 && found[0];
    }, 30_000);
    const accuracy = memorised.metrics.val_token_accuracy;
    console.log(`transformers memorising job: ${Date.now() - started} ms, val_loss ${memorised.metrics.val_loss}, val_token_accuracy ${accuracy}`);
    assert.equal(accuracy, 1, 'the model predicts every target token of the set (greedy, teacher-forced)');

    const url = `/api/v1/models/${memorised.model_id}/generate`;
    started = Date.now();
    const greedy = await call(url, { method: 'POST', json: { prompt: CAT.prompt, max_new_tokens: 16 } });
    assert.equal(greedy.status, 200, greedy.text);
    console.log(`transformers generate: first request ${Date.now() - started} ms (loads the model): ${JSON.stringify(greedy.json.text)}`);
    assert.equal(greedy.json.model_id, memorised.model_id);
    assert.equal(greedy.json.tokens, greedy.json.token_ids.length);
    assert.ok(greedy.json.tokens >= 1 && greedy.json.tokens <= 16);
    // val_token_accuracy 1 is teacher-forced; greedy decoding feeds back its own tokens: each
    // prompt's greedy continuation is its completion, then EOS.
    assert.equal(greedy.json.text, CAT.completion);
    assert.equal(greedy.json.finish_reason, 'eos');
    for (const s of SAMPLES.slice(1, 4)) {
      const r = await call(url, { method: 'POST', json: { prompt: s.prompt, max_new_tokens: 16 } });
      assert.equal(r.json.text, s.completion, s.prompt);
    }
    // The deployment package of this model generates the same text as the API (same code, same weights).
    const merged = await call(`/api/v1/models/${memorised.model_id}/export`, { method: 'POST', json: { format: 'merged' } });
    assert.equal(merged.status, 201, merged.text);
    const dir = path.join(files, 'export-memorised-merged');
    fs.writeFileSync(`${dir}.zip`, Buffer.from(await (await fetch(merged.json.download.url)).arrayBuffer()));
    await unzip(`${dir}.zip`, dir);
    assert.equal((await runPackage(dir, [CAT.prompt, '--max-new-tokens', '16'])).text, CAT.completion);

    started = Date.now();
    const sample = { prompt: 'What colour is the ', max_new_tokens: 12, do_sample: true, temperature: 1.5, seed: 7 };
    const a = await call(url, { method: 'POST', json: sample });
    const b = await call(url, { method: 'POST', json: sample });
    assert.equal(a.status, 200, a.text);
    assert.deepEqual(b.json.token_ids, a.json.token_ids, 'the same seed samples the same tokens');
    assert.equal(b.json.text, a.json.text);
    assert.equal(a.json.seed, 7);
    console.log(`transformers generate: two sampled requests ${Date.now() - started} ms: ${JSON.stringify(a.json.text)}`);

    for (const [body, code] of [
      [{}, 'VALIDATION_ERROR'],
      [{ prompt: '' }, 'VALIDATION_ERROR'],
      [{ prompt: 'x', max_new_tokens: 513 }, 'VALIDATION_ERROR'],
      [{ prompt: 'x', max_new_tokens: 0 }, 'VALIDATION_ERROR'],
      [{ prompt: 'x', temperature: 0 }, 'VALIDATION_ERROR'],
      [{ prompt: 'x', top_k: 3 }, 'VALIDATION_ERROR'],
    ] as const) {
      const r = await call(url, { method: 'POST', json: body });
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
      assert.equal(r.json.error.code, code, r.text);
    }
    const unknown = await call(`/api/v1/models/${crypto.randomUUID()}/generate`, { method: 'POST', json: { prompt: 'x' } });
    assert.equal(unknown.status, 404, unknown.text);
    assert.equal(unknown.json.error.code, 'MODEL_NOT_FOUND');
    // The image prediction route refuses a text model, naming the route to use.
    const png = new PNG({ width: 8, height: 8 });
    png.data.fill(200);
    const form = new FormData();
    form.append('images', new Blob([new Uint8Array(PNG.sync.write(png))]), 'grey.png');
    const predict = await call(`/api/v1/models/${loraModel.model_id}/predict`, { method: 'POST', body: form });
    assert.equal(predict.status, 409, predict.text);
    assert.equal(predict.json.error.code, 'PREDICT_UNSUPPORTED');
    assert.match(predict.json.error.message, /generate/);

    // An adapter needs its base model folder: gone from the server, an export is a conflict
    // with what the server holds (409 naming the folder), not a server error.
    const base = path.join(files, 'hf-models', 'tiny-llama');
    fs.renameSync(base, `${base}.away`);
    try {
      const r = await call(`/api/v1/models/${memorised.model_id}/export`, { method: 'POST', json: { format: 'adapter' } });
      assert.equal(r.status, 409, r.text);
      assert.equal(r.json.error.code, 'MODEL_DOWNLOAD_FAILED');
      assert.match(r.json.error.message, /tiny-llama/);
    } finally {
      fs.renameSync(`${base}.away`, base);
    }
  });

  test('a model trained in full exports merged (and int8), not adapter', async () => {
    assert.ok(fullModel, 'the full test registered a model');
    const adapter = await call(`/api/v1/models/${fullModel.model_id}/export`, { method: 'POST', json: { format: 'adapter' } });
    assert.equal(adapter.status, 409, adapter.text);
    assert.equal(adapter.json.error.code, 'EXPORT_UNSUPPORTED');
    assert.match(adapter.json.error.message, /merged, int8/);
    const merged = await call(`/api/v1/models/${fullModel.model_id}/export`, { method: 'POST', json: { format: 'merged' } });
    assert.equal(merged.status, 201, merged.text);
    assert.equal(merged.json.check.passed, true, JSON.stringify(merged.json.check));
    assert.equal(merged.json.check.compared_to, 'the fully trained model');
    const dir = path.join(files, 'export-full-merged');
    fs.writeFileSync(`${dir}.zip`, Buffer.from(await (await fetch(merged.json.download.url)).arrayBuffer()));
    await unzip(`${dir}.zip`, dir);
    assert.match(fs.readFileSync(path.join(dir, 'README.md'), 'utf8'), /trained with method `full`/);
    const out = await runPackage(dir, [CAT.prompt, '--max-new-tokens', '8']);
    assert.ok(out.tokens > 0, JSON.stringify(out));
  });

  test('cancel stops the worker at a step and keeps last.pt; retry resumes from it and completes', async () => {
    const r = await submit({ name: 'cancel-resume', epochs: 60, ...FAST, learning_rate: 0.002 }, 'memorise.zip');
    assert.equal(r.status, 202, r.text);
    const id = r.json.job_id;
    await waitFor('epoch 3', async () => (await call(`/api/v1/jobs/${id}`)).json.current_epoch >= 3, 120_000);
    assert.equal((await call(`/api/v1/jobs/${id}`, { method: 'DELETE' })).status, 200);
    const retried = await retryWhenStopped(call, id);
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
