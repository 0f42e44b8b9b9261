import type { CallbackDispatcher } from '../callbacks/dispatcher.js';
import type { Config } from '../core/config.js';
import type { Database } from '../db/client.js';
import type { Engines } from '../engines/index.js';
import type { JobEvents } from '../jobs/events.js';
import type { JobFiles } from '../jobs/files.js';
import type { JobService } from '../jobs/service.js';
import type { Retention } from '../jobs/retention.js';
import type { UploadedDatasets } from '../datasets/uploads.js';
import type { PreparedDatasets } from '../datasets/prepared.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../monitor/metrics.js';
import type { ModelRegistry } from '../registry/service.js';
import type { SystemMonitor } from '../monitor/monitor.js';
import type { StreamHub } from '../stream/hub.js';
import type { ClusterNode } from '../nodes/registry.js';
import type { ServerSecrets } from '../security/secrets.js';

/** Everything the HTTP layer needs, handed in by main (the api never builds its own). */
export interface AppDeps {
  config: Config;
  logger: Logger;
  /** The one line per request (see createLoggers). */
  accessLogger: Logger;
  database: Database;
  jobs: JobService;
  events: JobEvents;
  metrics: Metrics;
  secrets: ServerSecrets;
  /** The model registry: models, exports, predictions. */
  registry: ModelRegistry;
  /** The callback dispatcher: woken by a redeliver request. */
  callbacks: Pick<CallbackDispatcher, 'wake'>;
  /** Host and GPU samples (status page, dashboard stream, gpu_* gauges). */
  monitor: Pick<SystemMonitor, 'latest' | 'sampleNow'>;
  /** The live streams (SSE) the pages listen to. */
  streams: StreamHub;
  /** The engines this server trains with. */
  engines: Engines;
  /** Where each job's files are. */
  files: JobFiles;
  version: string;
  gpuAvailable: boolean;
  queueSize(): Promise<number>;
  activeJobs(): number;
  /** PUBLIC_URL when configured, else the origin the request came in on. */
  baseUrl(requestUrl: string): string;
  /** Uploaded datasets (POST /api/v1/datasets). */
  datasets: UploadedDatasets;
  /** Datasets made here: converted SAM2 exports, splits, validation reports. */
  prepared: PreparedDatasets;
  /** Removal of finished jobs' files: the periodic sweep and DELETE /jobs/{id}?purge=true. */
  retention: Retention;
  /** This node's id (NODE_ID, or host:workdir-hash). */
  nodeId: string;
  /** Every node sharing the database, with its status and the jobs it holds (nodes/registry.ts). */
  nodes(): Promise<ClusterNode[]>;
}
