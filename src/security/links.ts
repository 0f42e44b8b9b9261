/**
 * Signed, expiring download links: the model and artifacts a completed callback
 * points to are served at
 *
 *   /downloads/<job id>/<file name>?exp=<unix seconds>&sig=<base64url HMAC-SHA256>
 *
 * outside /api, so the receiver of a callback can fetch them without the API token. The MAC
 * covers the path and the expiry together; changing either (or the job id) breaks it. The key
 * is the server's link-signing key (LINK_SIGNING_KEY, else generated under workdir/), so a
 * link stays valid across restarts and on every node sharing the key.
 */
import crypto from 'node:crypto';
import { safeEqual } from './compare.js';

export interface SignedLink {
  url: string;
  /** ISO-8601, seconds precision. */
  expires_at: string;
}

export type LinkCheck = { ok: true } | { ok: false; reason: 'malformed' | 'bad_signature' | 'expired' };

/** The path a link for one file of one job signs; the name is URL-encoded. */
export function downloadPath(jobId: string, name: string): string {
  return `/downloads/${jobId}/${encodeURIComponent(name)}`;
}

export function linkSignature(key: string, path: string, exp: number): string {
  return crypto.createHmac('sha256', key).update(`v1\n${path}\n${exp}`).digest('base64url');
}

export function signDownloadLink(opts: {
  key: string;
  baseUrl: string;
  jobId: string;
  name: string;
  ttlSeconds: number;
  nowSeconds?: number;
}): SignedLink {
  const now = opts.nowSeconds ?? Math.floor(Date.now() / 1000);
  const exp = now + opts.ttlSeconds;
  const path = downloadPath(opts.jobId, opts.name);
  const sig = linkSignature(opts.key, path, exp);
  return {
    url: `${opts.baseUrl.replace(/\/+$/, '')}${path}?exp=${exp}&sig=${sig}`,
    expires_at: new Date(exp * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
  };
}

/**
 * Checks a link's query against the path it was requested at. The signature is checked before
 * the expiry, so an edited `exp` reads as tampered, not as expired.
 */
export function verifyDownloadLink(opts: {
  key: string;
  path: string;
  exp: string | undefined;
  sig: string | undefined;
  nowSeconds?: number;
}): LinkCheck {
  const { exp, sig } = opts;
  if (!exp || !sig || !/^\d{1,12}$/.test(exp) || !/^[\w-]{43}$/.test(sig)) return { ok: false, reason: 'malformed' };
  const expected = linkSignature(opts.key, opts.path, Number(exp));
  if (!safeEqual(sig, expected)) return { ok: false, reason: 'bad_signature' };
  const now = opts.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (Number(exp) < now) return { ok: false, reason: 'expired' };
  return { ok: true };
}
