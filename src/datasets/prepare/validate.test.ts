import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { PNG } from 'pngjs';
import type { StoredSample } from './samples.js';
import { modelContext, validateSamples } from './validate.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'trainhook-validate-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
fs.mkdirSync(path.join(root, 'images'));
const png = new PNG({ width: 16, height: 16 });
fs.writeFileSync(path.join(root, 'images/ok.png'), PNG.sync.write(png));
fs.writeFileSync(path.join(root, 'images/broken.png'), 'nope');

const sample = (split: StoredSample['split'], image: string | null, prompt: string, completion: string, classes: string[] = []): StoredSample => ({
  split,
  line: 1,
  image,
  prompt,
  completion,
  value: {},
  meta: { classes },
});
const context = { max_tokens: 2048, source: 'default', tokens: 'estimated' as const, image_tokens: 576 };
const check = (r: ReturnType<typeof validateSamples>, name: string) => r.report.checks.find((c) => c.name === name)!;

describe('validate', () => {
  test('a clean dataset passes', () => {
    const r = validateSamples([sample('train', 'images/ok.png', 'q', 'a', ['x']), sample('val', null, 'q2', 'b', ['x'])], root, { level: 'strict', context });
    assert.equal(r.status, 'passed', JSON.stringify(r.report.checks));
    assert.deepEqual(r.report.summary, { total_samples: 2, issues_found: 0, warnings: 0, errors: 0 });
    assert.deepEqual(r.report.recommendations, []);
  });

  test('unreadable images and paths that leave the dataset are errors at any level', () => {
    const r = validateSamples([sample('train', 'images/broken.png', 'q', 'a'), sample('train', '../outside.png', 'q', 'a'), sample('val', 'images/ok.png', 'q', 'a')], root, { level: 'basic', context });
    assert.equal(r.status, 'failed');
    const c = check(r, 'images_readable');
    assert.equal(c.status, 'error');
    assert.equal(c.details!['total'], 2);
  });

  test('leaks, conflicting answers and long samples: warnings when basic, errors when strict', () => {
    const long = 'x'.repeat(4 * 100);
    const data = [
      sample('train', 'images/ok.png', 'how many?', '2'),
      sample('val', 'images/ok.png', 'how many?', '3'),
      sample('train', null, long, 'a'),
    ];
    const small = { ...context, max_tokens: 50 };
    const basic = validateSamples(data, root, { level: 'basic', context: small });
    const strict = validateSamples(data, root, { level: 'strict', context: small });
    assert.equal(basic.status, 'passed_with_warnings');
    assert.equal(strict.status, 'failed');
    for (const name of ['duplicates', 'answer_consistency', 'token_lengths']) {
      assert.equal(check(basic, name).status, 'warning', name);
      assert.equal(check(strict, name).status, 'error', name);
    }
    assert.equal(check(strict, 'duplicates').details!['images_in_train_and_val'], 1);
    assert.deepEqual((check(strict, 'answer_consistency').details!['examples'] as any[])[0].answers, ['2', '3']);
    assert.equal(strict.report.recommendations.length, 3);
  });

  test('measured token counts replace the estimate', () => {
    const data = [sample('train', null, 'short', 'a'), sample('val', null, 'short', 'b')];
    const measured = { ...context, max_tokens: 10, tokens: 'measured' as const };
    const r = validateSamples(data, root, { level: 'strict', context: measured, tokens: [3, 11] });
    const c = check(r, 'token_lengths');
    assert.equal(c.status, 'error');
    assert.deepEqual(c.details!['examples'], [{ split: 'val', line: 1, tokens: 11 }]);
    assert.match(c.message, /1 samples are longer than the 10-token context/);
    assert.equal(check(validateSamples(data, root, { level: 'strict', context: measured }), 'token_lengths').status, 'passed', 'the estimate of "short" + "a" is 3');
  });

  test('class balance warns when the commonest class has more than ten times the rarest', () => {
    const data = [...Array.from({ length: 22 }, () => sample('train', null, 'q', 'a', ['car'])), sample('val', null, 'q', 'b', ['dog']), sample('val', null, 'q', 'c', ['dog'])];
    const c = check(validateSamples(data, root, { level: 'basic', context }), 'class_balance');
    assert.equal(c.status, 'warning');
    assert.deepEqual(c.details!['rare_classes'], ['dog']);
  });

  test("the context length comes from the base model's config", async () => {
    const models = path.join(root, 'models');
    fs.mkdirSync(path.join(models, 'vlm'), { recursive: true });
    fs.writeFileSync(path.join(models, 'vlm', 'config.json'), JSON.stringify({ text_config: { max_position_embeddings: 4096 } }));
    fs.mkdirSync(path.join(models, 'tok'), { recursive: true });
    fs.writeFileSync(path.join(models, 'tok', 'config.json'), '{}');
    fs.writeFileSync(path.join(models, 'tok', 'tokenizer_config.json'), JSON.stringify({ model_max_length: 1000 }));
    assert.equal(await modelContext(models, 'vlm'), 4096);
    assert.equal(await modelContext(models, 'tok'), 1000);
    await assert.rejects(modelContext(models, 'none'), /no base model folder/);
    await assert.rejects(modelContext(models, '../models'), /one folder name/);
  });
});
