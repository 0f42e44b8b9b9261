/**
 * Method qlora of the transformers engine, at the worker level on the CPU: the service refuses
 * qlora on a CPU-only server (QLORA_NEEDS_CUDA, test/engines-transformers.test.ts), so this test
 * runs worker/main.py with train.py and export.py directly, as src/worker/training.ts does, on the
 * tiny random LLaMA of test/engines/transformers/. bitsandbytes' CPU backend quantizes it for real:
 *
 * - the base model is loaded in 4-bit NF4 (training_config.json counts its bitsandbytes Linear4bit
 *   layers, double quantization, a bf16 compute dtype), LoRA trains on top: the epoch events carry
 *   finite metrics, the loss falls, adapter.zip is a plain LoRA adapter;
 * - a stop (SIGTERM) mid-run leaves last.pt, and a resumed worker continues from it to the end,
 *   sending no epoch twice;
 * - the adapter exports as `merged` (the base reloaded in full precision, the adapter merged into
 *   it), and the export's check (logits of the merged model against the adapter on its base)
 *   passes; the model card says the method was qlora;
 * - gradient_checkpointing with qlora trains the same first epoch as without;
 * - vision-lm: the language model quantized, the vision tower and projector kept in full precision
 *   (and trained on images, its loss falls);
 * - the engine's submit-time rule: qlora refused without CUDA, accepted with it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, test } from 'node:test';
import { PNG } from 'pngjs';
import { setupPython } from '../scripts/setup-python.mjs';
import { transformersEngine } from '../src/engines/transformers/index.js';
import { TransformersModelConfigSchema } from '../src/engines/transformers/request.js';
import { tempDir } from './helpers/server.js';
import { makeTinyLlama } from './helpers/tiny-models.js';
import { runWorker, type WorkerEvent } from './helpers/worker-run.js';

const TRAIN = transformersEngine.python.train;
const EXPORT = transformersEngine.python.export!;
const MAKE_VLM = fileURLToPath(new URL('./engines/transformers/make_tiny_llava.py', import.meta.url));
const COLOURS: Record<string, [number, number, number]> = { red: [255, 0, 0], blue: [0, 0, 255], green: [0, 255, 0], yellow: [255, 255, 0] };
const PAIRS = [['cat', 'red'], ['dog', 'blue'], ['fox', 'green'], ['owl', 'yellow'], ['bee', 'purple'], ['cow', 'orange'], ['pig', 'black'], ['hen', 'white']];
const SAMPLES = PAIRS.map(([a, c]) => ({ prompt: `What colour is the ${a}? `, completion: `The ${a} is ${c}.` }));
const EPOCHS = 5;
const ARGS = {
  method: 'qlora', lora_r: 16, lora_alpha: 32, lora_dropout: 0, learning_rate: 0.02, batch_size: 2, warmup_ratio: 0,
  max_length: 64, seed: 1, epochs: EPOCHS,
  target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'lm_head'],
};

const epochsOf = (events: WorkerEvent[]) => events.filter((e) => e.type === 'epoch');
const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r) + '\n').join('');

function png([r, g, b]: [number, number, number]): Buffer {
  const img = new PNG({ width: 32, height: 32 });
  for (let i = 0; i < img.data.length; i += 4) img.data.set([r, g, b, 255], i);
  return PNG.sync.write(img);
}

describe('transformers engine, method qlora (worker level, CPU)', () => {
  let python: string;
  let dir: string;
  let model: string;
  let data: string;

  before(() => {
    process.env['OMP_NUM_THREADS'] = '1';
  });

  before(async () => {
    python = await setupPython({ requirementsFile: transformersEngine.python.requirements });
    dir = tempDir('trainhook-qlora-');
    model = path.join(dir, 'tiny-llama');
    makeTinyLlama(python, model, SAMPLES.map((s) => s.prompt + s.completion));
    data = path.join(dir, 'data');
    fs.mkdirSync(data);
    fs.writeFileSync(path.join(data, 'train.jsonl'), jsonl([...SAMPLES, ...SAMPLES]));
    fs.writeFileSync(path.join(data, 'val.jsonl'), jsonl(SAMPLES));
  });

  test('submit: qlora is refused without CUDA (QLORA_NEEDS_CUDA) and accepted on a CUDA server', async () => {
    const mc = TransformersModelConfigSchema.parse({ framework: 'transformers', name: 'q', task: 'causal-lm', base_model: 'tiny-llama', method: 'qlora' });
    const modelsDir = path.dirname(model);
    const refused = await transformersEngine.refuse!(mc, { gpuAvailable: false, modelsDir });
    assert.equal(typeof refused === 'object' && refused?.code, 'QLORA_NEEDS_CUDA');
    assert.equal(await transformersEngine.refuse!(mc, { gpuAvailable: true, modelsDir }), null);
  });

  test('trains LoRA on the 4-bit base (bitsandbytes Linear4bit, nf4), resumes after a stop, exports merged', async () => {
    const runDir = path.join(dir, 'run');
    const spec = { run_dir: runDir, model, data, task: 'causal-lm', device: 'cpu', args: ARGS };

    // First worker: stopped once its first epoch is saved.
    const first = await runWorker(python, TRAIN, spec, path.join(dir, 'spec-1.json'), (e, stop) => {
      if (e.type === 'epoch' && e.epoch === 1) stop();
    });
    assert.equal(first.code, 0, first.stderr);
    const stopped = first.events.at(-1)!;
    assert.equal(stopped.type, 'stopped', JSON.stringify(first.events.slice(-3)));
    const done1 = epochsOf(first.events).map((e) => e.epoch);
    assert.ok(done1.length >= 1 && done1.length < EPOCHS, `the stop came before the end: ${done1}`);
    assert.equal(first.events.find((e) => e.type === 'started')?.versions?.bitsandbytes, '0.50.2');
    assert.match(first.stderr, /qlora: \d+ Linear4bit layers \(nf4, double quantization, compute bfloat16\)/);

    const config = JSON.parse(fs.readFileSync(path.join(runDir, 'training_config.json'), 'utf8'));
    // 2 layers × 7 projections; lm_head stays unquantized (bitsandbytes keeps the output layer).
    assert.deepEqual(config.quantization, { bits: 4, quant_type: 'nf4', double_quant: true, compute_dtype: 'bfloat16', linear4bit_layers: 14 });
    assert.ok(fs.existsSync(path.join(runDir, 'last.pt')));

    // Second worker: resumes from last.pt and runs to the end.
    const second = await runWorker(python, TRAIN, { ...spec, resume: true, recorded_epochs: done1 }, path.join(dir, 'spec-2.json'));
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.events.find((e) => e.type === 'started')?.resumed_from_epoch, done1.length);
    const done2 = epochsOf(second.events).map((e) => e.epoch);
    assert.deepEqual([...done1, ...done2], Array.from({ length: EPOCHS }, (_, i) => i + 1), 'every epoch once, in order');
    const end = second.events.at(-1)!;
    assert.equal(end.type, 'done', JSON.stringify(second.events.slice(-3)));
    assert.equal(end.epochs_completed, EPOCHS);
    assert.equal(path.basename(end.best), 'adapter.zip');

    const metrics = [...epochsOf(first.events), ...epochsOf(second.events)].map((e) => e.metrics);
    for (const m of metrics) {
      for (const k of ['train_loss', 'val_loss', 'val_token_accuracy', 'learning_rate']) assert.ok(Number.isFinite(m[k]), `${k}: ${JSON.stringify(m)}`);
    }
    assert.ok(metrics.at(-1).train_loss < metrics[0].train_loss * 0.8, `train_loss falls: ${metrics.map((m) => m.train_loss.toFixed(3))}`);
    assert.ok(metrics.at(-1).val_loss < metrics[0].val_loss, `val_loss falls: ${metrics.map((m) => m.val_loss.toFixed(3))}`);

    // adapter.zip: a plain LoRA adapter.
    const unzipped = path.join(dir, 'adapter');
    const unzip = spawnSync(python, ['-m', 'zipfile', '-e', end.best, unzipped], { encoding: 'utf8' });
    assert.equal(unzip.status, 0, unzip.stderr);
    assert.ok(fs.existsSync(path.join(unzipped, 'adapter_model.safetensors')));
    const adapterConfig = JSON.parse(fs.readFileSync(path.join(unzipped, 'adapter_config.json'), 'utf8'));
    assert.equal(adapterConfig.peft_type, 'LORA');
    assert.equal(adapterConfig.r, 16);

    // Export merged: the base reloaded in full precision, the adapter merged into it.
    const out = path.join(dir, 'export');
    fs.mkdirSync(out);
    const exported = await runWorker(python, EXPORT, {
      format: 'merged', model: end.best, out_dir: out, base_model: model, task: 'causal-lm', data,
      card: { name: 'q', model_id: 'm1', source_job_id: 'j1', base_model: 'tiny-llama', train_args: ARGS, metrics: {} },
    }, path.join(dir, 'spec-export.json'));
    assert.equal(exported.code, 0, exported.stderr);
    const exportDone = exported.events.at(-1)!;
    assert.equal(exportDone.type, 'done', JSON.stringify(exported.events));
    assert.equal(exportDone.check.passed, true, JSON.stringify(exportDone.check));
    assert.ok(exportDone.check.max_abs_logit_diff <= 1e-3);
    const pkg = path.join(dir, 'package');
    assert.equal(spawnSync(python, ['-m', 'zipfile', '-e', exportDone.file, pkg]).status, 0);
    assert.match(fs.readFileSync(path.join(pkg, 'README.md'), 'utf8'), /trained with method `qlora`/);
    const merged = JSON.parse(fs.readFileSync(path.join(pkg, 'model', 'config.json'), 'utf8'));
    assert.equal(merged.quantization_config, undefined, 'the merged model is full precision');
  });

  test('gradient_checkpointing with qlora (prepare_model_for_kbit_training turns it on): the same first epoch', async () => {
    const spec = (runDir: string, gc: boolean) => ({ run_dir: runDir, model, data, task: 'causal-lm', device: 'cpu', args: { ...ARGS, epochs: 1, gradient_checkpointing: gc } });
    const plain = await runWorker(python, TRAIN, spec(path.join(dir, 'run-plain'), false), path.join(dir, 'spec-plain.json'));
    const checkpointed = await runWorker(python, TRAIN, spec(path.join(dir, 'run-gc'), true), path.join(dir, 'spec-gc.json'));
    assert.equal(checkpointed.code, 0, checkpointed.stderr);
    assert.match(checkpointed.stderr, /gradient_checkpointing_enable/, 'checkpointing was switched on');
    const [a, b] = [plain, checkpointed].map((r) => epochsOf(r.events)[0]!.metrics);
    // Recomputing the activations in backward gives the same gradients: the same losses.
    assert.ok(Math.abs(a.train_loss - b.train_loss) < 1e-4 && Math.abs(a.val_loss - b.val_loss) < 1e-4, `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  });

  test('vision-lm: the language model in 4-bit, the vision tower and projector in full precision; the loss falls', async () => {
    const vdir = path.join(dir, 'vlm');
    const vdata = path.join(vdir, 'data');
    fs.mkdirSync(path.join(vdata, 'images'), { recursive: true });
    const rows = Object.entries(COLOURS).map(([c, rgb]) => {
      fs.writeFileSync(path.join(vdata, 'images', `${c}.png`), png(rgb));
      return { image: `images/${c}.png`, prompt: 'What colour is this? ', completion: `It is ${c}.` };
    });
    fs.writeFileSync(path.join(vdata, 'train.jsonl'), jsonl([...rows, ...rows, ...rows, ...rows]));
    fs.writeFileSync(path.join(vdata, 'val.jsonl'), jsonl(rows));
    const texts = path.join(vdir, 'texts.json');
    fs.writeFileSync(texts, JSON.stringify(rows.map((r) => r.prompt + r.completion)));
    const vmodel = path.join(vdir, 'tiny-llava');
    const built = spawnSync(python, [MAKE_VLM, vmodel, texts], { encoding: 'utf8' });
    assert.equal(built.status, 0, built.stderr);
    const runDir = path.join(vdir, 'run');
    const r = await runWorker(python, TRAIN, {
      run_dir: runDir, model: vmodel, data: vdata, task: 'vision-lm', device: 'cpu',
      args: { method: 'qlora', lora_r: 8, lora_alpha: 16, lora_dropout: 0, learning_rate: 0.01, batch_size: 4, warmup_ratio: 0, max_length: 128, seed: 1, epochs: 3 },
    }, path.join(vdir, 'spec.json'));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.events.at(-1)?.type, 'done', JSON.stringify(r.events.slice(-3)));
    const config = JSON.parse(fs.readFileSync(path.join(runDir, 'training_config.json'), 'utf8'));
    // The language model's 2 layers × 7 projections only: quantizing the CLIP tower (2 layers × 6
    // Linear) and the projector (2) too would make 28.
    assert.equal(config.quantization.linear4bit_layers, 14);
    const losses = epochsOf(r.events).map((e) => e.metrics.train_loss as number);
    assert.ok(losses.every(Number.isFinite) && losses.at(-1)! < losses[0]!, `train_loss falls: ${losses}`);
  });
});
