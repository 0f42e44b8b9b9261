/**
 * Training overhead bench for the transformers engine: `npx tsx bench/overhead.ts --engine transformers`
 * (or this file directly). Not a test.
 *
 * The same tiny random 2-layer LLaMA-style model (test/engines/transformers/make_tiny_llama.py,
 * built offline in a temp folder), the same memorisable JSONL set (8 prompt/completion pairs × 4
 * for train, the 8 for val: the e2e test's), the same LoRA arguments and seed, trained twice on the CPU:
 *
 *   A  trainhook: a real server (`node --import tsx src/main.ts`, DEVICES=cpu, embedded PGlite,
 *      HF_MODELS_DIR at the model's folder) gets POST /api/v1/train (framework transformers) with the
 *      dataset ZIP served from 127.0.0.1; the job downloads, checks and trains it in
 *      worker/engines/transformers/train.py like any other job.
 *   B  bare: bench/overhead_transformers_bare.py, the plain transformers + peft loop a user would
 *      write (seeded shuffle, AdamW, linear schedule, a validation pass per epoch, the adapter saved
 *      when val_loss improves), with the arguments the engine gave the job (read back from the job's
 *      worker spec).
 *
 * Ratio = trainhook worker wall (the runner's spawn line → the job's finished_at) / bare wall
 * (spawn → exit). Target: ≤ 1.05. Steps per second are optimizer steps over those walls. Beside
 * them: CPU seconds of each training process, each side's final train/val loss and token accuracy
 * and the largest difference between the two metrics.csv files (the loops are the same
 * arithmetic, so it is 0 or float noise), and the files each side wrote (trainhook also writes a
 * checkpoint ZIP and last.pt every epoch, so a stop or crash resumes).
 *
 * Environment (all optional):
 *   BENCH_EPOCHS=150  BENCH_LR=0.005  BENCH_BATCH=8
 *   BENCH_REPEAT=4    the 8 pairs this many times for train (4: 32 samples, 4 steps an epoch at batch 8);
 *                     trainhook's cost is per epoch (last.pt, a checkpoint ZIP, events), so longer
 *                     epochs (e.g. BENCH_REPEAT=40 BENCH_EPOCHS=15: the same 600 steps) show it at a
 *                     realistic share
 *   BENCH_ORDER=AB    A = trainhook, B = bare, in this order (ABBA cancels warm-up)
 *   BENCH_KEEP=1      keep the temp folder
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setupPython } from '../scripts/setup-python.mjs';
import { transformersEngine } from '../src/engines/transformers/index.js';
import { serveFile, startFileServer } from '../test/helpers/file-server.js';
import { TOKEN, startChildServer, type ChildServer } from '../test/helpers/server.js';
import { zipDirectory } from '../test/helpers/synthetic-dataset.js';
import { WaitWatch, cleanUp, cpuOf, mean, median } from './lib/proc.js';
import { readCsv, runTrainhookJob } from './lib/trainhook-job.js';

const TARGET_RATIO = 1.05;
const envNum = (name: string, def: number) => {
  const v = process.env[name];
  return v === undefined || v === '' ? def : Number(v);
};
const EPOCHS = envNum('BENCH_EPOCHS', 150);
const LR = envNum('BENCH_LR', 0.005);
const BATCH = envNum('BENCH_BATCH', 8);
const REPEAT = envNum('BENCH_REPEAT', 4);
const ORDER = (process.env['BENCH_ORDER'] ?? 'AB').toUpperCase();
const KEEP = process.env['BENCH_KEEP'] === '1';
const THREADS = { OMP_NUM_THREADS: '1' };
const MAKE_MODEL = fileURLToPath(new URL('../test/engines/transformers/make_tiny_llama.py', import.meta.url));
const BARE = fileURLToPath(new URL('./overhead_transformers_bare.py', import.meta.url));
const PAIRS = [
  ['cat', 'red'], ['dog', 'blue'], ['fox', 'green'], ['owl', 'yellow'],
  ['bee', 'purple'], ['cow', 'orange'], ['pig', 'black'], ['hen', 'white'],
] as const;
const SAMPLES = PAIRS.map(([animal, colour]) => ({ prompt: `What colour is the ${animal}? `, completion: `The ${animal} is ${colour}.` }));
const METRICS = ['train_loss', 'val_loss', 'val_token_accuracy', 'learning_rate'];

const say = (line: string) => process.stderr.write(`[overhead transformers] ${line}\n`);
const f = (x: number | null | undefined, d = 2) => (x === null || x === undefined || Number.isNaN(x) ? '—' : x.toFixed(d));

type Run = { kind: 'trainhook' | 'bare'; wall: number; cpu: number | null; wait: number | null; steps: number; csv: string[][]; files: string[] };

const lastOf = (csv: string[][], column: string) => {
  const i = csv[0]!.indexOf(column);
  return i >= 0 && csv.length > 1 ? Number(csv.at(-1)![i]) : null;
};
function csvDiff(a: string[][], b: string[][]): { max: number; where: string } {
  let max = 0;
  let where = 'identical';
  for (const name of METRICS) {
    const ai = a[0]!.indexOf(name);
    const bi = b[0]!.indexOf(name);
    for (let r = 1; r < Math.min(a.length, b.length); r++) {
      const d = Math.abs(Number(a[r]![ai]) - Number(b[r]![bi]));
      if (d > max) [max, where] = [d, `${name} epoch ${r}`];
    }
  }
  return { max, where };
}
const listFiles = (dir: string) => fs.readdirSync(dir).sort();

async function runTrainhook(server: ChildServer, workdir: string, request: Record<string, unknown>): Promise<Run & { args: Record<string, unknown> }> {
  const run = await runTrainhookJob(server, workdir, request, 500);
  const cfg = JSON.parse(fs.readFileSync(path.join(run.dir, 'training_config.json'), 'utf8')) as { samples: { train: number } };
  const steps = Math.ceil(cfg.samples.train / Number(run.args['batch_size'])) * Number(run.args['epochs']);
  return { kind: 'trainhook', wall: run.wall, cpu: run.cpu, wait: run.wait, steps, csv: readCsv(path.join(run.dir, 'metrics.csv')), files: run.files, args: run.args };
}

async function runBare(python: string, tmp: string, data: string, base: string, args: Record<string, unknown>, index: number): Promise<Run> {
  const out = path.join(tmp, `bare-run-${index}`);
  fs.mkdirSync(out);
  const before = cpuOf('self');
  const start = Date.now();
  const child = spawn(python, [BARE, JSON.stringify(args), data, base, out], {
    cwd: out,
    env: { ...process.env, ...THREADS, HF_HUB_OFFLINE: '1', TRANSFORMERS_OFFLINE: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const watch = new WaitWatch(() => child.pid ?? null);
  let err = '';
  let stdout = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  const wall = (Date.now() - start) / 1000;
  const wait = watch.stop();
  if (code !== 0) throw new Error(`bare transformers exited ${code}:\n${err}`);
  const after = cpuOf('self');
  const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as { steps: number };
  return { kind: 'bare', wall, cpu: before && after ? after.children - before.children : null, wait, steps: report.steps, csv: readCsv(path.join(out, 'metrics.csv')), files: listFiles(out) };
}

export async function main(): Promise<void> {
  if (!/^[AB]+$/.test(ORDER) || !ORDER.includes('A')) throw new Error(`BENCH_ORDER must be made of A and B and hold an A, got ${ORDER}`);
  const python = await setupPython({ requirementsFile: transformersEngine.python.requirements });
  say(`${SAMPLES.length * REPEAT} train / ${SAMPLES.length} val samples, ${EPOCHS} epochs, lr ${LR}, batch ${BATCH}, order ${ORDER}, ${os.availableParallelism()} CPUs; load: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'trainhook-overhead-transformers-'));
  const cleanup: (() => unknown)[] = [];
  try {
    const models = path.join(tmp, 'hf-models');
    const base = path.join(models, 'tiny-llama');
    fs.mkdirSync(models);
    fs.writeFileSync(path.join(tmp, 'texts.json'), JSON.stringify(SAMPLES.map((s) => s.prompt + s.completion)));
    const built = spawnSync(python, [MAKE_MODEL, base, path.join(tmp, 'texts.json')], { encoding: 'utf8', env: { ...process.env, ...THREADS } });
    if (built.status !== 0) throw new Error(`make_tiny_llama.py: ${built.stderr}`);
    const data = path.join(tmp, 'data');
    fs.mkdirSync(data);
    const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
    fs.writeFileSync(path.join(data, 'train.jsonl'), jsonl(Array.from({ length: REPEAT }, () => SAMPLES).flat()));
    fs.writeFileSync(path.join(data, 'val.jsonl'), jsonl(SAMPLES));
    const zip = path.join(tmp, 'dataset.zip');
    await zipDirectory(data, zip);
    const files = await startFileServer();
    cleanup.push(() => files.close());
    files.route('/dataset.zip', serveFile(zip));
    const request = {
      model_config: {
        framework: 'transformers',
        name: 'overhead-transformers',
        task: 'causal-lm',
        base_model: 'tiny-llama',
        method: 'lora',
        lora_r: 16,
        lora_alpha: 32,
        lora_dropout: 0,
        target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'lm_head'],
        learning_rate: LR,
        batch_size: BATCH,
        warmup_ratio: 0,
        max_length: 64,
        epochs: EPOCHS,
        seed: 1,
      },
      dataset: { url: files.url('/dataset.zip') },
      resources: { device: 'cpu' },
    };
    const workdir = path.join(tmp, 'workdir');
    const server = await startChildServer({
      WORKDIR: workdir,
      API_TOKEN: TOKEN,
      DEVICES: 'cpu',
      OUTBOUND_ALLOW: '127.0.0.1',
      HF_MODELS_DIR: models,
      TRANSFORMERS_PYTHON: python,
      ...THREADS,
    });
    cleanup.push(() => server.kill('SIGTERM'));

    const runs: Run[] = [];
    let args: Record<string, unknown> | null = null;
    const order = ORDER.startsWith('A') ? ORDER : `A${ORDER.replace('A', '')}`;
    for (const [i, side] of [...order].entries()) {
      say(`run ${i + 1}/${order.length}: ${side === 'A' ? 'trainhook' : 'bare'}…`);
      if (side === 'A') {
        const r = await runTrainhook(server, workdir, request);
        args = r.args;
        runs.push(r);
      } else {
        runs.push(await runBare(python, tmp, data, base, args!, i));
      }
      const last = runs.at(-1)!;
      say(`  ${last.kind}: ${f(last.wall)} s wall, ${f(last.steps / last.wall, 1)} steps/s, ${f(last.cpu)} s CPU, val_loss ${f(lastOf(last.csv, 'val_loss'), 4)}`);
    }
    const A = runs.filter((r) => r.kind === 'trainhook');
    const B = runs.filter((r) => r.kind === 'bare');
    const lines = [
      '',
      `tiny LLaMA (2 layers, hidden 64) + LoRA r16 on all linear layers and lm_head, ${SAMPLES.length * REPEAT}/${SAMPLES.length} samples, ${EPOCHS} epochs, batch ${BATCH}; args ${JSON.stringify(args)}`,
      `| side | runs | wall s (median) | steps | steps/s | train CPU s | CPU wait s | final train_loss | final val_loss | final val_token_accuracy |`,
      `| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |`,
      ...[A, B]
        .filter((xs) => xs.length)
        .map((xs) => {
          const wall = median(xs.map((x) => x.wall));
          const m = (k: string) => xs.map((x) => f(lastOf(x.csv, k), 4)).join(', ');
          return `| ${xs[0]!.kind} | ${xs.length} | ${f(wall)} | ${xs[0]!.steps} | ${f(xs[0]!.steps / wall, 1)} | ${f(mean(xs.map((x) => x.cpu ?? NaN)))} | ${f(mean(xs.map((x) => x.wait ?? NaN)))} | ${m('train_loss')} | ${m('val_loss')} | ${m('val_token_accuracy')} |`;
        }),
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
        `files the bare script wrote:            ${B[0]!.files.join(' ')}`,
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
