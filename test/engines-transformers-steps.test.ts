/**
 * The transformers worker's mid-epoch checkpoints and its TensorBoard events, through the API on
 * the CPU (the tiny random LLaMA of test/engines/transformers/):
 *
 * - save_steps writes last.pt every N optimizer steps within an epoch: a worker killed mid-epoch
 *   (SIGKILL, a crash) is retried and resumes from the last such step, skipping the batches
 *   done, and every epoch is recorded once;
 * - a cancel mid-epoch then a retry resume from the step the stop was taken at;
 * - the run's TensorBoard events are an artifact (tensorboard.zip, named in the completion
 *   callback): read back here (TFRecord framing and CRCs, test/helpers/tfevents.ts) they hold
 *   train/loss and train/learning_rate for every step once (across both worker processes), and
 *   val/loss and val/token_accuracy for every epoch, equal to the epoch metrics.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { setupPython } from '../scripts/setup-python.mjs';
import { transformersEngine } from '../src/engines/transformers/index.js';
import { serveFile, startFileServer, type FileServer } from './helpers/file-server.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { api, startTestServer, tempDir, trainBody, type TestServer } from './helpers/server.js';
import { makeTinyLlama } from './helpers/tiny-models.js';
import { zipDirectory } from './helpers/synthetic-dataset.js';
import { readScalars, tfEvents } from './helpers/tfevents.js';
import { jobEnded, retryWhenStopped, waitFor } from './helpers/wait.js';
import { workerPid } from './helpers/worker-pid.js';

const SECRET = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;
const PAIRS = [['cat', 'red'], ['dog', 'blue'], ['fox', 'green'], ['owl', 'yellow'], ['bee', 'purple'], ['cow', 'orange'], ['pig', 'black'], ['hen', 'white']];
const SAMPLES = PAIRS.map(([a, c]) => ({ prompt: `What colour is the ${a}? `, completion: `The ${a} is ${c}.` }));
/** 48 training samples at batch 1: 48 optimizer steps an epoch. */
const STEPS_PER_EPOCH = 48;
const SAVE_STEPS = 5;
const ARGS = {
  method: 'lora', lora_r: 4, lora_alpha: 8, lora_dropout: 0, learning_rate: 0.005, batch_size: 1, warmup_ratio: 0,
  max_length: 48, epochs: 3, seed: 3, save_steps: SAVE_STEPS,
};

const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

describe('transformers: save_steps, mid-epoch resume, TensorBoard events', { timeout: 15 * 60_000 }, () => {
  let files: string;
  let python: string;
  let host: FileServer;
  let receiver: Receiver;
  let server: TestServer;
  let call: ReturnType<typeof api>;

  const submit = (name: string, hook?: string) =>
    call('/api/v1/train', {
      method: 'POST',
      json: trainBody({
        model_config: { framework: 'transformers', task: 'causal-lm', base_model: 'tiny-llama', name, ...ARGS },
        dataset: { url: host.url('/set.zip') },
        ...(hook ? { callback_url: `${receiver.url}/${hook}`, callback_secret: SECRET } : {}),
      }),
    });
  const log = async (id: string) => (await call(`/api/v1/jobs/${id}/logs/download`)).text;
  const finished = (id: string) => jobEnded(call, id);
  /** The first mid-epoch save of epoch 2 early in it (so the worker is still well inside the epoch when acted on). */
  const earlySaveInEpoch2 = (id: string) =>
    waitFor(`a save_steps save early in epoch 2 of ${id}`, async () => {
      const m = /saved last\.pt at step (\d+) \(epoch 2, batch group (\d+)\/\d+\)/.exec(await log(id));
      return m && Number(m[2]) <= 20 && Number(m[1]);
    }, 240_000);
  const resumedAt = async (id: string) => {
    const m = /resuming from \S+last\.pt: epoch (\d+), step (\d+)/.exec(await log(id));
    assert.ok(m, 'the second attempt resumed from last.pt');
    return { epoch: Number(m[1]), step: Number(m[2]) };
  };
  const epochsOnce = async (id: string) => {
    const epochs = (await call(`/api/v1/jobs/${id}/metrics`)).json.epochs;
    assert.deepEqual(epochs.map((e: any) => e.epoch), [1, 2, 3], 'every epoch recorded once');
    return epochs;
  };

  before(async () => {
    process.env['OMP_NUM_THREADS'] = '1';
    python = await setupPython({ requirementsFile: transformersEngine.python.requirements });
    files = tempDir('trainhook-steps-');
    const models = path.join(files, 'hf-models');
    fs.mkdirSync(models);
    makeTinyLlama(python, path.join(models, 'tiny-llama'), SAMPLES.map((s) => s.prompt + s.completion));
    const set = path.join(files, 'set');
    fs.mkdirSync(set);
    fs.writeFileSync(path.join(set, 'train.jsonl'), jsonl(Array.from({ length: STEPS_PER_EPOCH }, (_, i) => SAMPLES[i % SAMPLES.length])));
    fs.writeFileSync(path.join(set, 'val.jsonl'), jsonl(SAMPLES));
    await zipDirectory(set, path.join(files, 'set.zip'));
    host = await startFileServer();
    host.route('/set.zip', serveFile(path.join(files, 'set.zip')));
    receiver = await startReceiver();
    server = await startTestServer({ env: { DEVICES: 'cpu', HF_MODELS_DIR: models, JOB_RETRY_BACKOFF_SECONDS: '0.5' } });
    call = api(server.url);
  });
  after(async () => {
    await server?.stop();
    await receiver?.close();
    await host?.close();
  });

  test('a worker killed mid-epoch resumes from the last save_steps step; TensorBoard events read back whole', async () => {
    const r = await submit('killed', 'killed');
    assert.equal(r.status, 202, r.text);
    const id = r.json.job_id;
    const saved = await earlySaveInEpoch2(id);
    const pid = workerPid(id);
    assert.ok(pid, 'the worker process of the job');
    process.kill(pid, 'SIGKILL');

    const job = await finished(id);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    assert.deepEqual(job.attempts.map((a: { outcome: string }) => a.outcome), ['retrying', 'completed']);
    const resumed = await resumedAt(id);
    // From the last save before the kill. The kill aims early in epoch 2, but on a loaded
    // machine it can land later, so where it landed is read from the log: the last save_steps
    // save the killed worker logged, or the end of an epoch reached after it (whose save is
    // not logged).
    const text = await log(id);
    const beforeResume = text.slice(0, text.search(/resuming from \S+last\.pt/));
    const lastSaved = Math.max(...[...beforeResume.matchAll(/saved last\.pt at step (\d+) \(epoch/g)].map((m) => Number(m[1])));
    assert.ok(lastSaved >= saved && lastSaved > STEPS_PER_EPOCH, `last save logged before the kill: step ${lastSaved} (first seen ${saved})`);
    const at = `resumed at epoch ${resumed.epoch}, step ${resumed.step}; last save logged at step ${lastSaved}`;
    if (resumed.step % STEPS_PER_EPOCH === 0) {
      assert.ok(resumed.step > lastSaved && resumed.step < lastSaved + SAVE_STEPS, at);
    } else {
      // Mid-epoch: from exactly that save, not from the end of the epoch before it.
      assert.equal(resumed.step, lastSaved, at);
      assert.equal(resumed.epoch, Math.ceil(resumed.step / STEPS_PER_EPOCH), at);
    }
    const epochs = await epochsOnce(id);

    // The completion callback names the TensorBoard ZIP; its link downloads it.
    await receiver.waitFor((all) => all.some((x) => x.path === '/killed' && x.json?.type === 'training_completed'), 60_000, 'completion');
    const done = receiver.received.find((x) => x.path === '/killed' && x.json?.type === 'training_completed')!;
    assert.deepEqual(new Webhook(SECRET).verify(done.body, done.headers), done.json);
    assert.ok(done.json.artifacts.tensorboard, JSON.stringify(done.json.artifacts));
    const res = await fetch(done.json.artifacts.tensorboard);
    assert.equal(res.status, 200);
    const zip = path.join(files, 'tensorboard.zip');
    fs.writeFileSync(zip, Buffer.from(await res.arrayBuffer()));
    const out = path.join(files, 'tensorboard');
    const unzip = spawnSync(python, ['-m', 'zipfile', '-e', zip, out], { encoding: 'utf8' });
    assert.equal(unzip.status, 0, unzip.stderr);
    const events = fs.readdirSync(path.join(out, 'tensorboard')).filter((f) => f.startsWith('events.out.tfevents.')).sort();
    assert.equal(events.length, 2, `one events file per worker process: ${events.join(', ')}`);
    // The resumed worker's file opens with a session START at the step after its checkpoint:
    // what makes TensorBoard drop the killed worker's events past it.
    assert.deepEqual(tfEvents(path.join(out, 'tensorboard', events[1]!)).filter((e) => e.start).map((e) => e.step), [resumed.step + 1]);
    const scalars = readScalars(events.map((f) => path.join(out, 'tensorboard', f)));
    const total = 3 * STEPS_PER_EPOCH;
    const steps = (tag: string) => (scalars.get(tag) ?? []).map(([s]) => s).sort((a, b) => a - b);
    // Every optimizer step once, though the killed worker logged some past its last save.
    assert.deepEqual(steps('train/loss'), Array.from({ length: total }, (_, i) => i + 1));
    assert.deepEqual(steps('train/learning_rate'), Array.from({ length: total }, (_, i) => i + 1));
    for (const [, v] of scalars.get('train/loss')!) assert.ok(Number.isFinite(v) && v > 0, String(v));
    const perEpoch = [1, 2, 3].map((e) => e * STEPS_PER_EPOCH);
    assert.deepEqual(steps('val/loss'), perEpoch);
    assert.deepEqual(steps('val/token_accuracy'), perEpoch);
    for (const [i, e] of epochs.entries()) {
      const at = (tag: string) => scalars.get(tag)!.find(([s]) => s === perEpoch[i])![1];
      // Stored as float32 in the events file.
      assert.ok(Math.abs(at('val/loss') - e.metrics.val_loss) <= 1e-6 * Math.max(1, e.metrics.val_loss), `epoch ${e.epoch} val/loss`);
      assert.ok(Math.abs(at('val/token_accuracy') - e.metrics.val_token_accuracy) <= 1e-6, `epoch ${e.epoch} val/token_accuracy`);
      assert.ok(Math.abs(at('train/epoch_learning_rate') - e.metrics.learning_rate) <= 1e-6 * Math.abs(e.metrics.learning_rate) + 1e-12);
    }
    const first = scalars.get('train/loss')!.filter(([s]) => s <= 10).map(([, v]) => v);
    const last = scalars.get('train/loss')!.filter(([s]) => s > total - 10).map(([, v]) => v);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(mean(last) < mean(first), `train/loss fell: ${mean(first)} → ${mean(last)}`);
  });

  test('a cancel mid-epoch then a retry resume from the step the stop was taken at', async () => {
    const r = await submit('cancelled-mid-epoch');
    assert.equal(r.status, 202, r.text);
    const id = r.json.job_id;
    await earlySaveInEpoch2(id);
    assert.equal((await call(`/api/v1/jobs/${id}`, { method: 'DELETE' })).status, 200);
    const retried = await retryWhenStopped(call, id);
    assert.equal(retried.status, 202, retried.text);
    const job = await finished(id);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    assert.deepEqual(job.attempts.map((a: { outcome: string }) => a.outcome), ['cancelled', 'completed']);
    const resumed = await resumedAt(id);
    // Asked early in epoch 2; on a loaded machine the stop may land in epoch 3: mid-epoch either way.
    assert.ok(resumed.epoch >= 2, `resumed in epoch ${resumed.epoch}`);
    assert.ok(resumed.step > (resumed.epoch - 1) * STEPS_PER_EPOCH && resumed.step < resumed.epoch * STEPS_PER_EPOCH, `resumed mid-epoch ${resumed.epoch} at step ${resumed.step}`);
    await epochsOnce(id);
  });
});
