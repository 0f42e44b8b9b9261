/**
 * Starts real trainhook servers for tests: in-process (startServer, logs captured) or as a
 * child process running src/main.ts exactly as `npm start` does (for SIGKILL drills).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/core/config.js';
import { startServer, type ServerHandle, type ServerOverrides } from '../../src/server.js';
import { freshPostgresDatabase, type Backend } from './database.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const TOKEN = 'test-token-0123456789abcdef';

/** Folders tempDir made in this process: removed when it exits. */
const madeDirs: string[] = [];

/**
 * A new folder under the system's temp dir, removed when this test process exits (every test
 * file runs in a process of its own). Work directories of training jobs reach gigabytes (an
 * RF-DETR run keeps several 100+ MB checkpoints), so leaving them fills a CI machine's disk
 * within a few runs. TRAINHOOK_KEEP_TEST_DIRS=1 keeps them, to look at after a failure.
 */
export function tempDir(prefix = 'trainhook-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  if (madeDirs.push(dir) === 1 && process.env['TRAINHOOK_KEEP_TEST_DIRS'] !== '1') {
    process.once('exit', () => {
      for (const d of madeDirs) {
        try {
          fs.rmSync(d, { recursive: true, force: true });
        } catch {
          // A folder still written to by a process that outlived the test: nothing to be done now.
        }
      }
    });
  }
  return dir;
}

export interface TestServer extends ServerHandle {
  logs: string[];
  workdir: string;
  env: Record<string, string>;
  /** Stops the server and drops its database. */
  stop(): Promise<void>;
}

export async function backendEnv(backend: Backend): Promise<{ env: Record<string, string>; drop: () => Promise<void> }> {
  if (backend === 'pglite') return { env: {}, drop: async () => {} };
  const db = await freshPostgresDatabase();
  return { env: { DATABASE_URL: db.url }, drop: db.drop };
}

export async function startTestServer(
  opts: { backend?: Backend; env?: Record<string, string>; overrides?: ServerOverrides } = {},
): Promise<TestServer> {
  const workdir = opts.env?.['WORKDIR'] ?? tempDir();
  const db = await backendEnv(opts.backend ?? 'pglite');
  const env: Record<string, string> = {
    PORT: '0',
    HOST: '127.0.0.1',
    WORKDIR: workdir,
    API_TOKEN: TOKEN,
    LOG_LEVEL: 'debug',
    OUTBOUND_ALLOW: '127.0.0.1',
    ...db.env,
    ...opts.env,
  };
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  const handle = await startServer(loadConfig(env), { logDestination: sink, ...opts.overrides });
  return {
    ...handle,
    logs,
    workdir,
    env,
    stop: async () => {
      await handle.close();
      await db.drop();
    },
  };
}

export interface ChildServer {
  url: string;
  child: ChildProcess;
  output: string[];
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Runs `src/main.ts` in a child process; resolves once it listens. */
export async function startChildServer(env: Record<string, string>): Promise<ChildServer> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/main.ts')], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output.join('\n')}`)), 60_000);
    const onLine = (line: string) => {
      output.push(line);
      if (line.includes('"trainhook listening"')) {
        clearTimeout(timer);
        resolve((JSON.parse(line) as { url: string }).url);
      }
    };
    for (const stream of [child.stdout!, child.stderr!]) {
      let buf = '';
      stream.on('data', (d: Buffer) => {
        buf += d.toString();
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          onLine(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
    }
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${output.join('\n')}`));
    });
  });
  return {
    url,
    child,
    output,
    kill: async (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** fetch with the test token. */
export function api(base: string, token = TOKEN) {
  return async (pathname: string, init: RequestInit & { json?: unknown } = {}) => {
    const headers = new Headers(init.headers);
    if (token) headers.set('authorization', `Bearer ${token}`);
    let body = init.body;
    if (init.json !== undefined) {
      headers.set('content-type', 'application/json');
      body = JSON.stringify(init.json);
    }
    const res = await fetch(base + pathname, { ...init, headers, body });
    const text = await res.text();
    let json: any = null;
    try {
      json = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, headers: res.headers, json, text };
  };
}

export function trainBody(overrides: Record<string, unknown> = {}) {
  return {
    model_config: { name: 'test-model', base_model: 'yolo11n.yaml', epochs: 2, batch_size: 4, image_size: 64 },
    dataset: { url: 'http://127.0.0.1:9/dataset.zip' },
    resources: { device: 'cpu', workers: 0 },
    ...overrides,
  };
}
