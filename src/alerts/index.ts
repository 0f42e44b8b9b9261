/**
 * Alerts as the server wires them: at every monitor sample, look at the node (GPUs, disk,
 * queue, the jobs it runs, callback endpoints), turn what changed into fired/resolved events,
 * and send them to ALERT_WEBHOOK_URL and, with SMTP_URL, by email. Every transition is also
 * logged, so a node without either still says what went wrong.
 */
import { ConfigError, type Config } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { VERSION } from '../core/version.js';
import type { Database } from '../db/client.js';
import { signingKey } from '../callbacks/signing.js';
import type { JobActivity } from '../monitor/activity.js';
import type { ResourceSample, SystemMonitor } from '../monitor/monitor.js';
import { assertUrlAllowed, createOutboundDispatcher } from '../net/outbound.js';
import { evaluate, type ConditionName, type Observation, type Thresholds } from './conditions.js';
import { AlertDelivery, type AlertChannel } from './delivery.js';
import { createEmailSender } from './email.js';
import { alertEvent } from './event.js';
import { failingCallbackEndpoints, runningJobs } from './sources.js';
import { AlertTracker, type AlertTransition } from './tracker.js';
import { postAlert } from './webhook.js';

export interface AlertsOptions {
  config: Config;
  database: Database;
  nodeId: string;
  monitor: SystemMonitor;
  activity: JobActivity;
  queueSize(): Promise<number>;
  logger: Logger;
  /** Waits between a channel's attempts (tests shorten them). */
  retryDelaysMs?: readonly number[];
}

export interface Alerts {
  tracker: AlertTracker;
  delivery: AlertDelivery;
  /** Looks at the node now (the monitor calls it at every sample). */
  check(sample: ResourceSample): Promise<AlertTransition[]>;
  start(): void;
  stop(): Promise<void>;
}

const SEND_TIMEOUT_MS = 15_000;

/**
 * Refuses, before anything starts, an alert webhook the SSRF guard would refuse (a literal
 * private address not in OUTBOUND_ALLOW) or a secret that cannot sign. Returns the signing key.
 */
export function checkAlertConfig(config: Config): Buffer | null {
  const a = config.alerts;
  if (!a.webhookUrl) return null;
  try {
    assertUrlAllowed(a.webhookUrl, config.outboundAllow);
  } catch (err) {
    throw new ConfigError(`invalid configuration:\n  ALERT_WEBHOOK_URL: ${(err as Error).message}`);
  }
  if (!a.webhookSecret) return null;
  try {
    return signingKey(a.webhookSecret);
  } catch (err) {
    throw new ConfigError(`invalid configuration:\n  ALERT_WEBHOOK_SECRET: ${(err as Error).message}`);
  }
}

export function createAlerts(opts: AlertsOptions): Alerts {
  const { config, database, nodeId, logger } = opts;
  const a = config.alerts;
  const log = logger.child({ component: 'alerts' });
  const thresholds: Thresholds = {
    gpuTempC: config.monitor.gpuTempWarnC,
    gpuMemoryPercent: config.monitor.gpuMemoryWarnPercent,
    jobHours: a.jobHours,
    queueLength: a.queueLength,
    diskPercent: a.diskPercent,
    stallSeconds: a.stallSeconds,
    callbackFailingHours: a.callbackFailingHours,
  };

  const channels: AlertChannel[] = [];
  const closers: Array<() => Promise<void> | void> = [];
  const key = checkAlertConfig(config);
  if (a.webhookUrl) {
    if (!key) log.warn('ALERT_WEBHOOK_SECRET is not set: alert events are sent unsigned');
    const dispatcher = createOutboundDispatcher(config.outboundAllow, { connectTimeoutMs: 10_000 });
    const target = { url: a.webhookUrl, key, dispatcher, userAgent: `trainhook/${VERSION}`, timeoutMs: SEND_TIMEOUT_MS };
    channels.push({ name: 'webhook', send: (event, signal) => postAlert(target, event, signal) });
    closers.push(() => dispatcher.destroy().catch(() => {}));
  }
  if (a.smtpUrl) {
    const sender = createEmailSender({ smtpUrl: a.smtpUrl, to: a.emailTo, from: a.emailFrom, outboundAllow: config.outboundAllow, timeoutMs: SEND_TIMEOUT_MS });
    channels.push({ name: 'email', send: (event) => sender.send(event) });
    closers.push(() => sender.close());
  }

  const tracker = new AlertTracker();
  const delivery = new AlertDelivery({ channels, logger: log, ...(opts.retryDelaysMs ? { retryDelaysMs: opts.retryDelaysMs } : {}) });

  /** A read that failed leaves its conditions unobserved this time, never resolved. */
  const attempt = async <T>(what: string, read: () => Promise<T>): Promise<T | null> => {
    try {
      return await read();
    } catch (err) {
      log.error({ err }, `alerts: reading ${what} failed`);
      return null;
    }
  };

  const check = async (sample: ResourceSample): Promise<AlertTransition[]> => {
    const [queueLength, running, failingEndpoints] = await Promise.all([
      attempt('the queue length', opts.queueSize),
      attempt('running jobs', () => runningJobs(database, nodeId)),
      attempt('callback attempts', () => failingCallbackEndpoints(database, a.callbackFailingHours)),
    ]);
    if (running) opts.activity.keepOnly(running.map((j) => j.id));
    const observation: Observation = {
      now: Date.now(),
      system: sample.system,
      gpus: sample.gpus,
      queueLength,
      runningJobs: running?.map((j) => ({ ...j, lastChangeMs: opts.activity.lastChange(j.id) })) ?? null,
      failingEndpoints,
    };
    const unobserved = new Set<ConditionName>();
    if (sample.gpuError) unobserved.add('gpu_temperature').add('gpu_memory');
    if (!sample.system.disk) unobserved.add('disk_usage');
    if (queueLength === null) unobserved.add('queue_length');
    if (!running) unobserved.add('job_duration').add('worker_stalled');
    if (!failingEndpoints) unobserved.add('callback_failing');
    const transitions = tracker.update(new Date(observation.now), evaluate(observation, thresholds), unobserved);
    for (const t of transitions) {
      const event = alertEvent(t, nodeId);
      const fields = { alert_id: event.id, condition: event.condition, subject: event.subject, value: event.value, threshold: event.threshold };
      if (t.type === 'alert.fired') log.warn(fields, `alert fired: ${event.summary}`);
      else log.info(fields, `alert resolved: ${event.summary}`);
      delivery.enqueue(event);
    }
    return transitions;
  };

  let checking: Promise<unknown> | null = null;
  let unsubscribe: (() => void) | null = null;
  return {
    tracker,
    delivery,
    check,
    start() {
      unsubscribe = opts.monitor.onSample((sample) => {
        // One look at a time: a slow database skips samples rather than piling up reads.
        if (checking) return;
        checking = check(sample)
          .catch((err) => log.error({ err }, 'alert check failed'))
          .finally(() => {
            checking = null;
          });
      });
    },
    async stop() {
      unsubscribe?.();
      await checking;
      await delivery.stop();
      for (const close of closers) await close();
    },
  };
}
