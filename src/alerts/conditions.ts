/**
 * What is wrong right now, from one look at the node: each condition that holds is an
 * `ActiveCondition` with a key that stays the same while it holds (so the tracker can tell a
 * new problem from one already reported). Pure: the inputs are gathered by sources.ts.
 */
import type { GpuSample } from '../monitor/gpu.js';
import type { SystemSample } from '../monitor/system.js';

export type ConditionName =
  | 'gpu_temperature'
  | 'gpu_memory'
  | 'job_duration'
  | 'queue_length'
  | 'disk_usage'
  | 'worker_stalled'
  | 'callback_failing';

export type Severity = 'warning' | 'critical';

export interface ActiveCondition {
  /** Stable while the condition holds: condition name plus what it is about. */
  key: string;
  condition: ConditionName;
  severity: Severity;
  /** What it is about: a device, a job id, a callback URL, the queue, the disk's path. */
  subject: string;
  value: number;
  threshold: number;
  unit: string;
  /** One line for people. */
  summary: string;
  jobId?: string;
}

export interface Thresholds {
  gpuTempC: number;
  gpuMemoryPercent: number;
  jobHours: number;
  queueLength: number;
  diskPercent: number;
  stallSeconds: number;
  callbackFailingHours: number;
}

export interface RunningJobView {
  id: string;
  name: string;
  startedAt: Date | null;
  /** When the job last recorded a change (ms since the epoch). */
  lastChangeMs: number;
}

export interface FailingEndpoint {
  url: string;
  /** The oldest event still waiting for this endpoint. */
  waitingSince: Date;
}

export interface Observation {
  now: number;
  system: SystemSample | null;
  gpus: GpuSample[];
  /** null: could not be read this time (the condition keeps its previous state). */
  queueLength: number | null;
  runningJobs: RunningJobView[] | null;
  failingEndpoints: FailingEndpoint[] | null;
}

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

export function evaluate(o: Observation, t: Thresholds): ActiveCondition[] {
  const out: ActiveCondition[] = [];
  for (const g of o.gpus) {
    if (g.temperatureC !== null && g.temperatureC >= t.gpuTempC) {
      out.push({
        key: `gpu_temperature|${g.device}`,
        condition: 'gpu_temperature',
        severity: g.temperatureC >= t.gpuTempC + 10 ? 'critical' : 'warning',
        subject: g.device,
        value: g.temperatureC,
        threshold: t.gpuTempC,
        unit: '°C',
        summary: `GPU ${g.device} (${g.name}) at ${g.temperatureC} °C, threshold ${t.gpuTempC} °C`,
      });
    }
    if (g.memoryUsedBytes !== null && g.memoryTotalBytes) {
      const pct = round((g.memoryUsedBytes / g.memoryTotalBytes) * 100);
      if (pct >= t.gpuMemoryPercent) {
        out.push({
          key: `gpu_memory|${g.device}`,
          condition: 'gpu_memory',
          severity: 'warning',
          subject: g.device,
          value: pct,
          threshold: t.gpuMemoryPercent,
          unit: '%',
          summary: `GPU ${g.device} (${g.name}) memory ${pct} % used, threshold ${t.gpuMemoryPercent} %`,
        });
      }
    }
  }
  const disk = o.system?.disk;
  if (disk && disk.totalBytes > 0) {
    const pct = round((disk.usedBytes / disk.totalBytes) * 100);
    if (pct >= t.diskPercent) {
      out.push({
        key: `disk_usage|${disk.path}`,
        condition: 'disk_usage',
        severity: pct >= 98 ? 'critical' : 'warning',
        subject: disk.path,
        value: pct,
        threshold: t.diskPercent,
        unit: '%',
        summary: `disk of ${disk.path} ${pct} % full (${round(disk.freeBytes / 1e9, 2)} GB free), threshold ${t.diskPercent} %`,
      });
    }
  }
  if (o.queueLength !== null && o.queueLength > t.queueLength) {
    out.push({
      key: 'queue_length|queue',
      condition: 'queue_length',
      severity: 'warning',
      subject: 'queue',
      value: o.queueLength,
      threshold: t.queueLength,
      unit: 'jobs',
      summary: `${o.queueLength} jobs queued, more than ${t.queueLength}`,
    });
  }
  for (const job of o.runningJobs ?? []) {
    if (job.startedAt) {
      const hours = (o.now - job.startedAt.getTime()) / 3_600_000;
      if (hours >= t.jobHours) {
        out.push({
          key: `job_duration|${job.id}`,
          condition: 'job_duration',
          severity: 'warning',
          subject: job.id,
          jobId: job.id,
          value: round(hours, 4),
          threshold: t.jobHours,
          unit: 'h',
          summary: `job ${job.id} (${job.name}) running for ${round(hours, 2)} h, limit ${t.jobHours} h`,
        });
      }
    }
    const quiet = (o.now - job.lastChangeMs) / 1000;
    if (quiet >= t.stallSeconds) {
      out.push({
        key: `worker_stalled|${job.id}`,
        condition: 'worker_stalled',
        severity: 'critical',
        subject: job.id,
        jobId: job.id,
        value: Math.floor(quiet),
        threshold: t.stallSeconds,
        unit: 's',
        summary: `job ${job.id} (${job.name}) has recorded no progress for ${Math.floor(quiet)} s, threshold ${t.stallSeconds} s`,
      });
    }
  }
  for (const e of o.failingEndpoints ?? []) {
    const hours = (o.now - e.waitingSince.getTime()) / 3_600_000;
    out.push({
      key: `callback_failing|${e.url}`,
      condition: 'callback_failing',
      severity: 'warning',
      subject: e.url,
      value: round(hours, 4),
      threshold: t.callbackFailingHours,
      unit: 'h',
      summary: `callback endpoint ${e.url} has accepted nothing for ${round(hours, 2)} h, threshold ${t.callbackFailingHours} h`,
    });
  }
  return out;
}
