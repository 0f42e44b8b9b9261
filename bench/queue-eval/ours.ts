/**
 * trainhook's own queue (src/jobs/transitions.ts) measured the way pg-boss.mjs and
 * graphile-worker.mjs measure theirs: claim + finish of 2000 no-op jobs on one connection, and a
 * lost node's job taken over by the lease sweep. Not a test: run by hand,
 *   npx tsx bench/queue-eval/ours.ts
 * QEVAL_DATABASE_URL (admin URL, default postgres://postgres@127.0.0.1:5432/postgres) names the
 * PostgreSQL it creates and drops a scratch database on; PGlite runs in a temp folder.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { openDatabase, type Database } from '../../src/db/client.js';
import { migrate } from '../../src/db/migrate.js';
import { jobs } from '../../src/db/schema.js';
import { claimNextJob, finishJob, requeueOrphans } from '../../src/jobs/transitions.js';

const ADMIN_URL = process.env.QEVAL_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const N = 2000;

async function seed(database: Database, n: number, device = 'auto'): Promise<void> {
  for (let start = 0; start < n; start += 500) {
    const rows: (typeof jobs.$inferInsert)[] = [];
    for (let i = start; i < Math.min(n, start + 500); i++) {
      const id = crypto.randomUUID();
      rows.push({ id, name: `j${i}`, engine: 'toy', task: 'detect', totalEpochs: 1, request: { job_id: id }, requestedDevice: device });
    }
    await database.db.insert(jobs).values(rows);
  }
}

async function measure(database: Database) {
  await migrate(database);
  await seed(database, N);
  const t = performance.now();
  let n = 0;
  let claimMs = 0;
  for (;;) {
    const c = performance.now();
    const job = await claimNextJob(database.db, { nodeId: 'bench', device: 'cpu', leaseSeconds: 60 });
    claimMs += performance.now() - c;
    if (!job) break;
    await finishJob(database.db, job.id, 'bench', 'completed', {});
    n++;
  }
  const ms = performance.now() - t;
  // Takeover: a job claimed with a 2 s lease by a node that then says nothing more.
  await seed(database, 1);
  const lost = await claimNextJob(database.db, { nodeId: 'dead', device: 'cpu', leaseSeconds: 2 });
  const claimedAt = Date.now();
  let takenAfter: number | null = null;
  while (Date.now() - claimedAt < 10_000) {
    await requeueOrphans(database.db, null); // what every node's sweep runs every 2 s
    const again = await claimNextJob(database.db, { nodeId: 'alive', device: 'cpu', leaseSeconds: 60 });
    if (again) {
      takenAfter = (Date.now() - claimedAt) / 1000;
      if (again.id !== lost?.id) throw new Error('took another job');
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    jobs: n,
    claimAndFinishMsPerJob: +(ms / n).toFixed(3),
    claimMsPerJob: +(claimMs / n).toFixed(3),
    jobsPerSecond: Math.round((n / ms) * 1000),
    takeoverSecondsWithLease2s: takenAfter,
  };
}

const out: Record<string, unknown> = { node: process.version, loadavg: os.loadavg().map((l) => +l.toFixed(1)) };
const only = process.env.QEVAL_ONLY; // 'postgres' or 'pglite'
const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
const name = 'qeval_ours';
await admin.unsafe(`drop database if exists ${name} with (force)`);
await admin.unsafe(`create database ${name}`);
const url = new URL(ADMIN_URL);
url.pathname = `/${name}`;
const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'qeval-ours-'));
try {
  if (only !== 'pglite') {
    const pg = await openDatabase({ databaseUrl: url.toString(), workdir });
    try {
      out.postgres = await measure(pg);
    } finally {
      await pg.close();
    }
  }
  if (only !== 'postgres') {
    const lite = await openDatabase({ workdir });
    try {
      out.pglite = await measure(lite);
    } finally {
      await lite.close();
    }
  }
} finally {
  await admin.unsafe(`drop database if exists ${name} with (force)`);
  await admin.end();
  fs.rmSync(workdir, { recursive: true, force: true });
}
console.log(JSON.stringify(out, null, 2));
if (process.env.QEVAL_JSON) fs.writeFileSync(process.env.QEVAL_JSON, JSON.stringify(out, null, 2));
