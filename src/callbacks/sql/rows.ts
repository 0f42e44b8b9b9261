import type { SQL } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.js';

/** Raw rows of a statement, the same shape on PGlite ({rows}) and postgres-js (an array). */
export async function rows<T>(db: DbOrTx, query: SQL): Promise<T[]> {
  const result = (await db.execute(query)) as unknown;
  if (Array.isArray(result)) return result as T[];
  return ((result as { rows?: T[] }).rows ?? []) as T[];
}

/** Timestamps come back as Date from both drivers, as strings from some casts; accept both. */
export function toDate(v: unknown): Date {
  return v instanceof Date ? v : new Date(String(v));
}
