/**
 * Builds a whole trainhook server from a config: database (migrated), scheduler, job service,
 * HTTP app, and starts listening. main.ts calls this; tests call it too, in-process or as a
 * child process, so what is tested is what runs.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { serve, type ServerType } from '@hono/node-server';
import { count, eq } from 'drizzle-orm';
import type { DestinationStream } from 'pino';
import { createApp } from './app.js';
import { createCallbacks } from './callbacks/index.js';
import type { AppDeps } from './http/deps.js';
import type { Config } from './core/config.js';
import { BUILTIN_ENGINES, Engines } from './engines/index.js';
import type { AnyEngine } from './engines/types.js';
import { JobFiles } from './jobs/files.js';
import { createStorage } from './storage/index.js';
import { createJobStore, type JobStore } from './jobs/store.js';
import type { PipelineContext } from './pipeline/execute.js';
import { openDatabase } from './db/client.js';
import { migrate } from './db/migrate.js';
import { jobs } from './db/schema.js';
import { JobEvents } from './jobs/events.js';
import { JobService, type TransitionHook } from './jobs/service.js';
import { createLoggers, type Logger } from './core/logger.js';
import { createMetrics } from './monitor/metrics.js';
import { jobResourceSink, jobTotals, jobsByStatus, runningJobProgress } from './monitor/jobs.js';
import { JobActivity } from './monitor/activity.js';
import { checkAlertConfig, createAlerts } from './alerts/index.js';
import { SystemMonitor } from './monitor/monitor.js';
import { resolveDevices } from './scheduler/devices.js';
import { Scheduler, type Executor } from './scheduler/scheduler.js';
import { signDownloadLink } from './security/links.js';
import { loadServerSecrets } from './security/secrets.js';
import { StreamHub, snapshotFromDatabase } from './stream/hub.js';
import { ModelRegistry } from './registry/service.js';
import { lockWorkdir } from './core/workdir-lock.js';
import { UploadedDatasets } from './datasets/uploads.js';
import { PreparedDatasets, type CountTokens } from './datasets/prepared.js';
import { PrepareError } from './datasets/prepare/errors.js';
import { resolvePython } from './worker/python.js';
import { runPythonTool, ToolError } from './worker/tool.js';
import { Retention, olderThan } from './jobs/retention.js';
import { pruneCallbackAttempts } from './callbacks/sql/prune.js';
import { pruneSeenSignatures } from './security/replay-guard.js';
import { VERSION } from './core/version.js';
import { NodePresence } from './nodes/presence.js';
import { listNodes, pruneNodes } from './nodes/registry.js';

/** Idle keep-alive connections are held this long (see where it is set). */
const KEEP_ALIVE_MS = 65_000;

/** How long the registry keeps a node that left or went silent. */
const NODE_FORGET_DAYS = 7;

export interface ServerHandle {
  url: string;
  port: number;
  logger: Logger;
  deps: AppDeps;
  scheduler: Scheduler;
  /** The transition hook every job change runs in its transaction (the callback outbox). */
  hook: TransitionHook;
  /** Every change of a running job goes through it. */
  store: JobStore;
  close(): Promise<void>;
}

export interface ServerOverrides {
  logDestination?: DestinationStream;
  /** Builds the executor; the default trains for real (pipeline/execute.ts). */
  makeExecutor?: (ctx: PipelineContext) => Executor;
  /** The engines to train with (default: the built-in ones); the first is the default engine. */
  engines?: readonly AnyEngine[];
}

export async function startServer(config: Config, overrides: ServerOverrides = {}): Promise<ServerHandle> {
  checkAlertConfig(config);
  fs.mkdirSync(config.workdir, { recursive: true });
  const { logger, accessLogger } = createLoggers(config.logLevel, overrides.logDestination);
  const unlock = config.databaseUrl ? () => {} : lockWorkdir(config.workdir);
  const secrets = loadServerSecrets(config);
  const database = await openDatabase(config);
  const applied = await migrate(database);
  if (applied.length) logger.info({ migrations: applied }, 'database migrated');

  const devices = config.runJobs ? await resolveDevices(config.devices) : [];
  const nodeId =
    config.nodeId ??
    `${os.hostname()}:${crypto.createHash('sha256').update(config.workdir).digest('hex').slice(0, 8)}`;
  const presence = new NodePresence({
    database,
    logger,
    node: {
      id: nodeId,
      hostname: os.hostname(),
      pid: process.pid,
      version: VERSION,
      runJobs: config.runJobs,
      devices: devices.map((device) => ({ device, slots: 1 })),
      leaseSeconds: config.leaseSeconds,
    },
  });
  const clusterNodes = () => listNodes(database.db);
  const events = new JobEvents(logger);
  // Where this server listens, once it does: the base of links when PUBLIC_URL is unset.
  let listenUrl = `http://${config.host}:${config.port}`;
  const engines = new Engines(overrides.engines ?? BUILTIN_ENGINES);
  const storage = createStorage(config);
  if (storage.remote) logger.info({ storage: storage.location, public: config.storage.kind === 's3' ? config.storage.public : false }, 'job files, models and datasets are kept in remote storage');
  const files = new JobFiles(config.workdir, engines, storage);
  const queueSize = async () => {
    const [row] = await database.db.select({ n: count() }).from(jobs).where(eq(jobs.state, 'queued'));
    return row?.n ?? 0;
  };
  // When each job last changed: stalled-worker alerts and the per-job gauges read it.
  const activity = new JobActivity(events);
  // The scheduler is built below; the gauge reads it lazily at scrape time.
  let activeJobs = () => 0;
  const monitor = new SystemMonitor({
    ...config.monitor,
    workdir: config.workdir,
    logger,
    jobs: jobResourceSink(database, nodeId, () => store, files),
  });
  const metrics = createMetrics({
    activeJobs: () => activeJobs(),
    queueSize,
    jobTotals: () => jobTotals(database),
    jobsByStatus: () => jobsByStatus(database),
    gpus: () => monitor.latest()?.gpus ?? [],
    system: () => monitor.latest()?.system ?? null,
    runningJobs: () => runningJobProgress(database, nodeId, activity),
    node: { id: nodeId, version: VERSION, hostname: os.hostname() },
    nodes: clusterNodes,
  });
  const alerts = createAlerts({ config, database, nodeId, monitor, activity, queueSize, logger });
  // Every finished run is observed here, whoever recorded it (the pipeline, or a test's driver).
  events.on(({ job, change }) => {
    if ((change === 'completed' || change === 'failed') && job.startedAt && job.finishedAt) {
      metrics.trainingDuration.observe({ status: change }, (job.finishedAt.getTime() - job.startedAt.getTime()) / 1000);
    }
  });
  const streams = new StreamHub({
    events,
    engines,
    // Where the download routes look: this disk, else remote storage (a job another node trained).
    modelUrl: async (job) => {
      const name = files.modelName(job);
      return name && (await files.locate(job, name))
        ? signDownloadLink({
            key: secrets.linkSigningKey,
            baseUrl: config.publicUrl ?? listenUrl,
            jobId: job.id,
            name,
            ttlSeconds: config.downloadLinkTtlSeconds,
          }).url
        : null;
    },
    monitor,
    loadSnapshot: snapshotFromDatabase(database),
    logger,
    heartbeatMs: config.stream.heartbeatMs,
    clientBufferBytes: config.stream.clientBufferBytes,
  });
  streams.start();
  alerts.start();
  monitor.start();
  // The callback outbox: every job change writes its callback in the same transaction.
  const callbacks = createCallbacks({
    config,
    db: database.db,
    linkSigningKey: secrets.linkSigningKey,
    logger,
    nodeId,
    registry: metrics.registry,
    events,
    files,
    engines,
  });
  const hook: TransitionHook = callbacks.hook;
  const store = createJobStore({ database, hook, events, nodeId, leaseSeconds: config.leaseSeconds });
  const modelRegistry = new ModelRegistry({ database, config, engines, files, logger });

  // Transfers a crash interrupted leave files in the store's scratch folder.
  await files.datasets.clearTmp();
  const uploads = new UploadedDatasets({ database, store: files.datasets, limits: config.dataset });
  const ctx: PipelineContext = { config, logger, store, files, engines, registry: modelRegistry, uploads };
  // Imported lazily: an API-only node (RUN_JOBS=false) never loads the training path.
  const makeExecutor = config.runJobs
    ? (overrides.makeExecutor ?? (await import('./pipeline/execute.js')).createExecutor)
    : () => async () => {};
  const scheduler = new Scheduler({
    store,
    devices,
    leaseSeconds: config.leaseSeconds,
    executor: makeExecutor(ctx),
    logger,
    heartbeat: () => presence.tick(),
  });
  const gpuAvailable = devices.some((d) => d.startsWith('cuda'));
  const jobService = new JobService({
    database,
    slots: scheduler,
    events,
    hook,
    engines,
    gpuAvailable,
    modelsDir: config.hfModelsDir,
    maxQueueLength: config.maxQueueLength,
    cacheSize: config.jobCacheSize,
    logger,
  });

  activeJobs = () => scheduler.activeCount;
  const retention = new Retention({
    database,
    files,
    engines,
    logger,
    nodeId,
    days: config.retention.days,
    sweepMs: config.retention.sweepMs,
    pruners: [
      olderThan('callback_attempts', config.retention.callbackHistoryDays, (before) => pruneCallbackAttempts(database.db, before)),
      { name: 'seen_signatures', prune: (now) => pruneSeenSignatures(database.db, now) },
      // A node gone for a week is no longer news on the dashboard.
      olderThan('nodes', NODE_FORGET_DAYS, (before) => pruneNodes(database.db, before)),
    ],
    changed: (job) => jobService.cache.evict(job.id),
  });
  const deps: AppDeps = {
    config,
    logger,
    accessLogger,
    database,
    jobs: jobService,
    events,
    metrics,
    secrets,
    registry: modelRegistry,
    callbacks: callbacks.dispatcher,
    monitor,
    streams,
    engines,
    files,
    version: VERSION,
    gpuAvailable,
    queueSize,
    activeJobs: () => scheduler.activeCount,
    baseUrl: config.publicUrl ? () => config.publicUrl! : originOf,
    datasets: uploads,
    prepared: new PreparedDatasets({ store: files.datasets, uploads, limits: config.dataset, hfModelsDir: config.hfModelsDir, countTokens: tokenCounter(config, engines, files.datasets.tmpPath.bind(files.datasets)) }),
    retention,
    nodeId,
    nodes: clusterNodes,
  };

  const app = createApp(deps);
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, () => resolve(s));
  });
  // Node closes an idle keep-alive connection after 5 s, while clients (undici, load
  // balancers with a 60 s idle timeout) may send on it at that moment and get a reset. Holding
  // it longer than they do moves the race to the client's side, where it is handled.
  (server as HttpServer).keepAliveTimeout = KEEP_ALIVE_MS;
  const port = (server.address() as AddressInfo).port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  listenUrl = url;

  await callbacks.start(url);
  // Completed jobs whose model registration was lost (a crash right after completion).
  if (config.runJobs) await modelRegistry.registerMissing();
  await presence.announce();
  await scheduler.start();
  await jobService.start();
  retention.start();
  logger.info({ url, devices, node_id: nodeId, database: database.kind, version: VERSION }, 'trainhook listening');
  if (secrets.apiTokenGenerated) {
    // Printed once, on the start that generated it, outside the JSON log (like a notebook server).
    process.stderr.write(
      `\n  trainhook generated an API token (stored in ${secrets.apiTokenFile}, mode 0600):\n\n      ${secrets.apiToken}\n\n  Send it as: Authorization: Bearer <token>\n\n`,
    );
  }

  let closing: Promise<void> | null = null;
  return {
    url,
    port,
    logger,
    deps,
    scheduler,
    hook,
    store,
    close: () =>
      (closing ??= (async () => {
        streams.close(); // open SSE responses would hold server.close() forever
        // Jobs go back to the queue while HTTP requests drain: a slow request never holds
        // them here, where no other node may claim them until their leases expire.
        const httpClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        await scheduler.stop();
        await presence.leave();
        await httpClosed;
        await retention.stop();
        await jobService.stop();
        await modelRegistry.close();
        await callbacks.stop();
        await monitor.stop();
        await alerts.stop();
        await database.close();
        unlock();
      })()),
  };
}

/**
 * A request URL's origin, parsed once per distinct scheme://host prefix: every job view carries
 * links, and a URL parse per status read was as costly as the read itself. The Host header is
 * the client's to choose, so the memo is bounded.
 */
const origins = new Map<string, string>();
function originOf(requestUrl: string): string {
  const end = requestUrl.indexOf('/', requestUrl.indexOf('//') + 2);
  const prefix = end === -1 ? requestUrl : requestUrl.slice(0, end);
  let origin = origins.get(prefix);
  if (origin === undefined) {
    origin = new URL(prefix).origin;
    if (origins.size >= 64) origins.clear();
    origins.set(prefix, origin);
  }
  return origin;
}

/**
 * Token counts with a base model folder's own tokenizer, by the first engine whose worker has a
 * token counter (null when none has): strict dataset validation measures instead of estimating.
 */
function tokenCounter(config: Config, engines: Engines, tmpPath: (suffix: string) => string): CountTokens | null {
  const engine = engines.list().find((e) => e.python.tokens);
  if (!engine) return null;
  return async (folder, texts) => {
    const workDir = tmpPath('.tokens');
    try {
      const { counts } = await runPythonTool<{ counts: number[] }>({
        python: resolvePython(engine.python.requirements, config.enginePython[engine.name] ?? config.python),
        entry: engine.python.tokens!,
        spec: { base_model: path.join(config.hfModelsDir, folder), texts },
        workDir,
        logFile: path.join(workDir, 'tokens.log'),
        timeoutMs: 10 * 60_000,
      });
      return counts;
    } catch (err) {
      if (err instanceof ToolError) throw new PrepareError('BASE_MODEL_NOT_FOUND', `the tokenizer of base model ${folder} could not count tokens: ${err.message}`, { base_model: folder, cause: err.code });
      throw err;
    } finally {
      await fs.promises.rm(workDir, { recursive: true, force: true });
    }
  };
}
