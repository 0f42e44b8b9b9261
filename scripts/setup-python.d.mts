/** Types of scripts/setup-python.mjs (plain ESM so it runs before any build step). */
export declare const REQUIREMENTS_FILE: string;
export declare const ENGINES_DIR: string;
export declare function engineRequirements(): Map<string, string>;
export declare const MARKER_FILE: string;
export declare function venvBaseDir(env?: NodeJS.ProcessEnv): string;
export declare function requirementsHash(requirementsFile?: string): string;
export declare function venvDir(env?: NodeJS.ProcessEnv, requirementsFile?: string): string;
export declare function venvPython(dir: string): string;
export declare function isVenvComplete(dir: string): boolean;
export declare function setupPython(opts?: {
  env?: NodeJS.ProcessEnv;
  log?: (line: string) => void;
  basePython?: string;
  requirementsFile?: string;
}): Promise<string>;
export declare function pruneOtherVenvs(env?: NodeJS.ProcessEnv, log?: (line: string) => void): string[];
