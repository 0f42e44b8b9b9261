/**
 * Test databases: PGlite always (a fresh workdir each), and the real PostgreSQL named by
 * TEST_DATABASE_URL when set, with a fresh database per server so tests never share state.
 */
import crypto from 'node:crypto';
import postgres from 'postgres';

export type Backend = 'pglite' | 'postgres';

export function backends(): Backend[] {
  return process.env['TEST_DATABASE_URL'] ? ['pglite', 'postgres'] : ['pglite'];
}

/** A new empty database on the test server; returns its URL and a dropper. */
export async function freshPostgresDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const base = process.env['TEST_DATABASE_URL'];
  if (!base) throw new Error('TEST_DATABASE_URL is not set');
  const name = `th_test_${crypto.randomBytes(6).toString('hex')}`;
  const admin = postgres(base, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const a = postgres(base, { max: 1, onnotice: () => {} });
      await a.unsafe(`drop database if exists ${name} with (force)`);
      await a.end();
    },
  };
}
