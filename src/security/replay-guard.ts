/**
 * The replay guard of signed requests: each signature seen is kept until its timestamp leaves
 * the tolerance window (a replay after that is refused as too old), then deleted.
 */
import { lt } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { seenSignatures } from '../db/schema.js';

/** Records a signature; false when it was seen before (a replay). */
export async function rememberSignature(db: DbOrTx, signature: string, expiresAt: Date): Promise<boolean> {
  const inserted = await db
    .insert(seenSignatures)
    .values({ signature, expiresAt })
    .onConflictDoNothing()
    .returning({ signature: seenSignatures.signature });
  return inserted.length === 1;
}

/** Deletes the signatures past their window; answers how many. */
export async function pruneSeenSignatures(db: DbOrTx, now = new Date()): Promise<number> {
  const deleted = await db.delete(seenSignatures).where(lt(seenSignatures.expiresAt, now)).returning({ signature: seenSignatures.signature });
  return deleted.length;
}
