/**
 * The Ultralytics argument set trainhook validates configs against, and its policy for each
 * argument.
 *
 * The key list, defaults and type checks are data copied from the pinned Ultralytics
 * (presets/args-<version>.json, written by presets/extract_args.py
 * from cfg/default.yaml and cfg/__init__.py's CFG_*_KEYS; test/configs.test.ts compares it with
 * the installed package). Nothing here imports Python. On top of Ultralytics' own checks
 * (fraction keys in [0, 1], int/bool/number types) trainhook adds ranges and choices where
 * Ultralytics would fail late or silently (epochs ≥ 1, imgsz a multiple of 32, enum strings…).
 *
 * Every key of default.yaml falls in one of these roles:
 *   train    – a training argument a config may set (developer mode; user mode: USER_KEYS);
 *   server   – trainhook sets it itself (task, data, project, name…): an error in a config;
 *   task     – real, but used by another task only (pose keys in detect, mask keys in classify…);
 *   other    – real, but not a training argument (predict, visualize, export, tracker settings).
 */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

export const FRAMEWORKS = ['ultralytics'] as const;
export type Framework = (typeof FRAMEWORKS)[number];
export const CONFIG_TASKS = ['detect', 'segment', 'classify', 'pose', 'obb'] as const;
export type ConfigTask = (typeof CONFIG_TASKS)[number];
export const CONFIG_MODES = ['user', 'developer'] as const;
export type ConfigMode = (typeof CONFIG_MODES)[number];

/** User mode: the safe subset a non-expert may change. `model` (the base model) is open in both modes. */
export const USER_KEYS = ['model', 'epochs', 'imgsz', 'batch', 'amp', 'patience', 'device'] as const;

/** Base configs and the argument catalog, beside this module. */
export const PRESETS_DIR = fileURLToPath(new URL('./presets/', import.meta.url));

export interface CatalogArg {
  key: string;
  section: string;
  default: unknown;
  type: string | null;
  description: string | null;
  /** Ultralytics' check_cfg class: float (int or float), fraction (0–1), int, bool; null: none. */
  check: 'float' | 'fraction' | 'int' | 'bool' | null;
}

export interface Catalog {
  ultralytics_version: string;
  source: string;
  args: CatalogArg[];
}

const CatalogFile = z.object({
  ultralytics_version: z.string(),
  source: z.string(),
  args: z.array(
    z.object({
      key: z.string(),
      section: z.string(),
      default: z.unknown(),
      type: z.string().nullable(),
      description: z.string().nullable(),
      check: z.enum(['float', 'fraction', 'int', 'bool']).nullable(),
    }),
  ),
});

/** The pinned version; bump together with worker/engines/ultralytics/requirements.txt and rerun presets/extract_*.py. */
export const ULTRALYTICS_VERSION = '8.4.50';

let cached: Catalog | undefined;
export function catalog(): Catalog {
  if (!cached) {
    const file = `${PRESETS_DIR}args-${ULTRALYTICS_VERSION}.json`;
    cached = CatalogFile.parse(JSON.parse(fs.readFileSync(file, 'utf8'))) as Catalog;
    cached.args.forEach((a) => Object.freeze(a));
  }
  return cached;
}

export function catalogArg(key: string): CatalogArg | undefined {
  return catalog().args.find((a) => a.key === key);
}

/** Keys trainhook sets itself, with what to do instead. */
export const SERVER_KEYS: Record<string, string> = {
  task: 'set by trainhook from the request: use the top-level task field',
  mode: 'set by trainhook: jobs always train',
  data: "set by trainhook: the dataset comes from the request's dataset.url",
  project: 'set by trainhook: runs live under workdir/jobs/',
  name: 'set by trainhook (the job id): use the top-level name field for the model name',
  exist_ok: 'set by trainhook',
  resume: 'set by trainhook: an interrupted job resumes by itself from last.pt',
  save: 'always true: trainhook keeps and registers the weights',
  cfg: 'a config file on the server is not accepted: send its keys instead',
};

/** Training arguments only one task uses, and that task. */
const TASK_ONLY_KEYS: Record<string, ConfigTask> = {
  dropout: 'classify',
  auto_augment: 'classify',
  erasing: 'classify',
  pose: 'pose',
  kobj: 'pose',
  rle: 'pose',
  angle: 'obb',
  overlap_mask: 'segment',
  mask_ratio: 'segment',
  copy_paste: 'segment',
  copy_paste_mode: 'segment',
};
/** In the Val/Test section but unused by training (inference-time switches). */
const NOT_TRAINING = new Set(['half', 'dnn']);
const NON_TRAIN_SECTIONS = new Set([
  'Predict settings',
  'Visualize settings',
  'Export settings',
  'Custom config.yaml',
  'Tracker settings',
]);

export type KeyRole =
  | { role: 'train' }
  | { role: 'server'; reason: string }
  | { role: 'task'; task: string }
  | { role: 'other'; section: string }
  | { role: 'unknown' };

export function keyRole(key: string, task: ConfigTask): KeyRole {
  if (key in SERVER_KEYS) return { role: 'server', reason: SERVER_KEYS[key]! };
  const arg = catalogArg(key);
  if (!arg) return { role: 'unknown' };
  const owner = TASK_ONLY_KEYS[key];
  if (owner && owner !== task) return { role: 'task', task: owner };
  if (NOT_TRAINING.has(key) || NON_TRAIN_SECTIONS.has(arg.section)) return { role: 'other', section: arg.section };
  return { role: 'train' };
}

/** The training arguments of a task, in default.yaml order (`model` first). */
export function trainKeys(task: ConfigTask): string[] {
  return catalog()
    .args.map((a) => a.key)
    .filter((k) => k === 'model' || keyRole(k, task).role === 'train')
    .sort((a, b) => (a === 'model' ? -1 : b === 'model' ? 1 : 0));
}

export function modeKeys(task: ConfigTask, mode: ConfigMode): string[] {
  return mode === 'user' ? [...USER_KEYS] : trainKeys(task);
}

// --- value rules ---------------------------------------------------------------------------

/** What a field accepts, for validation and for the field list a UI renders. */
export interface FieldRule {
  type: 'int' | 'number' | 'bool' | 'string' | 'enum' | 'batch' | 'freeze' | 'model' | 'device';
  min?: number;
  max?: number;
  /** min is exclusive (e.g. time > 0). */
  exclusiveMin?: boolean;
  multipleOf?: number;
  choices?: readonly (string | boolean)[];
  nullable?: boolean;
  note?: string;
}

export const OPTIMIZERS = ['auto', 'SGD', 'MuSGD', 'Adam', 'Adamax', 'AdamW', 'NAdam', 'RAdam', 'RMSProp'] as const;

/** trainhook's rules where Ultralytics' own type class is not enough. */
const RULES: Record<string, FieldRule> = {
  model: {
    type: 'model',
    note: 'a file name under workdir/base-models/ (yolo11n.pt), a model .yaml (from scratch), an https URL or model:<registry id>',
  },
  epochs: { type: 'int', min: 1, max: 10_000 },
  time: { type: 'number', min: 0, exclusiveMin: true, max: 10_000, nullable: true, note: 'hours' },
  patience: { type: 'int', min: 0, max: 10_000 },
  batch: { type: 'batch', note: 'an int 1–1024, -1 (AutoBatch, one CUDA GPU) or a fraction in (0, 1) of GPU memory' },
  imgsz: { type: 'int', min: 32, max: 4096, multipleOf: 32 },
  save_period: { type: 'int', min: -1, max: 10_000 },
  cache: { type: 'enum', choices: [false, true, 'ram', 'disk'] },
  device: { type: 'device', nullable: true, note: 'cpu or cuda:N; empty: any free training slot' },
  workers: { type: 'int', min: 0, max: 64 },
  pretrained: { type: 'bool' },
  optimizer: { type: 'enum', choices: OPTIMIZERS },
  seed: { type: 'int', min: 0, max: 2 ** 31 - 1 },
  close_mosaic: { type: 'int', min: 0, max: 10_000 },
  amp: { type: 'bool' },
  fraction: { type: 'number', min: 0, exclusiveMin: true, max: 1 },
  freeze: { type: 'freeze', nullable: true, note: 'the first N layers (int) or a list of layer indices' },
  compile: { type: 'enum', choices: [false, true, 'default', 'reduce-overhead', 'max-autotune-no-cudagraphs'] },
  mask_ratio: { type: 'int', min: 1, max: 64 },
  split: { type: 'enum', choices: ['val', 'test', 'train'] },
  conf: { type: 'number', min: 0, max: 1, nullable: true },
  max_det: { type: 'int', min: 1, max: 10_000 },
  end2end: { type: 'bool', nullable: true },
  warmup_epochs: { type: 'number', min: 0, max: 10_000 },
  box: { type: 'number', min: 0, max: 1000 },
  cls: { type: 'number', min: 0, max: 1000 },
  dfl: { type: 'number', min: 0, max: 1000 },
  cls_pw: { type: 'number', min: 0, max: 10 },
  nbs: { type: 'int', min: 1, max: 4096 },
  degrees: { type: 'number', min: -180, max: 180 },
  shear: { type: 'number', min: -180, max: 180 },
  copy_paste_mode: { type: 'enum', choices: ['flip', 'mixup'] },
};

/** The rule of a key: trainhook's when it has one, else from Ultralytics' check class. */
export function fieldRule(key: string): FieldRule {
  const own = RULES[key];
  if (own) return own;
  const arg = catalogArg(key);
  const nullable = arg?.default === null;
  switch (arg?.check) {
    case 'fraction':
      return { type: 'number', min: 0, max: 1, nullable };
    case 'float':
      return { type: 'number', nullable };
    case 'int':
      return { type: 'int', nullable };
    case 'bool':
      return { type: 'bool', nullable };
    default:
      return { type: 'string', nullable };
  }
}

const BASE_MODEL_RE = /^https:\/\/\S+$|^[\w.-]+\.(pt|ya?ml)$|^model:[\w-]+$/;
const DEVICE_RE = /^(cpu|cuda:\d{1,2})$/;

/**
 * Checks one value against its rule; returns what is wrong, or null. Also normalizes device
 * spellings ('0', 0, 'cuda' → 'cuda:0') so the config and the CLI line say the same thing.
 */
export function checkValue(key: string, value: unknown): { ok: true; value: unknown } | { ok: false; message: string } {
  const rule = fieldRule(key);
  const fail = (message: string) => ({ ok: false as const, message });
  if (value === null || value === undefined) {
    return rule.nullable ? { ok: true, value: null } : fail('must not be empty');
  }
  const range = (n: number) => {
    if (rule.min !== undefined && (rule.exclusiveMin ? n <= rule.min : n < rule.min)) {
      return `must be ${rule.exclusiveMin ? 'greater than' : 'at least'} ${rule.min}`;
    }
    if (rule.max !== undefined && n > rule.max) return `must be at most ${rule.max}`;
    if (rule.multipleOf !== undefined && n % rule.multipleOf !== 0) return `must be a multiple of ${rule.multipleOf}`;
    return null;
  };
  switch (rule.type) {
    case 'int': {
      if (typeof value !== 'number' || !Number.isInteger(value)) return fail('must be an integer');
      const bad = range(value);
      return bad ? fail(bad) : { ok: true, value };
    }
    case 'number': {
      if (typeof value !== 'number' || !Number.isFinite(value)) return fail('must be a number');
      const bad = range(value);
      return bad ? fail(bad) : { ok: true, value };
    }
    case 'bool':
      return typeof value === 'boolean' ? { ok: true, value } : fail('must be true or false');
    case 'string':
      return typeof value === 'string' && value.length <= 1000 ? { ok: true, value } : fail('must be a string');
    case 'enum':
      return rule.choices!.includes(value as string | boolean)
        ? { ok: true, value }
        : fail(`must be one of ${rule.choices!.map((c) => JSON.stringify(c)).join(', ')}`);
    case 'batch': {
      if (typeof value !== 'number' || !Number.isFinite(value)) return fail('must be a number');
      if (value === -1 || (Number.isInteger(value) && value >= 1 && value <= 1024) || (value > 0 && value < 1)) {
        return { ok: true, value };
      }
      return fail('must be an integer 1–1024, -1 (AutoBatch) or a fraction between 0 and 1');
    }
    case 'freeze': {
      const isLayer = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 1000;
      if (isLayer(value)) return { ok: true, value };
      if (Array.isArray(value) && value.length <= 1000 && value.every(isLayer)) return { ok: true, value: [...value] };
      return fail('must be a layer count (integer ≥ 0) or a list of layer indices');
    }
    case 'model':
      return typeof value === 'string' && value.length <= 2000 && BASE_MODEL_RE.test(value)
        ? { ok: true, value }
        : fail(`must be ${rule.note}`);
    case 'device': {
      const s = typeof value === 'number' && Number.isInteger(value) ? String(value) : value;
      if (typeof s !== 'string') return fail('must be cpu or cuda:N');
      const d = s.trim().toLowerCase();
      if (d === '' || d === 'auto') return { ok: true, value: null };
      if (/^\d{1,2}$/.test(d)) return { ok: true, value: `cuda:${d}` };
      if (d === 'cuda') return { ok: true, value: 'cuda:0' };
      return DEVICE_RE.test(d) ? { ok: true, value: d } : fail('must be cpu or cuda:N (one device per job)');
    }
  }
}

/** Ultralytics' own defaults of the training arguments of a task (what an omitted key means). */
export function ultralyticsDefaults(task: ConfigTask): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of trainKeys(task)) out[key] = catalogArg(key)?.default ?? null;
  return out;
}
