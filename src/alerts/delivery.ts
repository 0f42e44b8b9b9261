/**
 * Sends alert events to every configured channel (webhook, email), in the order they happened,
 * one event at a time, each channel retried a few times with backoff. Nothing here can end the process or
 * hold up the monitor: failures are logged, the queue is bounded (the oldest waiting events are
 * dropped first, said in the log), and stop() abandons what is left.
 */
import type { Logger } from '../core/logger.js';
import type { AlertEvent } from './event.js';
import { AlertSendError } from './webhook.js';

export interface AlertChannel {
  name: string;
  send(event: AlertEvent, signal: AbortSignal): Promise<void>;
}

export interface AlertDeliveryOptions {
  channels: AlertChannel[];
  logger: Logger;
  /** Waits before the 2nd, 3rd… attempt of one channel (its length + 1 attempts in all). */
  retryDelaysMs?: readonly number[];
  maxQueued?: number;
}

const DEFAULT_RETRY_DELAYS_MS = [1000, 5000, 30_000];

export class AlertDelivery {
  private readonly queue: AlertEvent[] = [];
  private running: Promise<void> | null = null;
  private readonly abort = new AbortController();

  constructor(private readonly opts: AlertDeliveryOptions) {}

  get enabled(): boolean {
    return this.opts.channels.length > 0;
  }

  enqueue(event: AlertEvent): void {
    if (!this.enabled || this.abort.signal.aborted) return;
    const max = this.opts.maxQueued ?? 1000;
    if (this.queue.length >= max) {
      const dropped = this.queue.shift()!;
      this.opts.logger.error({ alert_id: dropped.id, condition: dropped.condition }, 'alert queue full: oldest waiting alert dropped');
    }
    this.queue.push(event);
    this.running ??= this.drain().finally(() => {
      this.running = null;
    });
  }

  /** Resolves once every queued event has been sent or given up (tests; shutdown). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.queue.length = 0;
    await this.running?.catch(() => undefined);
  }

  private async drain(): Promise<void> {
    for (let event = this.queue.shift(); event; event = this.queue.shift()) {
      // Channels side by side: a webhook that is down does not hold up the email.
      await Promise.all(
        this.opts.channels.map((channel) =>
          this.sendWithRetries(channel, event).catch((err) => this.opts.logger.error({ err }, 'alert delivery failed unexpectedly')),
        ),
      );
    }
  }

  private async sendWithRetries(channel: AlertChannel, event: AlertEvent): Promise<void> {
    const delays = this.opts.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS;
    const signal = this.abort.signal;
    const log = this.opts.logger.child({ component: 'alerts', channel: channel.name, alert_id: event.id, type: event.type, condition: event.condition });
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted) return;
      try {
        await channel.send(event, signal);
        log.info({ attempt }, 'alert sent');
        return;
      } catch (err) {
        const permanent = err instanceof AlertSendError && err.permanent;
        const message = err instanceof Error ? err.message : String(err);
        if (signal.aborted) return;
        if (permanent || attempt > delays.length) {
          log.error({ attempt, error: message, permanent }, 'alert not delivered, giving up');
          return;
        }
        log.warn({ attempt, error: message }, 'alert delivery failed, will retry');
        await sleep(delays[attempt - 1]!, signal);
      }
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    timer.unref();
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
