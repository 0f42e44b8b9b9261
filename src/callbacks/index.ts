/**
 * The callback subsystem as the server wires it: the transition hook that writes the outbox,
 * and the dispatcher that delivers it. startServer builds it before the job service (which
 * takes the hook) and starts it once the server listens (download links need its URL).
 */
import type { Config } from '../core/config.js';
import type { Db } from '../db/client.js';
import type { Engines } from '../engines/index.js';
import type { JobEvents } from '../jobs/events.js';
import type { JobFiles } from '../jobs/files.js';
import type { Logger } from '../core/logger.js';
import { createOutboundDispatcher } from '../net/outbound.js';
import type { Registry } from 'prom-client';
import { VERSION } from '../core/version.js';
import { CallbackDispatcher } from './dispatcher.js';
import { createCallbackHook, type CallbackHook } from './hook.js';
import { createCallbackMetrics } from './metrics.js';

export interface Callbacks {
  hook: CallbackHook;
  dispatcher: CallbackDispatcher;
  /** Starts delivering; `listenUrl` is the base of download links when PUBLIC_URL is unset. */
  start(listenUrl: string): Promise<void>;
  stop(): Promise<void>;
}

export function createCallbacks(opts: {
  config: Config;
  db: Db;
  linkSigningKey: string;
  logger: Logger;
  nodeId: string;
  registry: Registry;
  events: JobEvents;
  files: JobFiles;
  engines: Engines;
}): Callbacks {
  const { config } = opts;
  let listenUrl = `http://${config.host}:${config.port}`;
  const http = createOutboundDispatcher(config.outboundAllow, {
    connectTimeoutMs: Math.min(10_000, config.callbacks.timeoutMs),
    agent: { keepAliveTimeout: 10_000 },
  });
  const dispatcher = new CallbackDispatcher({
    db: opts.db,
    config,
    nodeId: opts.nodeId,
    logger: opts.logger,
    dispatcher: http,
    userAgent: `trainhook/${VERSION}`,
    metrics: createCallbackMetrics(opts.registry),
  });
  const hook = createCallbackHook({
    config,
    files: opts.files,
    engines: opts.engines,
    linkSigningKey: opts.linkSigningKey,
    baseUrl: () => config.publicUrl ?? listenUrl,
    onEnqueued: (at) => dispatcher.wakeAt(at),
  });
  return {
    hook,
    dispatcher,
    start: async (url) => {
      listenUrl = url;
      if (!config.publicUrl && /^https?:\/\/(0\.0\.0\.0|\[::\])[:/]/.test(url)) {
        opts.logger.warn('PUBLIC_URL is not set: download links in callbacks point at a wildcard address');
      }
      await dispatcher.start(opts.events);
    },
    stop: async () => {
      await dispatcher.stop();
      await http.destroy().catch(() => {});
    },
  };
}
