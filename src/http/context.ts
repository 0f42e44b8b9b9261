import type { Context } from 'hono';
import type { Logger } from '../core/logger.js';

declare module 'hono' {
  interface ContextVariableMap {
    /** The server's logger; handlers log through requestLog(c). */
    logger: Logger;
    requestLog: Logger;
    requestId: string;
  }
}

/**
 * The request's logger, with its request_id bound, made on first use: most requests log only
 * the access line, which binds the id itself, and a pino child per request was a tenth of a
 * status read's CPU (bench/api.ts).
 */
export function requestLog(c: Context): Logger {
  let log = c.get('requestLog');
  if (!log) {
    log = c.get('logger').child({ request_id: c.get('requestId') });
    c.set('requestLog', log);
  }
  return log;
}
