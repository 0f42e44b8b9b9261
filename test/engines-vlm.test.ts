/**
 * The transformers engine's vision-language task (vision-lm: image + text → text) end to end
 * through the API, on the CPU and offline, on PGlite and (with TEST_DATABASE_URL) PostgreSQL: the
 * test builds a tiny random LLaVA (a 2-layer CLIP vision tower on 32 px images, a 2-layer LLaMA,
 * a byte-level BPE tokenizer with an <image> token, a CLIP image processor and a LlavaProcessor:
 * test/engines/transformers/make_tiny_llava.py) and a tiny LLaMA with the engine's own venv, places
 * them under HF_MODELS_DIR, and trains on a set it can memorise: four plain-coloured images, each
 * asked the same question, answered with its colour (so the answer depends on the image alone).
 *
 * - method full trains every weight but the vision tower's and delivers model.zip with the processor;
 * - a LoRA job completes, its loss falls and the model memorises the set (val_token_accuracy 1),
 *   its epochs carry the causal-lm metrics, the best epoch is the lowest val_loss, the signed
 *   callbacks verify, the status page charts the losses, and the model is registered as vision-lm;
 * - a cancelled job resumes from last.pt on retry and completes, every epoch recorded once;
 * - the training loop is the causal-lm one: with save_steps a worker killed mid-epoch (SIGKILL) is
 *   retried and resumes from the last save_steps step, and the run's TensorBoard events are an
 *   artifact holding every optimizer step once;
 * - lines whose image is missing, outside the archive (.., absolute), not an image, or absent fail
 *   the job with DATASET_INVALID naming file and line;
 * - a causal-LM folder for vision-lm, and a vision-language folder for causal-lm, are refused at
 *   submit (400 BASE_MODEL_TASK_MISMATCH) naming the task to use; a folder that arrives only after
 *   submit fails the job in the worker (MODEL_DOWNLOAD_FAILED, reason BASE_MODEL_TASK_MISMATCH);
 * - the model exports (merged; on the first backend adapter and int8 too): the model card says
 *   vision-lm, the package's inference.py answers `--image … --prompt …` with the memorised colour;
 * - POST /models/{id}/generate with a base64 image answers each image's colour; without an image
 *   it is 400 IMAGE_REQUIRED, with bytes that are no image 422 INVALID_IMAGE; a text model given
 *   an image is 400 IMAGE_UNSUPPORTED.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { PNG } from 'pngjs';
import { Webhook } from 'standardwebhooks';
import { setupPython } from '../scripts/setup-python.mjs';
import { transformersEngine } from '../src/engines/transformers/index.js';
import { backends } from './helpers/database.js';
import { serveFile, startFileServer, type FileServer } from './helpers/file-server.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { api, startTestServer, tempDir, trainBody, type TestServer } from './helpers/server.js';
import { zipDirectory } from './helpers/synthetic-dataset.js';
import { readScalars } from './helpers/tfevents.js';
import { jobEnded, retryWhenStopped, waitFor } from './helpers/wait.js';
import { workerPid } from './helpers/worker-pid.js';

const execFileAsync = promisify(execFile);
const SECRET = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;
const verifier = new Webhook(SECRET);
const HELPERS = fileURLToPath(new URL('./engines/transformers/', import.meta.url));
const COLOURS: Record<string, [number, number, number]> = { red: [220, 30, 30], blue: [30, 30, 220], green: [30, 200, 30], yellow: [230, 230, 20] };
const QUESTION = 'What colour is the image?';
const SAMPLES = Object.keys(COLOURS).map((c) => ({ image: `images/${c}.png`, prompt: QUESTION, completion: `It is ${c}.`, meta: { template: 'colour' } }));
/** Memorises the set in about 5 s on one CPU thread (measured: val_token_accuracy 1.0 by epoch 20). */
const FAST = {
  method: 'lora',
  lora_r: 16,
  lora_alpha: 32,
  lora_dropout: 0,
  target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'lm_head'],
  learning_rate: 0.005,
  batch_size: 8,
  warmup_ratio: 0,
  max_length: 64,
  seed: 1,
  epochs: 40,
};

const jsonl = (rows: unknown[]) => rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n';
const png = ([r, g, b]: [number, number, number], size = 32) => {
  const img = new PNG({ width: size, height: size });
  for (let i = 0; i < size * size; i++) img.data.set([r, g, b, 255], i * 4);
  return PNG.sync.write(img);
};

/** The models, datasets and Python, built once for every backend. */
let shared: Promise<{ files: string; models: string; python: string; host: FileServer }> | undefined;
function prepare() {
  shared ??= (async () => {
    process.env['OMP_NUM_THREADS'] = '1';
    const python = await setupPython({ requirementsFile: transformersEngine.python.requirements });
    const files = tempDir('trainhook-vlm-');
    const models = path.join(files, 'hf-models');
    fs.mkdirSync(models, { recursive: true });
    const texts = path.join(files, 'texts.json');
    fs.writeFileSync(texts, JSON.stringify(SAMPLES.map((s) => `${s.prompt} ${s.completion}`)));
    for (const [script, name] of [['make_tiny_llava.py', 'tiny-llava'], ['make_tiny_llama.py', 'tiny-llama']]) {
      const built = spawnSync(python, [path.join(HELPERS, script!), path.join(models, name!), texts], { encoding: 'utf8', env: { ...process.env } });
      assert.equal(built.status, 0, built.stderr);
    }
    const write = (name: string, contents: Record<string, string | Buffer>) => {
      for (const [file, data] of Object.entries(contents)) {
        fs.mkdirSync(path.dirname(path.join(files, name, file)), { recursive: true });
        fs.writeFileSync(path.join(files, name, file), data);
      }
    };
    const images = Object.fromEntries(Object.entries(COLOURS).map(([c, rgb]) => [`images/${c}.png`, png(rgb)]));
    // The converter's LLaVA conversation file rides along; the engine ignores it.
    const llava = SAMPLES.map((s, i) => ({ id: String(i), image: s.image, conversations: [{ from: 'human', value: `<image>\n${s.prompt}` }, { from: 'gpt', value: s.completion }] }));
    write('colours', { ...images, 'train.jsonl': jsonl([...SAMPLES, ...SAMPLES, ...SAMPLES, ...SAMPLES]), 'val.jsonl': jsonl(SAMPLES), 'llava.json': JSON.stringify(llava) });
    // 64 lines at batch 1: 64 optimizer steps an epoch, for save_steps to land inside epochs.
    write('colours-long', { ...images, 'train.jsonl': jsonl(Array.from({ length: 16 }, () => SAMPLES).flat()), 'val.jsonl': jsonl(SAMPLES) });
    write('bad', {
      ...images,
      'images/notes.png': 'not an image at all',
      'train.jsonl': jsonl([
        SAMPLES[0],
        { ...SAMPLES[1], image: 'images/missing.png' },
        { ...SAMPLES[1], image: '../outside.png' },
        { ...SAMPLES[1], image: '/etc/passwd' },
        { ...SAMPLES[1], image: 'images/notes.png' },
        { prompt: QUESTION, completion: 'It is red.' },
      ]),
      'val.jsonl': jsonl([SAMPLES[2]]),
    });
    const host = await startFileServer();
    for (const name of ['colours', 'colours-long', 'bad']) {
      await zipDirectory(path.join(files, name), path.join(files, `${name}.zip`));
      host.route(`/${name}.zip`, serveFile(path.join(files, `${name}.zip`)));
    }
    return { files, models, python, host };
  })();
  return shared;
}
after(async () => (await shared)?.host.close());

for (const [index, backend] of backends().entries()) {
  describe(`transformers vision-lm (tiny LLaVA, LoRA) through the API on ${backend}`, { timeout: 15 * 60_000 }, () => {
    let files: string;
    let python: string;
    let host: FileServer;
    let receiver: Receiver;
    let server: TestServer;
    let call: ReturnType<typeof api>;
    let model: any;

    const submit = (modelConfig: Record<string, unknown>, zip: string, hook?: string) =>
      call('/api/v1/train', {
        method: 'POST',
        json: trainBody({
          model_config: { framework: 'transformers', task: 'vision-lm', base_model: 'tiny-llava', ...modelConfig },
          dataset: { url: host.url(`/${zip}`) },
          ...(hook ? { callback_url: `${receiver.url}/${hook}`, callback_secret: SECRET } : {}),
        }),
      });
    const finished = (id: string) => jobEnded(call, id);

    before(async () => {
      ({ files, python, host } = await prepare());
      receiver = await startReceiver();
      server = await startTestServer({ backend, env: { DEVICES: 'cpu', HF_MODELS_DIR: path.join(files, 'hf-models'), JOB_RETRY_BACKOFF_SECONDS: '0.5' } });
      call = api(server.url);
    });
    after(async () => {
      await server?.stop();
      await receiver?.close();
    });

    test('GET /api/v1/engines lists vision-lm on jsonl, with the causal-lm metrics', async () => {
      const e = (await call('/api/v1/engines')).json.engines.find((x: any) => x.name === 'transformers');
      assert.deepEqual(e.tasks.map((t: any) => t.name), ['causal-lm', 'vision-lm']);
      const vision = e.tasks.find((t: any) => t.name === 'vision-lm');
      assert.deepEqual(vision.dataset_formats, ['jsonl']);
      assert.deepEqual(vision.metrics.best, { key: 'val_loss', goal: 'min' });
    });

    test('LoRA on a memorisable image set: loss falls, metrics stored, callbacks verify, charts, registered', async () => {
      const started = Date.now();
      const r = await submit({ name: 'vlm-colours', ...FAST }, 'colours.zip', 'vlm');
      assert.equal(r.status, 202, r.text);
      const id = r.json.job_id;
      const job = await finished(id);
      assert.equal(job.status, 'completed', JSON.stringify(job.error));
      assert.equal(job.dataset_info.format, 'jsonl');
      assert.deepEqual(job.dataset_info.samples_per_split, { train: 16, val: 4 });
      assert.equal(job.dataset_info.total_images, 4, 'four distinct images');

      const epochs = (await call(`/api/v1/jobs/${id}/metrics`)).json.epochs;
      assert.deepEqual(epochs.map((e: any) => e.epoch), Array.from({ length: FAST.epochs }, (_, i) => i + 1));
      for (const e of epochs) {
        for (const key of ['train_loss', 'val_loss', 'val_token_accuracy', 'learning_rate']) {
          assert.equal(typeof e.metrics[key], 'number', `epoch ${e.epoch}: ${key} in ${JSON.stringify(e.metrics)}`);
        }
      }
      const first = epochs[0].metrics.train_loss, last = epochs.at(-1).metrics.train_loss;
      console.log(`vision-lm LoRA (${backend}): train_loss ${first.toFixed(3)} → ${last.toFixed(3)}, val_token_accuracy ${epochs.at(-1).metrics.val_token_accuracy} over ${epochs.length} epochs, ${((Date.now() - started) / 1000).toFixed(1)} s submit→completed`);
      assert.ok(last < 0.1 * first, `train_loss fell from ${first} to ${last}`);
      const lowest = epochs.reduce((a: any, b: any) => (b.metrics.val_loss < a.metrics.val_loss ? b : a));
      assert.equal(job.metrics.best.epoch, lowest.epoch, JSON.stringify(job.metrics.best));
      assert.equal(lowest.metrics.val_token_accuracy, 1, 'the best epoch predicts every answer token (teacher-forced)');

      await receiver.waitFor((all) => all.some((x) => x.path === '/vlm' && x.json?.type === 'training_completed'), 60_000, 'completion');
      const mine = receiver.received.filter((x) => x.path === '/vlm');
      for (const hook of mine) assert.deepEqual(verifier.verify(hook.body, hook.headers), hook.json);
      const done = mine.find((x) => x.json?.type === 'training_completed')!;
      assert.equal(done.json.final_metrics.best_epoch, lowest.epoch);
      assert.ok(done.json.artifacts.adapter, JSON.stringify(done.json.artifacts));
      const zip = Buffer.from(await (await fetch(done.json.model.download_url)).arrayBuffer());
      for (const name of ['adapter_model.safetensors', 'adapter_config.json']) assert.ok(zip.includes(name), `${name} in adapter.zip`);
      // The vision tower stays frozen: the adapter's tensors (the safetensors header) are the language model's.
      const adapterDir = path.join(files, `adapter-${backend}`);
      fs.writeFileSync(`${adapterDir}.zip`, zip);
      await execFileAsync(python, ['-m', 'zipfile', '-e', `${adapterDir}.zip`, adapterDir]);
      const weights = fs.readFileSync(path.join(adapterDir, 'adapter_model.safetensors'));
      const tensors = Object.keys(JSON.parse(weights.subarray(8, 8 + Number(weights.readBigUInt64LE(0))).toString('utf8'))).filter((k) => k !== '__metadata__');
      assert.ok(tensors.some((k) => /language_model\.layers\.0\.self_attn\.q_proj\.lora_A/.test(k)), tensors.join(', '));
      assert.ok(!tensors.some((k) => k.includes('vision_tower')), `no vision tower weights in the adapter: ${tensors.join(', ')}`);

      model = await waitFor('registered model', async () => {
        const found = (await call(`/api/v1/models?job_id=${id}`)).json.models;
        return found.length > 0 && found[0];
      }, 30_000);
      assert.equal(model.task, 'vision-lm');
      const page = await call(`/jobs/${id}`);
      assert.equal(page.status, 200);
      assert.match(page.text, /Train and validation loss by epoch/, 'the status page charts the losses');
    });

    // Not a matter of the store: once.
    if (index === 0) {
      test('method full trains all but the vision tower, delivers model.zip with its processor, and exports merged', async () => {
        const { target_modules: _t, ...full } = FAST;
        const r = await submit({ name: 'vlm-full', ...full, method: 'full', epochs: 3, learning_rate: 0.001 }, 'colours.zip');
        assert.equal(r.status, 202, r.text);
        const job = await finished(r.json.job_id);
        assert.equal(job.status, 'completed', JSON.stringify(job.error));
        const log = (await call(`/api/v1/jobs/${r.json.job_id}/logs/download`)).text;
        const counts = /full: ([\d,]+) trainable parameters of ([\d,]+)/.exec(log);
        assert.ok(counts, 'the worker logs its trainable parameters');
        const [trainable, total] = [Number(counts[1]!.replaceAll(',', '')), Number(counts[2]!.replaceAll(',', ''))];
        assert.ok(trainable > 0.5 * total && trainable < total, `the vision tower is frozen: ${counts[0]}`);
        const link = await call(`/api/v1/jobs/${r.json.job_id}/model`);
        const zip = Buffer.from(await (await fetch(link.json.url)).arrayBuffer());
        for (const name of ['model.safetensors', 'config.json', 'processor_config.json', 'tokenizer.json']) assert.ok(zip.includes(name), `${name} in model.zip`);
        const registered = await waitFor('registered full model', async () => {
          const found = (await call(`/api/v1/models?job_id=${r.json.job_id}`)).json.models;
          return found.length > 0 && found[0];
        }, 30_000);
        const merged = await call(`/api/v1/models/${registered.model_id}/export`, { method: 'POST', json: { format: 'merged' } });
        assert.equal(merged.status, 201, merged.text);
        assert.equal(merged.json.check.passed, true, JSON.stringify(merged.json.check));
        assert.equal(merged.json.check.compared_to, 'the fully trained model');
      });
    }

    if (index === 0) {
      test('cancel stops the worker at a step and keeps last.pt; retry resumes from it and completes', async () => {
        const r = await submit({ name: 'vlm-cancel-resume', ...FAST, epochs: 150, learning_rate: 0.001 }, 'colours.zip');
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
        const epochs = (await call(`/api/v1/jobs/${id}/metrics`)).json.epochs;
        assert.deepEqual(epochs.map((e: any) => e.epoch), Array.from({ length: 150 }, (_, i) => i + 1));
      });
    }

    if (index === 0) {
      test('save_steps: a worker killed mid-epoch resumes from the last save; the TensorBoard events are an artifact', async () => {
        const steps = 64, every = 5, epochs = 4; // 64 and its multiples are no multiple of 5: a save_steps step is mid-epoch
        const r = await submit({ name: 'vlm-save-steps', ...FAST, batch_size: 1, epochs, save_steps: every, learning_rate: 0.001 }, 'colours-long.zip', 'vlm-steps');
        assert.equal(r.status, 202, r.text);
        const id = r.json.job_id;
        const log = async () => (await call(`/api/v1/jobs/${id}/logs/download`)).text;
        // A save early in an epoch after the first, so the worker is still well inside that epoch when killed.
        const saved = await waitFor('a save_steps save early in epoch 2 or later', async () => {
          const m = [...(await log()).matchAll(/saved last\.pt at step (\d+) \(epoch (\d+), batch group (\d+)\/(\d+)\)/g)].at(-1);
          return m && Number(m[2]) >= 2 && Number(m[3]) <= 30 && Number(m[1]);
        }, 240_000);
        const pid = workerPid(id);
        assert.ok(pid, 'the worker process of the job');
        process.kill(pid, 'SIGKILL');

        const job = await finished(id);
        assert.equal(job.status, 'completed', JSON.stringify(job.error));
        assert.deepEqual(job.attempts.map((a: { outcome: string }) => a.outcome), ['retrying', 'completed']);
        const resumed = /resuming from \S+last\.pt: epoch (\d+), step (\d+)/.exec(await log());
        assert.ok(resumed, 'the second attempt resumed from last.pt');
        const [epoch, step] = [Number(resumed[1]), Number(resumed[2])];
        assert.equal(step % every, 0, `step ${step} is a save_steps step`);
        assert.ok(step >= saved && step > (epoch - 1) * steps && step < epoch * steps, `resumed mid-epoch ${epoch} at step ${step} (seen saved at ${saved})`);
        const recorded = (await call(`/api/v1/jobs/${id}/metrics`)).json.epochs;
        assert.deepEqual(recorded.map((e: any) => e.epoch), Array.from({ length: epochs }, (_, i) => i + 1), 'every epoch recorded once');

        await receiver.waitFor((all) => all.some((x) => x.path === '/vlm-steps' && x.json?.type === 'training_completed'), 60_000, 'completion');
        const done = receiver.received.find((x) => x.path === '/vlm-steps' && x.json?.type === 'training_completed')!;
        assert.ok(done.json.artifacts.tensorboard, JSON.stringify(done.json.artifacts));
        const res = await fetch(done.json.artifacts.tensorboard);
        assert.equal(res.status, 200);
        const zip = path.join(files, 'vlm-tensorboard.zip');
        fs.writeFileSync(zip, Buffer.from(await res.arrayBuffer()));
        const out = path.join(files, 'vlm-tensorboard');
        await execFileAsync(python, ['-m', 'zipfile', '-e', zip, out]);
        const events = fs.readdirSync(path.join(out, 'tensorboard')).filter((f) => f.startsWith('events.out.tfevents.'));
        assert.equal(events.length, 2, `one events file per worker process: ${events.join(', ')}`);
        const scalars = readScalars(events.map((f) => path.join(out, 'tensorboard', f)));
        const at = (tag: string) => (scalars.get(tag) ?? []).map(([s]) => s).sort((a, b) => a - b);
        // Every optimizer step once, though the killed worker logged some past its last save.
        assert.deepEqual(at('train/loss'), Array.from({ length: epochs * steps }, (_, i) => i + 1));
        assert.deepEqual(at('val/loss'), Array.from({ length: epochs }, (_, i) => (i + 1) * steps));
      });
    }

    test('bad image references fail the job with DATASET_INVALID naming the file and the line', async () => {
      const r = await submit({ name: 'bad', ...FAST, epochs: 1 }, 'bad.zip');
      assert.equal(r.status, 202, r.text);
      const job = await finished(r.json.job_id);
      assert.equal(job.status, 'failed');
      assert.equal(job.error.code, 'DATASET_INVALID', JSON.stringify(job.error));
      const problems = job.error.details.problems;
      assert.deepEqual(problems.map((p: any) => [p.file, p.line]), [2, 3, 4, 5, 6].map((l) => ['train.jsonl', l]));
      assert.match(problems[0].message, /images\/missing\.png is not in the archive/);
      assert.match(problems[1].message, /must not contain "\.\."/);
      assert.match(problems[2].message, /relative path/);
      assert.match(problems[3].message, /images\/notes\.png: not a readable image/);
      assert.match(problems[4].message, /"image" is missing/);
    });

    test('a causal LM folder for vision-lm, and a vision-language folder for causal-lm, are refused naming the task to use', async () => {
      // At submit, while the folder is on this node: 400.
      for (const [task, base, use] of [['vision-lm', 'tiny-llama', 'causal-lm'], ['causal-lm', 'tiny-llava', 'vision-lm']] as const) {
        const r = await submit({ name: `mismatch-${task}`, task, base_model: base, ...FAST, epochs: 1 }, 'colours.zip');
        assert.equal(r.status, 400, r.text);
        assert.equal(r.json.error.code, 'BASE_MODEL_TASK_MISMATCH', r.text);
        assert.ok(r.json.error.message.includes(`use task ${use}`), r.json.error.message);
      }
      // A folder that arrives after submit (or lives only on the training node) is judged by the
      // worker as it loads it: the job fails. The dataset is held back until the folder is there.
      const late = `late-llava-${index}`;
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      host.route(`/${late}.zip`, (req, res, hit) => void released.then(() => serveFile(path.join(files, 'colours.zip'))(req, res, hit)));
      const r = await submit({ name: 'mismatch-late', task: 'causal-lm', base_model: late, ...FAST, epochs: 1 }, `${late}.zip`);
      assert.equal(r.status, 202, r.text);
      fs.cpSync(path.join(files, 'hf-models', 'tiny-llava'), path.join(files, 'hf-models', late), { recursive: true });
      release();
      const job = await finished(r.json.job_id);
      assert.equal(job.status, 'failed');
      assert.equal(job.error.code, 'MODEL_DOWNLOAD_FAILED', JSON.stringify(job.error));
      assert.equal(job.error.details.reason, 'BASE_MODEL_TASK_MISMATCH', JSON.stringify(job.error));
      assert.ok(job.error.message.includes('use task vision-lm'), job.error.message);
    });

    const imagePath = (colour: string) => path.join(files, 'colours', 'images', `${colour}.png`);

    test('exports: a model card for vision-lm, and the package\'s inference.py answers about an image', async () => {
      assert.ok(model, 'the LoRA test registered a model');
      // Adapter and int8 once (first backend), merged on each: the exports are the database's
      // business only in their rows.
      for (const format of index === 0 ? ['merged', 'adapter', 'int8'] : ['merged']) {
        const started = Date.now();
        const r = await call(`/api/v1/models/${model.model_id}/export`, { method: 'POST', json: { format } });
        assert.equal(r.status, 201, r.text);
        assert.equal(r.json.check.passed, true, JSON.stringify(r.json.check));
        assert.equal(r.json.check.prompt, QUESTION, 'the check ran on the first validation sample');
        console.log(`vision-lm export ${format}: ${r.json.size_bytes} bytes in ${Date.now() - started} ms, max |Δlogit| ${r.json.check.max_abs_logit_diff}, argmax agreement ${r.json.check.argmax_agreement}`);
        const dir = path.join(files, `export-${backend}-${format}`);
        fs.writeFileSync(`${dir}.zip`, Buffer.from(await (await fetch(r.json.download.url)).arrayBuffer()));
        await execFileAsync(python, ['-m', 'zipfile', '-e', `${dir}.zip`, dir]);
        for (const f of ['README.md', 'inference.py', 'requirements.txt', 'model/processor_config.json', 'model/tokenizer.json']) {
          assert.ok(fs.existsSync(path.join(dir, f)), `${f} in the ${format} ZIP`);
        }
        const card = fs.readFileSync(path.join(dir, 'README.md'), 'utf8');
        assert.match(card, /Task: vision-lm \(image \+ text → text\)/);
        assert.match(card, /Base model: `tiny-llava`/);
        assert.match(card, /inference\.py --image photo\.jpg --prompt/);
        assert.match(fs.readFileSync(path.join(dir, 'requirements.txt'), 'utf8'), /^pillow==/m);
        const base = format === 'adapter' ? ['--base', path.join(files, 'hf-models', 'tiny-llava')] : [];
        const env = { ...process.env, HF_HUB_OFFLINE: '1', OMP_NUM_THREADS: '1' };
        const out = await execFileAsync(python, ['inference.py', '--image', imagePath('green'), '--prompt', QUESTION, '--max-new-tokens', '12', '--json', ...base], {
          cwd: dir,
          encoding: 'utf8',
          env,
          timeout: 120_000,
        });
        const answer = JSON.parse(out.stdout.trim().split('\n').at(-1)!);
        console.log(`vision-lm package ${format}: ${JSON.stringify(answer.text)}`);
        if (format !== 'int8') assert.equal(answer.text, 'It is green.', `${format}: ${JSON.stringify(answer)}`);
        else assert.ok(answer.tokens > 0, JSON.stringify(answer));
      }
    });

    test('POST /models/{id}/generate answers about a base64 image; an image is required and must be one', async () => {
      assert.ok(model, 'the LoRA test registered a model');
      const url = `/api/v1/models/${model.model_id}/generate`;
      for (const colour of Object.keys(COLOURS)) {
        const image = fs.readFileSync(imagePath(colour)).toString('base64');
        const r = await call(url, { method: 'POST', json: { prompt: QUESTION, image: colour === 'blue' ? `data:image/png;base64,${image}` : image, max_new_tokens: 12 } });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.text, `It is ${colour}.`, colour);
        assert.equal(r.json.finish_reason, 'eos');
      }
      const missing = await call(url, { method: 'POST', json: { prompt: QUESTION } });
      assert.equal(missing.status, 400, missing.text);
      assert.equal(missing.json.error.code, 'IMAGE_REQUIRED');
      const junk = await call(url, { method: 'POST', json: { prompt: QUESTION, image: Buffer.from('not an image, just text').toString('base64') } });
      assert.equal(junk.status, 422, junk.text);
      assert.equal(junk.json.error.code, 'INVALID_IMAGE');
      const notBase64 = await call(url, { method: 'POST', json: { prompt: QUESTION, image: 'this is not base64!' } });
      assert.equal(notBase64.status, 400, notBase64.text);
      assert.equal(notBase64.json.error.code, 'VALIDATION_ERROR');

      // A text model refuses an image: the same lines train a causal LM (the image field unread there).
      if (index === 0) {
        const r = await submit({ name: 'text-model', task: 'causal-lm', base_model: 'tiny-llama', ...FAST, epochs: 1 }, 'colours.zip');
        assert.equal(r.status, 202, r.text);
        const job = await finished(r.json.job_id);
        assert.equal(job.status, 'completed', JSON.stringify(job.error));
        const text = await waitFor('registered text model', async () => {
          const found = (await call(`/api/v1/models?job_id=${r.json.job_id}`)).json.models;
          return found.length > 0 && found[0];
        }, 30_000);
        const refused = await call(`/api/v1/models/${text.model_id}/generate`, {
          method: 'POST',
          json: { prompt: QUESTION, image: fs.readFileSync(imagePath('red')).toString('base64') },
        });
        assert.equal(refused.status, 400, refused.text);
        assert.equal(refused.json.error.code, 'IMAGE_UNSUPPORTED');
      }
    });
  });
}
