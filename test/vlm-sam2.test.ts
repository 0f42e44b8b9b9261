/**
 * The whole vision-language path in one run, as an annotation app uses it: a SAM2 export the
 * test draws is converted by POST /datasets/convert, split by video (temporal), and a tiny
 * random LLaVA is fine-tuned with LoRA on the split by its dataset id; the loss falls and the
 * model answers about one of the frames through /generate.
 *
 * The pieces have their own tests on both backends (test/dataprep.test.ts, test/engines-vlm.test.ts);
 * this one checks that they fit together, which is not a matter of the store: PGlite only.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { setupPython } from '../scripts/setup-python.mjs';
import { transformersEngine } from '../src/engines/transformers/index.js';
import { writeSam2Export } from './helpers/sam2-export.js';
import { api, startTestServer, tempDir, trainBody, type TestServer } from './helpers/server.js';
import { zipDirectory } from './helpers/synthetic-dataset.js';
import { jobEnded, waitFor } from './helpers/wait.js';

const MAKE_LLAVA = fileURLToPath(new URL('./engines/transformers/make_tiny_llava.py', import.meta.url));

describe('SAM2 export → convert → temporal split → LoRA on a tiny LLaVA → generate', { timeout: 15 * 60_000 }, () => {
  let server: TestServer;
  let call: ReturnType<typeof api>;
  let dir: string;
  let python: string;

  before(async () => {
    process.env['OMP_NUM_THREADS'] = '1';
    dir = tempDir('trainhook-vlm-sam2-');
    python = await setupPython({ requirementsFile: transformersEngine.python.requirements });
    fs.mkdirSync(path.join(dir, 'hf-models'));
    server = await startTestServer({ env: { DEVICES: 'cpu', HF_MODELS_DIR: path.join(dir, 'hf-models') } });
    call = api(server.url);
  });
  after(() => server?.stop());

  test('the converted, split dataset trains by id, the loss falls, and the model answers about a frame', async () => {
    await writeSam2Export(path.join(dir, 'export'), { videos: 3, frames: 3, size: 32, format: 'png', seed: 5 });
    await zipDirectory(path.join(dir, 'export'), path.join(dir, 'export.zip'), { prefix: 'sam2-export' });
    const converted = await call('/api/v1/datasets/convert?name=drawn', {
      method: 'POST',
      body: new Uint8Array(fs.readFileSync(path.join(dir, 'export.zip'))),
      headers: { 'content-type': 'application/zip' },
    });
    assert.equal(converted.status, 201, converted.text);
    assert.equal(converted.json.dataset.task, 'vision-lm', 'a converted export is checked for the vision task');
    const files = path.join(server.workdir, 'datasets', converted.json.dataset.sha256, 'files');
    const lines = fs.readFileSync(path.join(files, 'data.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

    // The tokenizer is built on the dataset's own words, as a real one would cover them.
    fs.writeFileSync(path.join(dir, 'texts.json'), JSON.stringify(lines.map((l: any) => `${l.prompt} ${l.completion}`)));
    // Not spawnSync: blocking this process for seconds would outlast the server's keep-alive and
    // send the next request on a connection the server had closed.
    await promisify(execFile)(python, [MAKE_LLAVA, path.join(dir, 'hf-models', 'tiny-llava'), path.join(dir, 'texts.json')], { encoding: 'utf8' });

    const split = await call(`/api/v1/datasets/${converted.json.dataset.dataset_id}/split`, {
      method: 'POST',
      json: { strategy: 'temporal', ratios: { train: 0.67, val: 0.33 }, seed: 1 },
    });
    assert.equal(split.status, 201, split.text);
    const splitId = split.json.dataset.dataset_id;

    const submitted = await call('/api/v1/train', {
      method: 'POST',
      json: trainBody({
        model_config: {
          framework: 'transformers', task: 'vision-lm', base_model: 'tiny-llava', name: 'sam2-vlm',
          method: 'lora', lora_r: 16, lora_alpha: 32, lora_dropout: 0, learning_rate: 0.005, batch_size: 8,
          warmup_ratio: 0, max_length: 96, seed: 1, epochs: 12,
          target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'lm_head'],
        },
        dataset: { id: splitId },
      }),
    });
    assert.equal(submitted.status, 202, submitted.text);
    const id = submitted.json.job_id;
    const job = await jobEnded(call, id, 600_000);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    const epochs = (await call(`/api/v1/jobs/${id}/metrics`)).json.epochs;
    const first = epochs[0].metrics.train_loss;
    const last = epochs.at(-1).metrics.train_loss;
    console.log(`SAM2 → vision-lm: ${lines.length} samples, train_loss ${first.toFixed(3)} → ${last.toFixed(3)} over ${epochs.length} epochs`);
    assert.ok(last < 0.5 * first, `train_loss fell from ${first} to ${last}`);

    const model = await waitFor('registered model', async () => {
      const found = (await call(`/api/v1/models?job_id=${id}`)).json.models;
      return found.length > 0 && found[0];
    }, 30_000);
    const sample = lines.find((l: any) => l.meta?.template === 'objects')!;
    const answer = await call(`/api/v1/models/${model.model_id}/generate`, {
      method: 'POST',
      json: { prompt: sample.prompt, image: fs.readFileSync(path.join(files, sample.image)).toString('base64'), max_new_tokens: 24 },
    });
    assert.equal(answer.status, 200, answer.text);
    assert.ok(answer.json.text.length > 0, 'the model answers');
  });
});
