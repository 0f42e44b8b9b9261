/**
 * Base configs and the resolver: a base config per task, and overrides merged onto it.
 *
 * A base config is a YAML file per task (presets/<task>.yaml beside this module).
 * resolveConfig merges a base (the file, or a previously resolved config sent back as
 * base_config) and overrides, checks every key against the Ultralytics argument set and
 * trainhook's rules (catalog.ts), and returns:
 *   - config:  the resolved arguments (what the worker trains with, minus device/amp choices
 *              that depend on the slot the job gets),
 *   - yaml:    the base file with the resolved values, comments kept (for reproducibility),
 *   - command: the equivalent `yolo <task> train …` line (for transparency).
 * Problems come back together, each with the path of the key (['overrides', 'lr0']).
 *
 * Pure apart from reading the base files once; no Python at request time.
 */
import fs from 'node:fs';
import { isMap, isScalar, parseDocument, type Document } from 'yaml';
import {
  PRESETS_DIR,
  ULTRALYTICS_VERSION,
  USER_KEYS,
  catalogArg,
  checkValue,
  fieldRule,
  keyRole,
  modeKeys,
  trainKeys,
  type ConfigMode,
  type ConfigTask,
  type FieldRule,
  type Framework,
} from './catalog.js';
import { commandArgv, commandLine } from './cli.js';

export interface ConfigIssue {
  path: (string | number)[];
  message: string;
  code: 'unknown_key' | 'not_allowed' | 'invalid_value' | 'invalid_type';
}

export interface ResolveInput {
  framework?: Framework;
  task?: ConfigTask;
  mode?: ConfigMode;
  /** A full config to start from instead of the repository's base (e.g. one resolved before). */
  base_config?: Record<string, unknown> | undefined;
  overrides?: Record<string, unknown> | undefined;
}

export interface ResolvedConfig {
  framework: Framework;
  task: ConfigTask;
  mode: ConfigMode;
  ultralytics_version: string;
  config: Record<string, unknown>;
  /** Keys whose value differs from the repository's base config: {from, to}. */
  changed: Record<string, { from: unknown; to: unknown }>;
  yaml: string;
  command: string;
  argv: string[];
}

export type ResolveResult = { ok: true; value: ResolvedConfig } | { ok: false; issues: ConfigIssue[] };

// --- base files ----------------------------------------------------------------------------

const baseTexts = new Map<string, string>();

export function baseConfigFile(framework: Framework, task: ConfigTask): string {
  return `${PRESETS_DIR}${task}.yaml`;
}

export function baseConfigText(framework: Framework, task: ConfigTask): string {
  const file = baseConfigFile(framework, task);
  let text = baseTexts.get(file);
  if (text === undefined) {
    text = fs.readFileSync(file, 'utf8');
    baseTexts.set(file, text);
  }
  return text;
}

function baseDocument(framework: Framework, task: ConfigTask): Document {
  const doc = parseDocument(baseConfigText(framework, task));
  if (doc.errors.length) throw new Error(`${baseConfigFile(framework, task)}: ${doc.errors[0]!.message}`);
  return doc;
}

/** The repository's base config as plain values. */
export function baseConfig(framework: Framework, task: ConfigTask): Record<string, unknown> {
  return baseDocument(framework, task).toJS() as Record<string, unknown>;
}

// --- checking ------------------------------------------------------------------------------

/** Levenshtein distance, for "did you mean" on unknown keys. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

function suggestion(key: string, task: ConfigTask): string {
  const best = trainKeys(task)
    .map((k) => ({ k, d: distance(key.toLowerCase(), k) }))
    .sort((a, b) => a.d - b.d)[0];
  return best && best.d <= Math.max(2, Math.floor(key.length / 3)) ? ` (did you mean ${best.k}?)` : '';
}

/**
 * Checks a map of arguments for a task and mode; returns the normalized values and the
 * problems, each at `prefix + key`.
 */
export function checkArgs(
  args: Record<string, unknown>,
  opts: { task: ConfigTask; mode: ConfigMode; prefix: (string | number)[] },
): { values: Record<string, unknown>; issues: ConfigIssue[] } {
  const values: Record<string, unknown> = {};
  const issues: ConfigIssue[] = [];
  const allowed = new Set(modeKeys(opts.task, opts.mode));
  for (const [key, raw] of Object.entries(args)) {
    const path = [...opts.prefix, key];
    if (key !== 'model') {
      const role = keyRole(key, opts.task);
      if (role.role === 'unknown') {
        issues.push({
          path,
          code: 'unknown_key',
          message: `unknown argument: not in Ultralytics ${ULTRALYTICS_VERSION}'s default.yaml${suggestion(key, opts.task)}`,
        });
        continue;
      }
      if (role.role === 'server') {
        issues.push({ path, code: 'not_allowed', message: role.reason });
        continue;
      }
      if (role.role === 'task') {
        issues.push({ path, code: 'not_allowed', message: `used by the ${role.task} task only, not ${opts.task}` });
        continue;
      }
      if (role.role === 'other') {
        issues.push({ path, code: 'not_allowed', message: `a ${role.section.toLowerCase()} argument, not a training argument` });
        continue;
      }
    }
    if (!allowed.has(key)) {
      issues.push({
        path,
        code: 'not_allowed',
        message: `a developer-mode argument; user mode accepts ${USER_KEYS.join(', ')}`,
      });
      continue;
    }
    const checked = checkValue(key, raw);
    if (!checked.ok) {
      issues.push({ path, code: 'invalid_value', message: `${key}=${JSON.stringify(raw)}: ${checked.message}` });
      continue;
    }
    values[key] = checked.value;
  }
  return { values, issues };
}

// --- resolving -----------------------------------------------------------------------------

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Sets a key in the document, keeping the comment that documents it. */
function setInDocument(doc: Document, key: string, value: unknown): void {
  const map = doc.contents;
  if (!isMap(map)) throw new Error('base config is not a mapping');
  const pair = map.items.find((p) => isScalar(p.key) && p.key.value === key);
  if (pair && isScalar(pair.value) && !Array.isArray(value)) {
    pair.value.value = value;
    return;
  }
  const node = doc.createNode(value, { flow: true });
  if (pair) {
    const old = pair.value as { comment?: string | null } | null;
    if (old?.comment) node.comment = old.comment;
    pair.value = node;
  } else {
    map.set(key, node);
  }
}

export function resolveConfig(input: ResolveInput): ResolveResult {
  const framework = input.framework ?? 'ultralytics';
  const task = input.task ?? 'detect';
  const mode = input.mode ?? 'developer';
  const issues: ConfigIssue[] = [];
  const doc = baseDocument(framework, task);
  const base = doc.toJS() as Record<string, unknown>;
  const merged: Record<string, unknown> = { ...base };

  for (const [name, layer, layerMode] of [
    ['base_config', input.base_config, 'developer'],
    ['overrides', input.overrides, mode],
  ] as const) {
    if (layer === undefined) continue;
    if (!isRecord(layer)) {
      issues.push({ path: [name], code: 'invalid_type', message: 'must be an object of Ultralytics arguments' });
      continue;
    }
    const { values, issues: found } = checkArgs(layer, { task, mode: layerMode, prefix: [name] });
    issues.push(...found);
    Object.assign(merged, values);
  }
  if (issues.length) return { ok: false, issues };

  // Keys in the order of the base file; a key the file lacks goes last.
  const config: Record<string, unknown> = {};
  for (const key of [...trainKeys(task), ...Object.keys(merged)]) {
    if (key in merged && !(key in config)) config[key] = merged[key] ?? null;
  }
  const changed: ResolvedConfig['changed'] = {};
  for (const [key, value] of Object.entries(config)) {
    if (JSON.stringify(value) !== JSON.stringify(base[key] ?? null)) {
      changed[key] = { from: base[key] ?? null, to: value };
      setInDocument(doc, key, value);
    }
  }
  return {
    ok: true,
    value: {
      framework,
      task,
      mode,
      ultralytics_version: ULTRALYTICS_VERSION,
      config,
      changed,
      yaml: doc.toString({ lineWidth: 0 }),
      command: commandLine(task, config),
      argv: commandArgv(task, config),
    },
  };
}

// --- field list (GET /config/default) ------------------------------------------------------

export interface FieldInfo extends FieldRule {
  key: string;
  /** The base config's value. */
  value: unknown;
  ultralytics_default: unknown;
  section: string;
  description: string | null;
}

export function fieldList(framework: Framework, task: ConfigTask, mode: ConfigMode): FieldInfo[] {
  const base = baseConfig(framework, task);
  return modeKeys(task, mode).map((key) => {
    const arg = catalogArg(key);
    return {
      key,
      ...fieldRule(key),
      value: base[key] ?? null,
      ultralytics_default: arg?.default ?? null,
      section: arg?.section ?? 'Train settings',
      description: key === 'model' ? 'base model to train from' : (arg?.description ?? null),
    };
  });
}
