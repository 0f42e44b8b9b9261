/**
 * Bench: trainhook's dataset check vs Ultralytics' own label verification, on the same
 * 10,000-image dataset (8,000 train + 2,000 val, 64x64, 1–3 objects each). Not a test.
 *
 *   npx tsx bench/dataset-check.ts            (BENCH_IMAGES, BENCH_FORMAT=jpg|png, BENCH_RUNS,
 *                                              BENCH_TASK=detect|pose|obb, BENCH_DIR, PYTHON
 *                                              to override)
 *
 * The dataset is generated once into $TMPDIR (kept for later runs). Each measurement runs in
 * its own child process so peak RSS is that tool's alone:
 *  - trainhook: readLayout + checkDataset (what prepareDataset runs after extraction);
 *  - Ultralytics: verify_image_label over every image, once in a plain loop (one process,
 *    one thread) and once as YOLODataset.cache_labels runs it (ThreadPool(NUM_THREADS), imap).
 *    Its import time (torch…) is reported apart and not counted.
 * Every tool runs BENCH_RUNS times (default 3) on a warm page cache; the median is compared.
 * CPU seconds (user + system) are printed too: on a shared, loaded machine they move less
 * than wall time.
 * Target: trainhook ≥ 3x faster than the faster of the two Ultralytics ways.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setupPython } from '../scripts/setup-python.mjs';
import { checkDataset } from '../src/datasets/check.js';
import { readLayout } from '../src/datasets/layout.js';
import { writeSyntheticDataset } from '../test/helpers/synthetic-dataset.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const IMAGES = Number(process.env.BENCH_IMAGES ?? 10_000);
const FORMAT = (process.env.BENCH_FORMAT ?? 'jpg') as 'jpg' | 'png';
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const TASK = (process.env.BENCH_TASK ?? 'detect') as 'detect' | 'pose' | 'obb';
const CLASSES = ['red', 'green', 'blue', 'yellow', 'magenta'];
const DIR =
  process.env.BENCH_DIR ?? path.join(os.tmpdir(), `trainhook-bench-${IMAGES}-${FORMAT}${TASK === 'detect' ? '' : `-${TASK}`}-v1`);

type Sample = { seconds: number; cpuSeconds: number; maxRssMb: number; baselineRssMb?: number; note?: string };

/** Child mode: one trainhook check, JSON on stdout. */
async function childTrainhook(dir: string) {
  const baseline = process.resourceUsage().maxRSS / 1024;
  const t = performance.now();
  const cpu = process.cpuUsage();
  const info = await checkDataset(await readLayout(dir, TASK), { task: TASK, displayRoot: dir });
  const seconds = (performance.now() - t) / 1000;
  const used = process.cpuUsage(cpu);
  const sample: Sample = {
    seconds,
    cpuSeconds: (used.user + used.system) / 1e6,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
    baselineRssMb: baseline,
    note: `${info.total_images} images, ${Object.values(info.class_distribution).reduce((a, b) => a + b, 0)} instances`,
  };
  process.stdout.write(JSON.stringify(sample) + '\n');
}

const PY = String.raw`
import json, resource, sys, time
t0 = time.perf_counter()
from itertools import repeat
from multiprocessing.pool import ThreadPool
from pathlib import Path
from ultralytics.data.utils import IMG_FORMATS, img2label_paths, verify_image_label
from ultralytics.utils import NUM_THREADS
import_s = time.perf_counter() - t0
def rss_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
root, mode, nc = sys.argv[1], sys.argv[2], int(sys.argv[3])
nkpt, ndim = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 5 else (0, 0)
baseline = rss_mb()
t = time.perf_counter()
c = time.process_time()
ims = sorted(str(p) for s in ('train', 'val') for p in (Path(root) / 'images' / s).rglob('*.*') if p.suffix[1:].lower() in IMG_FORMATS)
lbs = img2label_paths(ims)
args = zip(ims, lbs, repeat(''), repeat(nkpt > 0), repeat(nc), repeat(nkpt), repeat(ndim), repeat(False))
counts = [0, 0, 0, 0]
instances = 0
def tally(r):
    global instances
    for i, v in enumerate(r[5:9]):
        counts[i] += v
    instances += len(r[1]) if r[1] is not None else 0
if mode == 'single':
    for a in args:
        tally(verify_image_label(a))
    threads = 1
else:
    threads = NUM_THREADS if mode == 'threadpool' else int(mode[len('threadpool'):])
    with ThreadPool(threads) as pool:
        for r in pool.imap(func=verify_image_label, iterable=args):
            tally(r)
seconds = time.perf_counter() - t
print(json.dumps({'seconds': seconds, 'cpuSeconds': time.process_time() - c, 'maxRssMb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  'baselineRssMb': baseline,
                  'note': f'{len(ims)} images, {instances} instances, missing/found/empty/corrupt={counts}, threads={threads}, import {import_s:.1f}s'}))
`;

function runChild(cmd: string, args: string[]): Sample {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  if (r.status !== 0 || !line.startsWith('{')) throw new Error(`${cmd} ${args.slice(0, 2).join(' ')} failed:\n${r.stderr}\n${r.stdout}`);
  return JSON.parse(line) as Sample;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main() {
  if (process.argv[2] === '--child-trainhook') return childTrainhook(process.argv[3]!);

  if (!existsSync(path.join(DIR, '.complete'))) {
    console.log(`generating ${IMAGES} ${FORMAT} images into ${DIR} (once)…`);
    const t = performance.now();
    const val = Math.round(IMAGES * 0.2);
    await writeSyntheticDataset(DIR, { task: TASK, train: IMAGES - val, val, imgsz: 64, classes: CLASSES, seed: 42, format: FORMAT });
    writeFileSync(path.join(DIR, '.complete'), '');
    console.log(`  generated in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }
  const python = await setupPython();
  console.log(`dataset: ${DIR} (${TASK})\npython: ${python}\nnode ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), ${RUNS} runs each\n`);

  const tsx = ['--import', 'tsx', fileURLToPath(import.meta.url), '--child-trainhook', DIR];
  // Pose: Ultralytics' check needs the dataset's kpt_shape (the synthetic one is [4, 3]).
  const kpt = TASK === 'pose' ? (await readLayout(DIR, 'pose')).keypoints!.kpt_shape.map(String) : [];
  const contenders: [string, () => Sample][] = [
    ['trainhook checkDataset', () => runChild(process.execPath, tsx)],
    ['ultralytics verify_image_label, single thread', () => runChild(python, ['-c', PY, DIR, 'single', String(CLASSES.length), ...kpt])],
    ['ultralytics cache_labels way (ThreadPool(NUM_THREADS))', () => runChild(python, ['-c', PY, DIR, 'threadpool', String(CLASSES.length), ...kpt])],
  ];
  // Warm the page cache for everyone, so the first contender is not the one paying for the disk.
  contenders[0]![1]();

  const results = new Map<string, Sample[]>();
  for (let run = 0; run < RUNS; run++) {
    for (const [name, fn] of contenders) {
      const s = fn();
      results.set(name, [...(results.get(name) ?? []), s]);
    }
  }
  const summary = [...results].map(([name, samples]) => ({
    name,
    seconds: median(samples.map((s) => s.seconds)),
    runs: samples.map((s) => s.seconds.toFixed(3)).join(' / '),
    cpuSeconds: median(samples.map((s) => s.cpuSeconds)),
    maxRssMb: Math.max(...samples.map((s) => s.maxRssMb)),
    baselineRssMb: median(samples.map((s) => s.baselineRssMb ?? 0)),
    note: samples[0]!.note,
  }));
  for (const s of summary) {
    console.log(`${s.name}\n  median ${s.seconds.toFixed(3)} s wall (runs ${s.runs}), ${s.cpuSeconds.toFixed(3)} s CPU\n  peak RSS ${s.maxRssMb.toFixed(0)} MB (${s.baselineRssMb.toFixed(0)} MB before the check)\n  ${s.note}`);
  }
  const ours = summary[0]!.seconds;
  const theirs = Math.min(...summary.slice(1).map((s) => s.seconds));
  const ratio = theirs / ours;
  console.log(`\nspeed-up (wall) vs the faster Ultralytics way: ${ratio.toFixed(1)}x (target ≥ 3x): ${ratio >= 3 ? 'PASS' : 'FAIL'}`);
  for (const s of summary.slice(1)) {
    console.log(`  vs ${s.name}: ${(s.seconds / ours).toFixed(1)}x wall, ${(s.cpuSeconds / summary[0]!.cpuSeconds).toFixed(1)}x CPU`);
  }
  if (ratio < 3) process.exitCode = 1;
}

await main();
