/**
 * The real Ultralytics worker (worker/main.py running worker/engines/ultralytics/train.py, on
 * CPU) through runWorker, on tiny synthetic
 * datasets: training, segment, missing base model, cancel, resume after a stop and after a
 * SIGKILL, the stdin lifeline, divergence. Small on purpose (16 images, imgsz 64, batch 4):
 * the whole file runs in a couple of minutes on 2 CPU cores once the venv exists.
 *
 * The venv comes from scripts/setup-python.mjs (idempotent; the first build takes minutes).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { setupPython } from '../scripts/setup-python.mjs';
import { toUltralyticsArgs } from '../src/engines/ultralytics/args.js';
import type { WorkerEvent, WorkerSpec } from '../src/worker/protocol.js';
import { ultralyticsEngine } from '../src/engines/ultralytics/index.js';
import { WORKER_MAIN } from '../src/worker/process.js';
import { runWorker, writeWorkerSpec, type WorkerOutcome } from '../src/worker/training.js';
import { writeSyntheticDataset } from './helpers/synthetic-dataset.js';

let python = '';
let dir = '';
let detYaml = '';
let segYaml = '';

const GRACE_MS = 30_000;

function baseSpec(name: string, over: Partial<WorkerSpec> = {}, argsOver: Record<string, unknown> = {}): WorkerSpec {
  const args = toUltralyticsArgs(
    { epochs: 2, batch_size: 4, image_size: 64, learning_rate: 0.01, optimizer: 'auto', patience: 50, seed: 0, augmentation: {} },
    { workers: 0 },
    'cpu',
  );
  return {
    job_id: name,
    engine: 'ultralytics',
    task: 'detect',
    // Does not exist: the worker finds yolo11n.yaml among the configs Ultralytics ships.
    model: path.join(dir, 'base-models', 'yolo11n.yaml'),
    data: detYaml,
    data_format: 'yolo',
    run_dir: path.join(dir, 'jobs', name),
    resume: false,
    cache_dir: path.join(dir, 'ultralytics'),
    device: 'cpu',
    args: { ...args, ...argsOver },
    progress_every_pct: 25,
    ...over,
  };
}

type Run = { outcome: WorkerOutcome; events: WorkerEvent[]; log: string; ms: number; pid: number | null };

async function train(
  spec: WorkerSpec,
  hooks: { signal?: AbortSignal; onEvent?: (e: WorkerEvent, pid: number | null) => void; env?: Record<string, string> } = {},
): Promise<Run> {
  const events: WorkerEvent[] = [];
  let pid: number | null = null;
  const logFile = path.join(dir, 'logs', `${spec.job_id}.log`);
  const t0 = Date.now();
  const outcome = await runWorker(spec, {
    python,
    entry: ultralyticsEngine.python.train,
    specPath: path.join(dir, 'specs', `${spec.job_id}-${Date.now()}.json`),
    logFile,
    signal: hooks.signal ?? new AbortController().signal,
    graceMs: GRACE_MS,
    ...(hooks.env ? { env: hooks.env } : {}),
    onEvent: (e) => {
      if (e.type === 'started') pid = e.pid;
      events.push(e);
      hooks.onEvent?.(e, pid);
    },
  });
  return { outcome, events, log: fs.readFileSync(logFile, 'utf8'), ms: Date.now() - t0, pid };
}

const epochsOf = (events: WorkerEvent[]) => events.flatMap((e) => (e.type === 'epoch' ? [e.epoch] : []));
const ofType = <T extends WorkerEvent['type']>(events: WorkerEvent[], type: T) =>
  events.filter((e): e is Extract<WorkerEvent, { type: T }> => e.type === type);

function assertGone(pid: number | null) {
  assert.ok(pid, 'worker reported its pid');
  assert.throws(() => process.kill(pid, 0), /ESRCH/, `worker ${pid} still alive`);
}

function csvEpochs(runDir: string): number[] {
  const lines = fs.readFileSync(path.join(runDir, 'results.csv'), 'utf8').trim().split('\n').slice(1);
  return lines.map((l) => Number(l.split(',')[0]));
}

function assertOffline(log: string) {
  for (const bad of [/Downloading/i, /Arial\.ttf/, /hub\.ultralytics\.com/, /api\.ultralytics\.com/, /github\.com\/ultralytics\/assets/, /AutoUpdate/]) {
    assert.doesNotMatch(log, bad);
  }
}

describe('the Ultralytics worker through runWorker', { timeout: 20 * 60_000 }, () => {
  before(
    async () => {
      python = await setupPython(); // progress on stderr when it has to build
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trainhook-worker-'));
      const common = { train: 16, val: 8, imgsz: 64, classes: ['red', 'green'], seed: 7 };
      detYaml = (await writeSyntheticDataset(path.join(dir, 'det'), { task: 'detect', ...common })).dataYaml;
      segYaml = (await writeSyntheticDataset(path.join(dir, 'seg'), { task: 'segment', ...common })).dataYaml;
    },
    { timeout: 15 * 60_000 },
  );
  after(() => {
    if (dir && !process.env['KEEP_TEST_OUTPUT']) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('trains a detect model for 2 epochs, offline, and the best.pt predicts', async () => {
    const spec = baseSpec('detect');
    const run = await train(spec);
    assert.equal(run.outcome.kind, 'done', JSON.stringify(run.outcome).slice(0, 2000));
    const { events } = run;
    assert.equal(events[0]?.type, 'started');
    const started = ofType(events, 'started')[0]!;
    assert.equal(started.device, 'cpu');
    assert.equal(started.resumed_from_epoch, null);
    assert.equal(started.versions['ultralytics'], '8.4.50');
    assert.deepEqual(
      ofType(events, 'phase').map((e) => e.phase),
      ['preparing', 'training', 'validating', 'finalizing'],
    );
    assert.deepEqual(epochsOf(events), [1, 2]);
    const epoch1 = ofType(events, 'epoch')[0]!;
    for (const key of ['box_loss', 'cls_loss', 'dfl_loss', 'precision', 'recall', 'mAP50', 'mAP50-95', 'lr', 'val_box_loss']) {
      assert.ok(key in epoch1.metrics, `epoch metrics lack ${key}: ${Object.keys(epoch1.metrics).join(', ')}`);
    }
    assert.ok(epoch1.epoch_seconds > 0);
    assert.equal(epoch1.epochs, 2);
    const batches = ofType(events, 'batch').filter((e) => e.epoch === 1);
    assert.ok(batches.length >= 2, 'batch progress within an epoch');
    assert.equal(batches.at(-1)!.batch, batches.at(-1)!.batches);
    assert.ok(ofType(events, 'checkpoint').some((e) => e.kind === 'last' && e.epoch === 2));

    const done = run.outcome.kind === 'done' ? run.outcome.event : assert.fail('not done');
    assert.equal(done.epochs_completed, 2);
    assert.ok(fs.existsSync(done.best) && fs.existsSync(done.last));
    assert.ok('mAP50' in done.final_metrics);
    assert.ok(done.best_epoch === 1 || done.best_epoch === 2);
    const items = ofType(events, 'artifacts')[0]?.items ?? [];
    const names = items.map((i) => i.name);
    assert.ok(names.includes('results.csv'), names.join(', '));
    assert.ok(names.includes('results.png'), names.join(', '));
    assert.ok(items.every((i) => i.size > 0 && fs.existsSync(i.path)));
    assert.equal(events.at(-1)?.type, 'done');
    assert.equal(events.filter((e) => e.type === 'done' || e.type === 'error' || e.type === 'stopped').length, 1);
    assert.deepEqual(csvEpochs(spec.run_dir), [1, 2]);
    assertOffline(run.log);
    assertGone(run.pid);
    // Fonts were placed so plots never fetch one.
    assert.ok(fs.existsSync(path.join(spec.cache_dir, 'Ultralytics', 'Arial.ttf')));

    const image = fs.readdirSync(path.join(dir, 'det', 'images', 'val'))[0]!;
    const predict = spawnSync(
      python,
      [
        '-c',
        'import sys; from ultralytics import YOLO; r = YOLO(sys.argv[1]).predict(sys.argv[2], imgsz=64, verbose=False); print("RESULTS", len(r), r[0].boxes is not None)',
        done.best,
        path.join(dir, 'det', 'images', 'val', image),
      ],
      { encoding: 'utf8', env: { ...process.env, YOLO_OFFLINE: 'true', YOLO_CONFIG_DIR: spec.cache_dir } },
    );
    assert.equal(predict.status, 0, predict.stderr);
    assert.match(predict.stdout, /RESULTS 1 True/);
  });

  it('trains a segment model (mask metrics)', async () => {
    const run = await train(baseSpec('segment', { task: 'segment', data: segYaml }));
    assert.equal(run.outcome.kind, 'done', JSON.stringify(run.outcome).slice(0, 2000));
    assert.deepEqual(epochsOf(run.events), [1, 2]);
    const metrics = ofType(run.events, 'epoch')[0]!.metrics;
    for (const key of ['seg_loss', 'mAP50', 'mAP50(M)', 'mAP50-95(M)', 'precision(M)']) {
      assert.ok(key in metrics, `segment metrics lack ${key}: ${Object.keys(metrics).join(', ')}`);
    }
    // yolo11n.yaml is a detect config: the worker took yolo11n-seg.yaml and said so.
    assert.ok(ofType(run.events, 'warning').some((w) => /yolo11n-seg\.yaml/.test(w.message)));
    assertOffline(run.log);
  });

  it('fails fast with MODEL_DOWNLOAD_FAILED for a missing .pt, naming where to put it', async () => {
    const missing = path.join(dir, 'base-models', 'yolo11n.pt');
    const run = await train(baseSpec('missing-pt', { model: missing }));
    assert.equal(run.outcome.kind, 'error');
    if (run.outcome.kind !== 'error') return;
    assert.equal(run.outcome.error.code, 'MODEL_DOWNLOAD_FAILED');
    assert.ok(run.outcome.error.message.includes(missing), run.outcome.error.message);
    assert.ok(run.ms < 10_000, `took ${run.ms} ms`);
    assert.ok(!fs.existsSync(missing));
    assertOffline(run.log);
  });

  it('stops on abort at the next batch, keeps last.pt, and resumes without repeating an epoch', async () => {
    const spec = baseSpec('cancel', {}, { epochs: 3 });
    const ac = new AbortController();
    let abortedAt = 0;
    const run = await train(spec, {
      signal: ac.signal,
      onEvent: (e) => {
        if (e.type === 'batch' && e.epoch === 2 && !ac.signal.aborted) {
          abortedAt = Date.now();
          ac.abort();
        }
      },
    });
    const stopTook = Date.now() - abortedAt;
    assert.equal(run.outcome.kind, 'stopped', JSON.stringify(run.outcome).slice(0, 2000));
    if (run.outcome.kind !== 'stopped') return;
    assert.equal(run.outcome.event.epochs_completed, 1);
    const last = path.join(spec.run_dir, 'weights', 'last.pt');
    assert.equal(run.outcome.event.last, last);
    assert.ok(fs.existsSync(last));
    assert.ok(stopTook < GRACE_MS, `stopping took ${stopTook} ms`);
    assert.ok(stopTook < 15_000, `stopping took ${stopTook} ms: should be at the next batch`);
    assertGone(run.pid);
    assert.deepEqual(epochsOf(run.events), [1]);

    const resumed = await train({ ...spec, resume: true });
    assert.equal(resumed.outcome.kind, 'done', JSON.stringify(resumed.outcome).slice(0, 2000));
    assert.equal(ofType(resumed.events, 'started')[0]?.resumed_from_epoch, 1);
    assert.deepEqual(epochsOf(resumed.events), [2, 3]);
    if (resumed.outcome.kind === 'done') assert.equal(resumed.outcome.event.epochs_completed, 3);
    assert.deepEqual(csvEpochs(spec.run_dir), [1, 2, 3]);
    assertOffline(resumed.log);
  });

  it('resumes after the worker was SIGKILLed after epoch 1, even from a torn last.pt', async () => {
    const spec = baseSpec('killed', {}, { epochs: 2 });
    const run = await train(spec, {
      onEvent: (e, pid) => {
        if (e.type === 'epoch' && e.epoch === 1 && pid) process.kill(pid, 'SIGKILL');
      },
    });
    assert.equal(run.outcome.kind, 'crashed');
    if (run.outcome.kind === 'crashed') {
      assert.equal(run.outcome.error.code, 'WORKER_CRASHED');
      assert.equal((run.outcome.error.details as { signal: string }).signal, 'SIGKILL');
      assert.ok(((run.outcome.error.details as { log_tail: string[] }).log_tail).length > 0);
    }

    // A kill in the middle of Ultralytics' in-place write of last.pt leaves it torn; the
    // worker's atomic copy (weights/resume.ckpt) still resumes.
    const last = path.join(spec.run_dir, 'weights', 'last.pt');
    fs.truncateSync(last, Math.floor(fs.statSync(last).size / 2));

    const resumed = await train({ ...spec, resume: true });
    assert.equal(resumed.outcome.kind, 'done', JSON.stringify(resumed.outcome).slice(0, 2000));
    assert.equal(ofType(resumed.events, 'started')[0]?.resumed_from_epoch, 1);
    assert.deepEqual(epochsOf(resumed.events), [2]);
    assert.ok(!fs.existsSync(path.join(spec.run_dir, 'weights', 'resume.ckpt')), 'resume copy removed when done');
    assert.deepEqual(csvEpochs(spec.run_dir), [1, 2]);

    // Once finished, resume=true reports the finished run instead of training again.
    const again = await train({ ...spec, resume: true });
    assert.equal(again.outcome.kind, 'done', JSON.stringify(again.outcome).slice(0, 2000));
    assert.deepEqual(epochsOf(again.events), []);
    if (again.outcome.kind === 'done') assert.equal(again.outcome.event.epochs_completed, 2);

    // A checkpoint ahead of the service's record (the server died between the save and the
    // record): the epochs the service lacks are sent again, from the run's results.csv.
    const replay = await train({ ...spec, resume: true, recorded_epochs: [2] });
    assert.equal(replay.outcome.kind, 'done', JSON.stringify(replay.outcome).slice(0, 2000));
    const replayed = ofType(replay.events, 'epoch');
    assert.deepEqual(replayed.map((e) => e.epoch), [1]);
    assert.equal(replayed[0]?.epochs, 2);
    assert.equal(typeof replayed[0]?.metrics['box_loss'], 'number');
    assert.equal(typeof replayed[0]?.metrics['mAP50'], 'number');
  });

  it('stops when its stdin closes (the server died)', async () => {
    const spec = writeWorkerSpec(path.join(dir, 'specs', 'lifeline.json'), baseSpec('lifeline', {}, { epochs: 3 }));
    const child = spawn(python, [WORKER_MAIN, '--entry', ultralyticsEngine.python.train, '--spec', path.join(dir, 'specs', 'lifeline.json')], {
      cwd: dir,
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    const events: WorkerEvent[] = [];
    for await (const line of readline.createInterface({ input: child.stdout })) {
      const e = JSON.parse(line) as WorkerEvent;
      events.push(e);
      if (e.type === 'batch' && !child.stdin.writableEnded) child.stdin.end();
    }
    const code = await new Promise<number | null>((r) => (child.exitCode !== null ? r(child.exitCode) : child.once('exit', (c) => r(c))));
    assert.equal(events.at(-1)?.type, 'stopped', JSON.stringify(events.at(-1)));
    assert.equal(code, 0);
    assert.ok(epochsOf(events).length < 3);
    assert.equal(spec.job_id, 'lifeline');
  });

  it('halves the batch on out-of-memory and trains on', async () => {
    const run = await train(baseSpec('oom-retry', {}, { epochs: 1, batch: 8 }), { env: { TRAINHOOK_TEST_OOM_ABOVE_BATCH: '2' } });
    assert.equal(run.outcome.kind, 'done', JSON.stringify(run.outcome).slice(0, 2000));
    assert.deepEqual(ofType(run.events, 'batch_size_reduced').map((e) => e.batch), [4, 2]);
    assert.equal(ofType(run.events, 'started').length, 1);
    assert.deepEqual(epochsOf(run.events), [1]);
    assert.deepEqual(
      ofType(run.events, 'phase').map((e) => e.phase),
      ['preparing', 'training', 'validating', 'finalizing'],
    );
  });

  it('gives up with INSUFFICIENT_MEMORY below batch 1', async () => {
    const run = await train(baseSpec('oom-fail', {}, { epochs: 1, batch: 2 }), { env: { TRAINHOOK_TEST_OOM_ABOVE_BATCH: '0' } });
    assert.equal(run.outcome.kind, 'error', JSON.stringify(run.outcome).slice(0, 2000));
    if (run.outcome.kind === 'error') assert.equal(run.outcome.error.code, 'INSUFFICIENT_MEMORY');
    assert.deepEqual(ofType(run.events, 'batch_size_reduced').map((e) => e.batch), [1]);
  });

  it('reports a NaN/Inf loss as TRAINING_DIVERGED', async () => {
    // Absurd loss gains overflow float32 at once.
    const run = await train(baseSpec('diverge', {}, { epochs: 1, box: 1e39, cls: 1e39 }));
    assert.equal(run.outcome.kind, 'error', JSON.stringify(run.outcome).slice(0, 2000));
    if (run.outcome.kind === 'error') assert.equal(run.outcome.error.code, 'TRAINING_DIVERGED');
  });
});
