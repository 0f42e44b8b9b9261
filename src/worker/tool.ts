/**
 * Runs a short Python tool of an engine (its export or predict module) through worker/main.py:
 * spec as a JSON file, one NDJSON `done` or `error` event back on stdout, stderr to a log file
 * (and its tail into errors). A hard timeout and an AbortSignal kill its process group.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startPython, WORKER_MAIN } from './process.js';

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
  /** The engine's module worker/main.py runs (its `run(spec, rt)`). */
  entry: string;
  spec: Record<string, unknown>;
  /** Folder for the spec file, and the child's working directory. */
  workDir: string;
  logFile: string;
  timeoutMs: number;
  signal?: AbortSignal;
}

type ToolEvent = { type: string; [k: string]: unknown };

/** An answer line of a tool: `done` or `error`, else null. */
export function toolAnswer(line: string): ToolEvent | null {
  try {
    const parsed = JSON.parse(line) as { type?: unknown };
    return parsed && (parsed.type === 'done' || parsed.type === 'error') ? (parsed as ToolEvent) : null;
  } catch {
    return null;
  }
}

/** A `done` answer's fields, or the ToolError an `error` answer stands for. */
export function toolResult<T>(answer: ToolEvent): T {
  if (answer.type === 'error') {
    throw new ToolError(String(answer['code'] ?? 'UNKNOWN_ERROR'), String(answer['message'] ?? 'failed'), answer['details'] ?? null);
  }
  const { type: _type, id: _id, ...rest } = answer;
  return rest as T;
}

export async function runPythonTool<T = Record<string, unknown>>(opts: ToolOptions): Promise<T> {
  fs.mkdirSync(opts.workDir, { recursive: true });
  const name = path.basename(opts.entry, '.py');
  const specPath = path.join(opts.workDir, `${name}-spec-${crypto.randomBytes(6).toString('hex')}.json`);
  fs.writeFileSync(specPath, JSON.stringify(opts.spec), { mode: 0o600 });

  let answer: ToolEvent | null = null;
  const tool = startPython({
    python: opts.python,
    args: ['-u', WORKER_MAIN, '--entry', opts.entry, '--spec', specPath],
    cwd: opts.workDir,
    logFile: opts.logFile,
    tailLines: 30,
    onLine(line) {
      const parsed = toolAnswer(line);
      if (!parsed) tool.note(`stdout (not JSON): ${line.slice(0, 500)}`);
      else answer ??= parsed;
    },
  });
  let killed: 'timeout' | 'aborted' | null = null;
  const timer = setTimeout(() => {
    killed = 'timeout';
    tool.kill();
  }, opts.timeoutMs);
  const onAbort = () => {
    killed = 'aborted';
    tool.kill();
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const exit = await tool.exited;
  clearTimeout(timer);
  opts.signal?.removeEventListener('abort', onAbort);
  fs.rmSync(specPath, { force: true });

  const result = answer as ToolEvent | null;
  if (result) return toolResult<T>(result);
  if (killed === 'timeout') throw new ToolError('TIMEOUT', `${name} did not finish within ${Math.round(opts.timeoutMs / 1000)} s`);
  if (killed === 'aborted') throw new ToolError('ABORTED', `${name} was stopped`);
  throw new ToolError(
    'WORKER_CRASHED',
    exit.spawnError
      ? `could not start ${opts.python}: ${exit.spawnError.message}`
      : `${name} exited (code ${exit.code}, signal ${exit.signal}) without a result`,
    { log_tail: tool.tail() },
  );
}
