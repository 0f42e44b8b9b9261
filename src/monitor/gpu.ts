/**
 * GPU statistics from NVML through nvidia-smi: one CSV query, no native binding to build. The
 * query names its fields, so the column order below is the contract; "[N/A]" and
 * "[Not Supported]" (what nvidia-smi prints for a field a board lacks) read as null.
 */
import { execFile } from 'node:child_process';

export interface GpuSample {
  index: number;
  /** trainhook's device name, as in DEVICES and the jobs table: cuda:<index>. */
  device: string;
  name: string;
  utilizationPercent: number | null;
  memoryUsedBytes: number | null;
  memoryTotalBytes: number | null;
  temperatureC: number | null;
  powerWatts: number | null;
}

export const GPU_QUERY_FIELDS = [
  'index',
  'name',
  'utilization.gpu',
  'memory.used',
  'memory.total',
  'temperature.gpu',
  'power.draw',
] as const;

const MIB = 1024 * 1024;

function num(field: string | undefined): number | null {
  if (field === undefined) return null;
  const v = field.trim();
  if (v === '' || v.startsWith('[')) return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

/** Parses `--format=csv,noheader,nounits` output of GPU_QUERY_FIELDS. A GPU name may hold commas. */
export function parseGpuCsv(stdout: string): GpuSample[] {
  const out: GpuSample[] = [];
  for (const line of stdout.split(/\r?\n/)) {
    if (!line.trim()) continue;
    const cells = line.split(',');
    if (cells.length < GPU_QUERY_FIELDS.length) continue;
    const index = num(cells[0]);
    if (index === null || !Number.isInteger(index)) continue;
    const tail = cells.slice(-5);
    const name = cells.slice(1, cells.length - 5).join(',').trim();
    const memUsed = num(tail[1]);
    const memTotal = num(tail[2]);
    out.push({
      index,
      device: `cuda:${index}`,
      name,
      utilizationPercent: num(tail[0]),
      memoryUsedBytes: memUsed === null ? null : memUsed * MIB,
      memoryTotalBytes: memTotal === null ? null : memTotal * MIB,
      temperatureC: num(tail[3]),
      powerWatts: num(tail[4]),
    });
  }
  return out;
}

export type GpuQueryResult =
  | { ok: true; gpus: GpuSample[] }
  /** missing: no nvidia-smi on this machine (a CPU-only host), not worth asking again. */
  | { ok: false; missing: boolean; error: string };

export function queryGpus(opts: { command?: string; timeoutMs?: number } = {}): Promise<GpuQueryResult> {
  const command = opts.command ?? 'nvidia-smi';
  return new Promise((resolve) => {
    execFile(
      command,
      [`--query-gpu=${GPU_QUERY_FIELDS.join(',')}`, '--format=csv,noheader,nounits'],
      { timeout: opts.timeoutMs ?? 5000, windowsHide: true },
      (err, stdout) => {
        if (err) {
          const code = (err as NodeJS.ErrnoException).code;
          resolve({ ok: false, missing: code === 'ENOENT' || code === 'EACCES', error: err.message.split('\n')[0] ?? String(code) });
          return;
        }
        resolve({ ok: true, gpus: parseGpuCsv(stdout) });
      },
    );
  });
}
