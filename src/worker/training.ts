/**
 * Runs one training worker and turns its life into a WorkerOutcome.
 *
 * - the spec is written to a file (mode 0600) and the child started through process.ts;
 * - stdout is NDJSON: each line is checked with WorkerEventSchema and handed to onEvent, one at a
 *   time and in order; a line that is not a valid event goes to the log, and an onEvent that
 *   throws is logged without stopping the parse loop;
 * - abort → SIGTERM (the worker stops at the next batch, keeps its last checkpoint, says
 *   `stopped`), then SIGKILL to the whole process group after graceMs;
 * - a process that ends without a terminal event crashed: WORKER_CRASHED with exit code, signal
 *   and the last lines of its stderr;
 * - a worker that writes no line for stallMs is hung (a deadlocked DataLoader, a stuck device):
 *   it is stopped as on abort and the outcome is WORKER_STALLED, whatever it says on its way out.
 */
import fs from 'node:fs';
import path from 'node:path';
import { JobError } from '../core/errors.js';
import { startPython, WORKER_MAIN } from './process.js';
import { WorkerEventSchema, WorkerSpecSchema, type WorkerEvent, type WorkerSpec } from './protocol.js';

type DoneEvent = Extract<WorkerEvent, { type: 'done' }>;
type StoppedEvent = Extract<WorkerEvent, { type: 'stopped' }>;
type ErrorEvent = Extract<WorkerEvent, { type: 'error' }>;

export type WorkerOutcome =
  | { kind: 'done'; event: DoneEvent }
  | { kind: 'error'; error: JobError; event: ErrorEvent }
  | { kind: 'stopped'; event: StoppedEvent }
  | { kind: 'crashed'; error: JobError };

export type RunWorkerOptions = {
  python: string;
  /** The engine's module that worker/main.py loads (its `run(spec, rt)`). */
  entry: string;
  /** The launcher; worker/main.py unless a test runs a stand-in. */
  script?: string;
  specPath: string;
  logFile: string;
  signal: AbortSignal;
  /** After SIGTERM, how long the worker gets to stop before SIGKILL. */
  graceMs: number;
  onEvent: (e: WorkerEvent) => void | Promise<void>;
  /** No stdout line for this long: the worker is stopped and the outcome is WORKER_STALLED. */
  stallMs?: number;
  /** Extra environment for the child (on top of process.env). */
  env?: Record<string, string | undefined>;
  /**
   * Asked every intervalMs while the worker runs, with its pid (also its process group id): an
   * error it returns kills the whole group at once and becomes the outcome (a worker past its
   * memory limit, a disk about to fill). Its own failures are noted in the log and ignored.
   */
  guard?: { intervalMs: number; check: (pid: number) => Promise<JobError | null> };
};

/** Writes the spec (validated, defaults applied) atomically with mode 0600; returns what was written. */
export function writeWorkerSpec(specPath: string, spec: WorkerSpec): WorkerSpec {
  const parsed = WorkerSpecSchema.parse(spec);
  fs.mkdirSync(path.dirname(specPath), { recursive: true });
  const tmp = `${specPath}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(parsed, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(tmp, specPath);
  return parsed;
}

const terminalTypes = new Set(['done', 'error', 'stopped']);

export async function runWorker(spec: WorkerSpec, opts: RunWorkerOptions): Promise<WorkerOutcome> {
  const parsedSpec = writeWorkerSpec(opts.specPath, spec);
  if (opts.signal.aborted) {
    return { kind: 'stopped', event: { type: 'stopped', epochs_completed: 0, last: null } };
  }

  let terminal: DoneEvent | ErrorEvent | StoppedEvent | null = null;
  let queue: Promise<void> = Promise.resolve();
  let stalled = false;
  let watchdog: NodeJS.Timeout | undefined;
  const worker = startPython({
    python: opts.python,
    args: ['-u', opts.script ?? WORKER_MAIN, '--entry', opts.entry, '--spec', opts.specPath],
    cwd: parsedSpec.run_dir,
    logFile: opts.logFile,
    ...(opts.env ? { env: opts.env } : {}),
    onLine(line) {
      watchdog?.refresh();
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch {
        worker.note(`stdout (not JSON): ${line.slice(0, 2000)}`);
        return;
      }
      const parsed = WorkerEventSchema.safeParse(json);
      if (!parsed.success) {
        worker.note(`stdout (not a worker event: ${parsed.error.issues[0]?.message ?? 'invalid'}): ${line.slice(0, 2000)}`);
        return;
      }
      const event = parsed.data;
      if (terminalTypes.has(event.type)) {
        if (terminal) {
          worker.note(`ignoring a second terminal event (${event.type}) after ${terminal.type}`);
          return;
        }
        terminal = event as DoneEvent | ErrorEvent | StoppedEvent;
      }
      queue = queue.then(async () => {
        try {
          await opts.onEvent(event);
        } catch (err) {
          worker.note(`onEvent(${event.type}) failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        }
      });
    },
  });
  // Timers cannot wait longer than 2^31-1 ms; no watchdog is needed past that anyway.
  watchdog =
    opts.stallMs !== undefined && opts.stallMs < 2 ** 31
      ? setTimeout(() => {
          stalled = true;
          worker.note(`no event for ${opts.stallMs} ms: the worker is stalled and is stopped`);
          worker.stop(opts.graceMs);
        }, opts.stallMs)
      : undefined;
  watchdog?.unref();
  const onAbort = () => worker.stop(opts.graceMs);
  opts.signal.addEventListener('abort', onAbort, { once: true });
  let guarded: JobError | null = null;
  let guardTimer: NodeJS.Timeout | undefined;
  let exitedAlready = false;
  const guard = opts.guard;
  if (guard && worker.pid !== undefined) {
    const pid = worker.pid;
    const tick = async () => {
      try {
        const refusal = await guard.check(pid);
        if (exitedAlready) return;
        if (refusal && !guarded && !terminal) {
          guarded = refusal;
          worker.note(`stopped by the service: ${refusal.code}: ${refusal.message}`);
          worker.kill();
          return;
        }
      } catch (err) {
        worker.note(`resource check failed: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (!guarded && !exitedAlready) guardTimer = setTimeout(() => void tick(), guard.intervalMs);
    };
    guardTimer = setTimeout(() => void tick(), guard.intervalMs);
  }
  const exit = await worker.exited;
  clearTimeout(watchdog);
  exitedAlready = true;
  clearTimeout(guardTimer);
  opts.signal.removeEventListener('abort', onAbort);
  await queue;
  if (guarded) return { kind: 'crashed', error: guarded };

  const result = terminal as DoneEvent | ErrorEvent | StoppedEvent | null;
  if (stalled && result?.type !== 'done') {
    return {
      kind: 'crashed',
      error: new JobError('WORKER_STALLED', `the worker sent no event for ${Math.round(opts.stallMs! / 1000)} s and was stopped`, {
        stall_seconds: opts.stallMs! / 1000,
        exit_code: exit.code,
        signal: exit.signal,
        log_tail: worker.tail(),
      }),
    };
  }
  if (result?.type === 'done') return { kind: 'done', event: result };
  if (result?.type === 'stopped') return { kind: 'stopped', event: result };
  if (result?.type === 'error') {
    return { kind: 'error', event: result, error: new JobError(result.code, result.message, result.details ?? null) };
  }
  const message = exit.spawnError
    ? `could not start the worker (${opts.python}): ${exit.spawnError.message}`
    : exit.forced
      ? `worker did not stop within ${opts.graceMs} ms and was killed`
      : exit.signal
        ? `worker was killed by ${exit.signal}`
        : `worker exited with code ${exit.code} without a result`;
  return {
    kind: 'crashed',
    error: new JobError('WORKER_CRASHED', message, {
      exit_code: exit.code,
      signal: exit.signal,
      log_tail: worker.tail(),
      ...(exit.stopRequested ? { stop_requested: true } : {}),
    }),
  };
}
