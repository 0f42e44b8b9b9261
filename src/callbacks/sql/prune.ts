/**
 * Old delivery attempts go: those of events no longer pending (delivered, superseded, dead)
 * made before a cutoff. The events themselves stay, with their attempt counts and last error.
 */
import { sql } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';
import { rows } from './rows.js';

export async function pruneCallbackAttempts(db: DbOrTx, before: Date): Promise<number> {
  const deleted = await rows<{ id: number }>(
    db,
    sql`delete from callback_attempts a using callback_events e
        where a.event_id = e.id and e.state <> 'pending' and a.attempted_at < ${before.toISOString()}::timestamptz
        returning a.id`,
  );
  return deleted.length;
}
