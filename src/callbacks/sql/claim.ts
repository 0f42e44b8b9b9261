/**
 * Takes the callbacks that are due, for delivery by this node. Per job only the oldest pending
 * event can be taken (an older pending one, in flight or waiting for its retry, blocks the
 * later ones: delivery in order per job); different jobs go in parallel.
 *
 * The claim is a short transaction that stamps locked_by/locked_until and commits; the HTTP
 * attempt runs outside any transaction, and its result is written by completeAttempts. SKIP
 * LOCKED lets several nodes claim at once; locked_until (timeout + margin) hands an event to
 * another node when the one that took it died mid-attempt.
 */
import { sql } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import type { CallbackType } from '../payloads.js';
import { rows } from './rows.js';

export interface ClaimedCallback {
  id: string;
  jobId: string;
  type: CallbackType;
  /** The stored JSON text, sent byte for byte. */
  body: string;
  attempts: number;
  manual: boolean;
  url: string | null;
  secret: string | null;
}

export async function claimCallbacks(
  db: DbOrTx,
  opts: { nodeId: string; limit: number; lockSeconds: number; progressMinIntervalMs: number },
): Promise<ClaimedCallback[]> {
  const claimed = await rows<{
    id: string;
    job_id: string;
    type: CallbackType;
    body: string;
    attempts: number;
    manual: boolean;
    callback_url: string | null;
    callback_secret: string | null;
  }>(
    db,
    sql`
    update callback_events e
    set locked_by = ${opts.nodeId}, locked_until = now() + make_interval(secs => ${opts.lockSeconds}::float8),
      -- The time the attempt really starts (it may have waited behind an older event of its job):
      -- the progress rate limit counts from here.
      next_attempt_at = now()
    from jobs j
    where j.id = e.job_id and e.id in (
      select c.id from callback_events c
      where c.state = 'pending' and c.next_attempt_at <= now()
        and (c.locked_until is null or c.locked_until < now())
        and not exists (select 1 from callback_events o
          where o.job_id = c.job_id and o.state = 'pending' and o.seq < c.seq)
        -- The progress rate limit, checked again here: a progress event written while the one
        -- before it was being claimed (on PostgreSQL, in a snapshot from before that claim)
        -- could not see its start, and would go right after it.
        and (c.type <> 'training_progress' or not exists (select 1 from callback_events s
          where s.job_id = c.job_id and s.type = 'training_progress' and s.seq < c.seq
            and s.state in ('delivered', 'dead')
            and s.next_attempt_at > now() - make_interval(secs => ${opts.progressMinIntervalMs / 1000}::float8)))
      order by c.next_attempt_at, c.seq
      limit ${opts.limit}
      for update of c skip locked
    )
    returning e.id, e.job_id, e.type, e.payload::text as body, e.attempts, e.manual, j.callback_url, j.callback_secret`,
  );
  return claimed.map((r) => ({
    id: r.id,
    jobId: r.job_id,
    type: r.type,
    body: r.body,
    attempts: Number(r.attempts),
    manual: r.manual,
    url: r.callback_url,
    secret: r.callback_secret,
  }));
}

/** On start: events this node had taken before it stopped are free again at once. */
export async function releaseLocks(db: DbOrTx, nodeId: string): Promise<number> {
  const released = await rows<{ id: string }>(
    db,
    sql`update callback_events set locked_by = null, locked_until = null
        where locked_by = ${nodeId} and state = 'pending' returning id`,
  );
  return released.length;
}
