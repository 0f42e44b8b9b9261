/**
 * Writes one callback into the outbox, inside the transaction of the job change that causes
 * it (the caller's tx), so an event exists if and only if its change committed.
 *
 * Progress coalescing, in the same statement: a new training_progress event supersedes every
 * progress event of the job that is still waiting (not in flight), inherits its place in the
 * retry schedule (the latest next attempt time and the most attempts of those it replaces, so a
 * failing receiver, or one that asked for a Retry-After, is not hammered by fresh events), and
 * is not due before CALLBACK_PROGRESS_MIN_INTERVAL_MS after the start of the last progress
 * attempt (claims stamp next_attempt_at with the time they take an event). So at most one progress event per job waits, the newest state
 * always goes, and completed/failed events are never superseded or reordered.
 *
 * A receiver that answered 410 Gone for this job gets nothing more: the event is written dead.
 */
import { sql } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import type { CallbackType } from '../payloads.js';
import { rows, toDate } from './rows.js';

export const GONE_ERROR = 'not sent: the receiver answered 410 Gone for this job';

export interface NewCallback {
  id: string;
  jobId: string;
  type: CallbackType;
  body: string;
  minIntervalMs: number;
}

export async function enqueueCallback(db: DbOrTx, e: NewCallback): Promise<{ dueAt: Date; state: string }> {
  const gone = sql`(select exists (select 1 from callback_events d
      where d.job_id = ${e.jobId} and d.state = 'dead' and d.last_status_code = 410) as gone) g`;
  const query =
    e.type === 'training_progress'
      ? sql`
      with superseded as (
        update callback_events set state = 'superseded', locked_by = null, locked_until = null
        where job_id = ${e.jobId} and state = 'pending' and type = 'training_progress'
          and (locked_until is null or locked_until < now())
        returning next_attempt_at, attempts
      ), last_sent as (
        select next_attempt_at from callback_events
        where job_id = ${e.jobId} and type = 'training_progress'
          and (state in ('delivered', 'dead') or (state = 'pending' and locked_until >= now()))
        order by seq desc limit 1
      )
      insert into callback_events (id, job_id, type, payload, attempts, next_attempt_at, state, last_error)
      select ${e.id}, ${e.jobId}, 'training_progress', ${e.body}::json,
        coalesce((select max(attempts) from superseded), 0),
        greatest(now(), (select max(next_attempt_at) from superseded),
          (select next_attempt_at from last_sent) + make_interval(secs => ${e.minIntervalMs / 1000}::float8)),
        case when gone then 'dead' else 'pending' end,
        case when gone then ${GONE_ERROR} end
      from ${gone}
      returning next_attempt_at, state`
      : sql`
      insert into callback_events (id, job_id, type, payload, state, last_error)
      select ${e.id}, ${e.jobId}, ${e.type}, ${e.body}::json,
        case when gone then 'dead' else 'pending' end,
        case when gone then ${GONE_ERROR} end
      from ${gone}
      returning next_attempt_at, state`;
  const [row] = await rows<{ next_attempt_at: unknown; state: string }>(db, query);
  return { dueAt: toDate(row!.next_attempt_at), state: row!.state };
}
