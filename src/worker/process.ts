/**
 * The one way trainhook runs Python: training, export and prediction all start their child
 * here, so each gets the same guarantees.
 *
 * - no shell; the child gets its own process group, so a kill reaches what it forked
 *   (DataLoader workers) too;
 * - stdin is a pipe kept open as the child's lifeline: when this server dies, the pipe closes
 *   and the child stops as on SIGTERM (a long-lived child also reads its requests from it);
 * - stderr is appended to a log file as is, and its last lines are kept for error reports;
 * - stdout is read line by line and handed to `onLine` (the NDJSON channel);
 * - stop() asks politely (SIGTERM to the child), then SIGKILLs the group after a grace period;
 *   kill() does it at once. When the child exits, whatever is left of its group is killed.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { AnsiStripper, stripAnsi } from './ansi.js';

/** The Python side: worker/main.py loads an engine's module and runs it. */
export const WORKER_ROOT = fileURLToPath(new URL('../../worker/', import.meta.url));
export const WORKER_MAIN = path.join(WORKER_ROOT, 'main.py');

/**
 * Variables a child never inherits: credentials that would let a library phone home. The Hub
 * tokens under both their names: the service downloads base models, the worker never does.
 */
export const SCRUBBED_ENV = ['ULTRALYTICS_API_KEY', 'ROBOFLOW_API_KEY', 'WANDB_API_KEY', 'HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN'];

export interface PythonProcessOptions {
  python: string;
  args: string[];
  cwd: string;
  /** stderr goes here (appended; 'truncate' starts the file over). */
  logFile: string;
  logMode?: 'append' | 'truncate';
  env?: Record<string, string | undefined>;
  /** Each stdout line (without its newline). */
  onLine(line: string): void;
  /** How many stderr lines to keep for error reports. */
  tailLines?: number;
}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all. */
  spawnError?: Error;
  /** Whether stop()'s grace period ran out and the group was killed. */
  forced: boolean;
  /** Whether stop() or kill() was asked. */
  stopRequested: boolean;
}

export interface PythonProcess {
  readonly pid: number | undefined;
  /** Writes a line to the child's stdin (long-lived children read requests there). */
  send(line: string): void;
  /** Closes stdin: a long-lived child exits by itself. */
  closeInput(): void;
  /** SIGTERM now, SIGKILL to the group after graceMs. */
  stop(graceMs: number): void;
  /** SIGKILL to the group now. */
  kill(): void;
  /** Appends a line of our own to the log, marked as the server's. */
  note(line: string): void;
  /** The last lines of stderr, ANSI colours and carriage-return redraws removed. */
  tail(): string[];
  readonly exited: Promise<ProcessExit>;
}

/** Keeps the last N lines of a byte stream (a progress bar's \r rewrites keep their last state). */
export class LineTail {
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
    if (clean.trim() === '') return;
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

export function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra, PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' };
  for (const key of SCRUBBED_ENV) delete env[key];
  return env;
}

export function startPython(opts: PythonProcessOptions): PythonProcess {
  fs.mkdirSync(path.dirname(opts.logFile), { recursive: true });
  fs.mkdirSync(opts.cwd, { recursive: true }); // spawn fails with ENOENT on a missing cwd
  const log = fs.createWriteStream(opts.logFile, { flags: opts.logMode === 'truncate' ? 'w' : 'a' });
  // A full disk or a removed folder must not become an uncaught 'error' event.
  log.on('error', () => {});
  let logClosed = false;
  // After the child is gone its stream is closed; a late note (an event handler's failure) is appended.
  const note = (line: string) => {
    const text = `[trainhook ${new Date().toISOString()}] ${stripAnsi(line)}\n`;
    if (!logClosed) log.write(text);
    else
      try {
        fs.appendFileSync(opts.logFile, text);
      } catch {
        /* the log's folder is gone: nothing to tell */
      }
  };
  note(`spawn ${opts.python} ${opts.args.join(' ')}`);

  const child: ChildProcessWithoutNullStreams = spawn(opts.python, opts.args, {
    cwd: opts.cwd,
    env: childEnv(opts.env),
    shell: false,
    detached: process.platform !== 'win32',
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin.on('error', () => {});
  const tail = new LineTail(opts.tailLines ?? 50);
  child.stderr.setEncoding('utf8');
  // Colour codes go at write time: the log file, its downloads and the error tail read plain.
  const plain = new AnsiStripper();
  child.stderr.on('data', (chunk: string) => {
    const text = plain.push(chunk);
    if (!text) return;
    log.write(text);
    tail.push(text);
  });
  const lines = readline.createInterface({ input: child.stdout, crlfDelay: Infinity });
  lines.on('line', (line) => {
    if (line.trim() !== '') opts.onLine(line);
  });

  let stopRequested = false;
  let forced = false;
  let killTimer: NodeJS.Timeout | undefined;
  const running = () => child.exitCode === null && child.signalCode === null;
  const killGroup = () => {
    if (child.pid === undefined) return;
    try {
      if (process.platform !== 'win32') process.kill(-child.pid, 'SIGKILL');
      else child.kill('SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
  };

  const exited = new Promise<ProcessExit>((resolve) => {
    let spawnError: Error | undefined;
    const done = (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(killTimer);
      // Whatever the child left behind in its group (DataLoader workers) goes with it.
      if (child.pid !== undefined && process.platform !== 'win32') {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          /* group already gone */
        }
      }
      child.stdin.destroy();
      lines.close();
      const rest = plain.end();
      if (rest) {
        log.write(rest);
        tail.push(rest);
      }
      note(spawnError ? `spawn failed: ${spawnError.message}` : `exited: code ${code} signal ${signal}`);
      logClosed = true;
      log.end(() =>
        resolve({ code, signal, forced, stopRequested, ...(spawnError ? { spawnError } : {}) }),
      );
    };
    child.once('error', (err) => {
      spawnError = err;
      // 'close' may never come when spawning failed.
      if (child.pid === undefined) done(null, null);
    });
    child.once('close', (code, signal) => done(code, signal));
  });

  return {
    pid: child.pid,
    send: (line) => {
      if (running()) child.stdin.write(line.endsWith('\n') ? line : `${line}\n`);
    },
    closeInput: () => child.stdin.end(),
    stop: (graceMs) => {
      if (stopRequested || !running()) return;
      stopRequested = true;
      note(`stop requested: SIGTERM to pid ${child.pid}, SIGKILL in ${graceMs} ms`);
      child.kill('SIGTERM');
      killTimer = setTimeout(() => {
        forced = true;
        note(`still running after ${graceMs} ms: SIGKILL`);
        killGroup();
      }, graceMs);
      killTimer.unref();
    },
    kill: () => {
      stopRequested = true;
      if (running()) killGroup();
    },
    note,
    tail: () => tail.get(),
    exited,
  };
}
