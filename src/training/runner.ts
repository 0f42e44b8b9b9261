/**
 * Runs one training worker (worker/train.py) and turns its life into a WorkerOutcome.
 *
 * - spawn without a shell; stdin is a pipe that stays open as the worker's lifeline (when this
 *   process dies the pipe closes and the worker stops as on SIGTERM);
 * - stdout is NDJSON: each line is checked with WorkerEventSchema and handed to onEvent, one at a
 *   time and in order; a line that is not a valid event goes to the log, and an onEvent that
 *   throws is logged without stopping the parse loop;
 * - stderr is appended to logFile as is;
 * - abort → SIGTERM (the worker stops at the next batch, keeps last.pt, says `stopped`), then
 *   SIGKILL to the whole process group after graceMs;
 * - a process that ends without a terminal event crashed: WORKER_CRASHED with exit code, signal
 *   and the last lines of its stderr.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { JobError } from '../errors.js';
import { WorkerEventSchema, WorkerSpecSchema, type WorkerEvent, type WorkerSpec } from './protocol.js';

export const DEFAULT_WORKER_SCRIPT = fileURLToPath(new URL('../../worker/train.py', import.meta.url));

const LOG_TAIL_LINES = 50;

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
  workerScript?: string;
  specPath: string;
  logFile: string;
  signal: AbortSignal;
  /** After SIGTERM, how long the worker gets to stop before SIGKILL. */
  graceMs: number;
  onEvent: (e: WorkerEvent) => void | Promise<void>;
  /** Extra environment for the child (on top of process.env). */
  env?: Record<string, string | undefined>;
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

/** Keeps the last N lines of a byte stream (progress bars' \r rewrites keep their last state). */
class LineTail {
  private lines: string[] = [];
  private partial = '';
  constructor(private readonly max: number) {}
  push(chunk: string): void {
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop() ?? '';
    for (const p of parts) this.add(p);
  }
  private add(line: string): void {
    const visible = line.split('\r').filter((s) => s.trim() !== '').pop() ?? '';
    // eslint-disable-next-line no-control-regex
    const clean = visible.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').slice(0, 1000);
    this.lines.push(clean);
    if (this.lines.length > this.max) this.lines.shift();
  }
  get(): string[] {
    if (this.partial) {
      this.add(this.partial);
      this.partial = '';
    }
    return [...this.lines];
  }
}

export async function runWorker(spec: WorkerSpec, opts: RunWorkerOptions): Promise<WorkerOutcome> {
  const parsedSpec = writeWorkerSpec(opts.specPath, spec);
  fs.mkdirSync(path.dirname(opts.logFile), { recursive: true });
  fs.mkdirSync(parsedSpec.project, { recursive: true });
  const log = fs.createWriteStream(opts.logFile, { flags: 'a' });
  const note = (line: string) => log.write(`[runner ${new Date().toISOString()}] ${line}\n`);

  if (opts.signal.aborted) {
    note('aborted before the worker started');
    await closeStream(log);
    return { kind: 'stopped', event: { type: 'stopped', epochs_completed: 0, last: null } };
  }

  const script = opts.workerScript ?? DEFAULT_WORKER_SCRIPT;
  const args = ['-u', script, '--spec', opts.specPath];
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env, PYTHONUNBUFFERED: '1' };
  delete env['ULTRALYTICS_API_KEY'];
  note(`spawn ${opts.python} ${args.join(' ')} (job ${parsedSpec.job_id})`);

  const child = spawn(opts.python, args, {
    cwd: parsedSpec.project,
    env,
    shell: false,
    // Own process group: SIGKILL after the grace period reaches DataLoader workers too.
    detached: process.platform !== 'win32',
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  // The lifeline: never written, never closed by us while the worker runs.
  child.stdin.on('error', () => {});

  const tail = new LineTail(LOG_TAIL_LINES);
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    log.write(chunk);
    tail.push(chunk);
  });

  let terminal: DoneEvent | ErrorEvent | StoppedEvent | null = null;
  let queue: Promise<void> = Promise.resolve();
  const deliver = (event: WorkerEvent) => {
    queue = queue.then(async () => {
      try {
        await opts.onEvent(event);
      } catch (err) {
        note(`onEvent(${event.type}) failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      }
    });
  };

  const lines = readline.createInterface({ input: child.stdout, crlfDelay: Infinity });
  lines.on('line', (line) => {
    if (line.trim() === '') return;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      note(`stdout (not JSON): ${line.slice(0, 2000)}`);
      return;
    }
    const parsed = WorkerEventSchema.safeParse(json);
    if (!parsed.success) {
      note(`stdout (not a worker event: ${parsed.error.issues[0]?.message ?? 'invalid'}): ${line.slice(0, 2000)}`);
      return;
    }
    const event = parsed.data;
    if (event.type === 'done' || event.type === 'error' || event.type === 'stopped') {
      if (terminal) {
        note(`ignoring a second terminal event (${event.type}) after ${terminal.type}`);
        return;
      }
      terminal = event;
    }
    deliver(event);
  });

  let killTimer: NodeJS.Timeout | undefined;
  let sentTerm = false;
  let sentKill = false;
  const killGroup = (sig: NodeJS.Signals) => {
    if (child.pid === undefined) return;
    try {
      if (process.platform !== 'win32') process.kill(-child.pid, sig);
      else child.kill(sig);
    } catch {
      child.kill(sig);
    }
  };
  const onAbort = () => {
    if (sentTerm || child.exitCode !== null || child.signalCode !== null) return;
    sentTerm = true;
    note(`stop requested: SIGTERM to pid ${child.pid}, SIGKILL in ${opts.graceMs} ms`);
    child.kill('SIGTERM');
    killTimer = setTimeout(() => {
      sentKill = true;
      note(`worker still running after ${opts.graceMs} ms: SIGKILL`);
      killGroup('SIGKILL');
    }, opts.graceMs);
    killTimer.unref();
  };
  opts.signal.addEventListener('abort', onAbort, { once: true });

  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; spawnError?: Error }>((resolve) => {
    let spawnError: Error | undefined;
    child.once('error', (err) => {
      spawnError = err;
      // 'close' may never come when spawning failed.
      if (child.pid === undefined) resolve({ code: null, signal: null, spawnError: err });
    });
    child.once('close', (code, signal) => resolve({ code, signal, ...(spawnError ? { spawnError } : {}) }));
  });
  opts.signal.removeEventListener('abort', onAbort);
  if (killTimer) clearTimeout(killTimer);
  // Whatever the worker left behind in its group (DataLoader workers) goes with it.
  if (!sentKill && child.pid !== undefined && process.platform !== 'win32') {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* group already gone */
    }
  }
  child.stdin.destroy();
  lines.close();
  await queue;
  note(
    exit.spawnError
      ? `spawn failed: ${exit.spawnError.message}`
      : `worker exited: code ${exit.code} signal ${exit.signal}${terminal ? ` after ${(terminal as WorkerEvent).type}` : ' without a result'}`,
  );
  await closeStream(log);

  const result = terminal as DoneEvent | ErrorEvent | StoppedEvent | null;
  if (result?.type === 'done') return { kind: 'done', event: result };
  if (result?.type === 'stopped') return { kind: 'stopped', event: result };
  if (result?.type === 'error') {
    return { kind: 'error', event: result, error: new JobError(result.code, result.message, result.details ?? null) };
  }
  const logTail = tail.get();
  const message = exit.spawnError
    ? `could not start the worker (${opts.python}): ${exit.spawnError.message}`
    : sentKill
      ? `worker did not stop within ${opts.graceMs} ms and was killed`
      : exit.signal
        ? `worker was killed by ${exit.signal}`
        : `worker exited with code ${exit.code} without a result`;
  return {
    kind: 'crashed',
    error: new JobError('WORKER_CRASHED', message, {
      exit_code: exit.code,
      signal: exit.signal,
      log_tail: logTail,
      ...(sentTerm ? { stop_requested: true } : {}),
    }),
  };
}

function closeStream(stream: fs.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    stream.end(() => resolve());
  });
}
