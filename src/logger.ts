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

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'trainhook' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
