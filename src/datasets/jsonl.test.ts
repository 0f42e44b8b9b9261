import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { PNG } from 'pngjs';
import { JobError } from '../core/errors.js';
import { checkJsonlDataset, readJsonlLayout, sampleProblem, valCount } from './jsonl.js';

function dir(files: Record<string, string>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'trainhook-jsonl-'));
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    fs.writeFileSync(path.join(root, name), text);
  }
  return root;
}

const line = (o: unknown) => JSON.stringify(o);
const pc = (i: number) => line({ prompt: `p${i}`, completion: `c${i}` });

async function check(root: string) {
  return checkJsonlDataset(await readJsonlLayout(root), { task: 'causal-lm', displayRoot: root });
}

async function refusal(p: Promise<unknown>): Promise<JobError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof JobError, String(err));
    assert.equal(err.code, 'DATASET_INVALID');
    return err;
  }
  assert.fail('expected DATASET_INVALID');
}

describe('jsonl text datasets', () => {
  test('a sample is prompt + completion, or messages with an assistant answer', () => {
    assert.equal(sampleProblem({ prompt: '', completion: 'x' }), null);
    assert.equal(sampleProblem({ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] }), null);
    assert.match(sampleProblem([1])!, /JSON object, not an array/);
    assert.match(sampleProblem({ prompt: 'x' })!, /needs "prompt" and "completion"/);
    assert.match(sampleProblem({ prompt: 1, completion: 'x' })!, /"prompt" must be a string/);
    assert.match(sampleProblem({ prompt: 'x', completion: '  ' })!, /"completion" is empty/);
    assert.match(sampleProblem({ messages: [] })!, /non-empty array/);
    assert.match(sampleProblem({ messages: [{ role: 'bot', content: 'x' }] })!, /messages\[0\]\.role/);
    assert.match(sampleProblem({ messages: [{ role: 'user', content: 'x' }] })!, /no assistant message/);
    assert.equal(sampleProblem({ image: 'images/v/000001.jpg', prompt: 'q', completion: 'a', meta: { video: 'v', frame: 1 } }), null);
    assert.match(sampleProblem({ image: 3, prompt: 'q', completion: 'a' })!, /"image" must be a non-empty string/);
    assert.match(sampleProblem({ prompt: 'q', completion: 'a', meta: [] })!, /"meta" must be an object/);
  });

  test('train.jsonl + val.jsonl, inside a single top-level folder, counted per split', async () => {
    const root = dir({ 'set/train.jsonl': [pc(1), pc(2), '', pc(3)].join('\n') + '\n', 'set/valid.jsonl': pc(4) + '\r\n' });
    const layout = await readJsonlLayout(root);
    assert.equal(layout.root, path.join(root, 'set'));
    const info = await check(root);
    assert.deepEqual(info.samples_per_split, { train: 3, val: 1 });
    assert.equal(info.total_samples, 4);
    assert.equal(info.split, null);
  });

  test('one data.jsonl is split: a tenth (rounded half up, at least one) for validation', async () => {
    assert.deepEqual([2, 5, 10, 15, 20, 25, 100].map(valCount), [1, 1, 1, 2, 2, 3, 10]);
    const info = await check(dir({ 'data.jsonl': Array.from({ length: 20 }, (_, i) => pc(i)).join('\n') }));
    assert.deepEqual(info.samples_per_split, { train: 18, val: 2 });
    assert.deepEqual(info.split, { source: 'data.jsonl', seed: 0, val_fraction: 0.1 });
    const few = await refusal(check(dir({ 'data.jsonl': pc(1) })));
    assert.match(few.message, /at least 2/);
  });

  test('every bad line is named by file and line', async () => {
    const root = dir({ 'train.jsonl': [pc(1), '{oops', line({ prompt: 'x', completion: 3 })].join('\n'), 'val.jsonl': line('text') });
    const err = await refusal(check(root));
    assert.match(err.message, /^3 problems in 2 files, first: train\.jsonl:2: not valid JSON/);
    const problems = (err.details as { problems: { file: string; line: number }[] }).problems;
    assert.deepEqual(problems.map((p) => `${p.file}:${p.line}`), ['train.jsonl:2', 'train.jsonl:3', 'val.jsonl:1']);
  });

  test('missing files and empty splits are refused with what a text dataset is', async () => {
    assert.match((await refusal(readJsonlLayout(dir({ 'a.txt': 'x' })))).message, /no train\.jsonl or data\.jsonl/);
    assert.match((await refusal(readJsonlLayout(dir({ 'train.jsonl': pc(1) })))).message, /no val\.jsonl/);
    assert.match((await refusal(check(dir({ 'train.jsonl': pc(1), 'val.jsonl': '\n' })))).message, /validation split holds no samples/);
  });
});

describe('jsonl vision-language datasets (task vision-lm)', () => {
  const png = () => {
    const img = new PNG({ width: 16, height: 16 });
    img.data.fill(128);
    return PNG.sync.write(img);
  };
  const vision = async (root: string) => checkJsonlDataset(await readJsonlLayout(root), { task: 'vision-lm', displayRoot: root });

  test('every line names a readable image inside the folder of the JSONL files; each file read once', async () => {
    const root = dir({ 'ds/train.jsonl': '', 'ds/val.jsonl': '' });
    try {
      fs.mkdirSync(path.join(root, 'ds', 'images'));
      fs.writeFileSync(path.join(root, 'ds', 'images', 'a.png'), png());
      fs.writeFileSync(path.join(root, 'ds', 'images', 'b.png'), png());
      const s = (image: string, extra: Record<string, unknown> = {}) => line({ image, prompt: 'q', completion: 'a', ...extra });
      fs.writeFileSync(path.join(root, 'ds', 'train.jsonl'), [s('images/a.png', { meta: { frame: 3 } }), s('images/a.png'), s('images/b.png')].join('\n'));
      fs.writeFileSync(path.join(root, 'ds', 'val.jsonl'), s('images/b.png'));
      const info = await vision(root);
      assert.deepEqual(info.samples_per_split, { train: 3, val: 1 });
      assert.equal(info.total_images, 2);
      assert.equal(info.train_images, 3);

      fs.writeFileSync(path.join(root, 'ds', 'val.jsonl'), [s('images/b.png'), s('images/../images/a.png'), s('./images/c.png'), s('C:/x.png'), line({ prompt: 'q', completion: 'a' }), line({ image: 7, prompt: 'q', completion: 'a' })].join('\n'));
      const err = await refusal(vision(root));
      const problems = (err.details as { problems: { file: string; line: number; message: string }[] }).problems;
      assert.deepEqual(problems.map((p) => [p.file, p.line]), [2, 3, 4, 5, 6].map((l) => [path.join('ds', 'val.jsonl'), l]));
      assert.match(problems[0]!.message, /must not contain "\.\."/);
      assert.match(problems[1]!.message, /images\/c\.png is not in the archive/);
      assert.match(problems[2]!.message, /relative path/);
      assert.match(problems[3]!.message, /"image" is missing/);
      assert.match(problems[4]!.message, /non-empty string/);
      // The same lines are text samples for causal-lm: the image field is not read there.
      fs.writeFileSync(path.join(root, 'ds', 'val.jsonl'), s('images/nowhere.png'));
      assert.deepEqual((await check(root)).samples_per_split, { train: 3, val: 1 });
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
