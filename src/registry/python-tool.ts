/**
 * Runs a short Python tool of the worker (worker/export.py, worker/predict.py) as a child
 * process: spec as a JSON file, one NDJSON `done` or `error` event back on stdout, stderr to a
 * log file (and its tail into errors). No shell; stdin stays open as the child's lifeline (it
 * exits when this server dies); a hard timeout and an AbortSignal kill its process group.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const WORKER_DIR = fileURLToPath(new URL('../../worker/', import.meta.url));

export class ToolError extends Error {
  override readonly name = 'ToolError';
  constructor(
    readonly code: string,
    message: string,
    readonly details: unknown = null,
  ) {
    super(message);
  }
}

export interface ToolOptions {
  python: string;
  /** worker/<script> */
  script: 'export.py' | 'predict.py';
  spec: Record<string, unknown>;
  /** Folder for the spec file. */
  workDir: string;
  logFile: string;
  timeoutMs: number;
  signal?: AbortSignal;
}

const TAIL = 30;

export async function runPythonTool<T = Record<string, unknown>>(opts: ToolOptions): Promise<T> {
  fs.mkdirSync(opts.workDir, { recursive: true });
  fs.mkdirSync(path.dirname(opts.logFile), { recursive: true });
  const specPath = path.join(opts.workDir, `${opts.script.replace('.py', '')}-spec-${crypto.randomBytes(6).toString('hex')}.json`);
  fs.writeFileSync(specPath, JSON.stringify(opts.spec), { mode: 0o600 });
  const log = fs.createWriteStream(opts.logFile, { flags: 'a' });
  log.write(`[trainhook ${new Date().toISOString()}] ${opts.script} ${specPath}\n`);
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUNBUFFERED: '1' };
  delete env['ULTRALYTICS_API_KEY'];

  const child = spawn(opts.python, ['-u', path.join(WORKER_DIR, opts.script), '--spec', specPath], {
    cwd: opts.workDir,
    env,
    shell: false,
    detached: process.platform !== 'win32',
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin.on('error', () => {});
  const tail: string[] = [];
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    log.write(chunk);
    for (const line of chunk.split('\n')) if (line.trim()) tail.push(line.slice(0, 500));
    if (tail.length > TAIL) tail.splice(0, tail.length - TAIL);
  });
  type Event = { type: string; [k: string]: unknown };
  let event: Event | null = null;
  const lines = readline.createInterface({ input: child.stdout, crlfDelay: Infinity });
  lines.on('line', (line) => {
    if (!line.trim() || event) return;
    try {
      const parsed = JSON.parse(line) as { type?: unknown };
      if (parsed && (parsed.type === 'done' || parsed.type === 'error')) event = parsed as Event;
    } catch {
      log.write(`[trainhook] stdout (not JSON): ${line.slice(0, 500)}\n`);
    }
  });

  let killed: 'timeout' | 'aborted' | null = null;
  const kill = (why: 'timeout' | 'aborted') => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    killed = why;
    try {
      if (child.pid !== undefined && process.platform !== 'win32') process.kill(-child.pid, 'SIGKILL');
      else child.kill('SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
  };
  const timer = setTimeout(() => kill('timeout'), opts.timeoutMs);
  const onAbort = () => kill('aborted');
  opts.signal?.addEventListener('abort', onAbort, { once: true });

  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.once('error', (error) => {
      if (child.pid === undefined) resolve({ code: null, signal: null, error });
    });
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  clearTimeout(timer);
  opts.signal?.removeEventListener('abort', onAbort);
  child.stdin.destroy();
  lines.close();
  await new Promise<void>((resolve) => log.end(() => resolve()));
  fs.rmSync(specPath, { force: true });

  const result = event as Event | null;
  if (result?.type === 'done') {
    const { type: _type, ...rest } = result;
    return rest as T;
  }
  if (result?.type === 'error') {
    throw new ToolError(String(result['code'] ?? 'UNKNOWN_ERROR'), String(result['message'] ?? 'failed'), result['details'] ?? null);
  }
  if (killed === 'timeout') throw new ToolError('TIMEOUT', `${opts.script} did not finish within ${Math.round(opts.timeoutMs / 1000)} s`);
  if (killed === 'aborted') throw new ToolError('ABORTED', `${opts.script} was stopped`);
  throw new ToolError(
    'WORKER_CRASHED',
    exit.error
      ? `could not start ${opts.python}: ${exit.error.message}`
      : `${opts.script} exited (code ${exit.code}, signal ${exit.signal}) without a result`,
    { log_tail: tail },
  );
}
