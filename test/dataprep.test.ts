/**
 * Data preparation through the API of a real server (API only: no job runs): a SAM2 export the
 * test draws (real JPEG and PNG frames, COCO RLE masks in both counts forms, boxes) converted
 * into a dataset, validated at both levels, split three ways, and the results listed, trained
 * on by id and deleted like uploads.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setupPython } from '../scripts/setup-python.mjs';
import { transformersEngine } from '../src/engines/transformers/index.js';
import { backends } from './helpers/database.js';
import { rawZip } from './helpers/raw-zip.js';
import { writeSam2Export, type DrawnFrame } from './helpers/sam2-export.js';
import { api, startTestServer, tempDir, type TestServer } from './helpers/server.js';
import { makeTinyLlama } from './helpers/tiny-models.js';
import { writeSyntheticDataset, zipDirectory } from './helpers/synthetic-dataset.js';


type Line = { image?: string; prompt: string; completion: string; meta?: { video: string; frame: number; classes: string[]; template: string } };

const readLines = (file: string): Line[] =>
  fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);

async function exportZip(dir: string, name: string, opts: Parameters<typeof writeSam2Export>[1], edit?: (root: string) => void) {
  const root = path.join(dir, name);
  const drawn = await writeSam2Export(root, opts);
  edit?.(root);
  const zip = path.join(dir, `${name}.zip`);
  await zipDirectory(root, zip, { prefix: 'sam2-export' });
  return { zip: fs.readFileSync(zip), ...drawn };
}

for (const backend of backends()) {
  describe(`data preparation on ${backend}`, () => {
    let server: TestServer;
    let call: ReturnType<typeof api>;
    let dir: string;
    let exported: { zip: Buffer; frames: DrawnFrame[] };
    let converted: any;
    let python: string;
    const files = (d: any) => path.join(server.workdir, 'datasets', d.sha256, 'files');
    const convert = (body: Buffer, query = '', type = 'application/zip') =>
      call(`/api/v1/datasets/convert${query}`, { method: 'POST', body: new Uint8Array(body), headers: { 'content-type': type } });
    const validate = (id: string, json: unknown) => call(`/api/v1/datasets/${id}/validate`, { method: 'POST', json });
    const split = (id: string, json: unknown) => call(`/api/v1/datasets/${id}/split`, { method: 'POST', json });
    const splitFiles = (d: any) =>
      Object.fromEntries(
        (['train', 'val', 'test'] as const).map((p) => [p, fs.existsSync(path.join(files(d), `${p}.jsonl`)) ? readLines(path.join(files(d), `${p}.jsonl`)) : []]),
      ) as Record<'train' | 'val' | 'test', Line[]>;

    before(async () => {
      dir = tempDir('trainhook-dataprep-');
      exported = await exportZip(dir, 'export', { videos: 5, frames: 4, format: 'jpg', seed: 3 });
      // A config without a tokenizer (its context length is read, nothing can be measured), and a
      // tiny LLaMA with its own BPE tokenizer (max_position_embeddings 256).
      const models = path.join(dir, 'hf-models');
      fs.mkdirSync(path.join(models, 'tiny-context'), { recursive: true });
      fs.writeFileSync(path.join(models, 'tiny-context', 'config.json'), JSON.stringify({ model_type: 'llama', max_position_embeddings: 64 }));
      process.env['OMP_NUM_THREADS'] = '1';
      python = await setupPython({ requirementsFile: transformersEngine.python.requirements });
      makeTinyLlama(python, path.join(models, 'tiny-llama'), ['Which objects are in this image? The image shows 1 car and 2 persons.', 'Where is the dog?']);
      server = await startTestServer({ backend, env: { RUN_JOBS: 'false', HF_MODELS_DIR: path.join(dir, 'hf-models') } });
      call = api(server.url);
    });
    after(() => server.stop());

    test('a SAM2 export converts into a stored jsonl dataset with images, LLaVA conversations and statistics', async () => {
      const r = await convert(exported.zip, '?name=street');
      assert.equal(r.status, 201, r.text);
      converted = r.json.dataset;
      assert.equal(converted.origin, 'convert');
      assert.equal(converted.format, 'jsonl');
      assert.equal(converted.name, 'street');
      assert.equal(converted.parent_id, null);
      const stats = r.json.statistics;
      assert.equal(stats.videos, 5);
      assert.equal(stats.frames, 20);
      assert.deepEqual(stats.classes, ['car', 'dog', 'person']);
      // Every frame shows each object but the hidden dog of frame 1 (an empty mask, left out).
      assert.deepEqual(stats.class_distribution, { car: 20, person: 20, dog: 15 });
      assert.equal(stats.empty_masks, 5);
      assert.deepEqual(converted.stats, stats);
      assert.equal(converted.info.total_samples, stats.samples);

      const lines = readLines(path.join(files(converted), 'data.jsonl'));
      assert.equal(lines.length, stats.samples);
      assert.equal(lines.length, stats.samples_per_template.objects + stats.samples_per_template.locate + stats.samples_per_template.count + stats.samples_per_template.changes);
      assert.equal(stats.samples_per_template.changes, 15, 'one per frame after the first of each video');
      for (const l of lines) assert.ok(fs.existsSync(path.join(files(converted), l.image!)), l.image);
      // The boxes in the answers are the drawn ones, whichever way the export gave them (mask string, mask array + box, box).
      for (const f of exported.frames.filter((fr) => fr.video === 'video2' && fr.index === 2)) {
        for (const o of f.objects) {
          const s = lines.find((l) => l.meta!.video === 'video2' && l.meta!.frame === 2 && l.meta!.template === 'locate' && l.meta!.classes[0] === o.label);
          assert.equal(s?.completion, `The ${o.label} is at [${o.box.join(', ')}].`);
          assert.equal(s.image, 'images/video2/000002.jpg');
        }
      }
      const hidden = lines.find((l) => l.meta!.video === 'video1' && l.meta!.frame === 1 && l.meta!.template === 'objects');
      assert.equal(hidden?.completion, 'The image shows 1 car and 1 person.');
      const llava = JSON.parse(fs.readFileSync(path.join(files(converted), 'llava.json'), 'utf8'));
      assert.equal(llava.length, stats.samples);
      assert.equal(llava[0].conversations[0].from, 'human');
      assert.equal(llava[0].conversations[0].value, `<image>\n${lines[0]!.prompt}`);
      assert.equal(llava[0].conversations[1].value, lines[0]!.completion);

      const again = await convert(exported.zip);
      assert.equal(again.status, 200, 'the same export is the same dataset');
      assert.equal(again.json.dataset.dataset_id, converted.dataset_id);
      const list = await call('/api/v1/datasets');
      assert.ok(list.json.datasets.some((d: any) => d.dataset_id === converted.dataset_id && d.origin === 'convert'));
    });

    test('PNG frames and a chosen set of templates', async () => {
      const png = await exportZip(dir, 'png', { videos: 1, frames: 3, format: 'png', seed: 9, labels: ['car'] });
      const r = await convert(png.zip, '?templates=objects,count');
      assert.equal(r.status, 201, r.text);
      assert.deepEqual(r.json.statistics.samples_per_template, { objects: 3, count: 3 });
      const lines = readLines(path.join(files(r.json.dataset), 'data.jsonl'));
      assert.match(lines[0]!.image!, /^images\/video1\/000000\.png$/);
      assert.equal((await convert(png.zip, '?templates=objects,colours')).json.error.code, 'VALIDATION_ERROR');
      // One video cannot be split with its frames kept together.
      const s = await split(r.json.dataset.dataset_id, { strategy: 'temporal', ratios: { train: 0.8, val: 0.2 } });
      assert.equal(s.status, 400, s.text);
      assert.equal(s.json.error.code, 'SPLIT_IMPOSSIBLE');
    });

    test('a broken export is refused with SAM2_INVALID naming the file and the field', async () => {
      const cases: Array<[string, (root: string) => void, string, string | RegExp]> = [
        [
          'bad-counts',
          (root) => {
            const a = JSON.parse(fs.readFileSync(path.join(root, 'annotations.json'), 'utf8'));
            a.videos[0].frames[1].objects[0].segmentation.counts = [5, 5];
            fs.writeFileSync(path.join(root, 'annotations.json'), JSON.stringify(a));
          },
          'annotations.json',
          'videos[0].frames[1].objects[0].segmentation.counts',
        ],
        [
          'bad-size',
          (root) => {
            const a = JSON.parse(fs.readFileSync(path.join(root, 'annotations.json'), 'utf8'));
            a.videos[0].frames[0].objects[0].segmentation.size = [10, 10];
            fs.writeFileSync(path.join(root, 'annotations.json'), JSON.stringify(a));
          },
          'annotations.json',
          'videos[0].frames[0].objects[0].segmentation.size',
        ],
        [
          'no-label',
          (root) => {
            const a = JSON.parse(fs.readFileSync(path.join(root, 'annotations.json'), 'utf8'));
            delete a.videos[0].frames[0].objects[1].label;
            fs.writeFileSync(path.join(root, 'annotations.json'), JSON.stringify(a));
          },
          'annotations.json',
          'videos[0].frames[0].objects[1].label',
        ],
        ['missing-frame', (root) => fs.rmSync(path.join(root, 'frames/video1/00001.jpg')), 'frames/video1/00001.jpg', 'videos[0].frames[1].file'],
        ['broken-frame', (root) => fs.writeFileSync(path.join(root, 'frames/video1/00000.jpg'), 'not an image'), 'frames/video1/00000.jpg', 'videos[0].frames[0].file'],
        ['no-annotations', (root) => fs.rmSync(path.join(root, 'annotations.json')), 'annotations.json', ''],
      ];
      for (const [name, edit, file, field] of cases) {
        const bad = await exportZip(dir, name, { videos: 1, frames: 2, seed: 5 }, edit);
        const r = await convert(bad.zip);
        assert.equal(r.status, 400, `${name}: ${r.text}`);
        assert.equal(r.json.error.code, 'SAM2_INVALID', name);
        assert.equal(r.json.error.details.file, file, name);
        assert.equal(r.json.error.details.field, field, name);
      }
      const slip = await convert(rawZip([{ name: '../annotations.json', data: '{}' }]));
      assert.equal(slip.status, 400);
      assert.equal(slip.json.error.code, 'DATASET_INVALID');
      assert.equal(slip.json.error.details.reason, 'PATH_TRAVERSAL');
      const junk = await convert(Buffer.from('not a zip at all'));
      assert.equal(junk.json.error.code, 'DATASET_CORRUPTED');
      assert.equal((await convert(exported.zip, '', 'application/json')).status, 415);
      assert.equal((await call('/api/v1/datasets/convert')).status, 405);
      // Nothing refused was stored, and no temporary folder was left.
      assert.equal((await call('/api/v1/datasets?limit=500')).json.datasets.filter((d: any) => d.origin === 'convert').length, 2);
      assert.deepEqual(fs.readdirSync(path.join(server.workdir, 'datasets', '.tmp')), []);
    });

    test('validate: basic passes with advice, strict fails a context the samples do not fit, and the report is kept', async () => {
      const id = converted.dataset_id;
      const basic = await validate(id, { level: 'basic' });
      assert.equal(basic.status, 200, basic.text);
      assert.notEqual(basic.json.status, 'failed', basic.text);
      const check = (r: any, name: string) => r.json.report.checks.find((c: any) => c.name === name);
      assert.deepEqual(basic.json.report.checks.map((c: any) => c.name), ['images_readable', 'token_lengths', 'duplicates', 'class_balance', 'answer_consistency']);
      assert.equal(check(basic, 'images_readable').status, 'passed');
      assert.equal(check(basic, 'images_readable').details.images, 20);
      assert.equal(check(basic, 'answer_consistency').status, 'passed');
      assert.equal(basic.json.report.summary.total_samples, converted.stats.samples);
      assert.equal(basic.json.context.max_tokens, 2048);
      assert.ok(basic.json.report.recommendations.some((r: string) => /temporal/.test(r)), 'a single data.jsonl is advised to be split');

      // strict with a base model counts with its tokenizer; its context (256) is shorter than an image's 576 tokens.
      const strict = await validate(id, { level: 'strict', base_model: 'tiny-llama' });
      assert.equal(strict.status, 200, strict.text);
      assert.equal(strict.json.status, 'failed');
      assert.deepEqual(strict.json.context, { max_tokens: 256, source: 'base model tiny-llama', tokens: 'measured', image_tokens: 576 });
      assert.equal(check(strict, 'token_lengths').status, 'error');
      assert.equal(strict.json.report.summary.errors, 1);
      // The counts are the tokenizer's: the first over-long line, counted again here by the same tokenizer.
      const tight = await validate(id, { level: 'strict', base_model: 'tiny-llama', max_tokens: 16, image_tokens: 0 });
      const first = check(tight, 'token_lengths').details.examples[0];
      const line = readLines(path.join(files(converted), 'data.jsonl'))[first.line - 1]!;
      // Asynchronously: a synchronous child would block this process for seconds, past the
      // server's keep-alive timeout, and the next request would go out on a connection the
      // server had already closed (ECONNRESET under load).
      const counted = await promisify(execFile)(
        python,
        ['-c', 'import sys, json; from transformers import AutoTokenizer; t = AutoTokenizer.from_pretrained(sys.argv[1]); print(len(t(json.loads(sys.argv[2]))["input_ids"]))', path.join(dir, 'hf-models', 'tiny-llama'), JSON.stringify(line.prompt + line.completion)],
        { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' } },
      );
      assert.equal(first.tokens, Number(counted.stdout.trim()));
      assert.notEqual(first.tokens, Math.ceil(line.prompt.length / 4) + Math.ceil(line.completion.length / 4), 'measured, not the estimate');
      // A folder without a tokenizer cannot be measured with.
      const untokenized = await validate(id, { level: 'strict', base_model: 'tiny-context' });
      assert.equal(untokenized.status, 400, untokenized.text);
      assert.equal(untokenized.json.error.code, 'BASE_MODEL_NOT_FOUND');
      // basic estimates, against the context the folder's config declares.
      const lenient = await validate(id, { level: 'basic', base_model: 'tiny-context' });
      assert.deepEqual(lenient.json.context, { max_tokens: 64, source: 'base model tiny-context', tokens: 'estimated', image_tokens: 576 });
      assert.equal(check(lenient, 'token_lengths').status, 'warning');
      assert.equal(lenient.json.status, 'passed_with_warnings');

      const row = await call(`/api/v1/datasets/${id}`);
      assert.equal(row.json.validation.status, 'passed_with_warnings', 'the last report is kept on the dataset');
      assert.equal(row.json.validation.level, 'basic');

      assert.equal((await validate(id, { level: 'strict', base_model: 'no-such-model' })).json.error.code, 'BASE_MODEL_NOT_FOUND');
      assert.equal((await validate(id, { level: 'strict', base_model: '../etc' })).json.error.code, 'BASE_MODEL_NOT_FOUND');
      assert.equal((await validate(id, { level: 'paranoid' })).json.error.code, 'VALIDATION_ERROR');
      assert.equal((await validate('00000000-0000-4000-8000-000000000000', { level: 'basic' })).status, 404);
    });

    test('a temporal split never puts frames of one video on both sides, whatever the seed', async () => {
      for (const seed of [0, 1, 2, 3, 4, 5]) {
        const r = await split(converted.dataset_id, { strategy: 'temporal', ratios: { train: 0.6, val: 0.2, test: 0.2 }, seed });
        assert.equal(r.status, 201, r.text);
        const d = r.json.dataset;
        assert.equal(d.origin, 'split');
        assert.equal(d.parent_id, converted.dataset_id);
        const parts = splitFiles(d);
        const videos = Object.fromEntries(Object.entries(parts).map(([p, lines]) => [p, new Set(lines.map((l) => l.meta!.video))]));
        for (const [a, b] of [['train', 'val'], ['train', 'test'], ['val', 'test']] as const) {
          const both = [...videos[a]!].filter((v) => videos[b]!.has(v));
          assert.deepEqual(both, [], `seed ${seed}: ${both.join(', ')} in ${a} and ${b}`);
        }
        for (const p of ['train', 'val', 'test'] as const) assert.ok(parts[p].length > 0, `seed ${seed}: ${p} is empty`);
        assert.equal(parts.train.length + parts.val.length + parts.test.length, converted.stats.samples);
        assert.deepEqual(r.json.statistics.videos, { train: videos['train']!.size, val: videos['val']!.size, test: videos['test']!.size });
        assert.equal(r.json.statistics.train_samples, parts.train.length);
        for (const l of [...parts.train, ...parts.val, ...parts.test]) assert.ok(fs.existsSync(path.join(files(d), l.image!)), l.image);
        // Each split also as LLaVA conversations, in the same order.
        for (const p of ['train', 'val', 'test'] as const) {
          const llava = JSON.parse(fs.readFileSync(path.join(files(d), `llava_${p}.json`), 'utf8'));
          assert.deepEqual(
            llava.map((e: any) => [e.image, e.conversations[0].value, e.conversations[1].value]),
            parts[p].map((l) => [l.image, `<image>\n${l.prompt}`, l.completion]),
          );
        }
        // Checked as a jsonl dataset: train.jsonl and val.jsonl (test.jsonl beside them).
        assert.equal(d.info.samples_per_split.train, parts.train.length);
        assert.equal(d.info.samples_per_split.val, parts.val.length);
      }
      const first = await split(converted.dataset_id, { strategy: 'temporal', ratios: { train: 0.6, val: 0.2, test: 0.2 }, seed: 0 });
      assert.equal(first.status, 200, 'the same split again is the same dataset');
      const strict = await validate(first.json.dataset.dataset_id, { level: 'strict' });
      assert.equal(strict.json.report.checks.find((c: any) => c.name === 'duplicates').status, 'passed', strict.text);
    });

    test('random and stratified splits: a random one leaks frames (validate says so), a stratified one spreads classes', async () => {
      const random = await split(converted.dataset_id, { strategy: 'random', ratios: { train: 0.8, val: 0.2 }, seed: 1 });
      assert.equal(random.status, 201, random.text);
      const parts = splitFiles(random.json.dataset);
      assert.equal(parts.test.length, 0);
      assert.equal(parts.val.length, Math.round(converted.stats.samples * 0.2));
      const leak = await validate(random.json.dataset.dataset_id, { level: 'strict' });
      const dup = leak.json.report.checks.find((c: any) => c.name === 'duplicates');
      assert.equal(dup.status, 'error', 'the same frame images on both sides of a random split');
      assert.ok(dup.details.images_in_train_and_val > 0);
      assert.equal(leak.json.status, 'failed');

      const strat = await split(converted.dataset_id, { strategy: 'stratified', ratios: { train: 0.7, val: 0.3 }, seed: 2 });
      assert.equal(strat.status, 201, strat.text);
      for (const [cls, n] of Object.entries(strat.json.statistics.class_distribution) as Array<[string, any]>) {
        const total = n.train + n.val;
        assert.ok(Math.abs(n.val - total * 0.3) <= 0.3 * total * 0.34 + 2, `${cls}: ${JSON.stringify(n)}`);
      }

      for (const ratios of [{ train: 0.5, val: 0.2 }, { train: 0, val: 1 }, { train: 0.5, val: 0.5, extra: 0 }]) {
        const r = await split(converted.dataset_id, { strategy: 'random', ratios });
        assert.equal(r.status, 400, JSON.stringify(ratios));
        assert.equal(r.json.error.code, 'VALIDATION_ERROR');
      }
    });

    test('prepared datasets are trained on by id, held while a job uses them, and deleted like uploads', async () => {
      const list = (await call('/api/v1/datasets?limit=500')).json.datasets;
      const child = list.find((d: any) => d.origin === 'split' && d.parent_id === converted.dataset_id && d.stats.strategy === 'temporal');
      const job = await call('/api/v1/train', {
        method: 'POST',
        json: {
          model_config: { framework: 'transformers', task: 'causal-lm', base_model: 'tiny-llama', name: 'vl', epochs: 1 },
          dataset: { id: child.dataset_id, format: 'jsonl' },
        },
      });
      assert.equal(job.status, 202, job.text);
      const held = await call(`/api/v1/datasets/${child.dataset_id}`, { method: 'DELETE' });
      assert.equal(held.status, 409);
      assert.equal(held.json.error.code, 'DATASET_IN_USE');
      assert.equal((await call(`/api/v1/jobs/${job.json.job_id}`, { method: 'DELETE' })).status, 200);
      // The parent goes; its splits are datasets of their own and stay.
      assert.equal((await call(`/api/v1/datasets/${converted.dataset_id}`, { method: 'DELETE' })).status, 200);
      assert.equal((await call(`/api/v1/datasets/${converted.dataset_id}`)).status, 404);
      assert.equal((await call(`/api/v1/datasets/${child.dataset_id}`)).json.parent_id, converted.dataset_id);
      assert.equal((await call(`/api/v1/datasets/${child.dataset_id}`, { method: 'DELETE' })).status, 200);

      // An image dataset is not something validate or split reads.
      const yolo = path.join(dir, 'yolo');
      await writeSyntheticDataset(yolo, { task: 'detect', train: 2, val: 1, imgsz: 32, classes: ['a'], seed: 1 });
      await zipDirectory(yolo, `${yolo}.zip`);
      const up = await call('/api/v1/datasets', { method: 'POST', body: new Uint8Array(fs.readFileSync(`${yolo}.zip`)), headers: { 'content-type': 'application/zip' } });
      assert.equal(up.status, 201, up.text);
      assert.equal(up.json.origin, 'upload');
      assert.equal((await validate(up.json.dataset_id, { level: 'basic' })).json.error.code, 'DATASET_NOT_JSONL');
      assert.equal((await split(up.json.dataset_id, { strategy: 'random', ratios: { train: 0.5, val: 0.5 } })).json.error.code, 'DATASET_NOT_JSONL');
    });
  });
}
