/**
 * Runs one claimed job to its end, whatever its engine: download and check the dataset in one
 * of the engine's formats, resolve the base model, build the worker's arguments (stored with
 * the job), train in the engine's Python worker, and record every step through the job store
 * (each change one transaction with its callback, announced once committed). A completed job's
 * model goes to the registry.
 *
 * Watchdogs: a worker silent for WORKER_STALL_SECONDS is stopped (WORKER_STALLED), and a job
 * running past JOB_MAX_HOURS since it started is stopped for good (JOB_TIMEOUT). A transient
 * failure is not the job's end: it is queued again, to resume from its checkpoint after a
 * backoff (jobs/retry-policy.ts), until JOB_MAX_ATTEMPTS failures.
 *
 * Progress: downloading 0→5, preparing 5→10, training 10→95 (by epoch and batch), validating
 * 95→99, completed 100.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Dispatcher } from 'undici';
import type { Config } from '../core/config.js';
import { JobError, toJobError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Phase } from '../db/schema.js';
import { prepareDataset, type DatasetSource } from '../datasets/index.js';
import type { Engines } from '../engines/index.js';
import type { JobChange, JobChangeEvent } from '../jobs/events.js';
import type { JobFiles } from '../jobs/files.js';
import type { JobFileSync } from '../jobs/file-sync.js';
import { better, jobMetrics, pick } from '../jobs/metrics.js';
import { jobRequest } from '../jobs/request.js';
import { retryDecision } from '../jobs/retry-policy.js';
import type { JobPatch, JobStore } from '../jobs/store.js';
import { createOutboundDispatcher } from '../net/outbound.js';
import type { ModelRegistry } from '../registry/service.js';
import type { UploadedDatasets } from '../datasets/uploads.js';
import type { Executor, StopReason } from '../scheduler/scheduler.js';
import type { WorkerEvent, WorkerSpec } from '../worker/protocol.js';
import { resolvePython } from '../worker/python.js';
import { runPythonTool, ToolError } from '../worker/tool.js';
import { runWorker } from '../worker/training.js';
import { readDisk } from '../monitor/system.js';
import { resolveBaseModel } from './base-model.js';
import { DiskBallast, isDiskFull } from './disk-ballast.js';
import { checkDisk, checkMemory, datasetDiskNeed, formatBytes, workerLimits } from './preflight.js';

const TRAIN_START = 10;
const TRAIN_SPAN = 85;
/** How often a running worker's memory and the workdir's free disk are read. */
const GUARD_INTERVAL_MS = 1000;
/** The most of DISK_RESERVE_MB held as a file (disk-ballast.ts): a few rows need far less. */
const BALLAST_MAX_BYTES = 16 * 1024 * 1024;

export interface PipelineContext {
  config: Config;
  logger: Logger;
  store: JobStore;
  files: JobFiles;
  engines: Engines;
  registry: ModelRegistry;
  uploads: UploadedDatasets;
}

type Metrics = Record<string, number | null>;

export function createExecutor(ctx: PipelineContext): Executor {
  const { config, store, files, engines, registry, uploads, logger } = ctx;
  const dispatcher: Dispatcher = createOutboundDispatcher(config.outboundAllow);
  const ballast = new DiskBallast(
    path.join(config.workdir, 'disk-reserve'),
    Math.min(BALLAST_MAX_BYTES, Math.floor(config.resourceGuard.diskReserveBytes / 2)),
  );

  return async function executeJob(claimed, { device, signal }) {
    const log = logger.child({ job_id: claimed.id, device });
    const local = new AbortController();
    /** Aborted when the job has run past JOB_MAX_HOURS. */
    const timeLimit = new AbortController();
    const stop = AbortSignal.any([signal, local.signal, timeLimit.signal]);
    let phase: Phase = 'downloading';
    let epoch = 0;
    let attemptLog = claimed.attemptLog;

    /** Undefined when we no longer hold the job: the worker is then stopped. */
    const record = async (patch: JobPatch, change: JobChange, epochRow?: JobChangeEvent['epoch']) => {
      const row = await store.record(claimed.id, patch, change, epochRow);
      if (!row) local.abort('lease_lost' satisfies StopReason);
      return row;
    };
    /** Bytes of the job's folder, once its worker is done writing there. */
    const diskBytes = () => files.diskUsage(claimed.id);
    const fail = async (err: JobError) => {
      const decision = retryDecision(err, attemptLog, config.retries);
      if (decision.retry) {
        log.warn(
          { code: err.code, err_message: err.message, failures: decision.failures, retry_in_ms: decision.delayMs },
          'attempt failed; the job is retried from its last checkpoint',
        );
        await store.retryLater(claimed.id, { code: err.code, message: err.message }, decision.delayMs);
        return;
      }
      log.warn({ code: err.code, err_message: err.message }, 'job failed');
      const finish = () =>
        store.finish(claimed.id, 'failed', {
          error: { code: err.code, message: err.message, details: err.details ?? null, phase: errorPhase(err, phase), epoch: epoch || null },
          diskBytes: diskBytes(),
        });
      try {
        await finish();
      } catch (writeErr) {
        if (!isDiskFull(writeErr) || !(await ballast.release())) throw writeErr;
        log.warn('the disk is full: released workdir/disk-reserve so that the failure can be recorded');
        await finish();
      }
    };
    /** The run was stopped: cancelled (already recorded), shutdown, lease lost, or past its time limit. */
    const stopped = async () => {
      if (timeLimit.signal.aborted && !signal.aborted && !local.signal.aborted) {
        const hours = config.retries.jobMaxMs / 3_600_000;
        const message = `the job ran longer than JOB_MAX_HOURS (${hours} h) and was stopped`;
        return fail(new JobError('JOB_TIMEOUT', message, { max_hours: hours }));
      }
      const reason = stop.reason as StopReason;
      if (reason === 'cancelled') {
        await store.setDiskUsage(claimed.id, diskBytes()).catch((err) => log.warn({ err }, 'disk usage not recorded'));
      }
      if (reason === 'shutdown') {
        await store.requeue(claimed.id);
        log.info('job re-queued for shutdown; it resumes from its last checkpoint');
      } else {
        log.info({ reason }, 'job stopped');
      }
    };

    /**
     * A failure on a disk that is (nearly) full is reported as such: a library that hit ENOSPC
     * often says only that a write failed.
     */
    const diskFullOr = async (err: JobError): Promise<JobError> => {
      if (err.code === 'INSUFFICIENT_DISK' || err.code === 'INSUFFICIENT_MEMORY' || err.code === 'CANCELLED') return err;
      const disk = await readDisk(config.workdir);
      if (!disk || disk.freeBytes >= config.resourceGuard.diskReserveBytes) return err;
      return new JobError(
        'INSUFFICIENT_DISK',
        `the disk is full (${formatBytes(disk.freeBytes)} free in ${config.workdir}): ${err.message}`,
        { step: phase, free_bytes: disk.freeBytes, cause_code: err.code, cause_details: err.details ?? null },
      );
    };

    const running = await store.start(claimed.id);
    if (!running) return;
    attemptLog = running.attemptLog;
    const dir = files.dir(running.id);
    fs.mkdirSync(dir, { recursive: true });
    /** Copies checkpoints, state files and the log to remote storage as they change (none in local mode). */
    let sync: JobFileSync | null = null;
    const deadline = (running.startedAt ?? new Date()).getTime() + config.retries.jobMaxMs;
    const limitTimer = armDeadline(deadline, () => timeLimit.abort('timeout'));

    try {
      if (stop.aborted) return stopped();
      // A job another node ran (it died, or stopped) resumes from what it left in storage.
      const restored = await storageStep('restore', () => files.restore(running));
      if (restored.files) log.info({ files: restored.files, log_bytes: restored.logBytes, storage: files.storage.location }, 'job files restored from storage');
      sync = files.sync(running, log, restored.logBytes)?.start() ?? null;
      const request = jobRequest(running, engines);
      const { engine, modelConfig } = request;
      const spec = jobMetrics(engines, running);
      const python = resolvePython(engine.python.requirements, config.enginePython[engine.name] ?? config.python);
      const cacheDir = path.join(config.workdir, 'engines', engine.name);
      const limits = config.resourceGuard;
      const maxGb = request.resources.max_memory_gb;
      const maxMemoryBytes = maxGb === undefined ? null : Math.round(maxGb * 1024 ** 3);

      await ballast.ensure(limits.diskReserveBytes).catch((err) => log.warn({ err }, 'could not write workdir/disk-reserve'));
      // Pre-flight: memory and the outputs' disk now; the dataset's disk at each of its steps.
      await checkMemory({ device, maxMemoryBytes }, limits);
      await checkDisk(config.workdir, { parts: [] }, limits, 'to start the job');

      // Downloading 0→5
      if (!(await record({ phase, progress: 0 }, 'phase'))) return stopped();
      let lastProgressWrite = 0;
      let source: DatasetSource;
      if ('id' in request.dataset) {
        const uploaded = await uploads.get(request.dataset.id);
        if (!uploaded) throw new JobError('DATASET_INVALID', `no uploaded dataset ${request.dataset.id} (it was deleted); upload it again`, { id: request.dataset.id });
        source = { stored: uploaded.sha256, format: request.dataset.format };
      } else {
        source = request.dataset;
      }
      const dataset = await prepareDataset(source, dir, {
        dispatcher,
        limits: config.dataset,
        store: files.datasets,
        onArchive: (sha256) => store.setDatasetArchive(running.id, sha256),
        formats: engine.datasetFormats(modelConfig.task),
        task: modelConfig.task,
        signal: stop,
        checkSpace: (stage, bytes) =>
          checkDisk(config.workdir, datasetDiskNeed(stage, bytes), limits, stage === 'download' ? 'for the dataset download' : 'to extract the dataset'),
        onPhaseProgress: (fraction: number) => {
          const now = Date.now();
          if (now - lastProgressWrite < 1000) return;
          lastProgressWrite = now;
          void record({ progress: 5 * Math.min(1, fraction) }, 'progress').catch((err) => log.error({ err }, 'progress write failed'));
        },
      });
      if (stop.aborted) return stopped();

      // Preparing 5→10
      phase = 'preparing';
      if (!(await record({ phase, progress: 5, datasetInfo: { ...dataset.info, format: dataset.format } as unknown as Record<string, unknown> }, 'phase'))) {
        return stopped();
      }
      const checkWeights = engine.python.checkWeights;
      const base = await resolveBaseModel(engine.baseModel(modelConfig), {
        workdir: config.workdir,
        task: modelConfig.task,
        ...(checkWeights
          ? {
              check: async (file: string) => {
                try {
                  return await runPythonTool<{ task: string }>({
                    python,
                    entry: checkWeights,
                    spec: { model: file, cache_dir: cacheDir },
                    workDir: cacheDir,
                    logFile: files.logFile(running.id),
                    timeoutMs: 5 * 60_000,
                    signal: stop,
                  });
                } catch (err) {
                  throw err instanceof ToolError ? new JobError('MODEL_DOWNLOAD_FAILED', err.message, err.details) : err;
                }
              },
            }
          : {}),
        dispatcher,
        maxBytes: config.dataset.maxDownloadBytes,
        timeoutMs: config.dataset.downloadTimeoutMs,
        retries: config.dataset.downloadRetries,
        mirror: config.baseModelMirror,
        modelDirs: config.hfModelsDir,
        hub: config.hub,
        checkSpace: (bytes) => checkDisk(config.workdir, { parts: [{ label: 'base model', bytes }] }, limits, 'for the base model download'),
        signal: stop,
        registered: (id) => registry.weightsFor(id, engine.name, modelConfig.task),
      });
      if (stop.aborted) return stopped();

      // Pre-flight again: the dataset and base model took their share, and time has passed.
      await checkMemory({ device, maxMemoryBytes }, limits);
      await checkDisk(config.workdir, { parts: [] }, limits, 'to train');

      const trainArgs = engine.trainArgs(modelConfig, {
        device,
        resources: request.resources,
        resolvedConfig: request.resolvedConfig,
      });
      const baseModel = { name: modelConfig.base_model, source: base.source, sha256: base.sha256 };
      if (!(await record({ trainArgs, baseModel }, 'progress'))) return stopped();

      const workerSpec: WorkerSpec = {
        job_id: running.id,
        engine: engine.name,
        task: modelConfig.task,
        model: base.model,
        data: dataset.data,
        data_format: dataset.format,
        run_dir: dir,
        resume: running.attempts > 1,
        ...(running.attempts > 1 ? { recorded_epochs: await store.recordedEpochs(running.id) } : {}),
        cache_dir: cacheDir,
        device,
        args: trainArgs,
        progress_every_pct: 5,
      };

      const trainingStarted = Date.now();
      let startFraction: number | null = null;
      const progressAt = (fraction: number) => {
        startFraction ??= fraction;
        const done = fraction - startFraction;
        const elapsed = (Date.now() - trainingStarted) / 1000;
        const eta = done > 0 ? Math.round((elapsed / done) * (1 - fraction)) : null;
        return { progress: TRAIN_START + TRAIN_SPAN * fraction, etaSeconds: eta };
      };
      const bestKeys = [...new Set([...spec.callback.best, ...spec.headline, spec.best.key])];
      let best: Metrics | null = running.metricsBest ?? null;
      let lastEpochMetrics: Metrics = running.metricsCurrent ?? {};
      let lastBatchWrite = 0;

      const isBest = (e: Extract<WorkerEvent, { type: 'epoch' }>) => {
        if (e.best_epoch !== null) return e.best_epoch === e.epoch;
        const value = e.metrics[spec.best.key];
        const held = best?.[spec.best.key];
        if (best === null || typeof held !== 'number') return true;
        return typeof value === 'number' && better(spec, spec.best.key, value, held);
      };

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
            lastEpochMetrics = e.metrics;
            if (isBest(e)) best = { ...pick(e.metrics, bestKeys), epoch: e.epoch };
            await record(
              {
                ...progressAt(e.epoch / e.epochs),
                currentEpoch: e.epoch,
                totalEpochs: e.epochs,
                metricsCurrent: { ...e.metrics, epoch: e.epoch },
                metricsBest: best,
              },
              'epoch',
              { epoch: e.epoch, metrics: e.metrics, epochSeconds: e.epoch_seconds },
            );
            // last.pt (and best.pt when it improved) go up in the background: the epoch never waits.
            sync?.scan();
            return;
          }
          case 'checkpoint':
          case 'warning':
          case 'batch_size_reduced':
            log.info({ event: e }, `worker ${e.type}`);
            return;
          case 'artifacts':
            await record({ artifacts: e.items }, 'progress');
            sync?.add(e.items.map((a) => a.path).filter((p): p is string => typeof p === 'string'));
            return;
          default:
            return; // done / error / stopped are the outcome, handled below
        }
      };

      const outcome = await runWorker(workerSpec, {
        python,
        entry: engine.python.train,
        specPath: files.specFile(running.id),
        logFile: files.logFile(running.id),
        signal: stop,
        graceMs: config.cancelGraceSeconds * 1000,
        stallMs: config.retries.workerStallMs,
        onEvent,
        guard: { intervalMs: GUARD_INTERVAL_MS, check: workerLimits({ workdir: config.workdir, maxMemoryBytes, limits }) },
      });

      if (outcome.kind === 'stopped' || stop.aborted) {
        // A stop for shutdown hands the job to whichever node claims it next: it needs last.pt.
        await flushSoon(sync, log);
        return stopped();
      }
      if (outcome.kind === 'done') {
        const e = outcome.event;
        // Completion means the files are in storage: a failed upload retries the job instead.
        await storageStep('upload', async () => sync?.flush([e.best, e.last]));
        const size = fs.existsSync(e.best) ? fs.statSync(e.best).size : null;
        phase = 'finalizing';
        // The final validation carries no training losses: the last epoch's fill them in.
        const { epoch: _epoch, ...finalMetrics } = lastEpochMetrics;
        for (const [key, value] of Object.entries(e.final_metrics)) if (value !== null) finalMetrics[key] = value;
        const completed = await store.finish(running.id, 'completed', {
          currentEpoch: e.epochs_completed,
          model: { best: e.best, last: e.last, size_bytes: size, format: engine.files.modelFormat, best_epoch: e.best_epoch },
          diskBytes: diskBytes(),
          metricsCurrent: { ...finalMetrics, epoch: e.epochs_completed },
          ...(best ? { metricsBest: { ...best, epoch: e.best_epoch ?? best['epoch'] ?? null } } : {}),
        });
        if (completed) await registry.register(completed);
        log.info({ epochs: e.epochs_completed }, 'job completed');
        return;
      }
      await flushSoon(sync, log);
      await fail(await diskFullOr(outcome.error));
    } catch (err) {
      if (stop.aborted) return stopped();
      await fail(await diskFullOr(toJobError(err)));
    } finally {
      limitTimer.clear();
      sync?.close();
      if (sync?.stats.uploads) log.info({ uploads: sync.stats.uploads, upload_bytes: sync.stats.bytes, upload_ms: Math.round(sync.stats.ms), upload_cpu_ms: Math.round(sync.stats.cpuMs), flush_cpu_ms: Math.round(sync.stats.flushCpuMs), upload_failures: sync.stats.failures, uploads_by_file: sync.stats.byFile }, 'job files uploaded to storage');
    }
  };
}

/** What remote storage could not do is a transient failure: the job is retried (from its checkpoint). */
async function storageStep<T>(step: 'restore' | 'upload', fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof JobError) throw err;
    const message = err instanceof Error ? err.message : String(err);
    throw new JobError('STORAGE_UNAVAILABLE', `could not ${step} the job's files ${step === 'restore' ? 'from' : 'to'} storage: ${message}`, { step }, { cause: err });
  }
}

/** Uploads what changed before a job leaves this node unfinished; bounded, and never fails the job. */
async function flushSoon(sync: JobFileSync | null, log: Logger, timeoutMs = 60_000): Promise<void> {
  if (!sync) return;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs);
    timer.unref();
  });
  await Promise.race([sync.flush().catch((err) => log.warn({ err }, 'files not all uploaded before the job left this node')), timeout]);
  clearTimeout(timer);
}

/**
 * The phase an error is reported in: a dataset that fails its checks (a refused archive entry,
 * the layout, the labels, the format) failed in the checks, whatever phase the job was showing.
 */
export function errorPhase(err: JobError, phase: Phase): string {
  return err.code === 'DATASET_INVALID' ? 'checking' : phase;
}

/** Calls fn at `at` (epoch ms), at once when it has passed; long waits in steps a timer can hold. */
function armDeadline(at: number, fn: () => void): { clear(): void } {
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    const left = at - Date.now();
    if (left <= 0) return fn();
    timer = setTimeout(arm, Math.min(left, 2 ** 31 - 1));
    timer.unref();
  };
  arm();
  return { clear: () => clearTimeout(timer) };
}
