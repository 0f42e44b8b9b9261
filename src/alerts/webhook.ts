/**
 * One POST of an alert event to ALERT_WEBHOOK_URL, through the SSRF-guarded dispatcher, with
 * Standard Webhooks headers signed by ALERT_WEBHOOK_SECRET (the same signing as callbacks, so
 * the same verifiers work). Throws on anything but a 2xx; `permanent` says a retry cannot help.
 */
import { request, type Dispatcher } from 'undici';
import { isOutboundBlockedError } from '../net/outbound.js';
import { webhookSignature } from '../callbacks/signing.js';
import type { AlertEvent } from './event.js';

export class AlertSendError extends Error {
  override readonly name = 'AlertSendError';
  constructor(
    message: string,
    readonly permanent: boolean,
  ) {
    super(message);
  }
}

export interface WebhookTarget {
  url: string;
  /** The signing key (null: sent unsigned, e.g. to a Slack incoming webhook). */
  key: Buffer | null;
  dispatcher: Dispatcher;
  userAgent: string;
  timeoutMs: number;
}

export async function postAlert(target: WebhookTarget, event: AlertEvent, signal: AbortSignal): Promise<void> {
  const body = JSON.stringify(event);
  const timestamp = Math.floor(Date.now() / 1000);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': target.userAgent,
    'webhook-id': event.id,
    'webhook-timestamp': String(timestamp),
  };
  if (target.key) headers['webhook-signature'] = webhookSignature(target.key, event.id, timestamp, body);
  const timeout = AbortSignal.timeout(target.timeoutMs);
  let res: Dispatcher.ResponseData;
  try {
    res = await request(target.url, {
      method: 'POST',
      dispatcher: target.dispatcher,
      headers,
      body,
      headersTimeout: target.timeoutMs,
      bodyTimeout: target.timeoutMs,
      signal: AbortSignal.any([signal, timeout]),
    });
  } catch (err) {
    if (isOutboundBlockedError(err)) throw new AlertSendError((err as Error).message, true);
    const e = err as Error & { code?: string; cause?: { code?: string } };
    const code = e.code ?? e.cause?.code;
    throw new AlertSendError(`${code ? `${code}: ` : ''}${e.message}`.slice(0, 300), false);
  }
  // Drained, bounded: the answer's body is not needed, and a connection left half-read leaks.
  await res.body.dump({ limit: 64 * 1024 }).catch(() => {});
  const status = res.statusCode;
  if (status >= 200 && status < 300) return;
  // A client error other than timeout or rate limiting will answer the same next time.
  const permanent = status >= 300 && status < 500 && status !== 408 && status !== 429;
  throw new AlertSendError(`HTTP ${status}`, permanent);
}
