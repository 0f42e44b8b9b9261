/**
 * Records the outcome of delivery attempts, many at once (one statement per batch: the
 * dispatcher's throughput on PGlite is bound by statements, not by HTTP), and records each
 * attempt in callback_attempts.
 *
 *   delivered → state delivered
 *   retry     → pending again, due after the delay the schedule (or Retry-After) gave
 *   dead      → the schedule is exhausted, or the attempt can never succeed
 *   gone      → 410: this event and every waiting event of its job become dead
 *   aborted   → the server stopped mid-attempt: pending again, due now, not counted
 */
import { sql } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { GONE_ERROR } from './enqueue.js';
import { rows } from './rows.js';

export type AttemptOutcome = 'delivered' | 'retry' | 'dead' | 'gone' | 'aborted';

export interface AttemptResult {
  id: string;
  attemptedAt: Date;
  statusCode: number | null;
  latencyMs: number;
  error: string | null;
  manual: boolean;
  outcome: AttemptOutcome;
  /** For 'retry': milliseconds until the next attempt. */
  delayMs: number | null;
}

/**
 * Returns the ids whose result was recorded (an event whose lock this node lost is skipped),
 * and how many events wait behind the ones that left the line (delivered or dead): when none
 * do, there is nothing new to claim.
 */
export async function completeAttempts(
  db: DbOrTx,
  nodeId: string,
  results: AttemptResult[],
): Promise<{ recorded: Set<string>; waiting: number }> {
  if (results.length === 0) return { recorded: new Set(), waiting: 0 };
  const json = JSON.stringify(
    results.map((r) => ({
      id: r.id,
      at: r.attemptedAt.toISOString(),
      status: r.statusCode,
      latency_ms: Math.round(r.latencyMs * 100) / 100,
      error: r.error,
      manual: r.manual,
      outcome: r.outcome,
      delay_ms: r.delayMs,
    })),
  );
  const recorded = await rows<{ id: string; waiting: number }>(
    db,
    sql`
    with r as (
      select * from jsonb_to_recordset(${json}::jsonb) as x(id text, at timestamptz, status int,
        latency_ms float8, error text, manual boolean, outcome text, delay_ms float8)
    ), updated as (
      update callback_events e set
        state = case r.outcome when 'delivered' then 'delivered' when 'retry' then 'pending'
                               when 'aborted' then 'pending' else 'dead' end,
        attempts = case when r.outcome = 'aborted' then e.attempts else e.attempts + 1 end,
        delivered_at = case when r.outcome = 'delivered' then now() else e.delivered_at end,
        next_attempt_at = case when r.outcome = 'retry'
          then now() + make_interval(secs => r.delay_ms / 1000) else e.next_attempt_at end,
        last_error = r.error,
        last_status_code = case when r.outcome = 'aborted' then e.last_status_code else r.status end,
        manual = case when r.outcome = 'aborted' then e.manual else false end,
        locked_by = null,
        locked_until = null
      from r
      where e.id = r.id and e.locked_by = ${nodeId}
      returning e.id, e.job_id, r.outcome
    ), killed as (
      update callback_events k set state = 'dead', last_error = ${GONE_ERROR}
      where k.job_id in (select job_id from updated where outcome = 'gone')
        and k.state = 'pending' and k.id not in (select id from updated)
        and (k.locked_until is null or k.locked_until < now())
      returning k.id
    ), logged as (
      insert into callback_attempts (event_id, attempted_at, status_code, latency_ms, error, manual)
      select r.id, r.at, r.status, r.latency_ms, r.error, r.manual from r where r.id in (select id from updated)
      returning event_id
    ), waiting as (
      -- (The statement's snapshot still shows the updated rows as pending: leave them out.)
      select count(*)::int as n from callback_events w
      where w.job_id in (select job_id from updated where outcome in ('delivered', 'dead'))
        and w.state = 'pending' and w.id not in (select id from updated)
    )
    select id, (select n from waiting) as waiting from updated`,
  );
  return { recorded: new Set(recorded.map((r) => r.id)), waiting: Number(recorded[0]?.waiting ?? 0) };
}
