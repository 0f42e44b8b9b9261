/**
 * The model registry as the API and the pipeline use it: register, list, read, delete, export
 * and predict, for every engine. Python work runs in child processes of the model's engine:
 * exports one process each (worker/tool.ts), at most EXPORT_CONCURRENCY at a time on this node;
 * predictions (and text generation, for the engines whose models generate) in one long-lived
 * worker per engine (worker/serve.ts) that keeps models loaded, one request at a time.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { checkImage, imageScratch } from '../datasets/images.js';
import { readPrepared } from '../datasets/index.js';
import type { Database } from '../db/client.js';
import type { JobRow, ModelExportRow, ModelRow } from '../db/schema.js';
import type { Engines } from '../engines/index.js';
import type { AnyEngine } from '../engines/types.js';
import { hubCacheDir, parseHubId } from '../engines/hub.js';
import type { JobFiles } from '../jobs/files.js';
import { getJob } from '../jobs/queries.js';
import { resolvePython } from '../worker/python.js';
import { PythonServer } from '../worker/serve.js';
import { runPythonTool, ToolError } from '../worker/tool.js';
import { modelDir, modelFileKey, modelPrefix, openableModelFile, sha256File } from './files.js';
import type { ImageResult, PredictionRun } from './formats.js';
import { completedJobsWithoutModel, deleteModelRow, exportsOf, getModel, jobsUsingModel, upsertExport } from './queries.js';
import { registerModelFromJob } from './register.js';

const EXPORT_CONCURRENCY = 2;
const EXPORT_TIMEOUT_MS = 15 * 60_000;
const PREDICT_TIMEOUT_MS = 5 * 60_000;

/** A tiny counting semaphore (p-queue would do; this keeps the waiting order obvious). */
class Slots {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly size: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.size) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

export interface UploadedImage {
  name: string;
  data: Uint8Array;
}

export interface GenerateOptions {
  prompt: string;
  maxNewTokens: number;
  temperature: number;
  doSample: boolean;
  seed: number | null;
  /** The image a vision-language model answers about (its engine's takesImage), as uploaded. */
  image?: Uint8Array | null;
}

export interface Generation {
  text: string;
  tokens: number;
  token_ids: number[];
  prompt_tokens: number;
  finish_reason: string;
  seconds: number;
}

/** A folder name of HF_MODELS_DIR (one path segment), as pipeline/base-model.ts accepts it. */
const FOLDER_NAME = /^[\w][\w.-]*$/;

export interface PredictOptions {
  conf: number;
  iou: number;
  imgsz: number | null;
  maxDet: number;
}

export class ModelRegistry {
  private readonly slots = new Slots(EXPORT_CONCURRENCY);
  private readonly exporting = new Map<string, Promise<ModelExportRow>>();
  private readonly predictors = new Map<string, PythonServer>();

  constructor(
    private readonly opts: {
      database: Database;
      config: Config;
      engines: Engines;
      files: JobFiles;
      logger: Logger;
    },
  ) {}

  get workdir(): string {
    return this.opts.config.workdir;
  }

  /** Stops the prediction workers (server shutdown). */
  async close(): Promise<void> {
    await Promise.all([...this.predictors.values()].map((p) => p.close()));
  }

  private python(engine: AnyEngine): string {
    const { config } = this.opts;
    return resolvePython(engine.python.requirements, config.enginePython[engine.name] ?? config.python);
  }

  private cacheDir(engine: AnyEngine): string {
    return path.join(this.workdir, 'engines', engine.name);
  }

  private engineOf(model: ModelRow): AnyEngine {
    const engine = this.opts.engines.get(model.framework);
    if (!engine) throw new ToolError('ENGINE_UNAVAILABLE', `model ${model.id} was trained by ${model.framework}, which this server does not run`);
    return engine;
  }

  private get storage() {
    return this.opts.files.storage;
  }

  /**
   * A file of a model: on this disk, else fetched from remote storage into the model's folder
   * (a model trained or exported on another node); null when neither has it.
   */
  async modelFile(id: string, fileName: string): Promise<{ path: string; size: number } | null> {
    const local = openableModelFile(this.workdir, id, fileName);
    if (local || !this.storage.remote || !/^[\w.-]{1,200}$/.test(fileName) || fileName.startsWith('.')) return local;
    const fetched = await this.storage.getToFile(modelFileKey(id, fileName), path.join(modelDir(this.workdir, id), fileName));
    return fetched ? openableModelFile(this.workdir, id, fileName) : null;
  }

  /** A presigned link to a model's file in remote storage, when it is there and clients may reach it. */
  async remoteLink(id: string, fileName: string, ttlSeconds: number): Promise<string | null> {
    if (!this.storage.remote) return null;
    const key = modelFileKey(id, fileName);
    if (!(await this.storage.head(key))) return null;
    return this.storage.link(key, { fileName, contentType: 'application/octet-stream', ttlSeconds });
  }

  /** Copies a model's file to remote storage (a no-op in local mode). */
  private async upload(id: string, fileName: string): Promise<void> {
    if (!this.storage.remote) return;
    await this.storage.putFile(modelFileKey(id, fileName), path.join(modelDir(this.workdir, id), fileName));
  }

  /** Registers a completed job's best model; logs instead of throwing (a job's completion stands). */
  async register(job: JobRow): Promise<ModelRow | null> {
    try {
      const row = await registerModelFromJob(this.opts.database.db, job, this.workdir, this.opts.engines);
      if (row) this.opts.logger.info({ job_id: job.id, model_id: row.id }, 'model registered');
      // Other nodes fine-tune from it, export it and predict with it: it goes to storage.
      if (row && this.storage.remote && !(await this.storage.head(modelFileKey(row.id, row.fileName)))) await this.upload(row.id, row.fileName);
      return row;
    } catch (err) {
      this.opts.logger.error({ err, job_id: job.id }, 'model registration failed');
      return null;
    }
  }

  /** At start: registers the models of completed jobs that have none (their weights still on disk). */
  async registerMissing(): Promise<number> {
    let registered = 0;
    for (const job of await completedJobsWithoutModel(this.opts.database.db)) {
      if (await this.register(job)) registered++;
    }
    if (registered) this.opts.logger.info({ registered }, 'registered models of completed jobs');
    return registered;
  }

  /** The weights a job of `engine` and `task` fine-tunes from (`base_model: "model:<id>"`), or why it cannot. */
  async weightsFor(id: string, engine: string, task: string): Promise<string | { problem: string }> {
    const row = /^[\w-]{1,100}$/.test(id) ? await this.get(id) : undefined;
    if (!row) return { problem: `registered model ${id} not found (deleted, or registered on another node)` };
    if (row.framework !== engine) return { problem: `registered model ${id} was trained by ${row.framework}, not ${engine}` };
    if (row.task !== task) return { problem: `registered model ${id} is a ${row.task} model; this job's task is ${task}` };
    const file = await this.modelFile(row.id, row.fileName).catch(() => null);
    return file ? file.path : { problem: `the weights of registered model ${id} are missing on this server (${path.join(modelDir(this.workdir, row.id), row.fileName)})` };
  }

  get(id: string): Promise<ModelRow | undefined> {
    return getModel(this.opts.database.db, id);
  }

  exports(ids: string[]): Promise<ModelExportRow[]> {
    return exportsOf(this.opts.database.db, ids);
  }

  /** The export formats of a model's engine and task (and of how it trained). */
  exportFormats(model: ModelRow): string[] {
    return this.opts.engines.get(model.framework)?.exportFormats(model.task, model.trainArgs) ?? [];
  }

  /**
   * Where in HF_MODELS_DIR (or, for a Hub id, in workdir/hf-cache/) the base model folder of a
   * registered model is, when its base model is a name that can be such a folder (an adapter needs it to load; the worker checks that it
   * is there and, if not, names this path); else null.
   */
  private baseFolder(model: ModelRow): string | null {
    const name = model.baseModel;
    // A Hub id: the snapshot the service downloaded for the job (still there unless removed by hand).
    const hub = name ? parseHubId(name) : null;
    if (hub) return hubCacheDir(this.opts.config.workdir, hub);
    if (!name || !FOLDER_NAME.test(name) || name.includes('..')) return null;
    const root = path.resolve(this.opts.config.hfModelsDir);
    const dir = path.join(root, name);
    return path.dirname(dir) === root ? dir : null;
  }

  /** What a model card says about a model: its base, data, training arguments and final metrics. */
  private async card(engine: AnyEngine, model: ModelRow): Promise<Record<string, unknown>> {
    const job = model.sourceJobId ? await getJob(this.opts.database.db, model.sourceJobId) : undefined;
    const dataset = (job?.request as { dataset?: { url?: string; id?: string } } | undefined)?.dataset;
    const info = job?.datasetInfo as { samples_per_split?: unknown; format?: unknown } | null | undefined;
    return {
      name: model.name,
      model_id: model.id,
      source_job_id: model.sourceJobId,
      base_model: model.baseModel,
      task: model.task,
      engine: engine.name,
      engine_version: engine.version,
      license: engine.license,
      dataset: {
        name: dataset?.url ? path.posix.basename(new URL(dataset.url).pathname) || dataset.url : dataset?.id ? `uploaded dataset ${dataset.id}` : null,
        source: dataset?.url ?? dataset?.id ?? null,
        sha256: job?.datasetSha256 ?? null,
        format: info?.format ?? null,
        samples: info?.samples_per_split ?? null,
      },
      train_args: model.trainArgs ?? {},
      metrics: model.metrics ?? {},
    };
  }

  /** 'in_use' when an unfinished job trains from it; its files go with the row. */
  async delete(id: string): Promise<ModelRow | 'not_found' | { inUse: string[] }> {
    const { db } = this.opts.database;
    const users = await jobsUsingModel(db, id);
    if (users.length) return { inUse: users.map((u) => u.id) };
    const row = await deleteModelRow(db, id);
    if (!row) return 'not_found';
    await fs.promises.rm(modelDir(this.workdir, id), { recursive: true, force: true });
    if (this.storage.remote) await this.storage.deletePrefix(modelPrefix(id)).catch((err) => this.opts.logger.warn({ err, model_id: id }, 'model files not deleted from storage'));
    return row;
  }

  /**
   * Exports a model (or returns the export already made, unless `force`), then records it.
   * Concurrent requests for the same model and format share one export.
   */
  async export(model: ModelRow, format: string, force = false): Promise<{ row: ModelExportRow; created: boolean }> {
    const engine = this.engineOf(model);
    const formats = engine.exportFormats(model.task, model.trainArgs);
    if (!engine.python.export || !formats.includes(format)) {
      throw new ToolError('EXPORT_UNSUPPORTED', `${engine.label} ${model.task} models${model.trainArgs?.['method'] === 'full' ? ' trained in full' : ''} export to ${formats.join(', ') || 'no format'}, not ${format}`);
    }
    const key = `${model.id}:${format}`;
    const running = this.exporting.get(key);
    if (running) return { row: await running, created: false };
    if (!force) {
      const [done] = (await this.exports([model.id])).filter((e) => e.format === format);
      if (done && (await this.modelFile(model.id, done.fileName))) return { row: done, created: false };
    }
    const work = this.slots.run(() => this.runExport(engine, model, format));
    this.exporting.set(key, work);
    try {
      return { row: await work, created: true };
    } finally {
      this.exporting.delete(key);
    }
  }

  /** What the model's source job trained on, when its files are still here (the export check predicts on it). */
  private async sourceData(model: ModelRow): Promise<string | null> {
    if (!model.sourceJobId) return null;
    return (await readPrepared(this.opts.files.dir(model.sourceJobId), this.opts.files.datasets))?.data ?? null;
  }

  private async runExport(engine: AnyEngine, model: ModelRow, format: string): Promise<ModelExportRow> {
    const weights = await this.modelFile(model.id, model.fileName);
    if (!weights) throw new ToolError('MODEL_NOT_FOUND', `the weights of model ${model.id} are missing on this server`);
    const dir = modelDir(this.workdir, model.id);
    const result = await runPythonTool<{ file: string; format: string; check: Record<string, unknown> }>({
      python: this.python(engine),
      entry: engine.python.export!,
      spec: {
        model: weights.path,
        task: model.task,
        format,
        imgsz: model.imgsz,
        class_names: model.classes,
        train_args: model.trainArgs ?? {},
        out_dir: dir,
        cache_dir: this.cacheDir(engine),
        data: await this.sourceData(model),
        check_image: null,
        base_model: this.baseFolder(model),
        card: await this.card(engine, model),
      },
      workDir: dir,
      logFile: path.join(dir, 'export.log'),
      timeoutMs: EXPORT_TIMEOUT_MS,
    });
    const fileName = path.basename(result.file);
    const file = openableModelFile(this.workdir, model.id, fileName);
    if (!file || path.resolve(result.file) !== file.path) {
      throw new ToolError('EXPORT_FAILED', `the ${format} export did not land in the model's folder`, { file: result.file });
    }
    if (result.check['passed'] !== true) {
      await fs.promises.rm(file.path, { force: true });
      throw new ToolError('EXPORT_CHECK_FAILED', `the exported ${format} model does not predict like the original`, result.check);
    }
    await this.upload(model.id, fileName);
    return upsertExport(this.opts.database.db, {
      modelId: model.id,
      format,
      fileName,
      sizeBytes: file.size,
      sha256: await sha256File(file.path),
      check: result.check,
    });
  }

  private predictor(engine: AnyEngine): PythonServer {
    let server = this.predictors.get(engine.name);
    if (!server) {
      if (!engine.python.predict) throw new ToolError('PREDICT_UNSUPPORTED', `${engine.label} models cannot predict on this server`);
      server = new PythonServer({
        python: () => this.python(engine),
        entry: engine.python.predict,
        cwd: this.cacheDir(engine),
        logFile: path.join(this.workdir, 'logs', `predict-${engine.name}.log`),
      });
      this.predictors.set(engine.name, server);
    }
    return server;
  }

  /** Generates text with a text model, in its engine's prediction worker (one request at a time). */
  async generate(model: ModelRow, opts: GenerateOptions): Promise<Generation> {
    const engine = this.engineOf(model);
    if (!engine.generates?.(model.task)) {
      throw new ToolError('GENERATE_UNSUPPORTED', `${engine.label} ${model.task} models do not generate text: use POST /api/v1/models/${model.id}/predict`);
    }
    const takesImage = engine.takesImage?.(model.task) ?? false;
    if (takesImage && !opts.image?.length) {
      throw new ToolError('IMAGE_REQUIRED', `${engine.label} ${model.task} models answer about an image: send it as image (base64) with the prompt`);
    }
    if (!takesImage && opts.image) {
      throw new ToolError('IMAGE_UNSUPPORTED', `${engine.label} ${model.task} models take text only: leave image out`);
    }
    const weights = await this.modelFile(model.id, model.fileName);
    if (!weights) throw new ToolError('MODEL_NOT_FOUND', `the weights of model ${model.id} are missing on this server`);
    // The image goes to the worker as a file of our own name, checked by its header first.
    const tmp = opts.image ? path.join(this.workdir, 'tmp', `generate-${crypto.randomUUID()}`) : null;
    try {
      let image: string | null = null;
      if (tmp && opts.image) {
        await fs.promises.mkdir(tmp, { recursive: true });
        image = path.join(tmp, 'image');
        await fs.promises.writeFile(image, opts.image);
        const check = checkImage(image, imageScratch());
        if (!check.ok) throw new ToolError('INVALID_IMAGE', `the image cannot be read: ${check.message}`);
      }
      return await this.predictor(engine).request<Generation>(
        {
          op: 'generate',
          model: weights.path,
          task: model.task,
          base_model: this.baseFolder(model),
          prompt: opts.prompt,
          ...(image ? { image } : {}),
          max_new_tokens: opts.maxNewTokens,
          temperature: opts.temperature,
          do_sample: opts.doSample,
          seed: opts.seed,
          cache_dir: this.cacheDir(engine),
        },
        PREDICT_TIMEOUT_MS,
      );
    } finally {
      if (tmp) await fs.promises.rm(tmp, { recursive: true, force: true });
    }
  }

  /** Predicts in a child process; the uploads live in a temporary folder for its duration. */
  async predict(model: ModelRow, images: UploadedImage[], opts: PredictOptions): Promise<PredictionRun> {
    const engine = this.engineOf(model);
    if (engine.generates?.(model.task)) {
      throw new ToolError('PREDICT_UNSUPPORTED', `${engine.label} ${model.task} models generate text: use POST /api/v1/models/${model.id}/generate`);
    }
    const weights = await this.modelFile(model.id, model.fileName);
    if (!weights) throw new ToolError('MODEL_NOT_FOUND', `the weights of model ${model.id} are missing on this server`);
    const tmp = path.join(this.workdir, 'tmp', `predict-${crypto.randomUUID()}`);
    await fs.promises.mkdir(tmp, { recursive: true });
    try {
      const files = await Promise.all(
        images.map(async (img, i) => {
          // Our own file names: the upload's name only travels as a label.
          const ext = (/\.([A-Za-z0-9]{1,5})$/.exec(img.name)?.[1] ?? 'img').toLowerCase();
          const file = path.join(tmp, `${String(i).padStart(4, '0')}.${ext}`);
          await fs.promises.writeFile(file, img.data);
          return { path: file, name: img.name };
        }),
      );
      const timestamp = new Date().toISOString();
      const out = await this.predictor(engine).request<{ task: string; names: string[]; results: (ImageResult & { error?: string })[] }>(
        {
          model: weights.path,
          task: model.task,
          images: files,
          conf: opts.conf,
          iou: opts.iou,
          imgsz: opts.imgsz,
          max_det: opts.maxDet,
          device: 'cpu',
          class_names: model.classes,
          train_args: model.trainArgs ?? {},
          cache_dir: this.cacheDir(engine),
        },
        PREDICT_TIMEOUT_MS,
      );
      const failed = out.results.filter((r) => r.error);
      if (failed.length) {
        throw new ToolError('INVALID_IMAGE', `${failed.length} image(s) could not be read`, failed.map((r) => ({ name: r.name, error: r.error })));
      }
      return { model_id: model.id, model_name: model.name, task: out.task, names: out.names, timestamp, results: out.results };
    } finally {
      await fs.promises.rm(tmp, { recursive: true, force: true });
    }
  }
}
