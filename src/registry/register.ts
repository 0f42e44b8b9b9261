/**
 * Registering a completed job's best model: the weights the worker reported as best are copied
 * to workdir/models/<id>/ (a stable place that outlives the job's files), hashed, and recorded
 * with what a user picks a model by: name, engine, task, classes, input size, final metrics,
 * size, sha256, source job, base model, and the arguments it was trained with.
 *
 * Called right after a job's completion commits (the pipeline) and, at start, for any
 * completed job left without a model (a crash between the two). Idempotent: one model per
 * source job (unique key), a lost race removes its copy.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Db } from '../db/client.js';
import type { JobRow, ModelRow } from '../db/schema.js';
import type { Engines } from '../engines/index.js';
import { jobRequest } from '../jobs/request.js';
import { copyAtomic, modelDir, sha256File } from './files.js';
import { insertModel, modelOfJob } from './queries.js';

function finalMetrics(job: JobRow): Record<string, number | null> | null {
  const current = job.metricsCurrent;
  if (!current) return null;
  const { epoch: _epoch, ...metrics } = current;
  return metrics;
}

export async function registerModelFromJob(db: Db, job: JobRow, workdir: string, engines: Engines): Promise<ModelRow | null> {
  if (job.state !== 'completed') return null;
  const existing = await modelOfJob(db, job.id);
  if (existing) return existing;
  const best = (job.model as { best?: unknown; format?: unknown } | null)?.best;
  if (typeof best !== 'string' || !fs.existsSync(best)) return null;

  const request = jobRequest(job, engines);
  const trainArgs = job.trainArgs ?? request.engine.trainArgs(request.modelConfig, {
    device: job.device ?? 'cpu',
    resources: request.resources,
    resolvedConfig: request.resolvedConfig,
  });
  const classes = (job.datasetInfo as { classes?: unknown } | null)?.classes;
  const format = (job.model as { format?: unknown }).format;

  const id = crypto.randomUUID();
  const fileName = path.basename(best);
  const file = path.join(modelDir(workdir, id), fileName);
  await copyAtomic(best, file);
  try {
    const [sha256, stat] = await Promise.all([sha256File(file), fs.promises.stat(file)]);
    const row = await insertModel(db, {
      id,
      name: job.name,
      framework: job.engine,
      task: job.task,
      format: typeof format === 'string' ? format : request.engine.files.modelFormat,
      fileName,
      classes: Array.isArray(classes) ? classes.map(String) : [],
      imgsz: request.engine.imageSize(request.modelConfig, trainArgs),
      metrics: finalMetrics(job),
      sizeBytes: stat.size,
      sha256,
      sourceJobId: job.id,
      trainArgs,
      baseModel: request.modelConfig.base_model ?? null,
    });
    if (row) return row;
    // Another registration of the same job won the unique key.
    await fs.promises.rm(modelDir(workdir, id), { recursive: true, force: true });
    return (await modelOfJob(db, job.id)) ?? null;
  } catch (err) {
    await fs.promises.rm(modelDir(workdir, id), { recursive: true, force: true });
    throw err;
  }
}
