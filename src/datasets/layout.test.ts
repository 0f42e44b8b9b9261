import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import { JobError } from '../core/errors.js';
import { writeSyntheticDataset } from '../../test/helpers/synthetic-dataset.js';
import { parseNames, readLayout, renderDataYaml } from './layout.js';

let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'trainhook-layout-'));
});
after(() => rm(tmp, { recursive: true, force: true }));

let n = 0;
/** A dataset folder: the listed empty dirs plus a data.yaml with the given text. */
async function fixture(yaml: string | null, dirs: string[], prefix = ''): Promise<string> {
  const root = path.join(tmp, `case-${n++}`);
  for (const d of dirs) await mkdir(path.join(root, prefix, d), { recursive: true });
  await mkdir(path.join(root, prefix), { recursive: true });
  if (yaml !== null) await writeFile(path.join(root, prefix, 'data.yaml'), yaml);
  return root;
}

async function expectInvalid(p: Promise<unknown>, reason: string, message?: RegExp) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof JobError, String(e));
    assert.equal(e.code, 'DATASET_INVALID');
    assert.equal((e.details as { reason: string }).reason, reason, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

describe('readLayout', () => {
  it('resolves the Ultralytics layout to absolute folders', async () => {
    const root = path.join(tmp, 'ul');
    await writeSyntheticDataset(root, { task: 'detect', train: 2, val: 1, imgsz: 32, classes: ['a', 'b'], seed: 1 });
    const l = await readLayout(root);
    assert.deepEqual(l.splits, { train: [path.join(root, 'images/train')], val: [path.join(root, 'images/val')] });
    assert.deepEqual(l.names, ['a', 'b']);
  });

  it('resolves the Roboflow layout (../train/images) inside one top-level folder', async () => {
    const root = await fixture(
      'train: ../train/images\nval: ../valid/images\ntest: ../test/images\nnc: 2\nnames: [car, bus]\nroboflow:\n  workspace: x\n',
      ['train/images', 'valid/images', 'test/images'],
      'export-v3',
    );
    const l = await readLayout(root);
    const base = path.join(root, 'export-v3');
    assert.equal(l.root, base);
    assert.deepEqual(l.splits, {
      train: [path.join(base, 'train/images')],
      val: [path.join(base, 'valid/images')],
      test: [path.join(base, 'test/images')],
    });
    assert.equal(l.dataYaml, 'export-v3/data.yaml');
  });

  it('warns about a named test split that is missing', async () => {
    const root = await fixture('train: train/images\nval: valid/images\ntest: test/images\nnames: [a]\n', ['train/images', 'valid/images']);
    const l = await readLayout(root);
    assert.equal(l.splits.test, undefined);
    assert.match(l.warnings.join('\n'), /test split "test\/images" that is not in the archive/);
  });

  it('renames validation to val and accepts a names map', async () => {
    const root = await fixture("train: images/train\nvalidation: images/val\nnames:\n  0: cat\n  '1': dog\n", ['images/train', 'images/val']);
    const l = await readLayout(root);
    assert.deepEqual(l.names, ['cat', 'dog']);
    assert.deepEqual(l.splits.val, [path.join(root, 'images/val')]);
  });

  it('re-roots absolute paths from the author machine and ignores a foreign path:', async () => {
    const root = await fixture('path: /content/datasets/mine\ntrain: /content/datasets/mine/images/train\nval: images/val\nnames: [a]\n', [
      'images/train',
      'images/val',
    ]);
    const l = await readLayout(root);
    assert.deepEqual(l.splits.train, [path.join(root, 'images/train')]);
    assert.deepEqual(l.warnings, []);
  });

  it('writes a normalized data.yaml: absolute paths, names list, nc, no download or unknown keys', async () => {
    const root = await fixture(
      "path: .\ntrain: [images/train, images/extra]\nval: images/val\nnames: {0: a, 1: b}\ndownload: |\n  import os; os.system('rm -rf /')\nflip_idx: [0]\n",
      ['images/train', 'images/extra', 'images/val'],
    );
    const l = await readLayout(root);
    assert.match(l.warnings.join('\n'), /download key was ignored/);
    const doc = YAML.parse(renderDataYaml(l)) as Record<string, unknown>;
    assert.deepEqual(doc, {
      path: root,
      train: [path.join(root, 'images/train'), path.join(root, 'images/extra')],
      val: path.join(root, 'images/val'),
      nc: 2,
      names: ['a', 'b'],
    });
  });

  it('refuses an archive without data.yaml', async () => {
    await expectInvalid(readLayout(await fixture(null, ['images/train'])), 'NO_DATA_YAML', /no data.yaml found/);
    // Two top-level folders: which one would it be?
    const two = await fixture(null, ['a', 'b']);
    await writeFile(path.join(two, 'a', 'data.yaml'), 'train: x\nval: y\nnames: [a]\n');
    await expectInvalid(readLayout(two), 'NO_DATA_YAML', /top-level folders found: a, b/);
  });

  it('refuses a data.yaml without a val split, or with a val folder that is missing', async () => {
    await expectInvalid(readLayout(await fixture('train: images/train\nnames: [a]\n', ['images/train'])), 'MISSING_SPLIT', /no val split/);
    await expectInvalid(
      readLayout(await fixture('train: images/train\nval: images/val\nnames: [a]\n', ['images/train'])),
      'MISSING_SPLIT',
      /val folder "images\/val" is not in the archive/,
    );
  });

  it('never resolves a split outside the dataset folder', async () => {
    const root = await fixture('train: ../../../../etc\nval: images/val\nnames: [a]\n', ['images/val']);
    await expectInvalid(readLayout(root), 'MISSING_SPLIT');
  });

  it('refuses names maps with gaps, nc mismatches, and broken YAML', async () => {
    await expectInvalid(
      readLayout(await fixture('train: t\nval: v\nnames: {0: a, 2: c}\n', ['t', 'v'])),
      'BAD_NAMES',
      /keys must be 0..1 with no gaps; missing 1/,
    );
    await expectInvalid(readLayout(await fixture('train: t\nval: v\nnc: 3\nnames: [a, b]\n', ['t', 'v'])), 'NC_MISMATCH');
    await expectInvalid(readLayout(await fixture('train: [t\nval: v\n', ['t', 'v'])), 'BAD_YAML');
    await expectInvalid(readLayout(await fixture('- just\n- a list\n', [])), 'BAD_YAML');
    await expectInvalid(readLayout(await fixture('train: t.txt\nval: v\nnames: [a]\n', ['v'])), 'BAD_SPLIT', /\.txt files are not supported/);
  });
});

describe('parseNames', () => {
  it('accepts lists and 0..n-1 maps, generates names from nc', () => {
    assert.deepEqual(parseNames(['a', 1], undefined), ['a', '1']);
    assert.deepEqual(parseNames({ 1: 'b', 0: 'a' }, 2), ['a', 'b']);
    assert.deepEqual(parseNames(undefined, 2), ['class_0', 'class_1']);
  });
  it('refuses the rest', () => {
    assert.throws(() => parseNames({ a: 'x' }, undefined), /not a class index/);
    assert.throws(() => parseNames([], undefined), /empty/);
    assert.throws(() => parseNames(['a', ''], undefined), /class 1 has an empty name/);
    assert.throws(() => parseNames('a,b', undefined), /must be a list or a map/);
    assert.throws(() => parseNames(undefined, undefined), /no names/);
  });
});

describe('readLayout: pose keypoint keys', () => {
  const dirs = ['images/train', 'images/val'];
  const base = 'train: images/train\nval: images/val\nnames: [person, dog]\n';

  it('keeps kpt_shape, flip_idx and kpt_names and writes them to the normalized data.yaml', async () => {
    const root = await fixture(`${base}kpt_shape: [3, 3]\nflip_idx: [0, 2, 1]\nkpt_names:\n  0: [nose, left, right]\n  1: [snout, l, r]\n`, dirs);
    const l = await readLayout(root, 'pose');
    assert.deepEqual(l.keypoints, { kpt_shape: [3, 3], flip_idx: [0, 2, 1], kpt_names: { 0: ['nose', 'left', 'right'], 1: ['snout', 'l', 'r'] } });
    assert.deepEqual(l.warnings, []);
    const doc = YAML.parse(renderDataYaml(l)) as Record<string, unknown>;
    assert.deepEqual(doc.kpt_shape, [3, 3]);
    assert.deepEqual(doc.flip_idx, [0, 2, 1]);
    assert.deepEqual(doc.kpt_names, { 0: ['nose', 'left', 'right'], 1: ['snout', 'l', 'r'] });
  });

  it('warns that flips are off without flip_idx, and drops a malformed kpt_names with a warning', async () => {
    const root = await fixture(`${base}kpt_shape: [2, 2]\nflip_idx: []\nkpt_names: {0: [a, b, c]}\n`, dirs);
    const l = await readLayout(root, 'pose');
    assert.deepEqual(l.keypoints, { kpt_shape: [2, 2] });
    assert.match(l.warnings.join('\n'), /no flip_idx: Ultralytics turns off left-right flip augmentation/);
    assert.match(l.warnings.join('\n'), /kpt_names was ignored \(expected \{class index: \[2 keypoint names\]\}\)/);
    const doc = YAML.parse(renderDataYaml(l)) as Record<string, unknown>;
    assert.deepEqual(doc.kpt_shape, [2, 2]);
    assert.equal('flip_idx' in doc || 'kpt_names' in doc, false);
  });

  it('takes one kpt_names list for every class', async () => {
    const l = await readLayout(await fixture(`${base}kpt_shape: [2, 3]\nflip_idx: [1, 0]\nkpt_names: [left, right]\n`, dirs), 'pose');
    assert.deepEqual(l.keypoints?.kpt_names, { 0: ['left', 'right'], 1: ['left', 'right'] });
  });

  it('refuses a missing or malformed kpt_shape', async () => {
    await expectInvalid(readLayout(await fixture(base, dirs), 'pose'), 'BAD_KPT_SHAPE', /has no kpt_shape: a pose dataset declares its keypoints as kpt_shape: \[K, D\]/);
    for (const bad of ['[17, 4]', '[0, 3]', '[17]', '17', '[17.5, 3]', '["17", 3]', '[17, 3, 1]']) {
      await expectInvalid(readLayout(await fixture(`${base}kpt_shape: ${bad}\n`, dirs), 'pose'), 'BAD_KPT_SHAPE', /kpt_shape must be \[K, D\] with K ≥ 1 keypoints and D = 2 \(x y\) or 3/);
    }
  });

  it('refuses a flip_idx that is not a permutation of the keypoints', async () => {
    for (const bad of ['[0, 1]', '[0, 1, 3]', '[0, 0, 1]', '[0, 1, -1]', '[0, 1, 2, 3]', '[a, b, c]', '{0: 1}']) {
      await expectInvalid(
        readLayout(await fixture(`${base}kpt_shape: [3, 3]\nflip_idx: ${bad}\n`, dirs), 'pose'),
        'BAD_FLIP_IDX',
        /flip_idx must list each keypoint index 0..2 exactly once \(3 entries, kpt_shape \[3, 3\]\)/,
      );
    }
  });

  it('ignores keypoint keys for other tasks', async () => {
    const root = await fixture(`${base}kpt_shape: [17, 3]\n`, dirs);
    for (const task of ['detect', 'segment', 'obb'] as const) {
      const l = await readLayout(root, task);
      assert.equal(l.keypoints, undefined);
      assert.equal('kpt_shape' in (YAML.parse(renderDataYaml(l)) as object), false);
    }
  });
});
