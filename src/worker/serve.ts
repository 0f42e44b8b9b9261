/**
 * A long-lived Python worker that answers requests: one `worker/main.py --entry <module> --serve`
 * child, started on the first request and kept while requests come (loaded models stay in its
 * memory), so only the first request pays for importing torch and the engine.
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
import crypto from 'node:crypto';
import { startPython, WORKER_MAIN, type PythonProcess } from './process.js';
import { ToolError, toolAnswer, toolResult } from './tool.js';

type Answer = { type: string; id?: string | null; [k: string]: unknown };

interface Pending {
  id: string;
  /** The child it was sent to: a killed child's late exit must not fail the next request. */
  child: PythonProcess;
  resolve(answer: Answer): void;
  reject(err: Error): void;
}

export interface PythonServerOptions {
  python: () => string;
  /** The engine's module with a serve mode. */
  entry: string;
  /** Its working directory (the engine's cache folder). */
  cwd: string;
  /** stderr of the child (truncated at each start). */
  logFile: string;
  idleMs?: number;
}

export class PythonServer {
  private child: PythonProcess | null = null;
  private pending: Pending | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly opts: PythonServerOptions) {}

  /** Runs one request; serialized behind the ones before it. */
  request<T>(spec: Record<string, unknown>, timeoutMs: number): Promise<T> {
    const run = this.chain.then(() => this.send<T>(spec, timeoutMs));
    this.chain = run.catch(() => {});
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    const child = this.child;
    this.child = null;
    child?.kill();
    await child?.exited;
  }

  private start(): PythonProcess {
    const child = startPython({
      python: this.opts.python(),
      args: ['-u', WORKER_MAIN, '--entry', this.opts.entry, '--serve'],
      cwd: this.opts.cwd,
      logFile: this.opts.logFile,
      logMode: 'truncate',
      tailLines: 30,
      onLine: (line) => {
        const answer = toolAnswer(line) as Answer | null;
        if (!answer) {
          child.note(`stdout (not an answer): ${line.slice(0, 500)}`);
          return;
        }
        const p = this.pending;
        if (p && p.child === child && answer.id === p.id) {
          this.pending = null;
          p.resolve(answer);
        }
      },
    });
    void child.exited.then((exit) => {
      if (this.child === child) this.child = null;
      const p = this.pending;
      if (p && p.child === child) {
        this.pending = null;
        p.reject(
          new ToolError(
            'WORKER_CRASHED',
            exit.spawnError
              ? `could not start the prediction worker: ${exit.spawnError.message}`
              : `the prediction worker exited (code ${exit.code}, signal ${exit.signal})`,
            { log_tail: child.tail() },
          ),
        );
      }
    });
    return child;
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
          if (this.child === child) this.child = null;
          child.kill();
          reject(new ToolError('TIMEOUT', `the request did not finish within ${Math.round(timeoutMs / 1000)} s`));
        }, timeoutMs);
        child.send(JSON.stringify({ ...spec, id }));
      });
      return toolResult<T>(answer);
    } finally {
      clearTimeout(timer);
      // Idle: close stdin, the child exits by itself (nothing left to kill on shutdown).
      this.idleTimer = setTimeout(() => {
        const c = this.child;
        this.child = null;
        c?.closeInput();
      }, this.opts.idleMs ?? 120_000);
      this.idleTimer.unref();
    }
  }
}
