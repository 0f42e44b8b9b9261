import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { JobError } from '../core/errors.js';
import { writeSyntheticCocoDataset } from '../../test/helpers/synthetic-dataset.js';
import { checkCocoDataset, looksLikeCoco, readCocoLayout } from './coco.js';

let tmp: string;
let n = 0;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'trainhook-coco-'));
});
after(() => rm(tmp, { recursive: true, force: true }));

async function dataset(task: 'detect' | 'segment', edit?: (json: any, split: string) => void, valFolder?: 'valid' | 'val') {
  const root = path.join(tmp, `ds-${n++}`, 'export');
  await writeSyntheticCocoDataset(root, { task, train: 6, val: 3, imgsz: 64, classes: ['box', 'disc'], seed: 4, ...(valFolder ? { valFolder } : {}) });
  if (edit) {
    for (const split of ['train', valFolder ?? 'valid']) {
      const file = path.join(root, split, '_annotations.coco.json');
      const json = JSON.parse(await readFile(file, 'utf8'));
      edit(json, split);
      await writeFile(file, JSON.stringify(json));
    }
  }
  return path.dirname(root);
}

async function check(dir: string, task: 'detect' | 'segment' = 'detect') {
  return checkCocoDataset(await readCocoLayout(dir), { task, displayRoot: dir });
}

async function problems(dir: string, task: 'detect' | 'segment' = 'detect'): Promise<string[]> {
  try {
    await check(dir, task);
  } catch (err) {
    assert.ok(err instanceof JobError, String(err));
    assert.equal(err.code, 'DATASET_INVALID');
    return ((err.details as { problems?: { message: string }[] }).problems ?? []).map((p) => p.message).concat(err.message);
  }
  return [];
}

describe('COCO datasets', () => {
  it('a Roboflow COCO export in one top-level folder: found, checked and counted', async () => {
    const dir = await dataset('detect');
    assert.equal(await looksLikeCoco(dir), true);
    const info = await check(dir);
    assert.equal(info.train_images, 6);
    assert.equal(info.val_images, 3);
    assert.deepEqual(info.classes, ['box', 'disc']);
    assert.ok(info.splits.train.instances >= 6);
    assert.equal(info.class_distribution['box']! + info.class_distribution['disc']!, info.splits.train.instances + info.splits.val.instances);
    const layout = await readCocoLayout(dir);
    assert.equal(path.basename(layout.root), 'export');
  });

  it('segment polygons pass; val/ is accepted as the validation folder', async () => {
    assert.equal((await check(await dataset('segment'), 'segment')).train_images, 6);
    assert.equal((await check(await dataset('detect', undefined, 'val'))).val_images, 3);
  });

  it('refuses boxes outside the image, unknown categories and images, and bad polygons', async () => {
    const bad = await dataset('segment', (json, split) => {
      if (split !== 'train') return;
      json.annotations[0].bbox = [50, 50, 40, 40];
      json.annotations[1].category_id = 99;
      json.annotations[2].image_id = 1234;
      json.annotations[3].segmentation = [[1, 2, 3, 4]];
    });
    const found = await problems(bad, 'segment');
    assert.ok(found.some((m) => /lies outside its 64x64 image/.test(m)), found.join('\n'));
    assert.ok(found.some((m) => /category_id 99 is not a category/.test(m)), found.join('\n'));
    assert.ok(found.some((m) => /image_id 1234 is not an image/.test(m)), found.join('\n'));
    assert.ok(found.some((m) => /3 or more x y pairs/.test(m)), found.join('\n'));
  });

  it('refuses a missing image file, a file outside its split, mismatched sizes and categories that differ', async () => {
    const bad = await dataset('detect', (json, split) => {
      if (split === 'train') {
        json.images[0].file_name = 'missing.png';
        json.images[1].file_name = '../../etc/passwd';
        json.images[2].width = 640;
      } else json.categories[1].name = 'circle';
    });
    const found = await problems(bad);
    assert.ok(found.some((m) => /cannot open the image/.test(m)), found.join('\n'));
    assert.ok(found.some((m) => /points outside its split folder/.test(m)), found.join('\n'));
    assert.ok(found.some((m) => /the JSON says 640x64, the image is 64x64/.test(m)), found.join('\n'));
    assert.ok(found.some((m) => /categories of valid differ from train/.test(m)), found.join('\n'));
  });

  it('names what is missing: no splits, no validation split, not JSON', async () => {
    const empty = path.join(tmp, 'empty');
    await writeFile(path.join(tmp, 'placeholder'), '');
    await import('node:fs/promises').then((fs) => fs.mkdir(empty, { recursive: true }));
    await assert.rejects(readCocoLayout(empty), /no COCO dataset found/);
    const noVal = await dataset('detect');
    await rm(path.join(noVal, 'export', 'valid'), { recursive: true });
    await assert.rejects(readCocoLayout(noVal), /no validation split/);
    const notJson = await dataset('detect');
    await writeFile(path.join(notJson, 'export', 'train', '_annotations.coco.json'), '{"images": [');
    await assert.rejects(check(notJson), /is not valid JSON/);
  });
});
