/** Reads of the outbox for the API and the status page, and the redeliver action. */
import { and, asc, count, desc, eq, inArray, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { callbackAttempts, callbackEvents, type OutboxState } from '../../db/schema.js';
import { rows, toDate } from './rows.js';

export interface CallbackAttemptView {
  attempted_at: string;
  status_code: number | null;
  latency_ms: number | null;
  error: string | null;
  manual: boolean;
}

export interface CallbackEventView {
  event_id: string;
  type: string;
  state: OutboxState;
  /** True while a node is attempting it. */
  in_flight: boolean;
  attempts: number;
  created_at: string;
  next_attempt_at: string | null;
  delivered_at: string | null;
  last_status_code: number | null;
  last_error: string | null;
  payload: unknown;
  attempt_log: CallbackAttemptView[];
}

/** A job's events, newest first, each with its attempts (oldest first). */
export async function listCallbackEvents(
  db: DbOrTx,
  jobId: string,
  opts: { limit: number; offset: number; states?: OutboxState[] | undefined },
): Promise<{ total: number; counts: Record<OutboxState, number>; events: CallbackEventView[] }> {
  const where = and(eq(callbackEvents.jobId, jobId), opts.states ? inArray(callbackEvents.state, opts.states) : undefined);
  const byState = await db
    .select({ state: callbackEvents.state, n: count() })
    .from(callbackEvents)
    .where(eq(callbackEvents.jobId, jobId))
    .groupBy(callbackEvents.state);
  const counts: Record<OutboxState, number> = { pending: 0, delivered: 0, superseded: 0, dead: 0 };
  for (const r of byState) counts[r.state] = r.n;
  const total = opts.states ? opts.states.reduce((n, s) => n + counts[s], 0) : Object.values(counts).reduce((a, b) => a + b, 0);
  const events = await db
    .select()
    .from(callbackEvents)
    .where(where)
    .orderBy(desc(callbackEvents.seq))
    .limit(opts.limit)
    .offset(opts.offset);
  const attempts = events.length
    ? await db
        .select()
        .from(callbackAttempts)
        .where(
          inArray(
            callbackAttempts.eventId,
            events.map((e) => e.id),
          ),
        )
        .orderBy(asc(callbackAttempts.id))
    : [];
  const now = Date.now();
  return {
    total,
    counts,
    events: events.map((e) => ({
      event_id: e.id,
      type: e.type,
      state: e.state,
      in_flight: e.state === 'pending' && !!e.lockedUntil && e.lockedUntil.getTime() >= now,
      attempts: e.attempts,
      created_at: e.createdAt.toISOString(),
      next_attempt_at: e.state === 'pending' ? e.nextAttemptAt.toISOString() : null,
      delivered_at: e.deliveredAt?.toISOString() ?? null,
      last_status_code: e.lastStatusCode,
      last_error: e.lastError,
      payload: e.payload,
      attempt_log: attempts
        .filter((a) => a.eventId === e.id)
        .map((a) => ({
          attempted_at: a.attemptedAt.toISOString(),
          status_code: a.statusCode,
          latency_ms: a.latencyMs,
          error: a.error,
          manual: a.manual,
        })),
    })),
  };
}

export type RedeliverOutcome = { ok: true; nextAttemptAt: Date } | { ok: false; reason: 'not_found' | 'in_flight' };

/**
 * Puts an event back in line for an immediate attempt, recorded as manual. Any state but in
 * flight: a delivered one goes again (the receiver lost it), a dead one gets one more try (a
 * dead event whose schedule is spent is not retried after that attempt), a waiting one goes now.
 */
export async function redeliverCallback(db: DbOrTx, jobId: string, eventId: string): Promise<RedeliverOutcome> {
  const [row] = await rows<{ next_attempt_at: unknown }>(
    db,
    sql`update callback_events set state = 'pending', next_attempt_at = now(), manual = true
        where id = ${eventId} and job_id = ${jobId}
          and not (state = 'pending' and locked_until is not null and locked_until >= now())
        returning next_attempt_at`,
  );
  if (row) return { ok: true, nextAttemptAt: toDate(row.next_attempt_at) };
  const [exists] = await db
    .select({ id: callbackEvents.id })
    .from(callbackEvents)
    .where(and(eq(callbackEvents.id, eventId), eq(callbackEvents.jobId, jobId)));
  return { ok: false, reason: exists ? 'in_flight' : 'not_found' };
}
