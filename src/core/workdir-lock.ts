/**
 * One server per workdir: the embedded database (PGlite) must never be opened by two
 * processes. A lock file holds the owner's pid; a lock left by a killed server (its pid gone)
 * is taken over, so a restart after SIGKILL just works.
 */
import fs from 'node:fs';
import path from 'node:path';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function lockWorkdir(workdir: string): () => void {
  const file = path.join(workdir, 'server.pid');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      return () => {
        try {
          if (fs.readFileSync(file, 'utf8') === String(process.pid)) fs.unlinkSync(file);
        } catch {
          /* already gone */
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(fs.readFileSync(file, 'utf8'));
      if (owner && owner !== process.pid && alive(owner)) {
        throw new Error(`workdir ${workdir} is in use by another trainhook server (pid ${owner})`);
      }
      fs.rmSync(file, { force: true });
    }
  }
  throw new Error(`could not lock workdir ${workdir}`);
}
