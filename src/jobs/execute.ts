/**
 * Runs one claimed job to its end: download and check the dataset, resolve the base model,
 * train in the Python worker, and record every step. Each recorded change is one transaction
 * that also runs the transition hook (the callback outbox), and is announced on the event bus
 * after it commits.
 *
 * Progress: downloading 0→5, preparing 5→10, training 10→95 (by epoch and batch),
 * validating 95→99, completed 100 (SPEC §2).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Dispatcher } from 'undici';
import type { JobRow, Phase } from '../db/schema.js';
import { JobError, toJobError } from '../errors.js';
import { prepareDataset } from '../datasets/index.js';
import { registerModelFromJob } from '../registry/register.js';
import { createOutboundDispatcher } from '../net/outbound.js';
import type { Executor, StopReason } from '../scheduler/scheduler.js';
import { ultralyticsDevice } from '../scheduler/devices.js';
import type { ExecutorContext } from '../server.js';
import { toUltralyticsArgs } from '../training/args.js';
import { resolveBaseModel } from '../training/base-model.js';
import type { WorkerEvent, WorkerSpec } from '../training/protocol.js';
import { resolvePython } from '../training/python.js';
import { runWorker } from '../training/runner.js';
import type { JobChange, JobChangeEvent } from './events.js';
import { jobDir, jobLogFile } from './paths.js';
import type { TrainRequest } from './request.js';
import { jobRecorder } from './recorder.js';
import { markRunning, requeueJob, type JobPatch } from './transitions.js';


const TRAIN_START = 10;
const TRAIN_SPAN = 85;

export function createExecutor(ctx: ExecutorContext): Executor {
  const { config, database, events, hook, nodeId, logger } = ctx;
  const dispatcher: Dispatcher = createOutboundDispatcher(config.outboundAllow);

  return async function executeJob(claimed, { device, signal }) {
    const log = logger.child({ job_id: claimed.id, device });
    const local = new AbortController();
    const stop = AbortSignal.any([signal, local.signal]);
    let phase: Phase = 'downloading';
    let epoch = 0;

    const recorder = jobRecorder({ database, hook, events, nodeId }, claimed.id);
    /** Undefined when we no longer hold the job: the worker is then stopped. */
    const record = async (patch: JobPatch, change: JobChange, epochRow?: JobChangeEvent['epoch']) => {
      const row = await recorder.change(patch, change, epochRow);
      if (!row) local.abort('lease_lost' satisfies StopReason);
      return row;
    };
    const finish = (state: 'completed' | 'failed', patch: JobPatch) => recorder.finish(state, patch);
    const fail = async (err: JobError) => {
      log.warn({ code: err.code, err_message: err.message }, 'job failed');
      await finish('failed', {
        error: { code: err.code, message: err.message, details: err.details ?? null, phase, epoch: epoch || null },
      });
    };
    /** The run was stopped from outside: cancelled (already recorded), shutdown, lease lost. */
    const stopped = async () => {
      const reason = stop.reason as StopReason;
      if (reason === 'shutdown') {
        const row = await requeueJob(database.db, claimed.id, nodeId);
        if (row) events.emit({ job: row, change: 'requeued' });
        log.info('job re-queued for shutdown; it resumes from last.pt');
      } else {
        log.info({ reason }, 'job stopped');
      }
    };

    const running = await markRunning(database.db, claimed.id, nodeId);
    if (!running) return;
    events.emit({ job: running, change: 'started' });
    const request = running.request as unknown as TrainRequest;
    const dir = jobDir(config.workdir, running.id);
    fs.mkdirSync(dir, { recursive: true });

    try {
      // Downloading 0→5
      if (!(await record({ phase, progress: 0 }, 'phase'))) return stopped();
      let lastProgressWrite = 0;
      const dataset = await prepareDataset(request.dataset, dir, {
        dispatcher,
        limits: config.dataset,
        task: request.model_config.task,
        signal: stop,
        onPhaseProgress: (fraction: number) => {
          const now = Date.now();
          if (now - lastProgressWrite < 1000) return;
          lastProgressWrite = now;
          void record({ progress: 5 * Math.min(1, fraction) }, 'progress').catch((err) =>
            log.error({ err }, 'progress write failed'),
          );
        },
      });
      if (stop.aborted) return stopped();

      // Preparing 5→10
      phase = 'preparing';
      if (!(await record({ phase, progress: 5, datasetInfo: dataset.info as unknown as Record<string, unknown> }, 'phase')))
        return stopped();
      const model = await resolveBaseModel(request.model_config.base_model, {
        workdir: config.workdir,
        dispatcher,
        maxBytes: config.dataset.maxDownloadBytes,
        timeoutMs: config.dataset.downloadTimeoutMs,
        retries: config.dataset.downloadRetries,
        signal: stop,
      });
      if (stop.aborted) return stopped();

      const spec: WorkerSpec = {
        job_id: running.id,
        task: request.model_config.task,
        model,
        data: dataset.data,
        project: path.join(config.workdir, 'jobs'),
        name: running.id,
        resume: running.attempts > 1,
        config_dir: path.join(config.workdir, 'ultralytics'),
        args: toUltralyticsArgs(request.model_config, request.resources, ultralyticsDevice(device)),
        progress_every_pct: 5,
      };
      const specPath = path.join(dir, 'worker-spec.json');
      fs.writeFileSync(specPath, JSON.stringify(spec, null, 2));

      const trainingStarted = Date.now();
      let startFraction: number | null = null;
      const progressAt = (fraction: number) => {
        startFraction ??= fraction;
        const done = fraction - startFraction;
        const elapsed = (Date.now() - trainingStarted) / 1000;
        const eta = done > 0 ? Math.round((elapsed / done) * (1 - fraction)) : null;
        return { progress: TRAIN_START + TRAIN_SPAN * fraction, etaSeconds: eta };
      };
      let best: Record<string, number | null> | null = running.metricsBest ?? null;
      let lastBatchWrite = 0;

      const onEvent = async (e: WorkerEvent) => {
        switch (e.type) {
          case 'started':
            log.info({ worker_pid: e.pid, resumed_from_epoch: e.resumed_from_epoch, versions: e.versions }, 'worker started');
            return;
          case 'phase':
            phase = e.phase;
            await record(
              { phase, ...(e.phase === 'training' ? { progress: TRAIN_START } : {}), ...(e.phase === 'validating' ? { progress: 95 } : {}) },
              'phase',
            );
            return;
          case 'batch': {
            // One write a second at most: each is a transaction (~5 ms of server CPU) competing
            // with the trainer for cores (bench/overhead.ts); the epoch event closes each epoch.
            const now = Date.now();
            if (now - lastBatchWrite < 1000) return;
            lastBatchWrite = now;
            await record({ ...progressAt((e.epoch - 1 + e.batch / e.batches) / e.epochs), currentEpoch: e.epoch - 1 }, 'progress');
            return;
          }
          case 'epoch': {
            epoch = e.epoch;
            const metrics = { ...e.metrics, epoch: e.epoch };
            if (e.best_epoch === e.epoch || best === null) {
              best = { mAP50: e.metrics['mAP50'] ?? null, 'mAP50-95': e.metrics['mAP50-95'] ?? null, epoch: e.epoch };
            }
            await record(
              { ...progressAt(e.epoch / e.epochs), currentEpoch: e.epoch, totalEpochs: e.epochs, metricsCurrent: metrics, metricsBest: best },
              'epoch',
              { epoch: e.epoch, metrics: e.metrics, epochSeconds: e.epoch_seconds },
            );
            return;
          }
          case 'checkpoint':
          case 'warning':
          case 'batch_size_reduced':
            log.info({ event: e }, `worker ${e.type}`);
            return;
          case 'artifacts':
            await record({ artifacts: e.items }, 'progress');
            return;
          default:
            return; // done / error / stopped are the outcome, handled below
        }
      };

      const outcome = await runWorker(spec, {
        python: resolvePython(config.python),
        specPath,
        logFile: jobLogFile(config.workdir, running.id),
        signal: stop,
        graceMs: config.cancelGraceSeconds * 1000,
        onEvent,
      });

      if (outcome.kind === 'stopped' || stop.aborted) return stopped();
      if (outcome.kind === 'done') {
        const e = outcome.event;
        const size = fs.existsSync(e.best) ? fs.statSync(e.best).size : null;
        phase = 'finalizing';
        const completed = await finish('completed', {
          currentEpoch: e.epochs_completed,
          model: { best: e.best, last: e.last, size_bytes: size, format: 'pytorch', best_epoch: e.best_epoch },
          metricsCurrent: { ...e.final_metrics, epoch: e.epochs_completed },
          ...(best ? { metricsBest: { ...(best as Record<string, number | null>), epoch: e.best_epoch ?? best['epoch'] ?? null } } : {}),
        });
        // Model registry (issue 6): best.pt is registered once the completion has committed.
        if (completed) {
          await registerModelFromJob(database.db, completed, config.workdir).catch((err) =>
            log.error({ err }, 'model registration failed'),
          );
        }
        log.info({ epochs: e.epochs_completed }, 'job completed');
        return;
      }
      await fail(outcome.error);
    } catch (err) {
      if (stop.aborted) return stopped();
      await fail(toJobError(err));
    }
  };
}
