/** The resource sample as the status page and the dashboard stream show it: rounded, in GB. */
import type { ResourceSample } from './monitor.js';

const GB = 1e9;
const r1 = (n: number) => Math.round(n * 10) / 10;
const gb = (bytes: number | null) => (bytes === null ? null : r1(bytes / GB));
const pct = (part: number | null, whole: number | null) => (part === null || !whole ? null : r1((part / whole) * 100));

export function resourcesView(sample: ResourceSample | null) {
  if (!sample) return null;
  const { memory, disk } = sample.system;
  return {
    sampled_at: sample.sampledAt,
    cpu: { percent: sample.system.cpuPercent, cores: sample.system.cpuCount, load: sample.system.loadAverage },
    ram: { used_gb: gb(memory.usedBytes), total_gb: gb(memory.totalBytes), percent: pct(memory.usedBytes, memory.totalBytes) },
    disk: disk
      ? { path: disk.path, used_gb: gb(disk.usedBytes), total_gb: gb(disk.totalBytes), free_gb: gb(disk.freeBytes), percent: pct(disk.usedBytes, disk.totalBytes) }
      : null,
    gpus: sample.gpus.map((g) => ({
      device: g.device,
      name: g.name,
      utilization: g.utilizationPercent,
      memory_used_gb: gb(g.memoryUsedBytes),
      memory_total_gb: gb(g.memoryTotalBytes),
      memory_percent: pct(g.memoryUsedBytes, g.memoryTotalBytes),
      temperature_c: g.temperatureC,
      power_w: g.powerWatts,
    })),
    gpu_error: sample.gpuError,
  };
}
export type ResourcesView = NonNullable<ReturnType<typeof resourcesView>>;
