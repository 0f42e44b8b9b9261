/**
 * One delivery attempt: POST the stored body with fresh Standard Webhooks headers through the
 * SSRF-guarded undici dispatcher, and classify the answer. Only a 2xx delivers; a 3xx is a
 * failure (redirects are never followed: a receiver that moved must be reconfigured, and a
 * redirect could point the signed body anywhere); 410 Gone stops the job's deliveries;
 * Retry-After is read on 429 and 503. A callback_secret that can never sign or travel (stored
 * before submit refused such secrets) is a permanent failure, recorded without a request.
 * Never throws: every failure is a result.
 */
import { request, type Dispatcher } from 'undici';
import { isOutboundBlockedError } from '../net/outbound.js';
import type { ClaimedCallback } from './sql/claim.js';
import { unusableCallbackSecret, VALID_CALLBACK_SECRET } from '../security/callback-secret.js';
import { parseRetryAfter } from './schedule.js';
import { callbackHeaders } from './signing.js';

export interface DeliveryOptions {
  dispatcher: Dispatcher;
  timeoutMs: number;
  sendSecretHeader: boolean;
  userAgent: string;
  /** Aborts the attempt when the server stops. */
  signal: AbortSignal;
}

export interface AttemptAnswer {
  attemptedAt: Date;
  latencyMs: number;
  statusCode: number | null;
  ok: boolean;
  gone: boolean;
  /** The attempt can never succeed as configured (refused by the SSRF policy, no URL, a bad secret). */
  permanent: boolean;
  aborted: boolean;
  retryAfterMs: number | null;
  error: string | null;
}

/** How much of a failed response's body is kept as its error text. */
const ERROR_BODY_BYTES = 300;

export async function attemptDelivery(event: ClaimedCallback, opts: DeliveryOptions): Promise<AttemptAnswer> {
  const attemptedAt = new Date();
  const started = performance.now();
  const answer = (a: Partial<AttemptAnswer>): AttemptAnswer => ({
    attemptedAt,
    latencyMs: performance.now() - started,
    statusCode: null,
    ok: false,
    gone: false,
    permanent: false,
    aborted: false,
    retryAfterMs: null,
    error: null,
    ...a,
  });
  if (!event.url) return answer({ permanent: true, error: 'the job has no callback_url' });
  const badSecret = event.secret === null ? null : unusableCallbackSecret(event.secret, opts.sendSecretHeader);
  if (badSecret) {
    return answer({
      permanent: true,
      error: `not sent: the job's callback_secret is unusable (${badSecret}); ${VALID_CALLBACK_SECRET}. Submit the job again with a valid secret.`,
    });
  }

  // One controller per attempt, aborted by its timer or by the server stopping (listeners are
  // removed afterwards: the stop signal lives as long as the server).
  const controller = new AbortController();
  const onStop = () => controller.abort('stopping');
  opts.signal.addEventListener('abort', onStop, { once: true });
  if (opts.signal.aborted) controller.abort('stopping');
  const timer = setTimeout(() => controller.abort('timeout'), opts.timeoutMs);
  try {
    const res = await request(event.url, {
      method: 'POST',
      dispatcher: opts.dispatcher,
      headers: callbackHeaders({
        eventId: event.id,
        jobId: event.jobId,
        type: event.type,
        secret: event.secret,
        body: event.body,
        sendSecretHeader: opts.sendSecretHeader,
        userAgent: opts.userAgent,
      }),
      body: event.body,
      // Our timer bounds the whole attempt; undici's own timeouts are only a backstop.
      headersTimeout: opts.timeoutMs + 1000,
      bodyTimeout: opts.timeoutMs + 1000,
      signal: controller.signal,
    });
    const status = res.statusCode;
    if (status >= 200 && status < 300) {
      // Drain (bounded) so the connection goes back to the pool for the next callback.
      await res.body.dump({ limit: 64 * 1024 }).catch(() => {});
      return answer({ statusCode: status, ok: true });
    }
    const text = await readSome(res.body, ERROR_BODY_BYTES);
    const location = status >= 300 && status < 400 ? res.headers['location'] : undefined;
    const what =
      status >= 300 && status < 400
        ? `redirect not followed (HTTP ${status}${location ? ` to ${String(location).slice(0, 200)}` : ''})`
        : `HTTP ${status}`;
    return answer({
      statusCode: status,
      gone: status === 410,
      retryAfterMs: status === 429 || status === 503 ? parseRetryAfter(res.headers['retry-after']) : null,
      error: text ? `${what}: ${text}` : what,
    });
  } catch (err) {
    if (controller.signal.reason === 'stopping') {
      return answer({ aborted: true, error: 'aborted: the server stopped during the attempt' });
    }
    if (controller.signal.reason === 'timeout') return answer({ error: `timed out after ${opts.timeoutMs} ms` });
    if (isOutboundBlockedError(err)) return answer({ permanent: true, error: (err as Error).message });
    const e = err as Error & { code?: string; cause?: { code?: string; message?: string } };
    const code = e.code ?? e.cause?.code;
    return answer({ error: `${code ? `${code}: ` : ''}${e.message || e.cause?.message || String(err)}`.slice(0, 500) });
  } finally {
    clearTimeout(timer);
    opts.signal.removeEventListener('abort', onStop);
  }
}

async function readSome(body: Dispatcher.ResponseData['body'], max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size >= max) break;
    }
  } catch {
    /* a broken body is still a failure with a status */
  } finally {
    if (!body.destroyed) body.destroy();
  }
  // Control characters go too: a NUL cannot be stored in a PostgreSQL text or jsonb value, and
  // one in a receiver's answer would make the attempt impossible to record (and so retried forever).
  return Buffer.concat(chunks)
    .subarray(0, max)
    .toString('utf8')
    .replace(/[\u0000-\u001f\u007f]/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}
