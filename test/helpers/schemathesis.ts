/**
 * schemathesis (PyPI), the OpenAPI fuzzer the contract test runs against /openapi.json. Pinned,
 * and installed once into its own venv outside the clone,
 *   ${XDG_CACHE_HOME:-~/.cache}/trainhook/schemathesis-<version>/
 * with python3 from PATH and pip, shared by every clone and CI run. A marker file written
 * before the venv is renamed into place says it is complete. It runs as `python -m
 * schemathesis.cli`, which does not depend on where the venv was built.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const SCHEMATHESIS_VERSION = '4.32.5';
const MARKER = '.trainhook-complete';

function cacheBase(): string {
  const cache = process.env['XDG_CACHE_HOME'] ? path.resolve(process.env['XDG_CACHE_HOME']) : path.join(os.homedir(), '.cache');
  return path.join(cache, 'trainhook');
}

export function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; onOutput?: (chunk: string) => void } = {},
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let output = '';
    const take = (d: Buffer) => {
      output += d.toString();
      opts.onOutput?.(d.toString());
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', (err) => resolve({ code: null, output: `${output}${err.message}` }));
    child.on('close', (code) => resolve({ code, output }));
  });
}

/** The venv's python, with schemathesis importable; installs it on first use. */
export async function findOrInstallSchemathesis(log: (line: string) => void = () => {}): Promise<{ python: string } | { error: string }> {
  const dir = path.join(cacheBase(), `schemathesis-${SCHEMATHESIS_VERSION}`);
  const python = path.join(dir, 'bin', 'python');
  if (fs.existsSync(path.join(dir, MARKER))) return { python };

  log(`installing schemathesis==${SCHEMATHESIS_VERSION} from PyPI into ${dir}`);
  fs.mkdirSync(cacheBase(), { recursive: true });
  const tmp = `${dir}.tmp-${crypto.randomBytes(4).toString('hex')}`;
  const fail = (what: string, r: { code: number | null; output: string }) => {
    fs.rmSync(tmp, { recursive: true, force: true });
    return { error: `${what} failed (exit ${r.code}): ${r.output.trim().slice(-800)}` };
  };
  let r = await run('python3', ['-m', 'venv', tmp]);
  if (r.code !== 0) return fail('python3 -m venv', r);
  const tmpPython = path.join(tmp, 'bin', 'python');
  r = await run(tmpPython, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', `schemathesis==${SCHEMATHESIS_VERSION}`]);
  if (r.code !== 0) return fail(`pip install schemathesis==${SCHEMATHESIS_VERSION}`, r);
  r = await run(tmpPython, ['-c', 'import schemathesis.cli']);
  if (r.code !== 0) return fail('import schemathesis.cli', r);
  fs.writeFileSync(path.join(tmp, MARKER), `${SCHEMATHESIS_VERSION}\n`);
  try {
    fs.renameSync(tmp, dir);
  } catch {
    // Another run installed it meanwhile: use theirs.
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return fs.existsSync(path.join(dir, MARKER)) ? { python } : { error: `schemathesis did not install into ${dir}` };
}
