/**
 * Deno for the tests of examples/ that run under it. Never assumed present: in order,
 *   1. $DENO_BIN, when set (a Deno the developer chose);
 *   2. `deno` on PATH, when it is Deno 2;
 *   3. the `deno` npm package (the official release binaries, by platform package), installed
 *      once into ${XDG_CACHE_HOME:-~/.cache}/trainhook/deno-<version>/ with the npm registry
 *      as the only source, outside the clone and shared by every clone and CI run.
 * Its package's install script only links the platform binary into place: it is skipped at
 * install (no scripts run) and done here with the package's own code instead.
 */
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

export const DENO_VERSION = '2.9.6';

function cacheBase(): string {
  const cache = process.env['XDG_CACHE_HOME'] ? path.resolve(process.env['XDG_CACHE_HOME']) : path.join(os.homedir(), '.cache');
  return path.join(cache, 'trainhook');
}

/** Where Deno keeps the npm packages the examples import: fetched once, then read offline. */
export function denoCacheDir(): string {
  return path.join(cacheBase(), 'deno-dir');
}

function version(bin: string): string | null {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  return r.status === 0 ? (/^deno (\S+)/.exec(r.stdout)?.[1] ?? null) : null;
}

/** The binary of an installed deno package (null: not installed there); throws when it has none for this platform. */
function installedBinary(dir: string): string | null {
  const api = path.join(dir, 'node_modules', 'deno', 'install_api.cjs');
  if (!fs.existsSync(api)) return null;
  const { runInstall } = createRequire(api)(api) as { runInstall(): string };
  const bin = runInstall();
  if (!version(bin)) throw new Error(`${bin} does not run`);
  return bin;
}

function run(cmd: string, args: string[], cwd: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_loglevel: 'error' } });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', (err) => resolve({ code: null, output: `${output}${err.message}` }));
    child.on('close', (code) => resolve({ code, output }));
  });
}

/** npm as this process was started with it (npm test), else the one on PATH. */
function npmCommand(): [string, string[]] {
  const cli = process.env['npm_execpath'];
  return cli && /npm-cli\.[cm]?js$/.test(cli) ? [process.execPath, [cli]] : ['npm', []];
}

/** The path of a Deno 2 binary, installing it when none is found; or why there is none. */
export async function findOrInstallDeno(log: (line: string) => void = () => {}): Promise<{ bin: string } | { error: string }> {
  const chosen = process.env['DENO_BIN'];
  if (chosen) return version(chosen) ? { bin: chosen } : { error: `DENO_BIN=${chosen} does not run` };
  const onPath = version('deno');
  if (onPath?.startsWith('2.')) return { bin: 'deno' };

  const dir = path.join(cacheBase(), `deno-${DENO_VERSION}`);
  try {
    const ready = installedBinary(dir);
    if (ready) return { bin: ready };
  } catch (err) {
    return { error: `deno@${DENO_VERSION} in ${dir} cannot run here: ${(err as Error).message}` };
  }

  log(`installing deno@${DENO_VERSION} from the npm registry into ${dir}`);
  fs.mkdirSync(cacheBase(), { recursive: true });
  const tmp = `${dir}.tmp-${crypto.randomBytes(4).toString('hex')}`;
  fs.mkdirSync(tmp, { recursive: true });
  fs.writeFileSync(path.join(tmp, 'package.json'), JSON.stringify({ private: true, dependencies: { deno: DENO_VERSION } }));
  const [cmd, pre] = npmCommand();
  const r = await run(cmd, [...pre, 'install', '--ignore-scripts', '--no-audit', '--no-fund', '--no-package-lock'], tmp);
  if (r.code !== 0) {
    fs.rmSync(tmp, { recursive: true, force: true });
    return { error: `npm install deno@${DENO_VERSION} failed (exit ${r.code}): ${r.output.trim().slice(-800)}` };
  }
  try {
    fs.renameSync(tmp, dir);
  } catch {
    // Another run installed it meanwhile: use theirs.
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  try {
    const bin = installedBinary(dir);
    return bin ? { bin } : { error: `deno@${DENO_VERSION} did not install into ${dir}` };
  } catch (err) {
    return { error: `deno@${DENO_VERSION} cannot run here: ${(err as Error).message}` };
  }
}
