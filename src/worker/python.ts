/**
 * Which python runs an engine's worker: the interpreter the config names for that engine (or
 * for all engines), else the venv scripts/setup-python.mjs builds from the engine's
 * requirements file (same path logic: imported from there, one place for it).
 */
import { venvDir, venvPython } from '../../scripts/setup-python.mjs';

export function resolvePython(requirementsFile: string, override?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (override) return override;
  return venvPython(venvDir(env, requirementsFile));
}
