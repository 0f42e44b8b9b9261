import fs from 'node:fs';

/** The training worker of a job: the python process whose command line names the job's folder. */
export function workerPid(jobId: string): number | null {
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmd.includes('main.py') && cmd.includes(jobId)) return Number(entry);
    } catch {
      /* gone */
    }
  }
  return null;
}
