/**
 * pino JSON logs. Secrets never reach a log line: the redact paths cover the places they could
 * appear (headers, request bodies, job rows), and modules log ids, never tokens.
 */
import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'authorization',
  'token',
  'apiToken',
  'secret',
  'callback_secret',
  'callbackSecret',
  'signature',
  '*.authorization',
  '*.Authorization',
  '*.token',
  '*.secret',
  '*.callback_secret',
  '*.callbackSecret',
  '*.signature',
  'headers["x-trainhook-signature"]',
  'headers["x-callback-secret"]',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
];

/**
 * pino's isoTime, formatted once per millisecond: under load many lines share one, and
 * Date#toISOString per line showed in profiles.
 */
let stampedAt = -1;
let stamp = '';
function isoTime(): string {
  const now = Date.now();
  if (now !== stampedAt) {
    stampedAt = now;
    stamp = `,"time":"${new Date(now).toISOString()}"`;
  }
  return stamp;
}

/**
 * The server's logger, and the access logger that writes the one line per request to the same
 * destination. Access lines carry fixed fields (request id, method, route, path without query,
 * status, ms), never a secret, so they skip redaction, which was two thirds of a line's cost
 * (bench/api.ts at LOG_LEVEL=info).
 */
export function createLoggers(level: string, destination?: DestinationStream): { logger: Logger; accessLogger: Logger } {
  const dest = destination ?? pino.destination({ dest: 1, sync: false });
  const options = {
    level,
    base: { service: 'trainhook' },
    timestamp: isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  return {
    logger: pino({ ...options, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, dest),
    accessLogger: pino(options, dest),
  };
}
