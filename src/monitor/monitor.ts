/**
 * Samples the host every MONITOR_INTERVAL_SECONDS: CPU, RAM and disk always, GPUs through
 * nvidia-smi when the machine has it. The latest sample feeds the status page, the dashboard
 * stream and the gpu_* gauges; for every job this node runs, the sample of its device is written
 * into the job's `resources` column (what progress callbacks carry) with the
 * job's peaks, and crossing a threshold (GPU temperature, GPU memory) is written to the job's
 * log and the server log.
 *
 * One sample at a time: a slow nvidia-smi delays the next tick instead of piling up calls.
 */
import os from 'node:os';
import type { Logger } from '../core/logger.js';
import { queryGpus, type GpuSample } from './gpu.js';
import { CpuMeter, readDisk, readMemory, type SystemSample } from './system.js';

export interface ResourceSample {
  sampledAt: string;
  system: SystemSample;
  gpus: GpuSample[];
  /** Why GPU stats are missing on a machine that has nvidia-smi (it failed or timed out). */
  gpuError: string | null;
}

/** The `resources` block of a running job: the three keys upstream apps read first, then extras. */
export interface JobResources {
  gpu_utilization: number | null;
  memory_used_gb: number | null;
  temperature_c: number | null;
  device: string | null;
  sampled_at: string;
  peak_memory_used_gb: number | null;
  peak_temperature_c: number | null;
}

export interface RunningJob {
  id: string;
  device: string | null;
  resources: Record<string, unknown> | null;
}

/** Where the monitor reads and writes jobs (monitor/jobs.ts binds it to the database). */
export interface JobResourceSink {
  running(): Promise<RunningJob[]>;
  attach(jobId: string, resources: JobResources): Promise<void>;
  log(jobId: string, line: string): Promise<void>;
}

export interface MonitorOptions {
  intervalMs: number;
  workdir: string;
  gpuTempWarnC: number;
  gpuMemoryWarnPercent: number;
  logger: Logger;
  jobs?: JobResourceSink;
  /** The nvidia-smi to run; PATH lookup by default. */
  nvidiaSmi?: string;
  /** While a threshold stays crossed, the warning is repeated this often. */
  warnRepeatMs?: number;
}

const GB = 1e9;
const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

export class SystemMonitor {
  private readonly cpu = new CpuMeter();
  private last: ResourceSample | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<ResourceSample> | null = null;
  private gpuMissing = false;
  private gpuErrorLogged = false;
  private readonly listeners = new Set<(s: ResourceSample) => void>();
  /** `${scope}|${device}|${kind}` → when last warned, while the threshold stays crossed. */
  private readonly warned = new Map<string, number>();
  private stopped = false;

  constructor(private readonly opts: MonitorOptions) {}

  latest(): ResourceSample | null {
    return this.last;
  }

  onSample(listener: (s: ResourceSample) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    if (this.timer || this.stopped) return;
    const tick = () => {
      void this.sampleNow()
        .catch((err) => this.opts.logger.error({ err }, 'resource sampling failed'))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.opts.intervalMs).unref();
        });
    };
    tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
  }

  /** Takes a sample now (tests and the first page render use it); concurrent calls share one. */
  sampleNow(): Promise<ResourceSample> {
    this.running ??= this.sample().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async sample(): Promise<ResourceSample> {
    const [memory, disk, gpu] = await Promise.all([
      readMemory(),
      readDisk(this.opts.workdir),
      this.gpuMissing ? null : queryGpus({ command: this.opts.nvidiaSmi, timeoutMs: Math.max(2000, this.opts.intervalMs) }),
    ]);
    let gpus: GpuSample[] = [];
    let gpuError: string | null = null;
    if (gpu?.ok) {
      gpus = gpu.gpus;
      this.gpuErrorLogged = false;
    } else if (gpu && gpu.missing) {
      this.gpuMissing = true;
      this.opts.logger.info('no nvidia-smi on this machine: GPU monitoring off');
    } else if (gpu) {
      gpuError = gpu.error;
      if (!this.gpuErrorLogged) this.opts.logger.warn({ error: gpu.error }, 'nvidia-smi failed; GPU stats unavailable');
      this.gpuErrorLogged = true;
    }
    const sample: ResourceSample = {
      sampledAt: new Date().toISOString(),
      system: { cpuPercent: this.cpu.sample(), cpuCount: os.availableParallelism(), loadAverage: os.loadavg().map((n) => round(n)), memory, disk },
      gpus,
      gpuError,
    };
    this.last = sample;
    for (const l of this.listeners) {
      try {
        l(sample);
      } catch (err) {
        this.opts.logger.error({ err }, 'resource sample listener failed');
      }
    }
    await this.checkThresholds(sample);
    return sample;
  }

  private async checkThresholds(sample: ResourceSample): Promise<void> {
    const jobs = this.opts.jobs ? await this.opts.jobs.running().catch((err) => {
      this.opts.logger.error({ err }, 'reading running jobs for resources failed');
      return [] as RunningJob[];
    }) : [];
    const byDevice = new Map(sample.gpus.map((g) => [g.device, g]));
    // Server-wide warnings, for GPUs with or without a job of this node on them.
    for (const g of sample.gpus) {
      for (const w of this.crossed(g)) {
        if (this.shouldWarn(`host|${g.device}|${w.kind}`, true)) {
          this.opts.logger.warn({ device: g.device, gpu: g.name, [w.kind]: w.value, threshold: w.threshold }, w.message);
        }
      }
      for (const kind of ['temperature', 'memory'] as const) {
        if (!this.crossed(g).some((w) => w.kind === kind)) this.shouldWarn(`host|${g.device}|${kind}`, false);
      }
    }
    for (const job of jobs) {
      const gpu = job.device ? byDevice.get(job.device) : undefined;
      const resources = jobResources(sample, job, gpu);
      try {
        await this.opts.jobs!.attach(job.id, resources);
      } catch (err) {
        this.opts.logger.error({ err, job_id: job.id }, 'writing job resources failed');
      }
      const crossed = gpu ? this.crossed(gpu) : [];
      for (const kind of ['temperature', 'memory'] as const) {
        const w = crossed.find((x) => x.kind === kind);
        if (!this.shouldWarn(`${job.id}|${job.device}|${kind}`, !!w) || !w) continue;
        const line = `${sample.sampledAt} [trainhook monitor] WARNING ${w.message} on ${gpu!.device} (${gpu!.name}): ${w.value}${w.unit} ≥ ${w.threshold}${w.unit}\n`;
        await this.opts.jobs!.log(job.id, line).catch((err) =>
          this.opts.logger.error({ err, job_id: job.id }, 'writing a warning to the job log failed'),
        );
      }
    }
    // Forget warnings of jobs that ended.
    const live = new Set(jobs.map((j) => j.id));
    for (const key of this.warned.keys()) {
      const scope = key.split('|')[0]!;
      if (scope !== 'host' && !live.has(scope)) this.warned.delete(key);
    }
  }

  private crossed(g: GpuSample) {
    const out: { kind: 'temperature' | 'memory'; value: number; threshold: number; unit: string; message: string }[] = [];
    if (g.temperatureC !== null && g.temperatureC >= this.opts.gpuTempWarnC) {
      out.push({ kind: 'temperature', value: g.temperatureC, threshold: this.opts.gpuTempWarnC, unit: ' °C', message: 'GPU temperature above GPU_TEMP_WARN_C' });
    }
    if (g.memoryUsedBytes !== null && g.memoryTotalBytes) {
      const pct = round((g.memoryUsedBytes / g.memoryTotalBytes) * 100, 1);
      if (pct >= this.opts.gpuMemoryWarnPercent) {
        out.push({ kind: 'memory', value: pct, threshold: this.opts.gpuMemoryWarnPercent, unit: ' %', message: 'GPU memory above GPU_MEMORY_WARN_PERCENT' });
      }
    }
    return out;
  }

  /** Edge-triggered with a repeat: true on crossing, then every warnRepeatMs while it stays crossed. */
  private shouldWarn(key: string, crossed: boolean): boolean {
    if (!crossed) {
      this.warned.delete(key);
      return false;
    }
    const now = Date.now();
    const last = this.warned.get(key);
    if (last !== undefined && now - last < (this.opts.warnRepeatMs ?? 5 * 60_000)) return false;
    this.warned.set(key, now);
    return true;
  }
}

/**
 * What one job used at this sample. On a GPU: its utilization, memory and temperature. On the
 * CPU: the host's used RAM (there is no per-device figure), no utilization or temperature.
 */
export function jobResources(sample: ResourceSample, job: RunningJob, gpu: GpuSample | undefined): JobResources {
  const prev = job.resources ?? {};
  const memoryGb = gpu
    ? gpu.memoryUsedBytes === null ? null : round(gpu.memoryUsedBytes / GB)
    : round(sample.system.memory.usedBytes / GB);
  const temp = gpu?.temperatureC ?? null;
  const peak = (key: string, value: number | null) => {
    const before = typeof prev[key] === 'number' ? (prev[key] as number) : null;
    if (value === null) return before;
    return before === null ? value : Math.max(before, value);
  };
  return {
    gpu_utilization: gpu?.utilizationPercent ?? null,
    memory_used_gb: memoryGb,
    temperature_c: temp,
    device: job.device,
    sampled_at: sample.sampledAt,
    peak_memory_used_gb: peak('peak_memory_used_gb', memoryGb),
    peak_temperature_c: peak('peak_temperature_c', temp),
  };
}
