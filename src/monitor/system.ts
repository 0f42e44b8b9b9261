/** CPU, memory and disk of the host: always available, from os, /proc/meminfo and statfs. */
import fs from 'node:fs';
import os from 'node:os';

export interface SystemSample {
  /** Busy share of all cores since the previous sample; null on the first one. */
  cpuPercent: number | null;
  cpuCount: number;
  loadAverage: number[];
  memory: { totalBytes: number; usedBytes: number; availableBytes: number };
  /** The file system holding the workdir (datasets, runs, checkpoints). */
  disk: { path: string; totalBytes: number; usedBytes: number; freeBytes: number } | null;
}

/** CPU use from the deltas of os.cpus() times between two calls. */
export class CpuMeter {
  private last: { idle: number; total: number } | null = null;

  sample(): number | null {
    let idle = 0;
    let total = 0;
    for (const cpu of os.cpus()) {
      const t = cpu.times;
      idle += t.idle;
      total += t.user + t.nice + t.sys + t.idle + t.irq;
    }
    const prev = this.last;
    this.last = { idle, total };
    if (!prev || total <= prev.total) return null;
    const busy = 1 - (idle - prev.idle) / (total - prev.total);
    return Math.round(Math.min(1, Math.max(0, busy)) * 1000) / 10;
  }
}

/**
 * Used memory as `free` reports it: total minus MemAvailable (page cache the kernel can drop
 * is not "used"). os.freemem() is the fallback off Linux.
 */
export async function readMemory(): Promise<SystemSample['memory']> {
  const total = os.totalmem();
  let available = os.freemem();
  try {
    const text = await fs.promises.readFile('/proc/meminfo', 'utf8');
    const m = /^MemAvailable:\s+(\d+)\s+kB/m.exec(text);
    if (m) available = Number(m[1]) * 1024;
  } catch {
    /* not Linux */
  }
  return { totalBytes: total, usedBytes: Math.max(0, total - available), availableBytes: available };
}

export async function readDisk(dir: string): Promise<SystemSample['disk']> {
  try {
    const s = await fs.promises.statfs(dir);
    const total = s.blocks * s.bsize;
    const free = s.bavail * s.bsize;
    return { path: dir, totalBytes: total, freeBytes: free, usedBytes: Math.max(0, total - s.bfree * s.bsize) };
  } catch {
    return null;
  }
}
