/**
 * A route whose body is required answers 400 when none comes. The OpenAPI validator alone reads
 * a request without Content-Type and without a body as `{}`, so a body of defaults would be
 * accepted; a body without a JSON Content-Type is 415 there already.
 */
import type { MiddlewareHandler } from 'hono';
import { HttpError } from '../core/errors.js';

export const requireBody: MiddlewareHandler = async (c, next) => {
  const length = c.req.header('content-length');
  const hasBody = (length !== undefined && length !== '0') || c.req.header('transfer-encoding') !== undefined;
  if (!c.req.header('content-type') && !hasBody) {
    throw new HttpError(400, 'BODY_REQUIRED', 'this request needs a JSON body, sent with Content-Type: application/json');
  }
  await next();
};
