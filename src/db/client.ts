/**
 * Opens the database: PGlite (embedded, files under workdir/pgdata) by default, a real
 * PostgreSQL through the `postgres` driver when DATABASE_URL is set. Same schema, same SQL.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import type { SQL } from 'drizzle-orm';
import * as schema from './schema.js';

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];
export type DbOrTx = Db | Tx;

export interface Database {
  readonly db: Db;
  readonly kind: 'pglite' | 'postgres';
  /** Raw rows of a query, the same shape for both drivers. */
  rows<T = Record<string, unknown>>(query: SQL, on?: DbOrTx): Promise<T[]>;
  ping(): Promise<boolean>;
  /**
   * LISTEN on a channel. onListen runs each time the listening connection is (re)established:
   * what was notified while it was down is lost, so that is where callers resynchronise.
   * Resolves to a function that stops listening.
   */
  listen(channel: string, onNotify: (payload: string) => void, onListen: () => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

function rowsOf<T>(result: unknown): T[] {
  if (Array.isArray(result)) return result as T[];
  return ((result as { rows?: T[] }).rows ?? []) as T[];
}

export async function openDatabase(opts: { databaseUrl?: string | undefined; workdir: string }): Promise<Database> {
  if (opts.databaseUrl) {
    const { default: postgres } = await import('postgres');
    const { drizzle } = await import('drizzle-orm/postgres-js');
    const client = postgres(opts.databaseUrl, {
      max: 10,
      onnotice: () => {},
      // The server's own clock decides leases and expiry; keep every session in UTC.
      connection: { TimeZone: 'UTC', application_name: 'trainhook' },
    });
    const db = drizzle(client, { schema }) as unknown as Db;
    return {
      db,
      kind: 'postgres',
      rows: async (q, on = db) => rowsOf(await on.execute(q)),
      ping: () => ping(db),
      // postgres.js keeps a dedicated connection for LISTEN and re-listens after a reconnect.
      listen: async (channel, onNotify, onListen) => {
        const meta = await client.listen(channel, onNotify, onListen);
        return () => meta.unlisten();
      },
      close: () => client.end({ timeout: 5 }),
    };
  }
  const { PGlite } = await import('@electric-sql/pglite');
  const { drizzle } = await import('drizzle-orm/pglite');
  const dataDir = path.join(opts.workdir, 'pgdata');
  fs.mkdirSync(dataDir, { recursive: true });
  const client = await PGlite.create({ dataDir });
  const db = drizzle(client, { schema }) as unknown as Db;
  return {
    db,
    kind: 'pglite',
    rows: async (q, on = db) => rowsOf(await on.execute(q)),
    ping: () => ping(db),
    // One in-process connection: it never drops, so onListen runs once.
    listen: async (channel, onNotify, onListen) => {
      const unlisten = await client.listen(channel, onNotify);
      onListen();
      return unlisten;
    },
    close: () => client.close(),
  };
}

async function ping(db: Db): Promise<boolean> {
  try {
    const { sql } = await import('drizzle-orm');
    await db.execute(sql`select 1`);
    return true;
  } catch {
    return false;
  }
}
