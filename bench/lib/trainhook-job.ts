/**
 * One job through a real trainhook server, timed the same way for every engine's overhead bench:
 * wall from the worker's spawn (its log's first line) to the job's finished_at, the worker's CPU
 * (the server's reaped children), and the run-queue wait of its main thread.
 */
import fs from 'node:fs';
import path from 'node:path';
import { api, type ChildServer } from '../../test/helpers/server.js';
import { WaitWatch, cpuOf, findWorkerPid, sleep } from './proc.js';

export interface TrainhookJobRun {
  id: string;
  /** The job's folder (its run folder): workdir/jobs/{id}. */
  dir: string;
  wall: number;
  cpu: number | null;
  wait: number | null;
  /** The worker's arguments, as the job stored them in worker-spec.json. */
  args: Record<string, unknown>;
  /** The files of the job's folder, sorted. */
  files: string[];
}

/** A CSV file as rows of cells (the header first). */
export const readCsv = (file: string): string[][] => fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split(','));

/** Submits the request, waits for the job to complete (polling every pollMs), and measures it. */
export async function runTrainhookJob(server: ChildServer, workdir: string, request: Record<string, unknown>, pollMs: number): Promise<TrainhookJobRun> {
  const call = api(server.url);
  const serverPid = server.child.pid!;
  const before = cpuOf(serverPid);
  const watch = new WaitWatch(() => findWorkerPid(serverPid));
  const r = await call('/api/v1/train', { method: 'POST', json: request });
  if (r.status !== 202) throw new Error(`POST /api/v1/train: ${r.status} ${r.text}`);
  const id = r.json.job_id as string;
  let job: any;
  for (;;) {
    await sleep(pollMs);
    job = (await call(`/api/v1/jobs/${id}`)).json;
    if (['completed', 'failed', 'cancelled'].includes(job?.status)) break;
  }
  const wait = watch.stop();
  const dir = path.join(workdir, 'jobs', id);
  const log = fs.readFileSync(path.join(dir, 'worker.log'), 'utf8');
  if (job.status !== 'completed') throw new Error(`job ${id} ${job.status}: ${JSON.stringify(job.error)}\n${log.slice(-3000)}`);
  const spawnAt = Date.parse(/^\[(?:runner|trainhook) ([^\]]+)\] spawn /m.exec(log)![1]!);
  const after = cpuOf(serverPid);
  const spec = JSON.parse(fs.readFileSync(path.join(dir, 'worker-spec.json'), 'utf8')) as { args: Record<string, unknown> };
  return {
    id,
    dir,
    wall: (Date.parse(job.finished_at) - spawnAt) / 1000,
    cpu: before && after ? after.children - before.children : null,
    wait,
    args: spec.args,
    files: fs.readdirSync(dir).sort(),
  };
}
