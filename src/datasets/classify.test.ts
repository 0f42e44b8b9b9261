import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { JobError } from '../core/errors.js';
import { writeSyntheticClassifyDataset } from '../../test/helpers/synthetic-dataset.js';
import type { DatasetInfo, Problem } from './check.js';
import { byCodePoint, checkClassifyDataset, readClassifyLayout } from './classify.js';

const CLASSES = ['square', 'circle', 'triangle'];
let tmp: string;
let src: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'trainhook-classify-'));
  src = path.join(tmp, 'src');
  // 12 train images (4 per class), 6 val images (2 per class).
  await writeSyntheticClassifyDataset(src, { train: 12, val: 6, imgsz: 32, classes: CLASSES, seed: 5 });
});
after(() => rm(tmp, { recursive: true, force: true }));

let n = 0;
/** A fresh copy of the dataset, optionally inside a top-level folder, to break. */
async function copy(prefix = ''): Promise<string> {
  const dir = path.join(tmp, `case-${n++}`);
  await cp(src, path.join(dir, prefix), { recursive: true });
  return dir;
}
async function check(extractDir: string): Promise<DatasetInfo> {
  return checkClassifyDataset(await readClassifyLayout(extractDir), { displayRoot: extractDir });
}
async function problemsOf(extractDir: string) {
  try {
    await check(extractDir);
  } catch (e) {
    assert.ok(e instanceof JobError, String(e));
    assert.equal(e.code, 'DATASET_INVALID');
    return { error: e, ...(e.details as { problems: Problem[]; total_problems: number; dataset_info: DatasetInfo }) };
  }
  assert.fail('expected DATASET_INVALID');
}
async function layoutError(extractDir: string, reason: string, message: RegExp) {
  await assert.rejects(readClassifyLayout(extractDir), (e: unknown) => {
    assert.ok(e instanceof JobError, String(e));
    assert.equal(e.code, 'DATASET_INVALID');
    assert.equal((e.details as { reason: string }).reason, reason, e.message);
    assert.match(e.message, message);
    return true;
  });
}

describe('readClassifyLayout', () => {
  it('finds train/ and val/ at the root or inside the single top-level folder', async () => {
    const atRoot = await copy();
    assert.deepEqual(await readClassifyLayout(atRoot), {
      root: atRoot,
      splits: { train: path.join(atRoot, 'train'), val: path.join(atRoot, 'val') },
      valFolder: 'val',
      warnings: [],
    });
    const nested = await copy('flowers');
    await writeFile(path.join(nested, 'README.txt'), 'a file beside the folder does not count');
    const l = await readClassifyLayout(nested);
    assert.equal(l.root, path.join(nested, 'flowers'));
    assert.equal(l.splits.val, path.join(nested, 'flowers/val'));
  });

  it('takes validation/ or valid/ as val, else test/ (with a warning), and counts test/ beside val/', async () => {
    const valid = await copy();
    await rename(path.join(valid, 'val'), path.join(valid, 'valid'));
    assert.equal((await readClassifyLayout(valid)).valFolder, 'valid');

    const testOnly = await copy();
    await rename(path.join(testOnly, 'val'), path.join(testOnly, 'test'));
    const t = await readClassifyLayout(testOnly);
    assert.equal(t.valFolder, 'test');
    assert.equal(t.splits.test, undefined);
    assert.deepEqual(t.warnings, ['there is no val folder: test/ is used for validation, as Ultralytics does']);
    const info = await check(testOnly);
    assert.equal(info.val_images, 6);
    assert.equal(info.test_images, 0);

    const both = await copy();
    await cp(path.join(both, 'val'), path.join(both, 'test'), { recursive: true });
    const b = await readClassifyLayout(both);
    assert.equal(b.valFolder, 'val');
    assert.equal(b.splits.test, path.join(both, 'test'));
    const bothInfo = await check(both);
    assert.equal(bothInfo.test_images, 6);
    assert.deepEqual(bothInfo.images_per_split, { train: 12, val: 6, test: 6 });
  });

  it('refuses an archive without train/, pointing at a YOLO layout when it sees one', async () => {
    const none = path.join(tmp, `case-${n++}`);
    await mkdir(path.join(none, 'pictures/cats'), { recursive: true });
    await layoutError(none, 'NO_CLASSIFY_SPLITS', /no train folder found: a classify dataset is train\/<class>\/<images> .* \(top-level folders found: pictures\)$/);
    const yolo = path.join(tmp, `case-${n++}`);
    await mkdir(path.join(yolo, 'ds/images/train'), { recursive: true });
    await mkdir(path.join(yolo, 'ds/labels/train'), { recursive: true });
    await writeFile(path.join(yolo, 'ds/data.yaml'), 'train: images/train\n');
    await layoutError(yolo, 'NO_CLASSIFY_SPLITS', /looks like a YOLO dataset .* train it with task detect, segment, pose or obb/);
    const roboflow = path.join(tmp, `case-${n++}`);
    for (const d of ['train/images', 'train/labels', 'valid/images', 'valid/labels']) await mkdir(path.join(roboflow, 'export', d), { recursive: true });
    await layoutError(roboflow, 'NO_CLASSIFY_SPLITS', /train\/ holds images\/ and labels\/: this is a YOLO dataset \(Roboflow's export layout\)/);
  });

  it('refuses a train/ without a validation folder', async () => {
    const root = await copy();
    await rm(path.join(root, 'val'), { recursive: true });
    await layoutError(root, 'MISSING_SPLIT', /no validation folder next to train\/: add val\/<class>\/<images>/);
  });

  it('refuses a dataset folder whose name Ultralytics would take for an archive', async () => {
    await layoutError(await copy('export.zip'), 'BAD_FOLDER_NAME', /"export.zip" ends in .zip, .tar or .gz/);
  });
});

describe('checkClassifyDataset', () => {
  it('counts images per class and split; classes are the sorted train folders', async () => {
    const info = await check(await copy());
    assert.equal(info.task, 'classify');
    assert.deepEqual(info.classes, ['circle', 'square', 'triangle']);
    assert.equal(info.nc, 3);
    assert.equal(info.train_images, 12);
    assert.equal(info.val_images, 6);
    assert.equal(info.total_images, 18);
    assert.deepEqual(info.class_distribution, { circle: 6, square: 6, triangle: 6 });
    assert.deepEqual(info.splits.train, { images: 12, background_images: 0, missing_labels: 0, instances: 12, class_distribution: { circle: 4, square: 4, triangle: 4 } });
    assert.deepEqual(info.splits.val.class_distribution, { circle: 2, square: 2, triangle: 2 });
    assert.equal(info.background_images, 0);
    assert.equal(info.kpt_shape, undefined);
    assert.deepEqual(info.warnings, []);
  });

  it('reads JPEGs and images nested below a class folder', async () => {
    const root = path.join(tmp, `case-${n++}`);
    await writeSyntheticClassifyDataset(root, { train: 6, val: 3, imgsz: 32, classes: ['a', 'b', 'c'], seed: 9, format: 'jpg' });
    await mkdir(path.join(root, 'train/a/more'));
    await rename(path.join(root, 'train/a/train_00000.jpg'), path.join(root, 'train/a/more/x.jpg'));
    const info = await check(root);
    assert.deepEqual(info.splits.train.class_distribution, { a: 2, b: 2, c: 2 });
  });

  it('refuses class folders that differ between train and val', async () => {
    const root = await copy();
    await rename(path.join(root, 'val/square'), path.join(root, 'val/squares'));
    const { problems, error } = await problemsOf(root);
    assert.deepEqual(
      problems.map((p) => [p.file, p.line]),
      [['val', null], ['val/squares', null]],
    );
    assert.match(problems[0]!.message, /class "square" has a folder in train but not in val: Ultralytics numbers each split's classes by its own folders, .* \(an empty val\/square folder is enough\)/);
    assert.match(problems[1]!.message, /class "squares" has a folder in val but not in train: the model cannot learn it/);
    assert.match(error.message, /^2 problems in 2 files, first: val: class "square"/);
  });

  it('accepts an empty class folder in val, with a warning', async () => {
    const root = await copy();
    await rm(path.join(root, 'val/triangle'), { recursive: true });
    await mkdir(path.join(root, 'val/triangle'));
    const info = await check(root);
    assert.deepEqual(info.splits.val.class_distribution, { circle: 2, square: 2, triangle: 0 });
    assert.deepEqual(info.warnings, ['1 class(es) have no val images, so their accuracy is not measured: triangle']);
  });

  it('refuses a hidden folder, which Ultralytics would take for a class', async () => {
    const root = await copy();
    await mkdir(path.join(root, 'train/.ipynb_checkpoints'));
    const { problems } = await problemsOf(root);
    assert.deepEqual(problems, [
      { file: 'train/.ipynb_checkpoints', line: null, message: '".ipynb_checkpoints" is a hidden folder: Ultralytics would take it for a class; remove it from the ZIP' },
    ]);
  });

  it('reports unreadable images by file, and empty splits', async () => {
    const root = await copy();
    await writeFile(path.join(root, 'train/circle/train_00001.png'), 'not a png');
    await writeFile(path.join(root, 'val/square/val_00000.png'), Buffer.alloc(0));
    const { problems, dataset_info } = await problemsOf(root);
    assert.deepEqual(problems.map((p) => p.file).sort(), ['train/circle/train_00001.png', 'val/square/val_00000.png']);
    assert.equal(dataset_info.train_images, 12);

    const empty = await copy();
    for (const c of CLASSES) await rm(path.join(empty, 'val', c), { recursive: true });
    for (const c of CLASSES) await mkdir(path.join(empty, 'val', c));
    const e = await problemsOf(empty);
    assert.deepEqual(e.problems.map((p) => p.file), ['val']);
    assert.match(e.problems[0]!.message, /the val split has no images in its class folders/);

    const noClasses = await copy();
    for (const c of CLASSES) await rm(path.join(noClasses, 'train', c), { recursive: true });
    const nc = await problemsOf(noClasses);
    assert.match(nc.problems[0]!.message, /train has no class folders/);
  });

  it('warns about identical train/val images, files outside class folders, other files, and a single class', async () => {
    const root = await copy();
    await cp(path.join(root, 'train/circle/train_00001.png'), path.join(root, 'val/circle/copy.png'));
    await writeFile(path.join(root, 'train/notes.txt'), 'loose');
    await writeFile(path.join(root, 'train/square/labels.csv'), 'x');
    const info = await check(root);
    assert.equal(info.train_val_duplicates, 1);
    assert.deepEqual(info.train_val_duplicate_examples, [{ train: 'train/circle/train_00001.png', val: 'val/circle/copy.png' }]);
    assert.deepEqual(info.warnings, [
      '1 image(s) in val are identical to images in train (e.g. val/circle/copy.png); validation metrics will be optimistic',
      '1 file(s) in class folders are not images Ultralytics trains on and were ignored (e.g. train/square/labels.csv)',
      '1 file(s) directly in train/ or val/, outside any class folder, were ignored',
    ]);

    const one = path.join(tmp, `case-${n++}`);
    await writeSyntheticClassifyDataset(one, { train: 3, val: 1, imgsz: 32, classes: ['only'], seed: 2 });
    assert.deepEqual((await check(one)).warnings, ['there is only one class ("only"): every image is predicted as it, so accuracy is always 1']);
  });
});

describe('byCodePoint', () => {
  it('sorts as Python does (by code point, not UTF-16 unit)', () => {
    // U+FF21 (fullwidth A) sorts before U+1F600 in Python; JavaScript's default sort puts the surrogate pair first.
    const names = ['\u{1F600}', '\uFF21', 'b', 'B', 'a'];
    assert.deepEqual([...names].sort(byCodePoint), ['B', 'a', 'b', '\uFF21', '\u{1F600}']);
    assert.notDeepEqual([...names].sort(), [...names].sort(byCodePoint));
  });
});
