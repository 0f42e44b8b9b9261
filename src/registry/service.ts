/**
 * The model registry as the API uses it: list, read, delete, export and predict. Python work
 * runs in child processes: exports one process each (python-tool.ts), at most
 * EXPORT_CONCURRENCY at a time on this node; predictions in one long-lived worker
 * (predict-worker.ts) that keeps models loaded, one request at a time.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Database } from '../db/client.js';
import type { JobRow, ModelExportRow, ModelRow } from '../db/schema.js';
import type { Logger } from '../logger.js';
import { jobDir } from '../jobs/paths.js';
import { modelDir, modelWeightsFile, openableModelFile, sha256File } from './files.js';
import type { ImageResult, PredictionRun } from './formats.js';
import { PredictWorker } from './predict-worker.js';
import { runPythonTool, ToolError } from './python-tool.js';
import { deleteModelRow, exportsOf, getModel, jobsUsingModel, upsertExport } from './queries.js';
import { registerMissingModels, registerModelFromJob } from './register.js';

export const EXPORT_FORMATS = ['onnx', 'torchscript'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];
const EXPORT_SUFFIX: Record<ExportFormat, string> = { onnx: '.onnx', torchscript: '.torchscript' };

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

export interface PredictOptions {
  conf: number;
  iou: number;
  imgsz: number;
  maxDet: number;
}

export class ModelRegistry {
  private readonly slots = new Slots(EXPORT_CONCURRENCY);
  private readonly exporting = new Map<string, Promise<ModelExportRow>>();
  private readonly predictor: PredictWorker;

  constructor(
    private readonly opts: {
      database: Database;
      workdir: string;
      /** The worker's python (resolved lazily: an API-only node may never need it). */
      python: () => string;
      logger: Logger;
    },
  ) {
    this.predictor = new PredictWorker({
      python: opts.python,
      configDir: path.join(opts.workdir, 'ultralytics'),
      logFile: path.join(opts.workdir, 'logs', 'predict-worker.log'),
    });
  }

  /** Stops the prediction worker (server shutdown). */
  close(): Promise<void> {
    return this.predictor.close();
  }

  get workdir(): string {
    return this.opts.workdir;
  }

  private get configDir(): string {
    return path.join(this.opts.workdir, 'ultralytics');
  }

  /** Registers a completed job's best model; logs instead of throwing (a job's completion stands). */
  async registerFromJob(job: JobRow): Promise<ModelRow | null> {
    try {
      const row = await registerModelFromJob(this.opts.database.db, job, this.opts.workdir);
      if (row) this.opts.logger.info({ job_id: job.id, model_id: row.id }, 'model registered');
      return row;
    } catch (err) {
      this.opts.logger.error({ err, job_id: job.id }, 'model registration failed');
      return null;
    }
  }

  registerMissing(): Promise<number> {
    return registerMissingModels(this.opts.database.db, this.opts.workdir, this.opts.logger);
  }

  get(id: string): Promise<ModelRow | undefined> {
    return getModel(this.opts.database.db, id);
  }

  exports(ids: string[]): Promise<ModelExportRow[]> {
    return exportsOf(this.opts.database.db, ids);
  }

  /** 'in_use' when an unfinished job trains from it; its files go with the row. */
  async delete(id: string): Promise<ModelRow | 'not_found' | { inUse: string[] }> {
    const { db } = this.opts.database;
    const users = await jobsUsingModel(db, id);
    if (users.length) return { inUse: users.map((u) => u.id) };
    const row = await deleteModelRow(db, id);
    if (!row) return 'not_found';
    await fs.promises.rm(modelDir(this.opts.workdir, id), { recursive: true, force: true });
    return row;
  }

  /**
   * Exports a model (or returns the export already made, unless `force`), then records it.
   * Concurrent requests for the same model and format share one export.
   */
  async export(model: ModelRow, format: ExportFormat, force = false): Promise<{ row: ModelExportRow; created: boolean }> {
    const key = `${model.id}:${format}`;
    const running = this.exporting.get(key);
    if (running) return { row: await running, created: false };
    if (!force) {
      const [done] = (await this.exports([model.id])).filter((e) => e.format === format);
      if (done && openableModelFile(this.opts.workdir, model.id, done.fileName)) return { row: done, created: false };
    }
    const work = this.slots.run(() => this.runExport(model, format));
    this.exporting.set(key, work);
    try {
      return { row: await work, created: true };
    } finally {
      this.exporting.delete(key);
    }
  }

  private async runExport(model: ModelRow, format: ExportFormat): Promise<ModelExportRow> {
    const weights = modelWeightsFile(this.opts.workdir, model.id);
    const dir = modelDir(this.opts.workdir, model.id);
    const dataYaml = model.sourceJobId ? path.join(jobDir(this.opts.workdir, model.sourceJobId), 'data.yaml') : null;
    const result = await runPythonTool<{ file: string; format: string; check: Record<string, unknown> }>({
      python: this.opts.python(),
      script: 'export.py',
      spec: {
        model: weights,
        task: model.task,
        format,
        imgsz: model.imgsz,
        config_dir: this.configDir,
        data_yaml: dataYaml && fs.existsSync(dataYaml) ? dataYaml : null,
        check_image: null,
      },
      workDir: dir,
      logFile: path.join(dir, 'export.log'),
      timeoutMs: EXPORT_TIMEOUT_MS,
    });
    const fileName = `best${EXPORT_SUFFIX[format]}`;
    const file = openableModelFile(this.opts.workdir, model.id, fileName);
    if (!file || path.resolve(result.file) !== file.path) {
      throw new ToolError('EXPORT_FAILED', `the ${format} export did not land at ${fileName}`, { file: result.file });
    }
    if (result.check['passed'] !== true) {
      await fs.promises.rm(file.path, { force: true });
      throw new ToolError('EXPORT_CHECK_FAILED', `the exported ${format} model does not predict like the .pt`, result.check);
    }
    return upsertExport(this.opts.database.db, {
      modelId: model.id,
      format,
      fileName,
      sizeBytes: file.size,
      sha256: await sha256File(file.path),
      check: result.check,
    });
  }

  /** Predicts in a child process; the uploads live in a temporary folder for its duration. */
  async predict(model: ModelRow, images: UploadedImage[], opts: PredictOptions): Promise<PredictionRun> {
    const weights = openableModelFile(this.opts.workdir, model.id, model.fileName);
    if (!weights) throw new ToolError('MODEL_NOT_FOUND', `the weights of model ${model.id} are missing on this server`);
    const tmp = path.join(this.opts.workdir, 'tmp', `predict-${crypto.randomUUID()}`);
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
      const out = await this.predictor.request<{ task: string; names: string[]; results: (ImageResult & { error?: string })[] }>(
        {
          model: weights.path,
          task: model.task,
          images: files,
          conf: opts.conf,
          iou: opts.iou,
          imgsz: opts.imgsz,
          max_det: opts.maxDet,
          device: 'cpu',
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
