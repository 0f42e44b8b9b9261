/**
 * The long-lived prediction worker: one `python worker/predict.py --serve` child per server,
 * started on the first prediction and kept while requests come (loaded models stay in its
 * memory), so only the first request pays the ~5–8 s of importing torch and Ultralytics.
 *
 *   idle ──request──▶ spawning ──ready──▶ serving ◀──request/answer──▶ serving
 *     ▲                                      │ idle for idleMs: stdin closed, the child exits
 *     └──────────────── exit / crash / timeout (SIGKILL to its group) ─┘
 *
 * Requests go one at a time (inference uses every core anyway); each answer carries the
 * request's id. A request that outlives its timeout kills the child (the next one starts a
 * new child); a crash rejects the request in flight with the tail of stderr. stdin is also
 * the child's lifeline: when this server dies, the child reads EOF and exits.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { ToolError, WORKER_DIR } from './python-tool.js';

type Answer = { type: string; id?: string | null; [k: string]: unknown };

interface Pending {
  id: string;
  /** The child it was sent to: a killed child's late exit must not fail the next request. */
  child: ChildProcessWithoutNullStreams;
  resolve(answer: Answer): void;
  reject(err: Error): void;
}

export interface PredictWorkerOptions {
  python: () => string;
  configDir: string;
  /** stderr of the child (truncated at each start). */
  logFile: string;
  idleMs?: number;
}

const TAIL = 30;

export class PredictWorker {
  private child: ChildProcessWithoutNullStreams | null = null;
  private pending: Pending | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private idleTimer: NodeJS.Timeout | undefined;
  private tail: string[] = [];
  private closed = false;

  constructor(private readonly opts: PredictWorkerOptions) {}

  /** Runs one request; serialized behind the ones before it. */
  request<T>(spec: Record<string, unknown>, timeoutMs: number): Promise<T> {
    const run = this.chain.then(() => this.send<T>(spec, timeoutMs));
    this.chain = run.catch(() => {});
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    this.kill();
  }

  private start(): ChildProcessWithoutNullStreams {
    fs.mkdirSync(path.dirname(this.opts.logFile), { recursive: true });
    fs.mkdirSync(this.opts.configDir, { recursive: true }); // its cwd: spawn fails with ENOENT without it
    const log = fs.createWriteStream(this.opts.logFile, { flags: 'w' });
    const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUNBUFFERED: '1' };
    delete env['ULTRALYTICS_API_KEY'];
    const child = spawn(
      this.opts.python(),
      ['-u', path.join(WORKER_DIR, 'predict.py'), '--serve', '--config-dir', this.opts.configDir],
      { cwd: this.opts.configDir, env, shell: false, detached: process.platform !== 'win32', stdio: ['pipe', 'pipe', 'pipe'] },
    );
    this.tail = [];
    child.stdin.on('error', () => {});
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      log.write(chunk);
      for (const line of chunk.split('\n')) if (line.trim()) this.tail.push(line.slice(0, 500));
      if (this.tail.length > TAIL) this.tail.splice(0, this.tail.length - TAIL);
    });
    const lines = readline.createInterface({ input: child.stdout, crlfDelay: Infinity });
    lines.on('line', (line) => {
      let answer: Answer;
      try {
        answer = JSON.parse(line) as Answer;
      } catch {
        log.write(`[trainhook] stdout (not JSON): ${line.slice(0, 500)}\n`);
        return;
      }
      const p = this.pending;
      if (p && answer.id === p.id && (answer.type === 'done' || answer.type === 'error')) {
        this.pending = null;
        p.resolve(answer);
      }
    });
    const onGone = (code: number | null, signal: NodeJS.Signals | null, error?: Error) => {
      if (this.child === child) this.child = null;
      lines.close();
      log.end();
      const p = this.pending;
      if (p && p.child === child) {
        this.pending = null;
        p.reject(
          new ToolError(
            'WORKER_CRASHED',
            error ? `could not start the prediction worker: ${error.message}` : `the prediction worker exited (code ${code}, signal ${signal})`,
            { log_tail: [...this.tail] },
          ),
        );
      }
    };
    child.once('error', (err) => {
      if (child.pid === undefined) onGone(null, null, err);
    });
    child.once('close', (code, signal) => onGone(code, signal));
    return child;
  }

  private kill(): void {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    try {
      if (child.pid !== undefined && process.platform !== 'win32') process.kill(-child.pid, 'SIGKILL');
      else child.kill('SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
  }

  private async send<T>(spec: Record<string, unknown>, timeoutMs: number): Promise<T> {
    if (this.closed) throw new ToolError('ABORTED', 'the server is shutting down');
    clearTimeout(this.idleTimer);
    this.child ??= this.start();
    const child = this.child;
    const id = crypto.randomUUID();
    let timer: NodeJS.Timeout | undefined;
    try {
      const answer = await new Promise<Answer>((resolve, reject) => {
        this.pending = { id, child, resolve, reject };
        timer = setTimeout(() => {
          this.pending = null;
          this.kill();
          reject(new ToolError('TIMEOUT', `prediction did not finish within ${Math.round(timeoutMs / 1000)} s`));
        }, timeoutMs);
        child.stdin.write(`${JSON.stringify({ ...spec, id })}\n`);
      });
      if (answer.type === 'error') {
        throw new ToolError(String(answer['code'] ?? 'UNKNOWN_ERROR'), String(answer['message'] ?? 'failed'), answer['details'] ?? null);
      }
      const { type: _type, id: _id, ...rest } = answer;
      return rest as T;
    } finally {
      clearTimeout(timer);
      const idleMs = this.opts.idleMs ?? 120_000;
      // Idle: close stdin, the child exits by itself (nothing left to kill on shutdown).
      this.idleTimer = setTimeout(() => {
        const c = this.child;
        this.child = null;
        c?.stdin.end();
      }, idleMs);
      this.idleTimer.unref();
    }
  }
}
