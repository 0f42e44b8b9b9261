/**
 * Registering a completed job's best model (seed 004 "Model Export and Registration"):
 * best.pt is copied to workdir/models/<id>/best.pt (a stable place that outlives the job's
 * files), hashed, and recorded with what a user picks a model by: name, task, classes, image
 * size, final metrics, size, sha256, source job and base model.
 *
 * Called right after a job's completion commits (jobs/execute.ts) and, at start, for any
 * completed job left without a model (a crash between the two). Idempotent: one model per
 * source job (unique key), a lost race removes its copy.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import type { Db } from '../db/client.js';
import type { JobRow, ModelRow } from '../db/schema.js';
import type { Logger } from '../logger.js';
import { copyAtomic, modelDir, modelWeightsFile, MODEL_FILE, sha256File } from './files.js';
import { completedJobsWithoutModel, insertModel, modelOfJob } from './queries.js';

interface RequestView {
  model_config?: {
    name?: string;
    task?: string;
    base_model?: string;
    image_size?: number;
    resolved_config?: Record<string, unknown>;
  };
}

function finalMetrics(job: JobRow): Record<string, number | null> | null {
  const current = job.metricsCurrent;
  if (!current) return null;
  const { epoch: _epoch, ...metrics } = current;
  return metrics;
}

export async function registerModelFromJob(db: Db, job: JobRow, workdir: string): Promise<ModelRow | null> {
  if (job.state !== 'completed') return null;
  const existing = await modelOfJob(db, job.id);
  if (existing) return existing;
  const best = (job.model as { best?: unknown } | null)?.best;
  if (typeof best !== 'string' || !fs.existsSync(best)) return null;

  const request = job.request as RequestView;
  const mc = request.model_config ?? {};
  const imgsz = typeof mc.resolved_config?.['imgsz'] === 'number' ? (mc.resolved_config['imgsz'] as number) : (mc.image_size ?? 640);
  const classes = (job.datasetInfo as { classes?: unknown } | null)?.classes;

  const id = crypto.randomUUID();
  const file = modelWeightsFile(workdir, id);
  await copyAtomic(best, file);
  try {
    const [sha256, stat] = await Promise.all([sha256File(file), fs.promises.stat(file)]);
    const row = await insertModel(db, {
      id,
      name: job.name,
      framework: 'ultralytics',
      task: mc.task === 'segment' ? 'segment' : 'detect',
      format: 'pytorch',
      fileName: MODEL_FILE,
      classes: Array.isArray(classes) ? classes.map(String) : [],
      imgsz,
      metrics: finalMetrics(job),
      sizeBytes: stat.size,
      sha256,
      sourceJobId: job.id,
      baseModel: mc.base_model ?? null,
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

/** At start: registers the models of completed jobs that have none (their best.pt still on disk). */
export async function registerMissingModels(db: Db, workdir: string, logger: Logger): Promise<number> {
  let registered = 0;
  for (const job of await completedJobsWithoutModel(db)) {
    try {
      if (await registerModelFromJob(db, job, workdir)) registered++;
    } catch (err) {
      logger.warn({ err, job_id: job.id }, 'could not register the model of a completed job');
    }
  }
  if (registered) logger.info({ registered }, 'registered models of completed jobs');
  return registered;
}
