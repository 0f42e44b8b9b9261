/**
 * runWorker against small fake workers (plain python3, no Ultralytics): parsing, ordering,
 * crash reports, stop and kill. The real worker is exercised in test/worker.test.ts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { WorkerEvent, WorkerSpec } from './protocol.js';
import { runWorker, writeWorkerSpec } from './training.js';

const FAKE = String.raw`
import json, os, signal, sys, time
spec = json.load(open(sys.argv[sys.argv.index("--spec") + 1]))
mode = spec["args"]["fake"]
def ev(**o):
    sys.stdout.write(json.dumps(o) + "\n"); sys.stdout.flush()
if mode == "events":
    ev(type="started", pid=os.getpid(), device="cpu", versions={"python": "x"}, resumed_from_epoch=None)
    print("this is not json", flush=True)
    ev(type="no_such_event")
    sys.stderr.write("a log line\n"); sys.stderr.flush()
    for e in (1, 2, 3):
        ev(type="epoch", epoch=e, epochs=3, metrics={"mAP50": 0.1 * e, "box_loss": None}, epoch_seconds=0.1,
           fitness=0.1, best_fitness=0.1, best_epoch=e)
    ev(type="done", best="/b.pt", last="/l.pt", epochs_completed=3, final_metrics={"mAP50": 0.3}, best_epoch=3)
    ev(type="error", code="UNKNOWN_ERROR", message="a second terminal event")
elif mode == "crash":
    for i in range(80):
        sys.stderr.write(f"line {i}\n")
    sys.stderr.write("Traceback: boom\n"); sys.stderr.flush()
    sys.exit(3)
elif mode == "error":
    ev(type="error", code="TRAINING_DIVERGED", message="loss is NaN", details={"epoch": 2}, epoch=2)
    sys.exit(1)
elif mode == "stoppable":
    def on_term(*_):
        ev(type="stopped", epochs_completed=4, last="/run/weights/last.pt"); sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    ev(type="started", pid=os.getpid(), device="cpu", versions={}, resumed_from_epoch=None)
    while True: time.sleep(0.05)
elif mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ev(type="started", pid=os.getpid(), device="cpu", versions={}, resumed_from_epoch=None)
    while True: time.sleep(0.05)
elif mode == "lifeline":
    sys.stdin.read()  # returns only at EOF
    ev(type="stopped", epochs_completed=0, last=None)
`;

let dir: string;
let script: string;

function spec(mode: string): WorkerSpec {
  return {
    job_id: `job-${mode}`,
    engine: 'fake',
    task: 'detect',
    model: '/nowhere/yolo11n.yaml',
    data: '/nowhere/data.yaml',
    data_format: 'yolo',
    run_dir: path.join(dir, 'runs', mode),
    resume: false,
    cache_dir: path.join(dir, 'cfg'),
    device: 'cpu',
    args: { fake: mode },
    progress_every_pct: 5,
  };
}

function opts(mode: string, extra: Partial<Parameters<typeof runWorker>[1]> = {}) {
  return {
    python: 'python3',
    // The fake stands in for worker/main.py and its engine module at once.
    script,
    entry: '/nowhere/engine.py',
    specPath: path.join(dir, `${mode}.spec.json`),
    logFile: path.join(dir, `${mode}.log`),
    signal: new AbortController().signal,
    graceMs: 5000,
    onEvent: () => {},
    ...extra,
  };
}

describe('runWorker', () => {
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trainhook-runner-'));
    script = path.join(dir, 'fake_worker.py');
    fs.writeFileSync(script, FAKE);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes the spec with defaults applied', () => {
    const file = path.join(dir, 'x', 'spec.json');
    const { progress_every_pct: _, ...noPct } = spec('events');
    writeWorkerSpec(file, noPct as WorkerSpec);
    const written = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.equal(written.progress_every_pct, 5);
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  });

  it('parses events in order, serializes onEvent, survives bad lines and a throwing onEvent', async () => {
    const seen: string[] = [];
    let busy = false;
    const outcome = await runWorker(
      spec('events'),
      opts('events', {
        onEvent: async (e: WorkerEvent) => {
          assert.equal(busy, false, 'onEvent calls overlap');
          busy = true;
          await new Promise((r) => setTimeout(r, 20));
          seen.push(e.type === 'epoch' ? `epoch${e.epoch}` : e.type);
          busy = false;
          if (e.type === 'epoch' && e.epoch === 2) throw new Error('handler bug');
        },
      }),
    );
    assert.equal(outcome.kind, 'done');
    assert.deepEqual(seen, ['started', 'epoch1', 'epoch2', 'epoch3', 'done']);
    if (outcome.kind === 'done') assert.equal(outcome.event.epochs_completed, 3);
    const log = fs.readFileSync(path.join(dir, 'events.log'), 'utf8');
    assert.match(log, /this is not json/);
    assert.match(log, /no_such_event/);
    assert.match(log, /a log line/);
    assert.match(log, /onEvent\(epoch\) failed: Error: handler bug/);
    assert.match(log, /ignoring a second terminal event/);
  });

  it('stops a worker that goes silent and reports WORKER_STALLED, even when it answers SIGTERM with stopped', async () => {
    const outcome = await runWorker(spec('stoppable'), opts('stall', { stallMs: 1000 }));
    assert.equal(outcome.kind, 'crashed');
    if (outcome.kind === 'crashed') {
      assert.equal(outcome.error.code, 'WORKER_STALLED');
      assert.equal((outcome.error.details as { stall_seconds: number }).stall_seconds, 1);
    }
    assert.match(fs.readFileSync(path.join(dir, 'stall.log'), 'utf8'), /no event for 1000 ms/);
  });

  it('leaves a worker that keeps talking alone', async () => {
    const outcome = await runWorker(spec('events'), opts('talkative', { stallMs: 60_000 }));
    assert.equal(outcome.kind, 'done');
  });

  it('reports a worker error event as a JobError with its code', async () => {
    const outcome = await runWorker(spec('error'), opts('error'));
    assert.equal(outcome.kind, 'error');
    if (outcome.kind === 'error') {
      assert.equal(outcome.error.code, 'TRAINING_DIVERGED');
      assert.equal(outcome.error.message, 'loss is NaN');
      assert.deepEqual(outcome.error.details, { epoch: 2 });
    }
  });

  it('reports an exit without a terminal event as WORKER_CRASHED with the log tail', async () => {
    const outcome = await runWorker(spec('crash'), opts('crash'));
    assert.equal(outcome.kind, 'crashed');
    if (outcome.kind !== 'crashed') return;
    assert.equal(outcome.error.code, 'WORKER_CRASHED');
    const details = outcome.error.details as { exit_code: number; signal: string | null; log_tail: string[] };
    assert.equal(details.exit_code, 3);
    assert.equal(details.signal, null);
    assert.equal(details.log_tail.length, 50);
    assert.equal(details.log_tail.at(-1), 'Traceback: boom');
  });

  it('stops a worker with SIGTERM on abort', async () => {
    const ac = new AbortController();
    const outcome = await runWorker(
      spec('stoppable'),
      opts('stoppable', { signal: ac.signal, onEvent: (e: WorkerEvent) => void (e.type === 'started' && ac.abort()) }),
    );
    assert.equal(outcome.kind, 'stopped');
    if (outcome.kind === 'stopped') assert.deepEqual(outcome.event, { type: 'stopped', epochs_completed: 4, last: '/run/weights/last.pt' });
  });

  it('kills a worker that ignores SIGTERM after the grace period', async () => {
    const ac = new AbortController();
    let pid = 0;
    let abortedAt = 0;
    const outcome = await runWorker(
      spec('stubborn'),
      opts('stubborn', {
        signal: ac.signal,
        graceMs: 700,
        onEvent: (e: WorkerEvent) => {
          if (e.type !== 'started') return;
          pid = e.pid;
          abortedAt = Date.now();
          ac.abort();
        },
      }),
    );
    const took = Date.now() - abortedAt;
    assert.equal(outcome.kind, 'crashed');
    if (outcome.kind === 'crashed') {
      const details = outcome.error.details as { signal: string; stop_requested: boolean };
      assert.equal(details.signal, 'SIGKILL');
      assert.equal(details.stop_requested, true);
    }
    assert.ok(took >= 650 && took < 5000, `killed after ${took} ms`);
    assert.throws(() => process.kill(pid, 0), /ESRCH/);
  });

  it('does not start a worker when already aborted', async () => {
    const ac = new AbortController();
    ac.abort();
    const outcome = await runWorker(spec('events'), opts('events-aborted', { signal: ac.signal }));
    assert.equal(outcome.kind, 'stopped');
  });

  it('reports an interpreter that cannot start as WORKER_CRASHED', async () => {
    const outcome = await runWorker(spec('events'), opts('nopython', { python: path.join(dir, 'no-such-python') }));
    assert.equal(outcome.kind, 'crashed');
    if (outcome.kind === 'crashed') assert.match(outcome.error.message, /could not start the worker/);
  });

  it('keeps stdin open while the worker runs (the lifeline)', async () => {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 1500);
    const outcome = await runWorker(spec('lifeline'), opts('lifeline', { signal: ac.signal, graceMs: 200 }));
    clearTimeout(timer);
    // Had stdin been closed, the fake would have answered `stopped` at once; it was killed instead.
    assert.equal(outcome.kind, 'crashed');
  });
});
