/**
 * The contract between the service and the Python worker (worker/train.py).
 *
 * The service writes a WorkerSpec as JSON to a file and starts
 * `python worker/train.py --spec <file>` with stdin kept open as a lifeline: when stdin reaches
 * EOF (the server died), the worker stops as on SIGTERM. The worker answers with one JSON
 * object per line on stdout (WorkerEvent); everything else it prints goes to the job's log file.
 * Exactly one terminal event (`done` or `error`) ends a run; a process that exits without one
 * crashed (WORKER_CRASHED).
 */
import { z } from 'zod';
import { JOB_ERROR_CODES } from '../errors.js';

export const WorkerSpecSchema = z.object({
  job_id: z.string(),
  task: z.enum(['detect', 'segment']),
  /** Absolute path of a .pt checkpoint or a model .yaml (from scratch). */
  model: z.string(),
  /** Absolute path of the normalized data.yaml (no `download:` key, absolute paths). */
  data: z.string(),
  /** Absolute run directory: results land in `<project>/<name>/`. */
  project: z.string(),
  name: z.string(),
  /** Resume from `<project>/<name>/weights/last.pt` when it is a resumable checkpoint. */
  resume: z.boolean(),
  /** YOLO_CONFIG_DIR for the child (settings, fonts): under workdir/. */
  config_dir: z.string(),
  /** Ultralytics train() arguments, already mapped from the request. */
  args: z.record(z.string(), z.unknown()),
  /** Emit a batch event each time this much of an epoch has passed (percent). */
  progress_every_pct: z.number().positive().default(5),
});
export type WorkerSpec = z.infer<typeof WorkerSpecSchema>;

const Metrics = z.record(z.string(), z.number().nullable());

export const WorkerEventSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('started'),
    pid: z.number(),
    device: z.string(),
    versions: z.record(z.string(), z.string()),
    resumed_from_epoch: z.number().nullable(),
  }),
  z.object({
    type: z.literal('phase'),
    phase: z.enum(['preparing', 'training', 'validating', 'finalizing']),
  }),
  z.object({
    type: z.literal('batch'),
    epoch: z.number(), // 1-based
    epochs: z.number(),
    batch: z.number(), // 1-based, batches done in this epoch
    batches: z.number(),
  }),
  z.object({
    type: z.literal('epoch'),
    epoch: z.number(), // 1-based
    epochs: z.number(),
    /** box_loss, cls_loss, dfl_loss (seg_loss), precision, recall, mAP50, mAP50-95, lr, val losses… */
    metrics: Metrics,
    epoch_seconds: z.number(),
    fitness: z.number().nullable(),
    best_fitness: z.number().nullable(),
    best_epoch: z.number().nullable(),
  }),
  z.object({
    type: z.literal('checkpoint'),
    kind: z.enum(['last', 'best', 'epoch']),
    path: z.string(),
    epoch: z.number(),
  }),
  z.object({
    type: z.literal('artifacts'),
    items: z.array(z.object({ name: z.string(), path: z.string(), size: z.number() })),
  }),
  z.object({ type: z.literal('warning'), message: z.string() }),
  z.object({ type: z.literal('batch_size_reduced'), batch: z.number(), reason: z.string() }),
  z.object({
    type: z.literal('done'),
    best: z.string(),
    last: z.string(),
    epochs_completed: z.number(),
    final_metrics: Metrics,
    best_epoch: z.number().nullable(),
  }),
  z.object({
    type: z.literal('error'),
    code: z.enum(JOB_ERROR_CODES),
    message: z.string(),
    details: z.unknown().optional(),
    epoch: z.number().nullable().optional(),
  }),
  /** Answer to SIGTERM / lifeline loss: stopped at a batch boundary, last.pt resumable. */
  z.object({ type: z.literal('stopped'), epochs_completed: z.number(), last: z.string().nullable() }),
]);
export type WorkerEvent = z.infer<typeof WorkerEventSchema>;
