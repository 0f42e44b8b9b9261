/**
 * Callback delivery metrics (deliveries by outcome, latency), registered on the
 * server's own registry so they appear on GET /metrics next to the others.
 */
import { Counter, Histogram, type Registry } from 'prom-client';

export function createCallbackMetrics(registry: Registry) {
  return {
    deliveries: new Counter({
      name: 'callback_deliveries_total',
      help: 'Callback delivery attempts by outcome: delivered, failed (will retry), dead (no attempt left), gone (410)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    attemptSeconds: new Histogram({
      name: 'callback_attempt_duration_seconds',
      help: 'Duration of callback delivery attempts, from request to response (or error)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15],
      registers: [registry],
    }),
  };
}
export type CallbackMetrics = ReturnType<typeof createCallbackMetrics>;
