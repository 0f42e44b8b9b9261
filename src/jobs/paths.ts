/**
 * Where a job's files live: workdir/jobs/{id}/ is both the job's folder and Ultralytics' run
 * directory (project=workdir/jobs, name={id}), so weights/, results.csv and plots sit beside
 * dataset/, data.yaml and worker.log.
 */
import path from 'node:path';

export function jobDir(workdir: string, jobId: string): string {
  return path.join(workdir, 'jobs', jobId);
}

export function jobLogFile(workdir: string, jobId: string): string {
  return path.join(jobDir(workdir, jobId), 'worker.log');
}
