/**
 * Which python runs worker/train.py: PYTHON from the config when set, else the venv that
 * scripts/setup-python.mjs builds (same path logic: imported from there, one place for it).
 */
import { isVenvComplete, venvDir, venvPython } from '../../scripts/setup-python.mjs';

export function resolvePython(configPython?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (configPython) return configPython;
  return venvPython(venvDir(env));
}

/** Null when the interpreter resolvePython() gives is usable, else a message saying how to fix it. */
export function pythonProblem(configPython?: string, env: NodeJS.ProcessEnv = process.env): string | null {
  if (configPython) return null;
  const dir = venvDir(env);
  return isVenvComplete(dir)
    ? null
    : `the worker's Python environment is not set up (${dir}): run \`node scripts/setup-python.mjs\` or set PYTHON`;
}
