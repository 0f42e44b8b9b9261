/**
 * One Python worker run outside the service, as the service starts it (`worker/main.py --entry
 * <module> --spec <file>`, stdin held open): its stdout events, exit code and stderr.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MAIN = path.join(ROOT, 'worker', 'main.py');

export type WorkerEvent = { type: string; [k: string]: any };

/** `onEvent` may stop the worker (SIGTERM, as a cancel does) or kill it (SIGKILL, a crash). */
export function runWorker(
  python: string,
  entry: string,
  spec: object,
  specFile: string,
  onEvent?: (e: WorkerEvent, stop: () => void, kill: () => void) => void,
) {
  fs.writeFileSync(specFile, JSON.stringify(spec));
  return new Promise<{ events: WorkerEvent[]; code: number | null; stderr: string }>((resolve, reject) => {
    const child = spawn(python, [MAIN, '--entry', entry, '--spec', specFile], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    const events: WorkerEvent[] = [];
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const e = JSON.parse(line) as WorkerEvent;
      events.push(e);
      onEvent?.(e, () => child.kill('SIGTERM'), () => child.kill('SIGKILL'));
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ events, code, stderr }));
  });
}
