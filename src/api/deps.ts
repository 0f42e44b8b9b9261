import type { Config } from '../config.js';
import type { Database } from '../db/client.js';
import type { JobEvents } from '../jobs/events.js';
import type { JobService } from '../jobs/service.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { ServerSecrets } from '../security/secrets.js';

/** Everything the HTTP layer needs, handed in by main (the api never builds its own). */
export interface AppDeps {
  config: Config;
  logger: Logger;
  database: Database;
  jobs: JobService;
  events: JobEvents;
  metrics: Metrics;
  secrets: ServerSecrets;
  version: string;
  gpuAvailable: boolean;
  queueSize(): Promise<number>;
  activeJobs(): number;
  /** PUBLIC_URL when configured, else the origin the request came in on. */
  baseUrl(requestUrl: string): string;
}
