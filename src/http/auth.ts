/**
 * Authentication of incoming requests: a bearer token on every /api route, and when
 * REQUEST_SIGNING_SECRET is set, an HMAC signature on POST /api/v1/train with a timestamp
 * window and refusal of a signature seen before (on every node: the seen set is in the DB).
 */
import { createMiddleware } from 'hono/factory';
import { HttpError } from '../core/errors.js';
import { secretMatcher } from '../security/compare.js';
import { verifyRequestSignature } from '../security/request-signature.js';

export function bearerAuth(opts: { token: string }) {
  const isToken = secretMatcher(opts.token);
  return createMiddleware(async function bearerAuth(c, next) {
    const header = c.req.header('authorization') ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(header);
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
