/**
 * Applies the drizzle-kit migrations in migrations/ at start, once, under a transaction-scoped
 * advisory lock: several nodes starting together on one PostgreSQL wait for each other instead
 * of racing, and a node that finds a migration already recorded skips it.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import type { Database } from './client.js';

const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../migrations');
/** Arbitrary constant: "trainhook" folded into an int4 for pg_advisory_xact_lock. */
const LOCK_KEY = 0x7472_6e68;

interface JournalEntry {
  idx: number;
  tag: string;
}

export async function migrate(database: Database, dir = MIGRATIONS_DIR): Promise<string[]> {
  const journal = JSON.parse(fs.readFileSync(path.join(dir, 'meta/_journal.json'), 'utf8')) as {
    entries: JournalEntry[];
  };
  const applied: string[] = [];
  await database.db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${LOCK_KEY})`);
    await tx.execute(sql`create table if not exists trainhook_migrations (
      tag text primary key, hash text not null, applied_at timestamptz not null default now())`);
    const done = new Set(
      (await database.rows<{ tag: string }>(sql`select tag from trainhook_migrations`, tx)).map((r) => r.tag),
    );
    for (const entry of [...journal.entries].sort((a, b) => a.idx - b.idx)) {
      if (done.has(entry.tag)) continue;
      const text = fs.readFileSync(path.join(dir, `${entry.tag}.sql`), 'utf8');
      for (const statement of text.split('--> statement-breakpoint')) {
        if (statement.trim()) await tx.execute(sql.raw(statement));
      }
      const hash = crypto.createHash('sha256').update(text).digest('hex');
      await tx.execute(sql`insert into trainhook_migrations (tag, hash) values (${entry.tag}, ${hash})`);
      applied.push(entry.tag);
    }
  });
  return applied;
}
