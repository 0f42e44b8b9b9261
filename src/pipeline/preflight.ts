/**
 * Pre-flight: whether this host can hold a job before any time is spent on it, and the limits
 * watched while its worker runs.
 *
 * Disk (the workdir's file system) is asked at each step that fills it, with what the step
 * will write on top of the job's outputs (JOB_OUTPUT_DISK_MB) and the reserve kept for the
 * database and logs (DISK_RESERVE_MB):
 *   before the download's body   archive (Content-Length) + its extraction, estimated as large
 *                                as the archive (the central directory is not read yet);
 *   before extraction            the central directory's uncompressed sizes (the archive is
 *                                deleted once extracted, so it is not counted again);
 *   before training              the outputs alone.
 * Memory: available RAM for the job's resources.max_memory_gb (else MIN_FREE_MEMORY_GB), and
 * free memory on the job's GPU (MIN_FREE_GPU_MEMORY_GB) from nvidia-smi.
 *
 * Refusals are JobErrors INSUFFICIENT_DISK / INSUFFICIENT_MEMORY whose message says how much
 * is needed and how much is free, with the same figures in details.
 */
import type { Config } from '../core/config.js';
import { JobError } from '../core/errors.js';
import { queryGpus } from '../monitor/gpu.js';
import { readDisk, readMemory } from '../monitor/system.js';
import { processGroupMemory } from '../worker/memory.js';

export type ResourceLimits = Config['resourceGuard'];

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export interface DiskNeed {
  /** What the bytes are for, in words: "archive 12.0 MiB + extraction ~12.0 MiB". */
  parts: { label: string; bytes: number }[];
}

/** Throws INSUFFICIENT_DISK when `dir`'s free space is under the parts + outputs + reserve. */
export async function checkDisk(dir: string, need: DiskNeed, limits: ResourceLimits, step: string): Promise<void> {
  const disk = await readDisk(dir);
  if (!disk) return; // no statfs here: nothing to judge by
  const parts = [
    ...need.parts,
    { label: 'outputs', bytes: limits.jobOutputBytes },
    { label: 'reserve', bytes: limits.diskReserveBytes },
  ].filter((p) => p.bytes > 0);
  const required = parts.reduce((sum, p) => sum + p.bytes, 0);
  if (disk.freeBytes >= required) return;
  const breakdown = parts.map((p) => `${p.label} ${formatBytes(p.bytes)}`).join(' + ');
  throw new JobError(
    'INSUFFICIENT_DISK',
    `not enough disk ${step}: needs ${formatBytes(required)} (${breakdown}), ${formatBytes(disk.freeBytes)} free in ${dir}`,
    {
      step,
      required_bytes: required,
      free_bytes: disk.freeBytes,
      path: dir,
      parts: Object.fromEntries(parts.map((p) => [p.label, p.bytes])),
    },
  );
}

/** The disk a dataset step will fill: see the header for what each step counts. */
export function datasetDiskNeed(stage: 'download' | 'extract', bytes: number): DiskNeed {
  return stage === 'download'
    ? { parts: [{ label: 'archive', bytes }, { label: 'extraction (estimated)', bytes }] }
    : { parts: [{ label: 'extraction', bytes }] };
}

/**
 * Throws INSUFFICIENT_MEMORY when the host's available RAM, or the free memory of the job's GPU,
 * is under what the job needs.
 */
export async function checkMemory(
  job: { device: string; maxMemoryBytes: number | null },
  limits: ResourceLimits,
  opts: { nvidiaSmi?: string | undefined } = {},
): Promise<void> {
  const ram = await readMemory();
  const needRam = job.maxMemoryBytes ?? limits.minFreeMemoryBytes;
  if (ram.availableBytes < needRam) {
    const why = job.maxMemoryBytes !== null ? 'resources.max_memory_gb' : 'MIN_FREE_MEMORY_GB';
    throw new JobError(
      'INSUFFICIENT_MEMORY',
      `not enough memory to start: needs ${formatBytes(needRam)} of RAM (${why}), ${formatBytes(ram.availableBytes)} available`,
      { kind: 'ram', required_bytes: needRam, free_bytes: ram.availableBytes },
    );
  }
  const cuda = /^cuda:(\d+)$/.exec(job.device);
  if (!cuda || limits.minFreeGpuMemoryBytes === 0) return;
  const result = await queryGpus({ command: opts.nvidiaSmi });
  // Without nvidia-smi there is nothing to judge by; the worker's own out-of-memory handling remains.
  if (!result.ok) return;
  const gpu = result.gpus.find((g) => g.index === Number(cuda[1]));
  if (!gpu || gpu.memoryTotalBytes === null || gpu.memoryUsedBytes === null) return;
  const free = gpu.memoryTotalBytes - gpu.memoryUsedBytes;
  if (free < limits.minFreeGpuMemoryBytes) {
    throw new JobError(
      'INSUFFICIENT_MEMORY',
      `not enough GPU memory on ${job.device} (${gpu.name}): needs ${formatBytes(limits.minFreeGpuMemoryBytes)} free (MIN_FREE_GPU_MEMORY_GB), ${formatBytes(free)} free of ${formatBytes(gpu.memoryTotalBytes)}`,
      { kind: 'gpu', device: job.device, required_bytes: limits.minFreeGpuMemoryBytes, free_bytes: free },
    );
  }
}

/**
 * What is watched while a worker runs: the workdir's free disk against the reserve (a worker
 * stopped there leaves room for the database to record why), and the worker's process group
 * against resources.max_memory_gb. Returns the refusal, or null while within limits.
 */
export function workerLimits(opts: { workdir: string; maxMemoryBytes: number | null; limits: ResourceLimits }) {
  return async (pid: number): Promise<JobError | null> => {
    const disk = opts.limits.diskReserveBytes > 0 ? await readDisk(opts.workdir) : null;
    if (disk && disk.freeBytes < opts.limits.diskReserveBytes) {
      return new JobError(
        'INSUFFICIENT_DISK',
        `the disk filled up during training: ${formatBytes(disk.freeBytes)} free in ${opts.workdir}, under the ${formatBytes(opts.limits.diskReserveBytes)} kept free (DISK_RESERVE_MB); the worker was stopped`,
        { step: 'training', free_bytes: disk.freeBytes, required_bytes: opts.limits.diskReserveBytes, path: opts.workdir },
      );
    }
    if (opts.maxMemoryBytes !== null) {
      const used = await processGroupMemory(pid);
      if (used !== null && used > opts.maxMemoryBytes) {
        return new JobError(
          'INSUFFICIENT_MEMORY',
          `the worker used ${formatBytes(used)} of RAM, over resources.max_memory_gb (${formatBytes(opts.maxMemoryBytes)}); it was stopped`,
          { kind: 'ram', used_bytes: used, limit_bytes: opts.maxMemoryBytes },
        );
      }
    }
    return null;
  };
}
