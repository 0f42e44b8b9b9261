import type { Logger } from '../logger.js';

declare module 'hono' {
  interface ContextVariableMap {
    log: Logger;
    requestId: string;
  }
}
export {};
