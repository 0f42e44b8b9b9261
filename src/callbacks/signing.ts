/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com), so any of its libraries
 * verifies trainhook's callbacks:
 *
 *   webhook-id: <event id, the same on every retry>
 *   webhook-timestamp: <unix seconds of this attempt>
 *   webhook-signature: v1,<base64 HMAC-SHA256(key, id + "." + timestamp + "." + body)>
 *
 * The key is the job's callback_secret: base64-decoded after a `whsec_` prefix (the Standard
 * Webhooks secret format), else its UTF-8 bytes as they are (receivers that compare the
 * X-Callback-Secret header hold plain secrets such as `sk_live_…`; verify those with
 * `new Webhook(bytes, { format: 'raw' })`).
 * src/security/callback-secret.ts says which secrets are keys at all.
 */
import crypto from 'node:crypto';
import { callbackSigningKey } from '../security/callback-secret.js';

export class UnusableSecretError extends Error {
  override readonly name = 'UnusableSecretError';
}

/** Throws rather than sign with an empty or partly decoded key, which anyone could forge. */
export function signingKey(secret: string): Buffer {
  const key = callbackSigningKey(secret);
  if (!key.ok) throw new UnusableSecretError(`callback_secret cannot sign: ${key.problem}`);
  return key.key;
}

export function webhookSignature(key: Buffer, id: string, timestamp: number, body: string): string {
  return `v1,${crypto.createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

export interface CallbackHeaderInput {
  eventId: string;
  jobId: string;
  type: string;
  secret: string | null;
  body: string;
  sendSecretHeader: boolean;
  userAgent: string;
  nowSeconds?: number;
}

export function callbackHeaders(h: CallbackHeaderInput): Record<string, string> {
  const timestamp = h.nowSeconds ?? Math.floor(Date.now() / 1000);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': h.userAgent,
    'x-job-id': h.jobId,
    'x-callback-type': h.type,
    'webhook-id': h.eventId,
    'webhook-timestamp': String(timestamp),
  };
  if (h.secret !== null) {
    headers['webhook-signature'] = webhookSignature(signingKey(h.secret), h.eventId, timestamp, h.body);
    if (h.sendSecretHeader) headers['x-callback-secret'] = h.secret;
  }
  return headers;
}
