/**
 * Prometheus metrics (SPEC §2). One registry per server instance, so tests can run several
 * servers in one process without their counters colliding.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface MetricSources {
  activeJobs(): number;
  queueSize(): Promise<number>;
}

export function createMetrics(sources: MetricSources) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request durations by method, route and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    jobsTotal: new Counter({
      name: 'training_jobs_total',
      help: 'Training jobs that reached a status since the server started, by status',
      labelNames: ['status'] as const,
      registers: [registry],
    }),
    trainingDuration: new Histogram({
      name: 'training_duration_seconds',
      help: 'Wall time of finished training jobs, from start to end',
      labelNames: ['status'] as const,
      buckets: [10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400],
      registers: [registry],
    }),
    activeJobs: new Gauge({
      name: 'active_training_jobs',
      help: 'Jobs running on this node',
      registers: [registry],
      collect() {
        this.set(sources.activeJobs());
      },
    }),
    queueSize: new Gauge({
      name: 'queue_size',
      help: 'Jobs waiting in the queue',
      registers: [registry],
      async collect() {
        this.set(await sources.queueSize());
      },
    }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;
