/**
 * Prometheus metrics. One registry per server instance, so tests can run several
 * servers in one process without their counters colliding.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { SystemSample } from './system.js';

export interface MetricSources {
  activeJobs(): number;
  queueSize(): Promise<number>;
  /** Jobs that ever reached each status, from the database (monitor/jobs.ts jobTotals). */
  jobTotals?(): Promise<Record<string, number>>;
  /** Jobs in each status now, from the database (monitor/jobs.ts jobsByStatus). */
  jobsByStatus?(): Promise<Record<string, number>>;
  /** The latest GPU sample (monitor/monitor.ts); empty on a machine without GPUs. */
  gpus?(): GpuGaugeSource[];
  /** The latest host sample (monitor/monitor.ts); null before the first one. */
  system?(): SystemSample | null;
  /** The jobs this node runs (monitor/jobs.ts runningJobProgress). */
  runningJobs?(): Promise<JobProgressSource[]>;
  /** This node, for trainhook_node_info. */
  node?: { id: string; version: string; hostname: string };
  /** Every node sharing the database (nodes/registry.ts listNodes). */
  nodes?(): Promise<NodeGaugeSource[]>;
}

export interface NodeGaugeSource {
  id: string;
  status: 'alive' | 'stale' | 'left';
  lastSeenSeconds: number;
  jobs: readonly unknown[];
}

export interface JobProgressSource {
  id: string;
  name: string;
  engine: string;
  task: string;
  /** Percent, 0 to 100. */
  progress: number;
  startedAt: Date | null;
  /** When the job last recorded a change, ms since the epoch (monitor/activity.ts). */
  lastChangeMs: number;
}

export interface GpuGaugeSource {
  device: string;
  utilizationPercent: number | null;
  memoryUsedBytes: number | null;
  memoryTotalBytes: number | null;
  temperatureC: number | null;
}

/** Sets one gauge per GPU at scrape time; a GPU that vanished or lacks the field is left out. */
function gpuGauge(
  registry: Registry,
  sources: MetricSources,
  name: string,
  help: string,
  pick: (g: GpuGaugeSource) => number | null,
) {
  return new Gauge({
    name,
    help,
    labelNames: ['device'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const g of sources.gpus?.() ?? []) {
        const v = pick(g);
        if (v !== null) this.set({ device: g.device }, v);
      }
    },
  });
}

export function createMetrics(sources: MetricSources) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // prom-client's defaults include gauges named *_total (nodejs_active_handles_total and the
  // like), which Prometheus reserves for counters (promtool check metrics refuses them). Each
  // is the sum over the `type` label of the gauge of the same name without the suffix, which
  // stays, so nothing is lost by leaving them out.
  for (const metric of registry.getMetricsAsArray()) {
    const name = (metric as unknown as { name: string }).name;
    if (metric instanceof Gauge && name.endsWith('_total')) registry.removeSingleMetric(name);
  }
  return {
    registry,
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request durations by method, route and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    /**
     * With a jobTotals source (the server's), read from the database at scrape time: jobs that
     * ever reached each status (queued = every accepted job, training = every job that started),
     * so the counter survives restarts and agrees across nodes (aggregate with max, not sum).
     * Without one it counts inc() calls of this process.
     */
    jobsTotal: new Counter({
      name: 'training_jobs_total',
      help: 'Training jobs that reached each status (queued = accepted, training = started), from the database',
      labelNames: ['status'] as const,
      registers: [registry],
      async collect() {
        if (!sources.jobTotals) return;
        const totals = await sources.jobTotals();
        this.reset();
        for (const [status, n] of Object.entries(totals)) this.inc({ status }, n);
      },
    }),
    /** Jobs in each status now (the counter above counts every job that ever reached one). */
    jobsByStatus: new Gauge({
      name: 'training_jobs',
      help: 'Training jobs in each status now (queued, training, completed, failed, cancelled), from the database',
      labelNames: ['status'] as const,
      registers: [registry],
      async collect() {
        if (!sources.jobsByStatus) return;
        const counts = await sources.jobsByStatus();
        this.reset();
        for (const [status, n] of Object.entries(counts)) this.set({ status }, n);
      },
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
    gpuUtilization: gpuGauge(registry, sources, 'gpu_utilization_percent', 'GPU utilization, percent, by device (nvidia-smi)', (g) => g.utilizationPercent),
    gpuMemoryUsed: gpuGauge(registry, sources, 'gpu_memory_used_bytes', 'GPU memory in use, bytes, by device', (g) => g.memoryUsedBytes),
    gpuMemoryTotal: gpuGauge(registry, sources, 'gpu_memory_total_bytes', 'GPU memory size, bytes, by device', (g) => g.memoryTotalBytes),
    gpuTemperature: gpuGauge(registry, sources, 'gpu_temperature_celsius', 'GPU temperature, degrees Celsius, by device', (g) => g.temperatureC),
    ...hostGauges(registry, sources),
    ...jobGauges(registry, sources),
    ...nodeGauges(registry, sources),
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

/** Host CPU, memory and disk (of the workdir's file system) from the monitor's latest sample. */
function hostGauges(registry: Registry, sources: MetricSources) {
  const host = (name: string, help: string, pick: (s: SystemSample) => number | null | undefined) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        const s = sources.system?.();
        const v = s ? pick(s) : null;
        if (v !== null && v !== undefined) this.set(v);
      },
    });
  const disk = (name: string, help: string, pick: (d: NonNullable<SystemSample['disk']>) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['path'] as const,
      registers: [registry],
      collect() {
        this.reset();
        const d = sources.system?.()?.disk;
        if (d) this.set({ path: d.path }, pick(d));
      },
    });
  return {
    hostCpu: host('host_cpu_usage_percent', 'Busy share of all CPU cores between the last two samples, percent', (s) => s.cpuPercent),
    hostCpuCount: host('host_cpu_cores', 'CPU cores available', (s) => s.cpuCount),
    hostMemoryTotal: host('host_memory_total_bytes', 'Host memory size, bytes', (s) => s.memory.totalBytes),
    hostMemoryUsed: host('host_memory_used_bytes', 'Host memory in use (total minus available), bytes', (s) => s.memory.usedBytes),
    hostDiskTotal: disk('host_disk_total_bytes', 'Size of the file system holding the workdir, bytes', (d) => d.totalBytes),
    hostDiskUsed: disk('host_disk_used_bytes', 'Used bytes of the file system holding the workdir', (d) => d.usedBytes),
    hostDiskFree: disk('host_disk_free_bytes', 'Bytes of the workdir file system free for trainhook', (d) => d.freeBytes),
  };
}

/**
 * One series per job this node runs, rebuilt at each scrape: a job that ended (here or after
 * being taken over elsewhere) has no series any more.
 */
function jobGauges(registry: Registry, sources: MetricSources) {
  let pending: Promise<JobProgressSource[]> | null = null;
  // The three gauges are collected in one scrape: one database read serves them all.
  const read = () => {
    pending ??= (sources.runningJobs?.() ?? Promise.resolve([])).finally(() => {
      setImmediate(() => (pending = null));
    });
    return pending;
  };
  const job = (name: string, help: string, labels: readonly string[], value: (j: JobProgressSource) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: labels,
      registers: [registry],
      async collect() {
        const jobs = await read();
        this.reset();
        for (const j of jobs) {
          const v = value(j);
          if (v === null) continue;
          const all: Record<string, string> = { job_id: j.id, name: j.name, engine: j.engine, task: j.task };
          this.set(Object.fromEntries(labels.map((l) => [l, all[l]!])), v);
        }
      },
    });
  return {
    jobProgress: job('training_job_progress', 'Progress of a running job, percent', ['job_id', 'name', 'engine', 'task'], (j) => j.progress),
    jobStarted: job('training_job_started_timestamp_seconds', 'When a running job started, unix seconds', ['job_id'], (j) =>
      j.startedAt ? j.startedAt.getTime() / 1000 : null,
    ),
    jobLastProgress: job(
      'training_job_last_progress_timestamp_seconds',
      'When a running job last recorded a change (phase, progress, epoch), unix seconds',
      ['job_id'],
      (j) => j.lastChangeMs / 1000,
    ),
  };
}

/**
 * This node's identity as an info gauge (join any series of this scrape to its node with
 * `* on(instance) group_left(node_id) trainhook_node_info`), and the cluster as the shared
 * database sees it: every node's status, heartbeat age and jobs. The cluster gauges are the
 * same on every node's scrape; aggregate them with max, not sum.
 */
function nodeGauges(registry: Registry, sources: MetricSources) {
  let pending: Promise<NodeGaugeSource[]> | null = null;
  const read = () => {
    pending ??= (sources.nodes?.() ?? Promise.resolve([])).finally(() => {
      setImmediate(() => (pending = null));
    });
    return pending;
  };
  const perNode = (name: string, help: string, value: (n: NodeGaugeSource) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['node_id'] as const,
      registers: [registry],
      async collect() {
        const all = await read();
        this.reset();
        // A node that left has no heartbeat to age: it shows in trainhook_nodes{status="left"}.
        for (const n of all) if (n.status !== 'left') this.set({ node_id: n.id }, value(n));
      },
    });
  return {
    nodeInfo: new Gauge({
      name: 'trainhook_node_info',
      help: 'This node: its id and version (always 1)',
      labelNames: ['node_id', 'version', 'hostname'] as const,
      registers: [registry],
      collect() {
        this.reset();
        if (sources.node) this.set({ node_id: sources.node.id, version: sources.node.version, hostname: sources.node.hostname }, 1);
      },
    }),
    nodes: new Gauge({
      name: 'trainhook_nodes',
      help: 'Nodes sharing the database by status: alive, stale (no heartbeat within its lease period), left (stopped gracefully)',
      labelNames: ['status'] as const,
      registers: [registry],
      async collect() {
        if (!sources.nodes) return;
        const all = await read();
        this.reset();
        for (const status of ['alive', 'stale', 'left'] as const) this.set({ status }, all.filter((n) => n.status === status).length);
      },
    }),
    nodeLastSeen: perNode(
      'trainhook_node_last_seen_seconds',
      "Seconds since a node's last lease-renewal tick (its heartbeat), by the database's clock",
      (n) => n.lastSeenSeconds,
    ),
    nodeJobs: perNode('trainhook_node_jobs', 'Jobs a node holds now (claimed or running)', (n) => n.jobs.length),
  };
}
