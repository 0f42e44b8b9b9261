/**
 * Status reads from memory. Polling GET /jobs/{id} is the API's hot path; a read that goes to
 * the database costs ~0.7 ms of event-loop CPU on PGlite and ~0.3 ms on PostgreSQL
 * (bench/api.ts), ten times the rest of the request. So a job stays here, with its rendered
 * view, until it changes.
 *
 * "Until it changes" has to hold across nodes sharing PostgreSQL: JobService evicts on this
 * node's job events at once, and on every node through the jobs table's trigger
 * (migrations/0003_job_change_notify.sql, LISTEN trainhook_jobs). When the listening
 * connection drops, notifications are lost, so the cache is emptied on each (re)listen.
 *
 * A read that misses takes a ticket before it queries; if any job changed while the query ran
 * the row may predate that change, so it is returned but not kept.
 */
import type { JobRow } from '../db/schema.js';

export interface CachedJob {
  readonly row: JobRow;
  /** The last rendering of this row, with what else it depends on (place in line, base URL). */
  rendered?: { position: number | undefined; baseUrl: string; body: string };
}

export class JobReadCache {
  private readonly entries = new Map<string, CachedJob>();
  private changes = 0;

  /** capacity 0 turns the cache off: every read goes to the database. */
  constructor(private capacity: number) {}

  /** For a node that cannot learn of other nodes' changes. */
  disable(): void {
    this.capacity = 0;
    this.clear();
  }

  get(id: string): CachedJob | undefined {
    return this.entries.get(id);
  }

  /** Taken before a read from the database; see put(). */
  ticket(): number {
    return this.changes;
  }

  /** Keeps a row read from the database, unless a change was announced since its ticket. */
  put(row: JobRow, ticket: number): CachedJob {
    const entry: CachedJob = { row };
    if (this.capacity === 0 || ticket !== this.changes) return entry;
    if (this.entries.size >= this.capacity && !this.entries.has(row.id)) {
      // Oldest first: status polling is about recent jobs.
      this.entries.delete(this.entries.keys().next().value!);
    }
    this.entries.set(row.id, entry);
    return entry;
  }

  evict(id: string): void {
    this.changes++;
    this.entries.delete(id);
  }

  clear(): void {
    this.changes++;
    this.entries.clear();
  }
}
