/**
 * Training overhead bench for the RF-DETR engine: `npx tsx bench/overhead.ts --engine rfdetr`
 * (or this file directly). Not a test.
 *
 * The same generated dataset, seed and RF-DETR arguments, trained twice on the CPU from random
 * initialisation:
 *
 *   A  trainhook: a real server (`node --import tsx src/main.ts`, DEVICES=cpu, embedded PGlite)
 *      gets POST /api/v1/train (framework rfdetr) with the dataset ZIP served from 127.0.0.1; the
 *      job downloads, checks and trains it in worker/engines/rfdetr/train.py like any other job.
 *   B  bare: `python -c` building `RFDETRNano(pretrain_weights=None, …)` and calling its own
 *      `model.train(...)` on a copy of the same files laid out as rfdetr reads YOLO data, with the
 *      arguments the engine gave the job (read back from the job's worker spec, so both runs get
 *      exactly the same ones), seeded the way the engine seeds the initial weights.
 *
 * Ratio = trainhook worker wall (the runner's spawn line → the job's finished_at) / bare wall
 * (spawn → exit). Target: ≤ 1.03. Beside it, CPU seconds of each training process (steadier than
 * wall on a shared machine) and each side's final mAP50-95 (the last row of its metrics.csv; the
 * defaults reach about 0.4 on both) and the largest difference between the two metrics.csv files.
 * The report lists the files each side wrote, so the ratio is known to compare the same work
 * (trainhook adds results.png, its state file and the dataset links).
 *
 * Environment (all optional):
 *   BENCH_EPOCHS=30  BENCH_TRAIN=64  BENCH_VAL=16  BENCH_IMGSZ=64  BENCH_BATCH=8
 *   BENCH_ORDER=AB   A = trainhook, B = bare, in this order (ABBA cancels warm-up)
 *   BENCH_KEEP=1     keep the temp folder
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setupPython } from '../scripts/setup-python.mjs';
import { rfdetrEngine } from '../src/engines/rfdetr/index.js';
import { serveFile, startFileServer } from '../test/helpers/file-server.js';
import { TOKEN, startChildServer, type ChildServer } from '../test/helpers/server.js';
import { writeSyntheticDataset, zipDirectory } from '../test/helpers/synthetic-dataset.js';
import { WaitWatch, cleanUp, cpuOf, mean, median } from './lib/proc.js';
import { readCsv, runTrainhookJob } from './lib/trainhook-job.js';

const TARGET_RATIO = 1.03;
const envInt = (name: string, def: number) => {
  const v = process.env[name];
  return v === undefined || v === '' ? def : Number.parseInt(v, 10);
};
const EPOCHS = envInt('BENCH_EPOCHS', 30);
const TRAIN = envInt('BENCH_TRAIN', 64);
const VAL = envInt('BENCH_VAL', 16);
const IMGSZ = envInt('BENCH_IMGSZ', 64);
const BATCH = envInt('BENCH_BATCH', 8);
const ORDER = (process.env['BENCH_ORDER'] ?? 'AB').toUpperCase();
const KEEP = process.env['BENCH_KEEP'] === '1';
const CLASSES = ['red-box', 'green-disc', 'blue-triangle'];
// Two torch threads on a shared 2-core machine spin against each other; both sides get one.
const THREADS = { OMP_NUM_THREADS: '1' };

const say = (line: string) => process.stderr.write(`[overhead rfdetr] ${line}\n`);
const f = (x: number | null | undefined, d = 2) => (x === null || x === undefined || Number.isNaN(x) ? '—' : x.toFixed(d));

type Run = { kind: 'trainhook' | 'bare'; wall: number; cpu: number | null; wait: number | null; map: number | null; csv: string[][]; files: string[] };

/** The last non-empty value of a metrics.csv column (Lightning writes train and val rows apart). */
function lastOf(csv: string[][], column: string): number | null {
  const i = csv[0]!.indexOf(column);
  for (let r = csv.length - 1; r > 0 && i >= 0; r--) if (csv[r]![i]) return Number(csv[r]![i]);
  return null;
}
function csvDiff(a: string[][], b: string[][]): { max: number; where: string } {
  let max = 0;
  let where = 'identical';
  for (const [ci, name] of a[0]!.entries()) {
    const bi = b[0]!.indexOf(name);
    if (bi < 0 || /time|step/.test(name)) continue;
    for (let r = 1; r < Math.min(a.length, b.length); r++) {
      const x = a[r]![ci];
      const y = b[r]![bi];
      if (!x || !y) continue;
      const d = Math.abs(Number(x) - Number(y));
      if (d > max) [max, where] = [d, `${name} row ${r}`];
    }
  }
  return { max, where };
}
const listFiles = (dir: string) => fs.readdirSync(dir).sort();

async function runTrainhook(server: ChildServer, workdir: string, request: Record<string, unknown>): Promise<Run & { args: Record<string, unknown> }> {
  const run = await runTrainhookJob(server, workdir, request, 2000);
  const csv = readCsv(path.join(run.dir, 'metrics.csv'));
  return { kind: 'trainhook', wall: run.wall, cpu: run.cpu, wait: run.wait, map: lastOf(csv, 'val/mAP_50_95'), csv, files: run.files, args: run.args };
}

/** rfdetr's own API, called with the job's arguments the way the engine maps them. */
const BARE_PY = `
import json, sys
a = json.loads(sys.argv[1]); data, out = sys.argv[2], sys.argv[3]
from lightning_fabric.utilities.seed import seed_everything
seed_everything(a["seed"], verbose=False)
from rfdetr import RFDETRNano
m = RFDETRNano(pretrain_weights=None, num_classes=int(sys.argv[4]), resolution=a["resolution"],
               num_queries=a["num_queries"], num_select=a["num_queries"], group_detr=a["group_detr"], device="cpu")
m.train(dataset_dir=data, dataset_file="yolo", output_dir=out, device="cpu", resolution=a["resolution"],
        epochs=a["epochs"], batch_size=a["batch_size"], grad_accum_steps=a["grad_accum_steps"], lr=a["lr"],
        lr_encoder=a["lr_encoder"], use_ema=a["use_ema"], weight_decay=a["weight_decay"],
        warmup_epochs=a["warmup_epochs"], multi_scale=a["multi_scale"], early_stopping=a["early_stopping"],
        early_stopping_patience=a["patience"], num_workers=a["num_workers"], seed=a["seed"],
        tensorboard=False, checkpoint_interval=10**9)
`;

/** The generated dataset, laid out as rfdetr reads YOLO data: split folders inside the data.yaml's. */
function bareDataset(src: string, dest: string): void {
  for (const [from, to] of [['train', 'train'], ['val', 'valid']] as const) {
    for (const kind of ['images', 'labels']) {
      fs.mkdirSync(path.join(dest, to, kind), { recursive: true });
      for (const file of fs.readdirSync(path.join(src, kind, from))) fs.copyFileSync(path.join(src, kind, from, file), path.join(dest, to, kind, file));
    }
  }
  const names = CLASSES.map((n) => `  - ${n}`).join('\n');
  fs.writeFileSync(path.join(dest, 'data.yaml'), `train: train/images\nval: valid/images\nnc: ${CLASSES.length}\nnames:\n${names}\n`);
}

async function runBare(python: string, tmp: string, srcDir: string, args: Record<string, unknown>, index: number): Promise<Run> {
  const data = path.join(tmp, `bare-data-${index}`);
  const out = path.join(tmp, `bare-run-${index}`);
  bareDataset(srcDir, data);
  fs.mkdirSync(out);
  const before = cpuOf('self');
  const start = Date.now();
  const child = spawn(python, ['-c', BARE_PY, JSON.stringify(args), data, out, String(CLASSES.length)], {
    cwd: out,
    env: { ...process.env, ...THREADS, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const watch = new WaitWatch(() => child.pid ?? null);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  const wall = (Date.now() - start) / 1000;
  const wait = watch.stop();
  if (code !== 0) throw new Error(`bare rfdetr exited ${code}:\n${err}`);
  const after = cpuOf('self');
  const csv = readCsv(path.join(out, 'metrics.csv'));
  return { kind: 'bare', wall, cpu: before && after ? after.children - before.children : null, wait, map: lastOf(csv, 'val/mAP_50_95'), csv, files: listFiles(out) };
}

export async function main(): Promise<void> {
  if (!/^[AB]+$/.test(ORDER) || !ORDER.includes('A')) throw new Error(`BENCH_ORDER must be made of A and B and hold an A, got ${ORDER}`);
  const python = await setupPython({ requirementsFile: rfdetrEngine.python.requirements });
  say(`${TRAIN} train / ${VAL} val images at ${IMGSZ}px, ${EPOCHS} epochs, batch ${BATCH}, order ${ORDER}, ${os.availableParallelism()} CPUs`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'trainhook-overhead-rfdetr-'));
  const cleanup: (() => unknown)[] = [];
  try {
    const srcDir = path.join(tmp, 'src');
    await writeSyntheticDataset(srcDir, { task: 'detect', train: TRAIN, val: VAL, imgsz: IMGSZ, classes: CLASSES, seed: 7 });
    const zip = path.join(tmp, 'dataset.zip');
    await zipDirectory(srcDir, zip);
    const files = await startFileServer();
    cleanup.push(() => files.close());
    files.route('/dataset.zip', serveFile(zip));
    const request = {
      model_config: {
        framework: 'rfdetr',
        name: 'overhead-rfdetr',
        base_model: 'rfdetr-nano',
        pretrained: false,
        epochs: EPOCHS,
        batch_size: BATCH,
        image_size: IMGSZ,
        learning_rate: 5e-4,
        learning_rate_encoder: 5e-4,
        grad_accum_steps: 1,
        warmup_epochs: 1,
        multi_scale: false,
        seed: 0,
        num_queries: 20,
        group_detr: 1,
      },
      dataset: { url: files.url('/dataset.zip') },
      resources: { device: 'cpu', workers: 0 },
    };
    const workdir = path.join(tmp, 'workdir');
    const server = await startChildServer({ WORKDIR: workdir, API_TOKEN: TOKEN, DEVICES: 'cpu', OUTBOUND_ALLOW: '127.0.0.1', RFDETR_PYTHON: python, ...THREADS });
    cleanup.push(() => server.kill('SIGTERM'));

    const runs: Run[] = [];
    let args: Record<string, unknown> | null = null;
    // The job's own arguments drive the bare runs: the first run is trainhook's whatever the order.
    const order = ORDER.startsWith('A') ? ORDER : `A${ORDER.replace('A', '')}`;
    for (const [i, side] of [...order].entries()) {
      say(`run ${i + 1}/${order.length}: ${side === 'A' ? 'trainhook' : 'bare'}…`);
      if (side === 'A') {
        const r = await runTrainhook(server, workdir, request);
        args = r.args;
        runs.push(r);
      } else {
        runs.push(await runBare(python, tmp, srcDir, args!, i));
      }
      const last = runs[runs.length - 1]!;
      say(`  ${last.kind}: ${f(last.wall)} s wall, ${f(last.cpu)} s CPU, mAP50-95 ${f(last.map, 3)}`);
    }
    const A = runs.filter((r) => r.kind === 'trainhook');
    const B = runs.filter((r) => r.kind === 'bare');
    const lines = [
      '',
      `RF-DETR nano from random init, ${TRAIN}/${VAL} images at ${IMGSZ}px, ${EPOCHS} epochs, batch ${BATCH}; args ${JSON.stringify(args)}`,
      `| side | runs | wall s (median) | train CPU s | CPU wait s | final mAP50-95 |`,
      `| --- | --- | --- | --- | --- | --- |`,
      ...[A, B]
        .filter((xs) => xs.length)
        .map((xs) => `| ${xs[0]!.kind} | ${xs.length} | ${f(median(xs.map((x) => x.wall)))} | ${f(mean(xs.map((x) => x.cpu ?? NaN)))} | ${f(mean(xs.map((x) => x.wait ?? NaN)))} | ${xs.map((x) => f(x.map, 3)).join(', ')} |`),
    ];
    if (B.length) {
      const ratio = median(A.map((x) => x.wall)) / median(B.map((x) => x.wall));
      const cpuRatio = mean(A.map((x) => x.cpu ?? NaN)) / mean(B.map((x) => x.cpu ?? NaN));
      const diff = csvDiff(A[0]!.csv, B[0]!.csv);
      lines.push(
        '',
        `wall ratio trainhook/bare: ${f(ratio, 3)} (target ≤ ${TARGET_RATIO}); training-CPU ratio ${f(cpuRatio, 3)}`,
        `metrics.csv largest difference: ${diff.max === 0 ? 'none (identical)' : `${diff.max.toExponential(2)} at ${diff.where}`}`,
        `files trainhook wrote in its run folder: ${A[0]!.files.join(' ')}`,
        `files bare rfdetr wrote:                ${B[0]!.files.join(' ')}`,
      );
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await cleanUp(cleanup);
    if (KEEP) say(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
