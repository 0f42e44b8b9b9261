/**
 * The memory a worker's whole process tree uses, read from /proc: the worker runs in its own
 * process group (process.ts), so its DataLoader workers and any other child are found by their
 * group id, whatever their parent.
 *
 * Each process counts its proportional set size (Pss, from smaps_rollup): forked DataLoader
 * workers share most of their pages with the trainer, and adding up their RSS would count the
 * same libraries once per worker. Where smaps_rollup is missing (kernels before 4.14), VmRSS is
 * used, which overcounts shared pages but never undercounts.
 */
import { readdir, readFile } from 'node:fs/promises';

/** Bytes used by every process of the group; null off Linux (no /proc). */
export async function processGroupMemory(pgid: number): Promise<number | null> {
  let names: string[];
  try {
    names = await readdir('/proc');
  } catch {
    return null;
  }
  let total = 0;
  await Promise.all(
    names.map(async (name) => {
      if (!/^\d+$/.test(name)) return;
      try {
        const stat = await readFile(`/proc/${name}/stat`, 'utf8');
        // Fields after the command name, which may itself hold spaces and parentheses.
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        if (Number(fields[2]) !== pgid) return; // state, ppid, pgrp
        total += await processMemory(name);
      } catch {
        /* the process ended between the listing and the read */
      }
    }),
  );
  return total;
}

async function processMemory(pid: string): Promise<number> {
  try {
    const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
    const m = /^Pss:\s+(\d+)\s+kB/m.exec(rollup);
    if (m) return Number(m[1]) * 1024;
  } catch {
    /* older kernel: fall back to VmRSS */
  }
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}
