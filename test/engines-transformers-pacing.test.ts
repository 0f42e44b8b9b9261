/**
 * The transformers worker's epoch-end saves are paced (train.py, SavePacer): on epochs far
 * shorter than a save, an epoch's end writes its checkpoint and last.pt only when the previous
 * such save took at most 2 % of the time since. Worker level, on a tiny random LLaMA, one
 * optimizer step an epoch:
 * - the first and the last epoch save, some between do not, and every epoch is sent once;
 * - a worker SIGKILLed after an epoch that did not save resumes from the last one that did,
 *   repeats the epochs since with the same metrics (the same seed and state), and finishes.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { setupPython } from '../scripts/setup-python.mjs';
import { transformersEngine } from '../src/engines/transformers/index.js';
import { tempDir } from './helpers/server.js';
import { makeTinyLlama } from './helpers/tiny-models.js';
import { runWorker, type WorkerEvent } from './helpers/worker-run.js';

const TRAIN = transformersEngine.python.train;
const SAMPLES = [['cat', 'red'], ['dog', 'blue'], ['fox', 'green'], ['owl', 'yellow']].map(([a, c]) => ({ prompt: `What colour is the ${a}? `, completion: `The ${a} is ${c}.` }));
const EPOCHS = 40;
/** The four samples in one batch: one optimizer step an epoch, tens of milliseconds. */
const ARGS = { method: 'lora', lora_r: 4, lora_alpha: 8, lora_dropout: 0, learning_rate: 0.01, batch_size: 4, warmup_ratio: 0, max_length: 32, seed: 5, epochs: EPOCHS };

const epochsOf = (events: WorkerEvent[]) => events.filter((e) => e.type === 'epoch');
const savedEpochs = (events: WorkerEvent[]) => events.filter((e) => e.type === 'checkpoint' && e.kind === 'last').map((e) => e.epoch as number);

describe('transformers: epoch-end saves paced on short epochs (worker level)', { timeout: 10 * 60_000 }, () => {
  let python: string;
  let dir: string;
  let spec: (runDir: string) => object;

  before(async () => {
    process.env['OMP_NUM_THREADS'] = '1';
    python = await setupPython({ requirementsFile: transformersEngine.python.requirements });
    dir = tempDir('trainhook-pacing-');
    const model = path.join(dir, 'tiny-llama');
    makeTinyLlama(python, model, SAMPLES.map((s) => s.prompt + s.completion));
    const data = path.join(dir, 'data');
    fs.mkdirSync(data);
    const jsonl = SAMPLES.map((s) => JSON.stringify(s)).join('\n') + '\n';
    fs.writeFileSync(path.join(data, 'train.jsonl'), jsonl);
    fs.writeFileSync(path.join(data, 'val.jsonl'), jsonl);
    spec = (runDir) => ({ run_dir: runDir, model, data, task: 'causal-lm', device: 'cpu', args: ARGS });
  });

  test('the first and last epoch save, some between do not, and every epoch is sent once', async () => {
    const run = await runWorker(python, TRAIN, spec(path.join(dir, 'run-whole')), path.join(dir, 'spec-whole.json'));
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(epochsOf(run.events).map((e) => e.epoch), Array.from({ length: EPOCHS }, (_, i) => i + 1));
    const saved = savedEpochs(run.events);
    console.log(`paced saves: epochs ${saved.join(' ')} of ${EPOCHS}`);
    assert.equal(saved[0], 1);
    assert.equal(saved.at(-1), EPOCHS);
    assert.ok(saved.length < EPOCHS / 2, `epochs that saved: ${saved.join(' ')}`);
    const end = run.events.at(-1)!;
    assert.equal(end.type, 'done', JSON.stringify(run.events.slice(-3)));
    // The best adapter is written whenever it improves, saved epoch or not.
    assert.ok(fs.existsSync(end.best));
    const bestEpoch = end.best_epoch as number;
    assert.ok(run.events.some((e) => e.type === 'checkpoint' && e.kind === 'best' && e.epoch === bestEpoch));
  });

  test('killed after an epoch that did not save: resumes from the last that did, repeats the epochs since with the same metrics', async () => {
    const runDir = path.join(dir, 'run-killed');
    let killedAfter = 0;
    const seen: WorkerEvent[] = []; // runWorker's own list comes only at the end
    const first = await runWorker(python, TRAIN, spec(runDir), path.join(dir, 'spec-k1.json'), (e, _stop, kill) => {
      // The first epoch after one that saved: the next save is many epochs away.
      seen.push(e);
      if (!killedAfter && e.type === 'epoch' && e.epoch >= 2 && !savedEpochs(seen).includes(e.epoch)) {
        killedAfter = e.epoch;
        kill();
      }
    });
    assert.ok(killedAfter > 0, first.stderr);
    const saved = savedEpochs(first.events);
    const lastSaved = Math.max(...saved);
    assert.ok(lastSaved < killedAfter, `saved ${saved.join(' ')}; killed after epoch ${killedAfter}`);

    const recorded = epochsOf(first.events).map((e) => e.epoch as number);
    const second = await runWorker(python, TRAIN, { ...spec(runDir), resume: true, recorded_epochs: recorded }, path.join(dir, 'spec-k2.json'));
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.events.find((e) => e.type === 'started')?.resumed_from_epoch, lastSaved);
    const again = epochsOf(second.events);
    assert.deepEqual(again.map((e) => e.epoch), Array.from({ length: EPOCHS - lastSaved }, (_, i) => lastSaved + 1 + i), 'from the epoch after the last save to the end');
    for (const e of again.filter((x) => x.epoch <= killedAfter)) {
      const before = epochsOf(first.events).find((x) => x.epoch === e.epoch)!;
      assert.deepEqual(e.metrics, before.metrics, `epoch ${e.epoch} repeated with the same metrics`);
    }
    assert.equal(second.events.at(-1)!.type, 'done');
  });
});
