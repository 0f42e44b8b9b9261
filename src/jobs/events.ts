/**
 * In-process notifications of job changes, published after the change is committed. SSE
 * streams, metrics and the dashboard listen here. A failing listener is logged and never
 * breaks the job loop (safeEmit, as graphile-worker does).
 */
import { EventEmitter } from 'node:events';
import type { JobRow } from '../db/schema.js';
import type { Logger } from '../core/logger.js';

export type JobChange =
  | 'queued'
  | 'claimed'
  | 'started'
  | 'phase'
  | 'progress'
  | 'epoch'
  | 'completed'
  | 'failed'
  | 'cancelled'
  | 'requeued'
  /** A failed attempt that the job retries later (not a failure of the job: no callback). */
  | 'retrying';

export interface JobChangeEvent {
  job: JobRow;
  change: JobChange;
  /** Per-epoch metrics for change === 'epoch'. */
  epoch?: { epoch: number; metrics: Record<string, number | null>; epochSeconds: number | null };
}

export class JobEvents {
  private readonly emitter = new EventEmitter();

  constructor(private readonly logger: Logger) {
    // Every SSE client is a listener; the bound is on clients (see the stream module), not here.
    this.emitter.setMaxListeners(0);
  }

  on(listener: (e: JobChangeEvent) => void): () => void {
    this.emitter.on('change', listener);
    return () => this.emitter.off('change', listener);
  }

  emit(e: JobChangeEvent): void {
    for (const listener of this.emitter.listeners('change') as Array<(e: JobChangeEvent) => void>) {
      try {
        listener(e);
      } catch (err) {
        this.logger.error({ err, job_id: e.job.id, change: e.change }, 'job event listener failed');
      }
    }
  }
}
