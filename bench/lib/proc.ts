/**
 * What the benches read from /proc (Linux) about the processes they time: CPU seconds, run-queue
 * wait, the training worker among a server's children.
 */
import fs from 'node:fs';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Run-queue wait of a process's main thread (/proc/<pid>/task/<pid>/schedstat, Linux): the time
 * it was ready to run but had no CPU. On a shared machine this is what other tenants cost a run;
 * wall − wait is the run's time with that taken out, a steadier figure to compare than wall.
 * Sampled every 200 ms while the process lives (the last ≤ 200 ms are missed, alike for both).
 */
export class WaitWatch {
  private pid: number | null = null;
  private lastWaitNs: number | null = null;
  private readonly timer: NodeJS.Timeout;
  constructor(private readonly find: () => number | null) {
    this.timer = setInterval(() => this.sample(), 200);
    this.sample();
  }
  private sample(): void {
    this.pid ??= this.find();
    if (this.pid === null) return;
    try {
      const fields = fs.readFileSync(`/proc/${this.pid}/task/${this.pid}/schedstat`, 'utf8').trim().split(/\s+/);
      this.lastWaitNs = Number(fields[1]);
    } catch {
      /* gone */
    }
  }
  /** Seconds waited, or null when the process was never seen. */
  stop(): number | null {
    this.sample();
    clearInterval(this.timer);
    return this.lastWaitNs === null ? null : this.lastWaitNs / 1e9;
  }
}

/** The worker: a child of the server process whose command line runs train.py. */
export function findWorkerPid(serverPid: number): number | null {
  try {
    for (const task of fs.readdirSync(`/proc/${serverPid}/task`)) {
      let children = '';
      try {
        children = fs.readFileSync(`/proc/${serverPid}/task/${task}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const pid of children.trim().split(/\s+/).filter(Boolean).map(Number)) {
        try {
          if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('train.py')) return pid;
        } catch {
          /* gone */
        }
      }
    }
  } catch {
    /* no /proc */
  }
  return null;
}

/** CPU seconds of a process from /proc (Linux): own (utime+stime) and reaped children's (cutime+cstime). */
export type CpuStat = { own: number; children: number };
export function cpuOf(pid: number | 'self'): CpuStat | null {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at ") ".
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ').map(Number);
    // f[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17 → f[11..14]. USER_HZ = 100.
    return { own: (f[11]! + f[12]!) / 100, children: (f[13]! + f[14]!) / 100 };
  } catch {
    return null;
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
export const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

/** Runs a bench's clean-up steps, last registered first; one that fails does not stop the others. */
export async function cleanUp(steps: (() => unknown)[]): Promise<void> {
  for (const step of [...steps].reverse()) {
    try {
      await step();
    } catch {
      /* best effort */
    }
  }
}
