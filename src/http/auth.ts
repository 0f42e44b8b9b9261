/**
 * Authentication of incoming requests: a bearer token on every /api route (or, for a read from
 * the status pages' own links, their session cookie), and when
 * REQUEST_SIGNING_SECRET is set, an HMAC signature on POST /api/v1/train with a timestamp
 * window and refusal of a signature seen before (on every node: the seen set is in the DB).
 */
import type { Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import { HttpError } from '../core/errors.js';
import { secretMatcher } from '../security/compare.js';
import { verifyRequestSignature } from '../security/request-signature.js';

/**
 * A read the status pages' session may make: GET or HEAD (nothing changes), and not started by
 * another site (Sec-Fetch-Site, sent by every current browser: a link on another site, or its
 * script, never reads the API with our cookie; a page of ours, the address bar and a bookmark do).
 */
export function pageRead(c: Context): boolean {
  if (c.req.method !== 'GET' && c.req.method !== 'HEAD') return false;
  const site = c.req.header('sec-fetch-site');
  return site === undefined || site === 'same-origin' || site === 'none';
}

export function bearerAuth(opts: {
  token: string;
  /** Whether the request carries a valid status page session (its reads need no token). */
  pageSession?: (c: Context) => boolean;
}) {
  const isToken = secretMatcher(opts.token);
  return createMiddleware(async function bearerAuth(c, next) {
    const header = c.req.header('authorization') ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match && opts.pageSession && pageRead(c) && opts.pageSession(c)) return next();
    if (!match || !isToken(match[1]!.trim())) {
      throw new HttpError(401, 'UNAUTHORIZED', 'missing or invalid bearer token', null, {
        'WWW-Authenticate': 'Bearer realm="trainhook"',
      });
    }
    await next();
  });
}

export function requestSignature(opts: {
  secrets: readonly string[];
  toleranceSeconds: number;
  /** Records the signature; false when it was seen before (a replay). */
  remember: (signature: string, expiresAt: Date) => Promise<boolean>;
}) {
  return createMiddleware(async function requestSignature(c, next) {
    if (opts.secrets.length === 0) return next();
    const rawBody = await c.req.text();
    const result = verifyRequestSignature({
      secrets: opts.secrets,
      timestampHeader: c.req.header('x-trainhook-timestamp'),
      signatureHeader: c.req.header('x-trainhook-signature'),
      rawBody,
      toleranceSeconds: opts.toleranceSeconds,
    });
    if (!result.ok) {
      throw new HttpError(401, 'INVALID_SIGNATURE', `request signature refused: ${result.reason}`);
    }
    const expiresAt = new Date((result.timestamp + opts.toleranceSeconds + 1) * 1000);
    if (!(await opts.remember(result.signature, expiresAt))) {
      throw new HttpError(401, 'INVALID_SIGNATURE', 'request signature refused: replayed');
    }
    await next();
  });
}
