/**
 * When each job last changed, as this process saw it: every recorded change (phase, batch
 * progress, epoch, start) counts. A running job that stops changing is a stalled worker; the
 * alerts and the `training_job_last_progress_timestamp_seconds` gauge read it from here.
 *
 * In memory only: after a restart a job's clock starts when it is first seen running again,
 * so a restart never makes a healthy job look stalled.
 */
import type { JobEvents } from '../jobs/events.js';

const FINISHED = new Set(['completed', 'failed', 'cancelled', 'requeued']);

export class JobActivity {
  private readonly last = new Map<string, number>();

  constructor(events: JobEvents) {
    events.on(({ job, change }) => {
      if (FINISHED.has(change)) this.last.delete(job.id);
      else this.last.set(job.id, Date.now());
    });
  }

  /** The last change of a job (ms since the epoch); a job not seen yet starts its clock now. */
  lastChange(jobId: string): number {
    let at = this.last.get(jobId);
    if (at === undefined) {
      at = Date.now();
      this.last.set(jobId, at);
    }
    return at;
  }

  /** Forgets jobs that are no longer running (their end may have been recorded by another node). */
  keepOnly(running: Iterable<string>): void {
    const keep = new Set(running);
    for (const id of this.last.keys()) if (!keep.has(id)) this.last.delete(id);
  }
}
