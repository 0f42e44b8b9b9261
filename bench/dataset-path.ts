/**
 * Bench: a dataset's whole path before training, trainhook against the plain tools, on the same
 * ZIP served from 127.0.0.1 in the same run. Not a test.
 *
 *   npx tsx bench/dataset-path.ts                                   20,000 images of 64 px (about 60 MB)
 *   BENCH_IMAGES=100000 BENCH_IMGSZ=256 npx tsx bench/dataset-path.ts   the full size (several GB)
 *
 * Settings: BENCH_IMAGES (20000), BENCH_IMGSZ (64), BENCH_FORMAT (jpg|png), BENCH_RUNS (2),
 * BENCH_DIR (where the ZIP is generated once and kept), PYTHON (a python with ultralytics),
 * BENCH_JSON (also write the results as JSON), BENCH_STRICT (exit 1 on a missed target).
 *
 * - trainhook: prepareDataset from src/datasets/index.ts, called as the pipeline calls it (the
 *   SSRF-guarded dispatcher, the server's default limits): download, safe extraction, every
 *   image and label checked, data.yaml written. It runs in its own child process so its peak
 *   RSS is the service side's alone.
 * - baseline: `curl -sS -o` then `unzip -q`, then Ultralytics' own label verification
 *   (verify_image_label over every image, ThreadPool(NUM_THREADS) and imap, as
 *   YOLODataset.cache_labels runs it when it builds its label cache). Its Python import time is
 *   reported apart and not counted.
 * Runs alternate (trainhook, baseline, baseline, trainhook, …) and the medians are compared.
 * Targets: trainhook wall / baseline wall <= 1.0, trainhook peak RSS < 300 MB.
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { setupPython } from '../scripts/setup-python.mjs';
import yazl from 'yazl';
import { loadConfig } from '../src/core/config.js';
import { DatasetStore } from '../src/datasets/store.js';
import { prepareDataset } from '../src/datasets/index.js';
import { createOutboundDispatcher } from '../src/net/outbound.js';
import { drawSample, encodeImage, prng } from '../test/helpers/synthetic-dataset.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const IMAGES = Number(process.env.BENCH_IMAGES ?? 20_000);
const IMGSZ = Number(process.env.BENCH_IMGSZ ?? 64);
const FORMAT = (process.env.BENCH_FORMAT ?? 'jpg') as 'jpg' | 'png';
const RUNS = Number(process.env.BENCH_RUNS ?? 2);
const CLASSES = ['red', 'green', 'blue', 'yellow', 'magenta'];
const DIR = process.env.BENCH_DIR ?? path.join(os.tmpdir(), `trainhook-bench-path-${IMAGES}-${IMGSZ}-${FORMAT}-v1`);
const ZIP = path.join(DIR, 'dataset.zip');

type Sample = { seconds: number; maxRssMb: number; stages: Record<string, number>; note: string };

/**
 * This process's peak resident set (VmHWM). Not getrusage's maxRSS: Linux carries that across
 * exec, so a child would report its parent's peak (the generator's, here).
 */
function peakRssMb(): number {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('VmHWM:'));
  return line ? Number(line.split(/\s+/)[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
}

/** Child mode: trainhook's dataset step on one URL into a fresh job folder; JSON on stdout. */
async function childTrainhook(url: string, jobDir: string) {
  const config = loadConfig({ WORKDIR: path.dirname(jobDir), OUTBOUND_ALLOW: '127.0.0.1' });
  const dispatcher = createOutboundDispatcher(config.outboundAllow);
  const stages: Record<string, number> = {};
  // Peak RSS before the work, and after each stage.
  const rss = [peakRssMb()];
  const t = performance.now();
  // The progress callback marks where each stage ends: download 0–0.8, extraction 0.8–0.9, check 0.9–1.
  let seen = 0;
  const prepared = await prepareDataset({ url }, jobDir, {
    // A fresh store per run: the archive is downloaded and extracted every time.
    store: new DatasetStore(path.join(path.dirname(jobDir), 'datasets')),
    dispatcher,
    limits: config.dataset,
    formats: ['yolo'],
    task: 'detect',
    onPhaseProgress: (f) => {
      if (seen < 0.8 && f >= 0.8) {
        stages['download'] = (performance.now() - t) / 1000;
        rss.push(peakRssMb());
      }
      if (seen < 0.9 && f >= 0.9) {
        stages['extract'] = (performance.now() - t) / 1000 - (stages['download'] ?? 0);
        rss.push(peakRssMb());
      }
      seen = f;
    },
  });
  const seconds = (performance.now() - t) / 1000;
  stages['check'] = seconds - (stages['download'] ?? 0) - (stages['extract'] ?? 0);
  const sample: Sample = {
    seconds,
    maxRssMb: peakRssMb(),
    stages,
    note: `${prepared.info.total_images} images, ${prepared.warnings.length} warnings, peak RSS MB at start/downloaded/extracted: ${rss.map((m) => m.toFixed(0)).join('/')}`,
  };
  process.stdout.write(JSON.stringify(sample) + '\n');
  await dispatcher.close();
}

const PY = String.raw`
import json, sys, time
t0 = time.perf_counter()
from itertools import repeat
from multiprocessing.pool import ThreadPool
from pathlib import Path
from ultralytics.data.utils import IMG_FORMATS, img2label_paths, verify_image_label
from ultralytics.utils import NUM_THREADS
import_s = time.perf_counter() - t0
root, nc = sys.argv[1], int(sys.argv[2])
t = time.perf_counter()
ims = sorted(str(p) for s in ('train', 'val') for p in (Path(root) / 'images' / s).rglob('*.*') if p.suffix[1:].lower() in IMG_FORMATS)
args = zip(ims, img2label_paths(ims), repeat(''), repeat(False), repeat(nc), repeat(0), repeat(0), repeat(False))
counts = [0, 0, 0, 0]
with ThreadPool(NUM_THREADS) as pool:
    for r in pool.imap(func=verify_image_label, iterable=args):
        for i, v in enumerate(r[5:9]):
            counts[i] += v
print(json.dumps({'seconds': time.perf_counter() - t, 'import': import_s,
                  'note': f'{len(ims)} images, missing/found/empty/corrupt={counts}, threads={NUM_THREADS}'}))
`;

/** Runs a command to its end without blocking the event loop (the file server lives in this process). */
function run(cmd: string, args: string[]): Promise<{ stdout: string; seconds: number }> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
    child.on('error', reject);
    child.on('exit', (code) => {
      const seconds = (performance.now() - t) / 1000;
      if (code === 0) resolve({ stdout, seconds });
      else reject(new Error(`${cmd} ${args.slice(0, 3).join(' ')} exited with ${code}:\n${stderr}\n${stdout.slice(-2000)}`));
    });
  });
}

const lastJson = (out: string) => JSON.parse(out.trim().split('\n').at(-1)!);

async function trainhook(url: string, work: string): Promise<Sample> {
  const jobDir = path.join(work, 'job');
  rmSync(jobDir, { recursive: true, force: true });
  const r = await run(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child-trainhook', url, jobDir]);
  rmSync(jobDir, { recursive: true, force: true });
  return lastJson(r.stdout) as Sample;
}

async function baseline(url: string, work: string, python: string): Promise<Sample & { importSeconds: number }> {
  const dir = path.join(work, 'plain');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const zip = path.join(dir, 'dataset.zip');
  const curl = await run('curl', ['-sS', '--fail', '-o', zip, url]);
  const unzip = await run('unzip', ['-q', zip, '-d', path.join(dir, 'dataset')]);
  rmSync(zip);
  const verify = lastJson((await run(python, ['-c', PY, path.join(dir, 'dataset'), String(CLASSES.length)])).stdout);
  rmSync(dir, { recursive: true, force: true });
  return {
    seconds: curl.seconds + unzip.seconds + verify.seconds,
    maxRssMb: 0,
    importSeconds: verify.import,
    stages: { download: curl.seconds, extract: unzip.seconds, check: verify.seconds },
    note: verify.note,
  };
}

/** The dataset ZIP, written once: entries streamed straight into the archive, images stored, labels deflated. */
async function generate() {
  if (existsSync(ZIP)) return;
  mkdirSync(DIR, { recursive: true });
  console.log(`generating ${IMAGES} ${IMGSZ}px ${FORMAT} images into ${ZIP} (once)…`);
  const t = performance.now();
  const zip = new yazl.ZipFile();
  const tmp = `${ZIP}.tmp`;
  const done = pipeline(zip.outputStream, createWriteStream(tmp));
  const rand = prng(42);
  const mtime = new Date('2024-01-01T00:00:00Z');
  const val = Math.round(IMAGES * 0.2);
  for (const [split, count] of [['train', IMAGES - val], ['val', val]] as const) {
    for (let i = 0; i < count; i++) {
      const { rgb, lines } = drawSample(rand, IMGSZ, CLASSES.length, 'detect');
      const stem = `${split}_${String(i).padStart(6, '0')}`;
      zip.addBuffer(encodeImage(rgb, IMGSZ, FORMAT), `images/${split}/${stem}.${FORMAT}`, { mtime, compress: false });
      zip.addBuffer(Buffer.from(lines.join('\n') + '\n'), `labels/${split}/${stem}.txt`, { mtime });
      // Let the archive drain so memory stays flat on the multi-GB sizes.
      if (i % 500 === 499) await new Promise((r) => setImmediate(r));
    }
  }
  const names = CLASSES.map((n) => `  - ${n}`).join('\n');
  zip.addBuffer(Buffer.from(`train: images/train\nval: images/val\nnc: ${CLASSES.length}\nnames:\n${names}\n`), 'data.yaml', { mtime });
  zip.end();
  await done;
  renameSync(tmp, ZIP);
  console.log(`  generated in ${((performance.now() - t) / 1000).toFixed(1)} s`);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const fmt = (s: Record<string, number>) => Object.entries(s).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ');

async function main() {
  if (process.argv[2] === '--child-trainhook') return childTrainhook(process.argv[3]!, process.argv[4]!);
  await generate();
  const python = await setupPython();
  const size = statSync(ZIP).size;
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/zip', 'content-length': size });
    createReadStream(ZIP).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dataset.zip`;
  const work = path.join(DIR, 'work');
  console.log(`zip: ${ZIP} (${(size / 1e6).toFixed(0)} MB, ${IMAGES} images)\npython: ${python}`);
  console.log(`node ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}, ${RUNS} runs each\n`);

  const ours: Sample[] = [];
  const theirs: Awaited<ReturnType<typeof baseline>>[] = [];
  for (let r = 0; r < RUNS; r++) {
    // ABBA: neither side always runs first on a warm page cache.
    const order = r % 2 === 0 ? ['t', 'b'] : ['b', 't'];
    for (const o of order) {
      if (o === 't') {
        const s = await trainhook(url, work);
        ours.push(s);
        console.log(`trainhook  ${s.seconds.toFixed(2)} s (${fmt(s.stages)}), peak RSS ${s.maxRssMb.toFixed(0)} MB, ${s.note}`);
      } else {
        const s = await baseline(url, work, python);
        theirs.push(s);
        console.log(`baseline   ${s.seconds.toFixed(2)} s (${fmt(s.stages)}; python import ${s.importSeconds.toFixed(1)} s not counted), ${s.note}`);
      }
    }
  }
  server.close();
  rmSync(work, { recursive: true, force: true });

  const t = median(ours.map((s) => s.seconds));
  const b = median(theirs.map((s) => s.seconds));
  const rss = Math.max(...ours.map((s) => s.maxRssMb));
  const ratio = t / b;
  const wallOk = ratio <= 1.0;
  const rssOk = rss < 300;
  console.log(`\ntrainhook download+extract+check: median ${t.toFixed(2)} s wall, peak RSS ${rss.toFixed(0)} MB (target < 300 MB): ${rssOk ? 'PASS' : 'FAIL'}`);
  console.log(`curl + unzip + ultralytics verify: median ${b.toFixed(2)} s wall`);
  console.log(`wall ratio trainhook / baseline: ${ratio.toFixed(2)} (target <= 1.0): ${wallOk ? 'PASS' : 'FAIL'}`);
  if (process.env.BENCH_JSON) {
    writeFileSync(process.env.BENCH_JSON, JSON.stringify({ images: IMAGES, imgsz: IMGSZ, format: FORMAT, zipBytes: size, trainhook: ours, baseline: theirs, ratio, peakRssMb: rss }, null, 2));
  }
  if (process.env.BENCH_STRICT && !(wallOk && rssOk)) process.exitCode = 1;
}

await main();
