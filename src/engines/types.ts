/**
 * What a training engine is to trainhook. Everything outside src/engines/ (API, job store,
 * scheduler, pipeline, callbacks, streams, pages, registry, /metrics) is engine-agnostic and
 * renders what the engine declares here; an engine's Python side lives in
 * worker/engines/<name>/ and speaks worker/protocol.ts.
 *
 * Adding an engine: its folder here (an object of this type), its folder under worker/, and
 * one line in engines/index.ts.
 */
import type { z } from '@hono/zod-openapi';
import type { DatasetFormat } from '../datasets/formats.js';

/** The fields every engine's model_config has: the job row, pages and callbacks read them. */
export interface ModelConfigBase {
  framework: string;
  name: string;
  task: string;
  /** What to train from: a name the engine knows, an https URL, `model:<registry id>`, or null (from scratch). */
  base_model: string | null;
  epochs: number;
}

export interface MetricField {
  key: string;
  label: string;
  /** Which way is better. */
  goal: 'max' | 'min';
  kind: 'loss' | 'val_loss' | 'quality' | 'lr';
}

/** What an engine's metrics are, and which of them each place shows. */
export interface MetricsSpec {
  /** Every metric an epoch may carry, in display order. */
  fields: MetricField[];
  /** The metric that picks the best epoch. */
  best: { key: string; goal: 'max' | 'min' };
  /** The headline numbers of the pages, the dashboard and the streams. */
  headline: string[];
  /** The training losses added up into the headline "loss" (and named in its label). */
  losses: string[];
  /** The metric blocks of the callback bodies. */
  callback: { current: string[]; best: string[]; final: string[] };
  /** The job page's charts (id: a stable name for the page's element). */
  charts: { id: string; title: string; keys: string[] }[];
}

/** Where a base model comes from, once the engine has read the request's name. */
export type BaseModelSource =
  /**
   * A file in workdir/base-models/, shared by every job. When it is missing and a url is known,
   * it is fetched once (through BASE_MODEL_MIRROR when set and the engine names the file there).
   */
  | { kind: 'file'; file: string; url?: string | undefined; sha256?: string | undefined; mirrorName?: string | undefined }
  /** A model in trainhook's registry. */
  | { kind: 'registered'; id: string }
  /**
   * A model folder (a `save_pretrained` directory) placed by hand under the server's local models
   * folder (HF_MODELS_DIR, default workdir/hf-models/), by its name: never downloaded. The name
   * is one path segment; the worker gets the folder's absolute path.
   */
  | { kind: 'directory'; name: string }
  /**
   * A Hugging Face Hub model repo at a revision: the service downloads the files a model needs
   * once into workdir/hf-cache/<owner>/<name>@<revision>/ (engines/hub.ts), and the worker gets
   * that folder as it gets a `directory`.
   */
  | { kind: 'hub'; repo: string; revision: string }
  /** Something the engine builds itself (an architecture file, a name); passed to the worker as is. */
  | { kind: 'builtin'; value: string }
  /** No base model: random initialisation. */
  | { kind: 'none' };

/** What a config submission (POST /train with `config`) or a preset resolves to. */
export interface ConfigIssue {
  path: (string | number)[];
  message: string;
  code: 'unknown_key' | 'not_allowed' | 'invalid_value' | 'invalid_type';
}

export interface PresetField {
  key: string;
  type: string;
  value: unknown;
  default: unknown;
  min?: number | undefined;
  max?: number | undefined;
  exclusiveMin?: boolean | undefined;
  multipleOf?: number | undefined;
  choices?: (string | boolean)[] | undefined;
  nullable?: boolean | undefined;
  note?: string | undefined;
  section: string;
  description: string | null;
  /** Engine-specific extras its clients already read. */
  [extra: string]: unknown;
}

export interface PresetView {
  /** The keys the mode lets a user change. */
  editable: string[];
  fields: PresetField[];
  config: Record<string, unknown>;
  yaml: string;
  /** The equivalent command line of the engine's own CLI, when it has one. */
  command: string | null;
}

export interface ResolvedPreset {
  config: Record<string, unknown>;
  changed: Record<string, { from: unknown; to: unknown }>;
  yaml: string;
  command: string | null;
  argv: string[] | null;
}

export type ConfigMode = 'user' | 'developer';

/** What an engine's refuse() knows of the node a request arrives at. */
export interface RefuseContext {
  gpuAvailable: boolean;
  /** HF_MODELS_DIR: local base model folders, as the pipeline resolves them. */
  modelsDir: string;
}

/** A string is answered as 400 VALIDATION_ERROR; `{code, message}` as 400 with that code. */
export type Refusal = string | { code: string; message: string } | null;

/** Seed-style User and Developer presets: base configs, checked overrides, resolved YAML. */
export interface EnginePresets {
  /** The tasks that have a base config. */
  tasks: string[];
  /** Fields every config answer of this engine carries besides the common ones (clients already read them). */
  answerFields?: Record<string, unknown>;
  /** The base config of one of those tasks, and what a mode may change in it. */
  defaults(task: string, mode: ConfigMode): PresetView;
  resolve(input: {
    task: string;
    mode: ConfigMode;
    base_config?: Record<string, unknown> | undefined;
    overrides?: Record<string, unknown> | undefined;
  }): { ok: true; value: ResolvedPreset } | { ok: false; issues: ConfigIssue[] };
  /**
   * A resolved config submitted to POST /train: the model_config it stands for, and what is kept
   * beside it for the worker (the config itself, when the engine trains from it).
   */
  submission(
    name: string,
    task: string,
    config: Record<string, unknown>,
  ): { ok: true; modelConfig: ModelConfigBase; resolvedConfig: Record<string, unknown> | null } | { ok: false; issues: ConfigIssue[] };
}

export interface TrainArgsContext {
  /** The slot's device: cpu, cuda:0… */
  device: string;
  resources: { workers?: number | undefined; max_memory_gb?: number | undefined };
  /** A config submission's resolved config (developer mode), when there was one. */
  resolvedConfig: Record<string, unknown> | null;
}

export interface Engine<MC extends ModelConfigBase = ModelConfigBase> {
  name: string;
  label: string;
  /** License of the library the worker imports (the README lists them). */
  license: string;
  /** The pinned version of that library. */
  version: string;
  tasks: readonly string[];
  /** Its part of POST /train: model_config with `framework` as discriminator. */
  modelConfig: z.ZodType<MC, unknown>;
  presets: EnginePresets;
  /** Base model names it knows by heart, per task (GET /api/v1/engines). */
  models(task: string): string[];
  /** How the request's base model is obtained; throws a JobError when it cannot be. */
  baseModel(config: MC): BaseModelSource;
  /** Dataset formats a task trains on, in order of preference. */
  datasetFormats(task: string): DatasetFormat[];
  /**
   * A problem that makes a request impossible on this node (e.g. a GPU-only method), or null.
   * A string is answered as 400 VALIDATION_ERROR; `{code, message}` as 400 with that code.
   */
  refuse?(config: MC, ctx: RefuseContext): Refusal | Promise<Refusal>;
  /** The worker's arguments for a job: stored with the job as what it trained with. */
  trainArgs(config: MC, ctx: TrainArgsContext): Record<string, unknown>;
  /**
   * Every argument a job trained with, the library's defaults filled in where the job left
   * them out (compare shows differences between jobs however they were submitted).
   */
  effectiveArgs?(task: string, trainArgs: Record<string, unknown>, baseModel: string | null): Record<string, unknown>;
  metrics(task: string): MetricsSpec;
  /** The input size a trained model expects (the registry shows it), or null. */
  imageSize(config: MC, trainArgs: Record<string, unknown>): number | null;
  python: {
    /** worker/engines/<name>/requirements.txt: its venv is built from it. */
    requirements: string;
    train: string;
    export?: string;
    predict?: string;
    /** Checks a base model file before use: answers the task it was built for (else it fails). */
    checkWeights?: string;
    /** Counts tokens of texts with a base model folder's tokenizer (dataset validation, strict). */
    tokens?: string;
  };
  files: {
    /** Checkpoints in the run folder, as glob patterns relative to it. */
    checkpoints: string[];
    /** The training_completed callback's artifact keys and the file names each one may be (the log is added to them). */
    callbackArtifacts: Record<string, string[]>;
    /** The model's file format, as the completion callback names it. */
    modelFormat: string;
  };
  /**
   * Export formats of a task's models; `trainArgs` (what a registered model trained with, when
   * known) narrows them (a transformers model trained in full has no adapter to export).
   */
  exportFormats(task: string, trainArgs?: Record<string, unknown> | null): string[];
  /**
   * Whether a task's models generate text (POST /api/v1/models/{id}/generate, served by the
   * `predict` module's long-lived worker with `{op: "generate", …}` requests) instead of
   * predicting on images (POST …/predict is then refused).
   */
  generates?(task: string): boolean;
  /**
   * Whether a generating task's models answer about an image (POST …/generate then requires
   * `image`, handed to the worker as a file; other models refuse one).
   */
  takesImage?(task: string): boolean;
}

/** An engine of unknown model_config type: what engine-agnostic code holds. */
export type AnyEngine = Engine<ModelConfigBase>;
