/**
 * Train/validation(/test) splits of a dataset's samples, reproducible from a seed:
 *
 *   random      samples shuffled, then cut by the ratios
 *   stratified  each class (a sample's first class in meta.classes) spread over the splits in
 *               the ratios, so a rare class is in validation too
 *   temporal    whole videos (meta.video, else the image's folder) go to one split: frames of
 *               one video are near-copies, and a video on both sides would let validation
 *               measure memory. Larger videos are placed first, each where the most samples
 *               are still wanted; ties in seeded order.
 *
 * Every split with a ratio above 0 gets at least one sample (or one video), else the request
 * is refused with SPLIT_IMPOSSIBLE.
 */
import path from 'node:path';
import { PrepareError } from './errors.js';
import type { StoredSample } from './samples.js';

export const SPLIT_STRATEGIES = ['stratified', 'temporal', 'random'] as const;
export type SplitStrategy = (typeof SPLIT_STRATEGIES)[number];
export type Ratios = { train: number; val: number; test: number };
export type Part = 'train' | 'val' | 'test';
const PARTS: readonly Part[] = ['train', 'val', 'test'];

export type SplitStats = {
  strategy: SplitStrategy;
  seed: number;
  ratios: Ratios;
  train_samples: number;
  val_samples: number;
  test_samples: number;
  /** Videos per split (temporal: never one in two splits). */
  videos: Record<Part, number>;
  class_distribution: Record<string, Record<Part, number>>;
};

/** mulberry32: small, fast, and the same sequence on every platform (test data is drawn with it too). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle<T>(items: readonly T[], rand: () => number): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

export const videoOf = (s: StoredSample) => s.meta.video ?? (s.image ? path.posix.dirname(s.image.replace(/\\/g, '/')) : `line:${s.split}:${s.line}`);

const wanted = (ratios: Ratios) => PARTS.filter((p) => ratios[p] > 0);

/** Whole-number targets adding up to n, by largest remainder. */
function targets(n: number, ratios: Ratios): Record<Part, number> {
  const exact = PARTS.map((p) => n * ratios[p]);
  const out = exact.map(Math.floor);
  const order = PARTS.map((_, i) => i).sort((a, b) => exact[b]! - out[b]! - (exact[a]! - out[a]!));
  for (let k = 0, left = n - out.reduce((x, y) => x + y, 0); left > 0; k++, left--) out[order[k % 3]!]!++;
  return { train: out[0]!, val: out[1]!, test: out[2]! };
}

/** Each next item to the split furthest behind its share: every prefix is split in the ratios. */
function deal<T>(items: readonly T[], ratios: Ratios): Record<Part, T[]> {
  const out: Record<Part, T[]> = { train: [], val: [], test: [] };
  const want = targets(items.length, ratios);
  items.forEach((item, i) => {
    let best: Part = 'train';
    let bestLag = -Infinity;
    for (const p of wanted(ratios)) {
      if (out[p].length >= want[p]) continue;
      const lag = ratios[p] * (i + 1) - out[p].length;
      if (lag > bestLag) [best, bestLag] = [p, lag];
    }
    out[best].push(item);
  });
  return out;
}

function byVideo(samples: readonly StoredSample[], ratios: Ratios, rand: () => number): Record<Part, StoredSample[]> {
  const groups = new Map<string, StoredSample[]>();
  for (const s of samples) groups.set(videoOf(s), [...(groups.get(videoOf(s)) ?? []), s]);
  const parts = wanted(ratios);
  if (groups.size < parts.length) {
    throw new PrepareError('SPLIT_IMPOSSIBLE', `a temporal split keeps each video on one side: ${parts.length} splits need at least ${parts.length} videos, the dataset has ${groups.size}`, {
      videos: groups.size,
      splits: parts,
    });
  }
  const ordered = shuffle([...groups.entries()], rand).sort((a, b) => b[1].length - a[1].length);
  const want = targets(samples.length, ratios);
  const assigned: Record<Part, Array<[string, StoredSample[]]>> = { train: [], val: [], test: [] };
  const count = (p: Part) => assigned[p].reduce((n, [, g]) => n + g.length, 0);
  // The smallest videos are kept back until every split has one: no split ends up empty.
  const reserve = ordered.splice(ordered.length - (parts.length - 1), parts.length - 1);
  for (const g of ordered) {
    const p = parts.reduce((a, b) => (want[b] - count(b) > want[a] - count(a) ? b : a));
    assigned[p].push(g);
  }
  for (const g of reserve) {
    const empty = parts.find((p) => assigned[p].length === 0);
    const p = empty ?? parts.reduce((a, b) => (want[b] - count(b) > want[a] - count(a) ? b : a));
    assigned[p].push(g);
  }
  return { train: assigned.train.flatMap(([, g]) => g), val: assigned.val.flatMap(([, g]) => g), test: assigned.test.flatMap(([, g]) => g) };
}

export function splitSamples(
  samples: readonly StoredSample[],
  opts: { strategy: SplitStrategy; ratios: Ratios; seed: number },
): { parts: Record<Part, StoredSample[]>; stats: SplitStats } {
  const { ratios, strategy } = opts;
  const rand = rng(opts.seed);
  const parts = wanted(ratios);
  if (samples.length < parts.length) {
    throw new PrepareError('SPLIT_IMPOSSIBLE', `${samples.length} samples cannot fill ${parts.length} splits`, { samples: samples.length });
  }
  let out: Record<Part, StoredSample[]>;
  if (strategy === 'temporal') out = byVideo(samples, ratios, rand);
  else if (strategy === 'random') out = deal(shuffle(samples, rand), ratios);
  else {
    const strata = new Map<string, StoredSample[]>();
    for (const s of samples) {
      const k = [...(s.meta.classes ?? [])].sort()[0] ?? '';
      strata.set(k, [...(strata.get(k) ?? []), s]);
    }
    // Strata one after another, each shuffled: dealing them in turn spreads every class in the ratios.
    const order = [...strata.keys()].sort().flatMap((k) => shuffle(strata.get(k)!, rand));
    out = deal(order, ratios);
  }
  for (const p of parts) {
    if (out[p].length === 0) throw new PrepareError('SPLIT_IMPOSSIBLE', `the ${p} split would be empty with ratio ${ratios[p]}`, { split: p });
  }
  const class_distribution: SplitStats['class_distribution'] = {};
  const videos = { train: 0, val: 0, test: 0 };
  for (const p of PARTS) {
    videos[p] = new Set(out[p].map(videoOf)).size;
    for (const s of out[p]) {
      for (const c of s.meta.classes ?? []) (class_distribution[c] ??= { train: 0, val: 0, test: 0 })[p]++;
    }
  }
  return {
    parts: out,
    stats: { strategy, seed: opts.seed, ratios, train_samples: out.train.length, val_samples: out.val.length, test_samples: out.test.length, videos, class_distribution },
  };
}
