import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PrepareError } from './errors.js';
import type { StoredSample } from './samples.js';
import { splitSamples, videoOf } from './split.js';

/** n samples per video, classes cycling. */
function samples(videos: number[], classes = ['a', 'b', 'c']): StoredSample[] {
  const out: StoredSample[] = [];
  videos.forEach((n, v) => {
    for (let f = 0; f < n; f++) {
      const cls = classes[(v + f) % classes.length]!;
      const value = { image: `images/v${v}/${f}.jpg`, prompt: 'q', completion: 'a', meta: { video: `v${v}`, frame: f, classes: [cls] } };
      out.push({ split: 'data', line: out.length + 1, image: value.image, prompt: 'q', completion: 'a', value, meta: value.meta });
    }
  });
  return out;
}

describe('splits', () => {
  test('temporal: no video on two sides, no split empty, for any seed and uneven videos', () => {
    const data = samples([40, 3, 17, 1, 9, 25, 2, 6]);
    for (let seed = 0; seed < 50; seed++) {
      const { parts, stats } = splitSamples(data, { strategy: 'temporal', ratios: { train: 0.7, val: 0.15, test: 0.15 }, seed });
      const owner = new Map<string, string>();
      for (const [p, list] of Object.entries(parts)) {
        assert.ok(list.length > 0, `seed ${seed}: ${p} empty`);
        for (const s of list) {
          const was = owner.get(videoOf(s));
          assert.ok(was === undefined || was === p, `seed ${seed}: ${videoOf(s)} in ${was} and ${p}`);
          owner.set(videoOf(s), p);
        }
      }
      assert.equal(stats.train_samples + stats.val_samples + stats.test_samples, data.length);
    }
  });

  test('temporal: as many videos as splits is enough, fewer is refused', () => {
    const { parts } = splitSamples(samples([10, 1]), { strategy: 'temporal', ratios: { train: 0.9, val: 0.1, test: 0 }, seed: 0 });
    assert.equal(parts.train.length + parts.val.length, 11);
    assert.ok(parts.val.length > 0 && parts.train.length > 0);
    assert.throws(
      () => splitSamples(samples([10, 1]), { strategy: 'temporal', ratios: { train: 0.8, val: 0.1, test: 0.1 }, seed: 0 }),
      (e: unknown) => e instanceof PrepareError && e.code === 'SPLIT_IMPOSSIBLE' && /at least 3 videos/.test(e.message),
    );
  });

  test('random: exact counts, reproducible by seed, different across seeds', () => {
    const data = samples([100]);
    const a = splitSamples(data, { strategy: 'random', ratios: { train: 0.8, val: 0.1, test: 0.1 }, seed: 4 });
    const b = splitSamples(data, { strategy: 'random', ratios: { train: 0.8, val: 0.1, test: 0.1 }, seed: 4 });
    const c = splitSamples(data, { strategy: 'random', ratios: { train: 0.8, val: 0.1, test: 0.1 }, seed: 5 });
    assert.deepEqual([a.parts.train.length, a.parts.val.length, a.parts.test.length], [80, 10, 10]);
    assert.deepEqual(a.parts.val.map((s) => s.line), b.parts.val.map((s) => s.line));
    assert.notDeepEqual(a.parts.val.map((s) => s.line), c.parts.val.map((s) => s.line));
  });

  test('stratified: every class in the ratios, even a rare one', () => {
    const data = [...samples([60], ['a']), ...samples([10], ['rare']).map((s, i) => ({ ...s, line: 1000 + i, meta: { ...s.meta, video: 'r' } }))];
    const { stats } = splitSamples(data, { strategy: 'stratified', ratios: { train: 0.8, val: 0.2, test: 0 }, seed: 3 });
    assert.deepEqual(stats.class_distribution['a'], { train: 48, val: 12, test: 0 });
    assert.deepEqual(stats.class_distribution['rare'], { train: 8, val: 2, test: 0 });
  });

  test('too few samples for the splits asked', () => {
    assert.throws(() => splitSamples(samples([2]), { strategy: 'random', ratios: { train: 0.4, val: 0.3, test: 0.3 }, seed: 0 }), /2 samples cannot fill 3 splits/);
  });
});
