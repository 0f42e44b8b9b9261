/**
 * What the alerts read from the database: the jobs this node runs, and callback endpoints
 * that have been failing. Both are cheap enough to read at every monitor sample: the first
 * is a handful of rows, the second reads pending events (a partial index) and, only for
 * endpoints that have kept an event waiting that long, their attempts.
 */
import { and, eq, sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import { jobs } from '../db/schema.js';
import type { FailingEndpoint } from './conditions.js';

export async function runningJobs(database: Database, nodeId: string): Promise<{ id: string; name: string; startedAt: Date | null }[]> {
  return database.db
    .select({ id: jobs.id, name: jobs.name, startedAt: jobs.startedAt })
    .from(jobs)
    .where(and(eq(jobs.nodeId, nodeId), eq(jobs.state, 'running')));
}

/**
 * Callback URLs failing for `hours`: an event for them has waited (pending, tried at least
 * once) for that long, and none of their attempts within that time succeeded. Either a
 * success or the last waiting event ending (delivered, or given up after the retry schedule)
 * ends the condition.
 */
export async function failingCallbackEndpoints(database: Database, hours: number, now = new Date()): Promise<FailingEndpoint[]> {
  const since = new Date(now.getTime() - hours * 3_600_000).toISOString();
  const rows = await database.rows<{ url: string; waiting_since: string | Date }>(sql`
    with waiting as (
      select j.callback_url as url, min(e.created_at) as waiting_since
        from callback_events e join jobs j on j.id = e.job_id
       where e.state = 'pending' and e.attempts > 0 and j.callback_url is not null
         and e.created_at <= ${since}::timestamptz
       group by j.callback_url
    )
    -- Only the candidates' attempts are read (there are usually none): no scan of the whole log.
    select w.url, w.waiting_since from waiting w
     where not exists (
       select 1 from jobs j
         join callback_events e on e.job_id = j.id
         join callback_attempts a on a.event_id = e.id
        where j.callback_url = w.url and a.attempted_at > ${since}::timestamptz and a.status_code between 200 and 299)
     order by w.url`);
  return rows.map((r) => ({ url: withoutCredentials(r.url), waitingSince: new Date(r.waiting_since) }));
}

/** Callback URLs may carry a token in their query or user info: alerts show scheme, host and path. */
function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(unparseable URL)';
  }
}
