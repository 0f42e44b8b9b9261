/**
 * Incoming request signatures:
 *   X-Trainhook-Timestamp: <unix seconds>
 *   X-Trainhook-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>
 * Verification returns a result instead of throwing; the caller maps it to 401. Several
 * secrets may be accepted at once, so a secret can be rotated without downtime.
 */
import crypto from 'node:crypto';
import { safeEqual } from './compare.js';

export type SignatureResult =
  | { ok: true; signature: string; timestamp: number }
  | { ok: false; reason: 'missing_headers' | 'bad_timestamp' | 'timestamp_out_of_tolerance' | 'bad_signature' };

export function signRequest(secret: string, timestamp: number, rawBody: string): string {
  return `v1=${crypto.createHmac('sha256', secret).update(`${timestamp}.${rawBody}`).digest('hex')}`;
}

export function verifyRequestSignature(opts: {
  secrets: readonly string[];
  timestampHeader: string | undefined;
  signatureHeader: string | undefined;
  rawBody: string;
  toleranceSeconds: number;
  nowSeconds?: number;
}): SignatureResult {
  const { timestampHeader, signatureHeader } = opts;
  if (!timestampHeader || !signatureHeader) return { ok: false, reason: 'missing_headers' };
  if (!/^\d{1,12}$/.test(timestampHeader)) return { ok: false, reason: 'bad_timestamp' };
  const timestamp = Number(timestampHeader);
  const now = opts.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - timestamp) > opts.toleranceSeconds) return { ok: false, reason: 'timestamp_out_of_tolerance' };
  // A header may carry several space-separated signatures (v1=… v1=…) during a rotation.
  const candidates = signatureHeader.split(/[\s,]+/).filter((s) => s.startsWith('v1='));
  for (const secret of opts.secrets) {
    const expected = signRequest(secret, timestamp, opts.rawBody);
    for (const candidate of candidates) {
      if (safeEqual(candidate, expected)) return { ok: true, signature: candidate, timestamp };
    }
  }
  return { ok: false, reason: 'bad_signature' };
}
