import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PNG } from 'pngjs';
import { JobError } from '../core/errors.js';
import { writeSyntheticDataset } from '../../test/helpers/synthetic-dataset.js';
import { checkDataset, type DatasetInfo, type Problem } from './check.js';
import { checkLabelText } from './labels.js';
import { readLayout } from './layout.js';

let tmp: string;
let detectSrc: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'trainhook-check-'));
  detectSrc = path.join(tmp, 'detect-src');
  await writeSyntheticDataset(detectSrc, { task: 'detect', train: 12, val: 4, imgsz: 48, classes: ['red', 'green', 'blue'], seed: 3 });
});
after(() => rm(tmp, { recursive: true, force: true }));

let n = 0;
/** A fresh copy of the detect dataset, to break. */
async function copy(): Promise<string> {
  const dir = path.join(tmp, `case-${n++}`);
  await cp(detectSrc, dir, { recursive: true });
  return dir;
}
async function check(root: string, task: 'detect' | 'segment' = 'detect') {
  return checkDataset(await readLayout(root), { task, displayRoot: root });
}
async function problemsOf(root: string, task: 'detect' | 'segment' = 'detect') {
  try {
    await check(root, task);
  } catch (e) {
    assert.ok(e instanceof JobError, String(e));
    assert.equal(e.code, 'DATASET_INVALID');
    return { error: e, ...(e.details as { problems: Problem[]; total_problems: number; files_with_problems: number; dataset_info: DatasetInfo }) };
  }
  assert.fail('expected DATASET_INVALID');
}
async function labelLines(root: string, split: string): Promise<number> {
  const dir = path.join(root, 'labels', split);
  let lines = 0;
  for (const f of await readdir(dir)) {
    lines += (await import('node:fs')).readFileSync(path.join(dir, f), 'utf8').split('\n').filter((l) => l.trim()).length;
  }
  return lines;
}

describe('checkDataset: valid datasets', () => {
  for (const task of ['detect', 'segment'] as const) {
    for (const layout of ['ultralytics', 'roboflow'] as const) {
      it(`${task}, ${layout} layout`, async () => {
        const root = path.join(tmp, `ok-${task}-${layout}`);
        await writeSyntheticDataset(root, { task, layout, train: 10, val: 5, imgsz: 40, classes: ['a', 'b', 'c', 'd'], seed: 11, format: layout === 'roboflow' ? 'jpg' : 'png' });
        const info = await check(root, task);
        assert.equal(info.train_images, 10);
        assert.equal(info.val_images, 5);
        assert.equal(info.total_images, 15);
        assert.deepEqual(info.classes, ['a', 'b', 'c', 'd']);
        const total = Object.values(info.class_distribution).reduce((a, b) => a + b, 0);
        assert.equal(total, info.splits.train.instances + info.splits.val.instances);
        assert.ok(total >= 15 && total <= 45);
        assert.equal(info.background_images, 0);
        assert.equal(info.train_val_duplicates, 0);
        assert.deepEqual(info.warnings, []);
      });
    }
  }

  it('counts instances per class and split from the label files', async () => {
    const root = await copy();
    const info = await check(root);
    assert.equal(info.splits.train.instances, await labelLines(root, 'train'));
    assert.equal(info.splits.val.instances, await labelLines(root, 'val'));
    for (const name of info.classes) {
      assert.equal(info.class_distribution[name], info.splits.train.class_distribution[name]! + info.splits.val.class_distribution[name]!);
    }
  });

  it('counts background images (empty or missing label files) and accepts polygons in detect', async () => {
    const root = await copy();
    await writeFile(path.join(root, 'labels/train/train_00000.txt'), '');
    await rm(path.join(root, 'labels/train/train_00001.txt'));
    await writeFile(path.join(root, 'labels/train/train_00002.txt'), '0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5\n\n');
    const info = await check(root);
    assert.equal(info.background_images, 2);
    assert.equal(info.splits.train.missing_labels, 1);
    assert.equal(info.splits.train.background_images, 2);
  });

  it('finds identical images shared by train and val, and duplicate label rows', async () => {
    const root = await copy();
    await cp(path.join(root, 'images/train/train_00003.png'), path.join(root, 'images/val/copy.png'));
    await writeFile(path.join(root, 'labels/val/copy.txt'), '1 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n');
    const info = await check(root);
    assert.equal(info.train_val_duplicates, 1);
    assert.deepEqual(info.train_val_duplicate_examples, [{ train: 'images/train/train_00003.png', val: 'images/val/copy.png' }]);
    assert.equal(info.duplicate_label_rows, 1);
    assert.match(info.warnings.join('\n'), /1 image\(s\) in val are identical to images in train/);
  });
});

describe('checkDataset: problems', () => {
  it('reports each bad label line with its file and line', async () => {
    const root = await copy();
    const bad = [
      '0 0.5 0.5 0.2', // wrong column count
      '7 0.5 0.5 0.2 0.2', // class out of range
      '1 1.5 0.5 0.2 0.2', // coordinate outside [0,1]
      '1 0.5 nan 0.2 0.2', // NaN
      '1 0.1 0.1 0.5 0.1 0.5 0.5 0.1', // polygon with an odd coordinate count
      '1.5 0.5 0.5 0.2 0.2', // non-integer class
      '0 0.5 0.5 0.2 0.2 0.3', // 6 columns
      '-1 0.5 0.5 0.2 0.2', // negative class
      '0 0.5 0.5 0.2 Infinity',
      '0 0x1 0.5 0.2 0.2',
      '0 1.005 -0.005 0.2 0.2', // within Ultralytics' tolerance: fine
    ];
    await writeFile(path.join(root, 'labels/train/train_00004.txt'), bad.join('\n') + '\n');
    const { problems, total_problems, files_with_problems, error } = await problemsOf(root);
    const file = 'labels/train/train_00004.txt';
    assert.equal(total_problems, 10);
    assert.equal(files_with_problems, 1);
    assert.deepEqual(
      problems.map((p) => [p.file, p.line]),
      Array.from({ length: 10 }, (_, i) => [file, i + 1]),
    );
    const m = problems.map((p) => p.message);
    assert.match(m[0]!, /expected 5 values .* got 4/);
    assert.match(m[1]!, /class 7 is out of range \(data.yaml has 3 classes: 0..2\)/);
    assert.match(m[2]!, /coordinate 1.5 .* outside \[0, 1\]/);
    assert.match(m[3]!, /"nan" is not a finite number/);
    assert.match(m[4]!, /odd number of coordinates \(7\)/);
    assert.match(m[5]!, /class "1.5" is not an integer/);
    assert.match(m[6]!, /got 6/);
    assert.match(m[7]!, /class -1 is out of range/);
    assert.match(m[8]!, /"Infinity" is not a finite number/);
    assert.match(m[9]!, /"0x1" is not a finite number/);
    assert.match(error.message, /^10 problems in 1 file, first: labels\/train\/train_00004.txt:1: expected 5 values/);
  });

  it('wants polygons in a segment dataset', async () => {
    const root = path.join(tmp, 'seg-bad');
    await writeSyntheticDataset(root, { task: 'segment', train: 3, val: 2, imgsz: 32, classes: ['a', 'b'], seed: 5 });
    await writeFile(path.join(root, 'labels/val/val_00001.txt'), '0 0.1 0.1 0.5 0.1 0.5 0.5\n1 0.5 0.5 0.2 0.2\n0 0.1 0.1 0.5 0.1 0.5\n');
    const { problems } = await problemsOf(root, 'segment');
    assert.deepEqual(
      problems.map((p) => [p.file, p.line]),
      [['labels/val/val_00001.txt', 2], ['labels/val/val_00001.txt', 3]],
    );
    assert.match(problems[0]!.message, /needs polygons .* this line is a box/);
    assert.match(problems[1]!.message, /at least 3 points/);
  });

  it('reports unreadable, empty, non-image and tiny images', async () => {
    const root = await copy();
    await writeFile(path.join(root, 'images/train/train_00000.png'), Buffer.alloc(0));
    await writeFile(path.join(root, 'images/train/train_00001.png'), 'this is not an image\n');
    await writeFile(path.join(root, 'images/train/train_00002.png'), PNG.sync.write(Object.assign(new PNG({ width: 5, height: 40 }), {})));
    // A GIF named .jpg: Ultralytics rejects it by content, not by name.
    await writeFile(path.join(root, 'images/val/val_00000.jpg'), Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64'));
    // A PNG cut short: its header is intact, it stays readable for the header check.
    const { problems } = await problemsOf(root);
    const byFile = Object.fromEntries(problems.map((p) => [p.file, p.message]));
    assert.match(byFile['images/train/train_00000.png']!, /empty \(0 bytes\)/);
    assert.match(byFile['images/train/train_00001.png']!, /not a readable image/);
    assert.match(byFile['images/train/train_00002.png']!, /5x40; both sides must be at least 10 px/);
    assert.match(byFile['images/val/val_00000.jpg']!, /GIF is not an image format Ultralytics trains on/);
    assert.ok(problems.every((p) => p.line === null));
  });

  it('reports an empty split', async () => {
    const root = await copy();
    await rm(path.join(root, 'images/val'), { recursive: true });
    await (await import('node:fs/promises')).mkdir(path.join(root, 'images/val'));
    const { problems } = await problemsOf(root);
    assert.deepEqual(problems, [{ file: 'images/val', line: null, message: 'the val split has no images (jpg, png, bmp, tif, webp)' }]);
  });

  it('keeps the first 50 problems and counts all of them', async () => {
    const root = await copy();
    const lines = Array.from({ length: 80 }, () => '9 0.5 0.5 0.2 0.2').join('\n');
    await writeFile(path.join(root, 'labels/train/train_00005.txt'), lines);
    await writeFile(path.join(root, 'labels/val/val_00000.txt'), '0 2 2 2 2\n');
    const { problems, total_problems, files_with_problems, error } = await problemsOf(root);
    assert.equal(problems.length, 50);
    assert.equal(total_problems, 81);
    assert.equal(files_with_problems, 2);
    assert.match(error.message, /^81 problems in 2 files, first:/);
  });
});

describe('checkLabelText', () => {
  it('handles CRLF, BOM, tabs and blank lines', () => {
    const counts = [0, 0];
    const problems: string[] = [];
    const r = checkLabelText('\ufeff0 0.5 0.5 0.2 0.2\r\n\r\n1\t0.1 0.1 0.1 0.1\r\n   \n', 'detect', 2, counts, (l, m) => problems.push(`${l}: ${m}`));
    assert.deepEqual(problems, []);
    assert.deepEqual(counts, [1, 1]);
    assert.equal(r.instances, 2);
  });
});

describe('checkDataset: pose and obb', () => {
  async function checkAs(root: string, task: 'pose' | 'obb') {
    return checkDataset(await readLayout(root, task), { task, displayRoot: root });
  }
  async function problemsAs(root: string, task: 'pose' | 'obb') {
    try {
      await checkAs(root, task);
    } catch (e) {
      assert.ok(e instanceof JobError, String(e));
      assert.equal(e.code, 'DATASET_INVALID');
      return e.details as { problems: Problem[]; total_problems: number };
    }
    assert.fail('expected DATASET_INVALID');
  }

  for (const kptDims of [3, 2] as const) {
    it(`accepts a generated pose dataset (kpt_shape [4, ${kptDims}]) and reports kpt_shape`, async () => {
      const root = path.join(tmp, `pose-ok-${kptDims}`);
      await writeSyntheticDataset(root, { task: 'pose', kptDims, train: 8, val: 4, imgsz: 48, classes: ['a', 'b', 'c'], seed: 21 });
      const info = await checkAs(root, 'pose');
      assert.equal(info.task, 'pose');
      assert.deepEqual(info.kpt_shape, [4, kptDims]);
      assert.equal(info.train_images, 8);
      assert.equal(info.splits.train.instances, await labelLines(root, 'train'));
      assert.deepEqual(info.warnings, []);
    });
  }

  it('accepts a generated obb dataset (Roboflow layout)', async () => {
    const root = path.join(tmp, 'obb-ok');
    await writeSyntheticDataset(root, { task: 'obb', layout: 'roboflow', format: 'jpg', train: 8, val: 4, imgsz: 48, classes: ['a', 'b'], seed: 22 });
    const info = await checkAs(root, 'obb');
    assert.equal(info.task, 'obb');
    assert.equal(info.kpt_shape, undefined);
    assert.equal(info.splits.val.instances + info.splits.train.instances, Object.values(info.class_distribution).reduce((a, b) => a + b));
    assert.ok(info.splits.train.instances >= 8);
    assert.deepEqual(info.warnings, []);
  });

  it('reports pose lines with the wrong value count or visibility, by file and line', async () => {
    const root = path.join(tmp, 'pose-bad');
    await writeSyntheticDataset(root, { task: 'pose', train: 4, val: 2, imgsz: 48, classes: ['a', 'b'], seed: 23 });
    const good = '0 0.5 0.5 0.4 0.4 0.5 0.3 2 0.7 0.5 2 0.5 0.7 2 0.3 0.5 2';
    await writeFile(path.join(root, 'labels/train/train_00002.txt'), [good, '0 0.5 0.5 0.4 0.4', good.replace(/ 2$/, ' 5')].join('\n'));
    const { problems, total_problems } = await problemsAs(root, 'pose');
    assert.equal(total_problems, 2);
    assert.deepEqual(problems.map((p) => [p.file, p.line]), [['labels/train/train_00002.txt', 2], ['labels/train/train_00002.txt', 3]]);
    assert.match(problems[0]!.message, /box without keypoints; expected 17 values/);
    assert.match(problems[1]!.message, /keypoint 4 visibility "5"/);
  });

  it('reports a detect dataset checked as obb', async () => {
    const root = path.join(tmp, 'obb-bad');
    await writeSyntheticDataset(root, { task: 'detect', train: 3, val: 2, imgsz: 48, classes: ['a', 'b'], seed: 24 });
    const { problems, total_problems } = await problemsAs(root, 'obb');
    assert.equal(total_problems, await labelLines(root, 'train') + await labelLines(root, 'val'));
    assert.match(problems[0]!.message, /needs the 4 corners .* this line is an axis-aligned box/);
    assert.equal(problems[0]!.line, 1);
  });
});
