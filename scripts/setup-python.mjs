#!/usr/bin/env node
/**
 * Sets up the Python environments of the training engines' workers (worker/engines/<engine>/),
 * idempotently: one venv per engine, built from its requirements.txt.
 *
 * A venv lives OUTSIDE the clone, in
 *   ${TRAINHOOK_VENV_DIR:-${XDG_CACHE_HOME:-~/.cache}/trainhook}/venv-<first 16 hex of sha256(requirements.txt)>
 * so every clone and every CI run on a machine share it, and editing a requirements file builds
 * a new one. Engines get a venv each because their pins can clash (two OpenCV builds that
 * overwrite each other's cv2, say). A marker file written before the venv is renamed into place
 * says it is complete: a second run returns at once.
 *
 * Steps of a fresh build: `python3 -m venv` into a temp folder beside the target, pip install the
 * file's torch and torchvision pins FIRST (so resolving the rest never swaps in another torch
 * build), then `-r requirements.txt`, then the file's `# check: import …` line, then rename into
 * place. A set PYTHON env var skips all of it: that interpreter is used as is.
 *
 * CLI: `node scripts/setup-python.mjs [engine…] [--prune]` builds the venvs of the named engines
 * (default: all), prints progress on stderr and one python path per engine on stdout (the
 * last engine's last); --prune also deletes venvs no current requirements file names. Plain
 * Node ESM, no dependencies: it runs before `npm install` matters.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Each engine's worker folder holds its requirements.txt. */
export const ENGINES_DIR = path.join(ROOT, 'worker', 'engines');

/** The default engine's requirements (what callers that name no engine get). */
export const REQUIREMENTS_FILE = path.join(ENGINES_DIR, 'ultralytics', 'requirements.txt');

/** Engine name → its requirements file, for every engine folder that has one. */
export function engineRequirements() {
  const out = new Map();
  for (const name of fs.readdirSync(ENGINES_DIR).sort()) {
    const file = path.join(ENGINES_DIR, name, 'requirements.txt');
    if (fs.existsSync(file)) out.set(name, file);
  }
  return out;
}

/** Written inside a venv once everything is installed and checked. */
export const MARKER_FILE = '.trainhook-complete.json';

/** The torch and torchvision pins of a requirements file: installed first, on their own. */
function torchPins(requirementsFile) {
  return fs
    .readFileSync(requirementsFile, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^(torch|torchvision)==\S+$/.test(l));
}

/** The file's `# check: import …` line: what must import once everything is installed. */
function importCheck(requirementsFile) {
  const line = /^#\s*check:\s*(import .+)$/m.exec(fs.readFileSync(requirementsFile, 'utf8'));
  return line ? line[1].trim() : 'import torch';
}

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

/** The venv folder for a requirements file. */
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
 * Makes sure an engine's venv exists and returns the python to run its worker with.
 * @param {{ env?: NodeJS.ProcessEnv, log?: (line: string) => void, basePython?: string, requirementsFile?: string }} [opts]
 * @returns {Promise<string>}
 */
export async function setupPython(opts = {}) {
  const env = opts.env ?? process.env;
  const requirementsFile = opts.requirementsFile ?? REQUIREMENTS_FILE;
  const log = opts.log ?? ((line) => process.stderr.write(`[setup-python] ${line}\n`));
  if (env.PYTHON) {
    log(`PYTHON is set: using ${env.PYTHON} as is`);
    return env.PYTHON;
  }
  const dir = venvDir(env, requirementsFile);
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
    log(`building ${dir} (from ${requirementsFile}); this takes a few minutes once`);
    await run(basePython, ['-m', 'venv', tmpDir], { log, env });
    const tmpPython = venvPython(tmpDir);
    const pipEnv = { ...env, PIP_DISABLE_PIP_VERSION_CHECK: '1', PIP_NO_INPUT: '1', PYTHONNOUSERSITE: '1' };
    const pip = ['-m', 'pip', 'install', '--progress-bar', 'off'];
    const first = torchPins(requirementsFile);
    if (first.length) await run(tmpPython, [...pip, ...first], { log, env: pipEnv });
    await run(tmpPython, [...pip, '-r', requirementsFile], { log, env: pipEnv });
    // The check: everything imports (opencv-python needs libGL on a headless machine), offline.
    const checkDir = path.join(tmpDir, '.import-check');
    fs.mkdirSync(checkDir, { recursive: true });
    await run(tmpPython, ['-c', `${importCheck(requirementsFile)}; print("imports ok")`], {
      log,
      env: {
        ...env,
        YOLO_OFFLINE: 'true',
        YOLO_AUTOINSTALL: 'false',
        YOLO_CONFIG_DIR: checkDir,
        HF_HUB_OFFLINE: '1',
        MPLCONFIGDIR: checkDir,
        PYTHONNOUSERSITE: '1',
      },
    });
    fs.rmSync(checkDir, { recursive: true, force: true });
    relocateScripts(tmpDir, dir);
    fs.writeFileSync(
      path.join(tmpDir, MARKER_FILE),
      `${JSON.stringify({ requirements: path.relative(ROOT, requirementsFile), requirements_sha256_16: requirementsHash(requirementsFile), created_at: new Date().toISOString(), seconds: Math.round((Date.now() - started) / 1000) })}\n`,
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
 * Removes the venv-* folders no current requirements file names (each holds a few GB). Only on
 * request (`--prune`): another checkout on this machine may still use an older one.
 */
export function pruneOtherVenvs(env = process.env, log = (line) => process.stderr.write(`[setup-python] ${line}\n`)) {
  const keep = new Set([...engineRequirements().values()].map((file) => path.basename(venvDir(env, file))));
  const base = venvBaseDir(env);
  if (!fs.existsSync(base)) return [];
  const removed = [];
  for (const name of fs.readdirSync(base)) {
    if (!/^venv-[0-9a-f]{16}$/.test(name) || keep.has(name)) continue;
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
    const all = engineRequirements();
    const asked = process.argv.slice(2).filter((a) => !a.startsWith('--'));
    const unknown = asked.filter((name) => !all.has(name));
    if (unknown.length) throw new Error(`no engine ${unknown.join(', ')} (engines: ${[...all.keys()].join(', ')})`);
    // The default engine last: its python is the last line, what callers that name none read.
    const names = (asked.length ? asked : [...all.keys()]).sort((a, b) => (all.get(a) === REQUIREMENTS_FILE ? 1 : all.get(b) === REQUIREMENTS_FILE ? -1 : 0));
    for (const name of names) {
      const python = await setupPython({ requirementsFile: all.get(name) });
      process.stdout.write(`${python}\n`);
    }
    if (process.argv.includes('--prune') && !process.env.PYTHON) pruneOtherVenvs();
  } catch (err) {
    process.stderr.write(`[setup-python] failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
