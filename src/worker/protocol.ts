/**
 * The contract between the service and a Python worker (worker/main.py, which loads an engine's
 * module from worker/engines/<engine>/ and runs it).
 *
 * The service writes a WorkerSpec as JSON to a file and starts
 * `python worker/main.py --entry <engine module> --spec <file>` with stdin kept open as a
 * lifeline: when stdin reaches EOF (the server died), the worker stops as on SIGTERM. The worker
 * answers with one JSON object per line on stdout (WorkerEvent); everything else it prints goes
 * to the job's log file. Exactly one terminal event (`done`, `error` or `stopped`) ends a run; a
 * process that exits without one crashed (WORKER_CRASHED).
 *
 * The envelope is the same for every engine; `args` is the engine's own (each engine builds it
 * from its part of the request and stores it with the job).
 */
import { z } from 'zod';
import { JOB_ERROR_CODES } from '../core/errors.js';

export const WorkerSpecSchema = z.object({
  job_id: z.string(),
  engine: z.string(),
  task: z.string(),
  /** Absolute path of base weights, an engine-specific name of an architecture built from scratch, or null. */
  model: z.string().nullable(),
  /** What the dataset step prepared: a normalized data.yaml, or a dataset folder. */
  data: z.string(),
  /** How `data` is laid out: yolo, coco, classify… (the engine's dataset formats). */
  data_format: z.string(),
  /** Absolute folder for every output of the run; it outlives restarts, so a resume reads it. */
  run_dir: z.string(),
  /** A later attempt: continue from the run dir's last checkpoint when it has one. */
  resume: z.boolean(),
  /**
   * The epochs the service has recorded. A crash between a checkpoint's save and the record of
   * its epoch leaves the checkpoint ahead of the record: a resumed worker sends the epochs it
   * skips and the service lacks again, from the run's own results.
   */
  recorded_epochs: z.array(z.number().int().positive()).optional(),
  /** The engine's settings and caches: under the workdir, never the home folder. */
  cache_dir: z.string(),
  /** cpu, cuda:0, … (the scheduler's slot). */
  device: z.string(),
  /** The engine's training arguments. */
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
    /** The engine's metric names (its declaration lists them): losses, precision, mAP50… */
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
  /** Answer to SIGTERM / lifeline loss: stopped at a batch boundary, the last checkpoint resumable. */
  z.object({ type: z.literal('stopped'), epochs_completed: z.number(), last: z.string().nullable() }),
]);
export type WorkerEvent = z.infer<typeof WorkerEventSchema>;
