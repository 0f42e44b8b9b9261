/**
 * User and Developer presets for an engine whose training arguments are its model_config (all
 * but framework, name and task): the base config of a task is a YAML file (or the schema's
 * defaults), the User mode may change a few keys, the Developer mode all of them, and every
 * value is checked by the engine's own zod schema, so the presets can never accept what
 * POST /train would refuse.
 */
import fs from 'node:fs';
import { z } from '@hono/zod-openapi';
import YAML from 'yaml';
import type { ConfigIssue, EnginePresets, ModelConfigBase, PresetField, PresetView } from './types.js';

/** The model_config keys that are not training arguments (the request says them elsewhere). */
const NOT_ARGS = ['framework', 'name', 'task'];

type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  multipleOf?: number;
  enum?: unknown[];
  description?: string;
  anyOf?: JsonSchema[];
};

export interface SchemaPresetsOptions {
  framework: string;
  schema: z.ZodObject;
  tasks: string[];
  /** What the User mode may change. */
  userKeys: string[];
  /** A task's base config file (YAML); the schema's defaults when absent. */
  baseFile?: (task: string) => string | null;
  /** Extra words for a field, by key. */
  notes?: Record<string, string>;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function schemaPresets(opts: SchemaPresetsOptions): EnginePresets {
  const json = z.toJSONSchema(opts.schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const props = json.properties ?? {};
  const argKeys = Object.keys(props).filter((k) => !NOT_ARGS.includes(k));
  const yamlOf = (task: string) => {
    const file = opts.baseFile?.(task);
    return file && fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
  };
  /** A task's base config: its file's values over the schema's defaults, checked like a request. */
  const base = (task: string): Record<string, unknown> => {
    const text = yamlOf(task);
    const fromFile = text ? (YAML.parse(text) as Record<string, unknown>) : {};
    const parsed = opts.schema.parse({ framework: opts.framework, name: 'base', task, ...fromFile }) as Record<string, unknown>;
    return Object.fromEntries(argKeys.filter((k) => parsed[k] !== undefined).map((k) => [k, parsed[k]]));
  };
  const editable = (mode: 'user' | 'developer') => (mode === 'user' ? opts.userKeys : argKeys);

  const check = (
    task: string,
    layers: [string, Record<string, unknown> | undefined, 'user' | 'developer'][],
  ): { ok: true; config: Record<string, unknown> } | { ok: false; issues: ConfigIssue[] } => {
    const issues: ConfigIssue[] = [];
    const merged: Record<string, unknown> = { ...base(task) };
    for (const [name, layer, mode] of layers) {
      if (layer === undefined) continue;
      if (!isRecord(layer)) {
        issues.push({ path: [name], code: 'invalid_type', message: `must be an object of ${opts.framework} training arguments` });
        continue;
      }
      for (const [key, value] of Object.entries(layer)) {
        if (!argKeys.includes(key)) {
          issues.push({ path: [name, key], code: 'unknown_key', message: `unknown argument (${opts.framework} takes ${argKeys.join(', ')})` });
        } else if (!editable(mode).includes(key)) {
          issues.push({ path: [name, key], code: 'not_allowed', message: `a developer-mode argument; user mode accepts ${opts.userKeys.join(', ')}` });
        } else {
          merged[key] = value;
        }
      }
    }
    if (issues.length) return { ok: false, issues };
    const parsed = opts.schema.safeParse({ framework: opts.framework, name: 'check', task, ...merged });
    if (!parsed.success) {
      return {
        ok: false,
        issues: parsed.error.issues.map((i) => ({
          path: ['overrides', ...i.path.map((p) => (typeof p === 'symbol' ? String(p) : p))],
          code: 'invalid_value' as const,
          message: i.message,
        })),
      };
    }
    const out = parsed.data as Record<string, unknown>;
    return { ok: true, config: Object.fromEntries(argKeys.filter((k) => out[k] !== undefined).map((k) => [k, out[k]])) };
  };

  const render = (task: string, config: Record<string, unknown>) =>
    `# trainhook base config: ${opts.framework}, task ${task}.\n${YAML.stringify(config, { lineWidth: 0 })}`;

  // A task whose schema defaults do not make a valid config (a default base model of another
  // task) has no base config to offer: leaving it out answers 404 for it, not a failed parse.
  const tasks = opts.tasks.filter((task) => {
    try {
      base(task);
      return true;
    } catch {
      return false;
    }
  });

  return {
    tasks,
    defaults(task, mode): PresetView {
      const config = base(task);
      const fields: PresetField[] = editable(mode).map((key) => {
        const p = props[key] ?? {};
        const variant = p.anyOf?.find((v) => v.type !== 'null') ?? p;
        return {
          key,
          type: Array.isArray(variant.type) ? variant.type.join(' | ') : (variant.type ?? (variant.enum ? 'enum' : 'string')),
          value: config[key] ?? null,
          default: p.default ?? null,
          min: variant.minimum,
          max: variant.maximum,
          multipleOf: variant.multipleOf,
          choices: variant.enum as (string | boolean)[] | undefined,
          nullable: !!p.anyOf?.some((v) => v.type === 'null'),
          note: opts.notes?.[key],
          section: 'Train settings',
          description: p.description ?? null,
        };
      });
      return { editable: editable(mode), fields, config, yaml: yamlOf(task) ?? render(task, config), command: null };
    },
    resolve(input) {
      const checked = check(input.task, [
        ['base_config', input.base_config, 'developer'],
        ['overrides', input.overrides, input.mode],
      ]);
      if (!checked.ok) return checked;
      const baseValues = base(input.task);
      const changed: Record<string, { from: unknown; to: unknown }> = {};
      for (const [key, value] of Object.entries(checked.config)) {
        if (JSON.stringify(value) !== JSON.stringify(baseValues[key] ?? null)) changed[key] = { from: baseValues[key] ?? null, to: value };
      }
      return { ok: true, value: { config: checked.config, changed, yaml: render(input.task, checked.config), command: null, argv: null } };
    },
    submission(name, task, config) {
      const checked = check(task, [['config', config, 'developer']]);
      if (!checked.ok) return { ok: false, issues: checked.issues.map((i) => ({ ...i, path: ['config', ...i.path.slice(1)] })) };
      const modelConfig = opts.schema.parse({ framework: opts.framework, name, task, ...checked.config }) as unknown as ModelConfigBase;
      return { ok: true, modelConfig, resolvedConfig: null };
    },
  };
}
