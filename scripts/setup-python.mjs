#!/usr/bin/env node
/**
 * Sets up the Python environment of the training worker (worker/train.py), idempotently.
 *
 * The venv lives OUTSIDE the clone, in
 *   ${TRAINHOOK_VENV_DIR:-${XDG_CACHE_HOME:-~/.cache}/trainhook}/venv-<first 16 hex of sha256(worker/requirements.txt)>
 * so every clone and every CI run on a machine share it, and editing requirements.txt builds a
 * new one. A marker file written before the venv is renamed into place says it is complete:
 * a second run returns at once.
 *
 * Steps of a fresh build: `python3 -m venv` into a temp folder beside the target, pip install
 * torch + torchvision FIRST (pinned, so resolving the rest never swaps in another torch build),
 * then `-r worker/requirements.txt`, then check `import cv2, ultralytics`, then rename into
 * place. A set PYTHON env var skips all of it: that interpreter is used as is.
 *
 * CLI: `node scripts/setup-python.mjs [--prune]` prints progress on stderr and the python path
 * as the last line of stdout; --prune also deletes venvs built for older requirements. Plain Node ESM, no dependencies: it runs before `npm install` matters.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** worker/requirements.txt of this checkout. */
export const REQUIREMENTS_FILE = path.join(ROOT, 'worker', 'requirements.txt');

/** Written inside a venv once everything is installed and checked. */
export const MARKER_FILE = '.trainhook-complete.json';

/** Installed first, on their own: must match the pins in requirements.txt. */
const TORCH_PINS = ['torch==2.14.1', 'torchvision==0.29.1'];

/** Folder holding the venvs: $TRAINHOOK_VENV_DIR, else $XDG_CACHE_HOME/trainhook, else ~/.cache/trainhook. */
export function venvBaseDir(env = process.env) {
  if (env.TRAINHOOK_VENV_DIR) return path.resolve(env.TRAINHOOK_VENV_DIR);
  const cache = env.XDG_CACHE_HOME ? path.resolve(env.XDG_CACHE_HOME) : path.join(os.homedir(), '.cache');
  return path.join(cache, 'trainhook');
}

/** First 16 hex characters of sha256(requirements file). */
export function requirementsHash(requirementsFile = REQUIREMENTS_FILE) {
  return createHash('sha256').update(fs.readFileSync(requirementsFile)).digest('hex').slice(0, 16);
}

/** The venv folder for the current requirements.txt. */
export function venvDir(env = process.env, requirementsFile = REQUIREMENTS_FILE) {
  return path.join(venvBaseDir(env), `venv-${requirementsHash(requirementsFile)}`);
}

/** The interpreter inside a venv folder. */
export function venvPython(dir) {
  return process.platform === 'win32' ? path.join(dir, 'Scripts', 'python.exe') : path.join(dir, 'bin', 'python');
}

/** True when the venv folder carries the completion marker. */
export function isVenvComplete(dir) {
  return fs.existsSync(path.join(dir, MARKER_FILE)) && fs.existsSync(venvPython(dir));
}

function run(cmd, args, { log, env } = {}) {
  return new Promise((resolve, reject) => {
    log?.(`$ ${[cmd, ...args].join(' ')}`);
    // stdout of children goes to our stderr: stdout is reserved for the final path.
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env, shell: false });
    child.stdout.on('data', (d) => process.stderr.write(d));
    child.stderr.on('data', (d) => process.stderr.write(d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(' ')} failed (exit ${code ?? signal})`));
    });
  });
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Takes `<dir>.lock` (a file holding our pid). Waits while another live process holds it; takes
 * over a lock whose holder is dead. Returns false when the venv became complete meanwhile.
 */
async function acquireLock(lockFile, dir, log) {
  let told = false;
  for (;;) {
    try {
      fs.writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
      return true;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
    if (isVenvComplete(dir)) return false;
    const holder = Number.parseInt(fs.readFileSync(lockFile, 'utf8').trim(), 10);
    if (!Number.isFinite(holder) || !pidAlive(holder)) {
      log?.(`removing stale lock ${lockFile} (pid ${holder} is gone)`);
      fs.rmSync(lockFile, { force: true });
      continue;
    }
    if (!told) log?.(`waiting for pid ${holder}, which is building ${dir}`);
    told = true;
    await sleep(2000);
  }
}

/** Rewrites absolute references to the temp folder (script shebangs, activate) to the final one. */
function relocateScripts(tmpDir, finalDir) {
  const binDir = path.join(tmpDir, process.platform === 'win32' ? 'Scripts' : 'bin');
  for (const name of fs.readdirSync(binDir)) {
    const file = path.join(binDir, name);
    const st = fs.lstatSync(file);
    if (!st.isFile() || st.size > 1024 * 1024) continue;
    const buf = fs.readFileSync(file);
    if (buf.includes(0)) continue; // binary
    const text = buf.toString('utf8');
    if (!text.includes(tmpDir)) continue;
    fs.writeFileSync(file, text.split(tmpDir).join(finalDir), { mode: st.mode });
  }
}

/**
 * Makes sure the worker venv exists and returns the python to run worker/train.py with.
 * @param {{ env?: NodeJS.ProcessEnv, log?: (line: string) => void, basePython?: string }} [opts]
 * @returns {Promise<string>}
 */
export async function setupPython(opts = {}) {
  const env = opts.env ?? process.env;
  const log = opts.log ?? ((line) => process.stderr.write(`[setup-python] ${line}\n`));
  if (env.PYTHON) {
    log(`PYTHON is set: using ${env.PYTHON} as is`);
    return env.PYTHON;
  }
  const dir = venvDir(env);
  const python = venvPython(dir);
  if (isVenvComplete(dir)) return python;

  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const lockFile = `${dir}.lock`;
  if (!(await acquireLock(lockFile, dir, log))) return python;
  const tmpDir = `${dir}.tmp-${process.pid}`;
  try {
    if (isVenvComplete(dir)) return python;
    const started = Date.now();
    // A folder without marker is a broken leftover.
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(tmpDir, { recursive: true, force: true });
    const basePython = opts.basePython ?? env.TRAINHOOK_BASE_PYTHON ?? 'python3';
    log(`building ${dir} (from ${REQUIREMENTS_FILE}); this takes a few minutes once`);
    await run(basePython, ['-m', 'venv', tmpDir], { log, env });
    const tmpPython = venvPython(tmpDir);
    const pipEnv = { ...env, PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_NO_INPUT: '1', PYTHONNOUSERSITE: '1' };
    const pip = ['-m', 'pip', 'install', '--progress-bar', 'off'];
    await run(tmpPython, [...pip, ...TORCH_PINS], { log, env: pipEnv });
    await run(tmpPython, [...pip, '-r', REQUIREMENTS_FILE], { log, env: pipEnv });
    // The check: both import (opencv-python needs libGL on a headless machine), offline.
    const checkDir = path.join(tmpDir, '.import-check');
    fs.mkdirSync(checkDir, { recursive: true });
    await run(tmpPython, ['-c', 'import cv2, torch, ultralytics; print("ok", ultralytics.__version__, torch.__version__, cv2.__version__)'], {
      log,
      env: { ...env, YOLO_OFFLINE: 'true', YOLO_AUTOINSTALL: 'false', YOLO_CONFIG_DIR: checkDir, PYTHONNOUSERSITE: '1' },
    });
    fs.rmSync(checkDir, { recursive: true, force: true });
    relocateScripts(tmpDir, dir);
    fs.writeFileSync(
      path.join(tmpDir, MARKER_FILE),
      `${JSON.stringify({ requirements_sha256_16: requirementsHash(), created_at: new Date().toISOString(), seconds: Math.round((Date.now() - started) / 1000) })}\n`,
    );
    fs.renameSync(tmpDir, dir);
    log(`ready in ${Math.round((Date.now() - started) / 1000)} s: ${python}`);
    return python;
  } catch (err) {
    fs.rmSync(tmpDir, { recursive: true, force: true });
    throw err;
  } finally {
    fs.rmSync(lockFile, { force: true });
  }
}

/**
 * Removes the other venv-* folders beside the current one (each holds a few GB). Only on
 * request (`--prune`): another checkout on this machine may still use an older one.
 */
export function pruneOtherVenvs(env = process.env, log = (line) => process.stderr.write(`[setup-python] ${line}\n`)) {
  const keep = path.basename(venvDir(env));
  const base = venvBaseDir(env);
  if (!fs.existsSync(base)) return [];
  const removed = [];
  for (const name of fs.readdirSync(base)) {
    if (!/^venv-[0-9a-f]{16}$/.test(name) || name === keep) continue;
    if (fs.existsSync(path.join(base, `${name}.lock`))) continue; // being built
    log(`removing ${path.join(base, name)}`);
    fs.rmSync(path.join(base, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  try {
    const python = await setupPython();
    if (process.argv.includes('--prune') && !process.env.PYTHON) pruneOtherVenvs();
    process.stdout.write(`${python}\n`);
  } catch (err) {
    process.stderr.write(`[setup-python] failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
