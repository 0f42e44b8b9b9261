// graphile-worker against what trainhook's queue needs (docs/QUEUE.md). Not a test: run by hand,
//   node bench/queue-eval/graphile-worker.mjs    (QEVAL_GRAPHILE=<version> to pick one; default latest)
// Needs PostgreSQL at QEVAL_DATABASE_URL (admin URL, default postgres://postgres@127.0.0.1:5432/postgres);
// creates and drops a scratch database. Installs graphile-worker (and @electric-sql/pglite-socket,
// to offer PGlite over the wire protocol) into a temp folder and removes it.
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { attempt, installInto, openPglite, report, scratchDatabase, sleep } from './lib.mjs';

const quiet = () => () => {};
const step = (what) => process.stderr.write(`[graphile-worker] ${new Date().toISOString()} ${what}\n`);

// The child: a node whose worker takes the long job and never finishes it (a 10-hour training).
if (process.argv[2] === 'child') {
  const gw = await import(process.env.QEVAL_MODULE);
  const runner = await gw.run({
    connectionString: process.env.QEVAL_URL,
    concurrency: 1,
    pollInterval: 200,
    noHandleSignals: true,
    logger: new gw.Logger(quiet),
    taskList: { train: async () => { process.send({ started: true }); await new Promise(() => {}); } },
  });
  void runner;
} else {
  await main();
}

async function main() {
  const lib = installInto([`graphile-worker@${process.env.QEVAL_GRAPHILE ?? 'latest'}`, 'pg', '@electric-sql/pglite-socket']);
  const pg = (await lib.import('pg')).default;
  const gw = await lib.import('graphile-worker');
  const modulePath = createRequire(lib.dir + '/package.json').resolve('graphile-worker');
  const out = { library: 'graphile-worker', version: lib.version('graphile-worker'), node: process.version, postgres: {}, pglite: {} };
  // A connection the wire-protocol PGlite drops surfaces as an 'error' on an idle pool client.
  process.on('uncaughtException', (err) => (out.uncaught ??= []).push(String(err?.message ?? err)));
  if (process.env.QEVAL_ONLY !== 'pglite') {
    const scratch = await scratchDatabase(pg, 'qeval_graphile');
    try {
      out.postgres = await attempt(() => onPostgres(gw, pg, scratch.url, modulePath));
    } finally {
      await scratch.drop();
    }
  }
  out.pglite = await attempt(() => onPglite(gw, pg, lib));
  lib.cleanup();
  report(out);
  process.exit(0);
}

async function onPostgres(gw, pg, url, modulePath) {
  const spawned = [];
  try {
    return await experiments(gw, pg, url, modulePath, spawned);
  } finally {
    for (const c of spawned) if (c.exitCode === null) c.kill('SIGKILL');
  }
}

async function experiments(gw, pg, url, modulePath, children) {
  const r = {};
  const logger = new gw.Logger(quiet);
  let t = performance.now();
  await gw.runMigrations({ connectionString: url, logger });
  r.migrationsMs = Math.round(performance.now() - t);
  const utils = await gw.makeWorkerUtils({ connectionString: url, logger });
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const jobRow = async (id) => (await client.query('select * from graphile_worker.jobs where id = $1', [id])).rows[0];
  const worker = (taskList, extra = {}) => gw.run({ connectionString: url, concurrency: 1, pollInterval: 200, noHandleSignals: true, logger, taskList, ...extra });

  step('long job');
  // The long job: node A takes it and keeps running it.
  const long = await utils.addJob('train', { job: 'long' }, { jobKey: 'job-1', maxAttempts: 5 });
  const child = fork(fileURLToPath(import.meta.url), ['child'], { env: { ...process.env, QEVAL_MODULE: 'file://' + modulePath, QEVAL_URL: url } });
  children.push(child);
  await new Promise((res) => child.once('message', res));
  let ranOnB = 0;
  const b = await worker({ train: async () => { ranOnB++; await sleep(100); } });
  // (1) A is alive and its job has run 4 h 1 min: shift locked_at back instead of waiting.
  await client.query(`update graphile_worker._private_jobs set locked_at = locked_at - interval '4 hours 1 minute' where id = $1`, [long.id]);
  await b.stop();
  // The stale-lock sweep runs every 8-10 min (first within 60 s); here every second, so only its
  // 4-hour rule decides.
  const fastReset = { minResetLockedInterval: 500, maxResetLockedInterval: 1000 };
  const b2 = await worker({ train: async () => { ranOnB++; await sleep(100); } }, fastReset);
  await sleep(3000);
  const afterB = await jobRow(long.id);
  r.liveHolderAfter4h = { holderAlive: child.exitCode === null, runAgainElsewhere: ranOnB > 0, jobRow: afterB ? `attempts ${afterB.attempts}, locked_by ${afterB.locked_by}` : 'gone: node B ran and completed it while node A was still running it' };
  await b2.stop();
  step('dead holder');
  // (2) A dies (SIGKILL) with the job freshly locked: does another node take it within our 60 s lease?
  const dead = await utils.addJob('train', { job: 'long2' }, { jobKey: 'job-2' });
  ranOnB = 0;
  const child2 = fork(fileURLToPath(import.meta.url), ['child'], { env: { ...process.env, QEVAL_MODULE: 'file://' + modulePath, QEVAL_URL: url } });
  children.push(child2);
  await new Promise((res) => child2.once('message', res));
  child.kill('SIGKILL');
  child2.kill('SIGKILL');
  const b3 = await worker({ train: async () => { ranOnB++; } }, fastReset);
  await sleep(65_000);
  const deadRow = await jobRow(dead.id);
  r.deadHolder = { takenOverWithin65s: ranOnB > 0, lockedBy: deadRow.locked_by ? 'still locked by the dead worker' : null, staleLockRule: "locked_at < now() - interval '4 hours' (SQL in resetLockedAt), swept every 8-10 min by default; every 1 s here" };
  // forceUnlockWorkers works, but someone must know the dead worker's id and that it is dead.
  await utils.forceUnlockWorkers([deadRow.locked_by]);
  t = Date.now();
  while (ranOnB === 0 && Date.now() - t < 10_000) await sleep(100);
  r.deadHolder.afterForceUnlockSeconds = ranOnB > 0 ? (Date.now() - t) / 1000 : null;
  await b3.stop();

  step('per-device');
  // Per-device slots: one task identifier per requested device, a worker per device.
  const d0 = await utils.addJob('train_cuda0', { n: 1 });
  const da = await utils.addJob('train_auto', { n: 2 });
  const seen = [];
  const cuda1 = await worker({ train_cuda1: async (p) => seen.push(p.n), train_auto: async (p) => seen.push(p.n) });
  await sleep(1500);
  await cuda1.stop();
  r.perDevice = { cuda1WorkerRan: seen, cuda0JobStillQueued: !!(await jobRow(d0.id)), autoJobDone: !(await jobRow(da.id)) };

  step('queue position');
  // Queue position: no API; count in the public jobs view.
  const ids = (await utils.addJobs(Array.from({ length: 1000 }, (_, i) => ({ identifier: 'pos', payload: { i } })))).map((j) => j.id);
  t = performance.now();
  const { rows } = await client.query(
    `select count(*)::int as ahead from graphile_worker.jobs j, graphile_worker.jobs me where me.id = $1
     and j.task_identifier = 'pos' and j.locked_at is null and j.attempts < j.max_attempts
     and (j.priority, j.run_at, j.id) < (me.priority, me.run_at, me.id)`, [ids[500]]);
  r.queuePosition = { api: false, sqlPositionOfJob501: rows[0].ahead + 1, sqlMs: +(performance.now() - t).toFixed(2) };

  step('retries');
  // Retries: fixed exponential backoff exp(least(attempts, 10)) seconds.
  const rj = await utils.addJob('flaky', {}, { maxAttempts: 3 });
  const flaky = await worker({ flaky: async () => { throw new Error('WORKER_CRASHED'); } });
  await sleep(1500);
  await flaky.stop();
  const rr = await jobRow(rj.id);
  r.retry = { attempts: rr.attempts, lastError: rr.last_error?.split('\n')[0], runAtInSeconds: Math.round((new Date(rr.run_at) - Date.now()) / 1000), configurable: 'no (SQL function), only max_attempts' };

  step('cancel');
  // Cancel a running job: the utils refuse locked jobs.
  const cj = await utils.addJob('slow', {});
  let aborted = false;
  const slow = await worker({ slow: async (_p, h) => { await sleep(3000); aborted = h.abortSignal?.aborted ?? false; } });
  await sleep(800);
  const failRunning = await utils.permanentlyFailJobs([cj.id], 'cancelled');
  const completeRunning = await utils.completeJobs([cj.id]);
  await sleep(3000);
  await slow.stop();
  r.cancelRunning = { permanentlyFailJobsAffected: failRunning.length, completeJobsAffected: completeRunning.length, abortSignalAborted: aborted, jobAfter: (await jobRow(cj.id)) ? 'still there' : 'gone (it completed)' };

  step('job key');
  // Job keys: the same key added again while its job runs on node C.
  const keyed = await utils.addJob('train', { job: 'keyed' }, { jobKey: 'job-3', maxAttempts: 5 });
  const child3 = fork(fileURLToPath(import.meta.url), ['child'], { env: { ...process.env, QEVAL_MODULE: 'file://' + modulePath, QEVAL_URL: url } });
  children.push(child3);
  await new Promise((res) => child3.once('message', res));
  const again = await utils.addJob('train', { job: 'keyed, again' }, { jobKey: 'job-3', maxAttempts: 5 });
  const { rows: keyRows } = await client.query(
    `select id, key, attempts, max_attempts, locked_by is not null as locked from graphile_worker.jobs where id in ($1, $2) order by id`, [keyed.id, again.id]);
  r.jobKeyWhileRunning = { sameJob: again.id === keyed.id, rows: keyRows.map((k) => `id ${k.id}: key ${k.key}, attempts ${k.attempts}/${k.max_attempts}, locked ${k.locked}`) };
  child3.kill('SIGKILL');
  await client.query('delete from graphile_worker._private_jobs where id in ($1, $2)', [keyed.id, again.id]);

  step('throughput');
  // Throughput: 2000 no-op jobs through one worker of concurrency 1.
  await utils.addJobs(Array.from({ length: 2000 }, (_, i) => ({ identifier: 'bench', payload: { i } })));
  let done = 0;
  t = performance.now();
  const bench = await worker({ bench: async () => { done++; } }, { pollInterval: 50 });
  while (done < 2000) await sleep(20);
  const ms = performance.now() - t;
  await bench.stop();
  r.claimBench = { jobs: done, claimAndCompleteMsPerJob: +(ms / done).toFixed(3), jobsPerSecond: Math.round((done / ms) * 1000), note: 'batched completion (completeJobBatchDelay) and LISTEN wakeups' };

  await client.end();
  await utils.release();
  return r;
}

async function onPglite(gw, pg, lib) {
  const r = {};
  const logger = new gw.Logger(quiet);
  step('pglite');
  // (a) The project's PGlite: graphile-worker takes only a connection string or a pg Pool.
  const lite = await openPglite();
  r.pgliteVersion = lite.version;
  r.pgPoolOption = await attempt(() => gw.runMigrations({ pgPool: lite.db, logger }));
  await lite.close();
  // (b) PGlite over the wire protocol (@electric-sql/pglite-socket brings its own PGlite).
  const { PGLiteSocketServer } = await lib.import('@electric-sql/pglite-socket');
  const { PGlite } = await lib.import('@electric-sql/pglite');
  r.socket = { maxConnections: Number(process.env.QEVAL_SOCKET_CONNECTIONS ?? 10), pgliteSocketVersion: lib.version('@electric-sql/pglite-socket'), pgliteVersion: lib.version('@electric-sql/pglite') };
  const db = await PGlite.create();
  // maxConnections defaults to 1; graphile-worker holds several (a LISTEN client, the workers').
  // Connections share PGlite's one backend, their queries interleaved by a queue.
  const server = new PGLiteSocketServer({ db, port: 0, host: '127.0.0.1', maxConnections: Number(process.env.QEVAL_SOCKET_CONNECTIONS ?? 10) });
  await server.start();
  const addr = server.getServerConn?.() ?? `127.0.0.1:${server.port}`;
  const url = `postgres://postgres@${addr}/postgres`;
  r.socket.url = url;
  const t = performance.now();
  r.socket.migrations = await attempt(() => gw.runMigrations({ connectionString: url, logger }));
  r.socket.migrationsMs = Math.round(performance.now() - t);
  if (r.socket.migrations.ok) {
    let ran = 0;
    const made = await attempt(() => gw.makeWorkerUtils({ connectionString: url, logger }));
    r.socket.makeWorkerUtils = made.ok ? 'ok' : made.error;
    if (!made.ok) {
      await server.stop();
      await db.close();
      return r;
    }
    const utils = made.value;
    r.socket.addJob = await attempt(() => utils.addJob('t', {}));
    const w = await attempt(() => gw.run({ connectionString: url, concurrency: 1, pollInterval: 200, noHandleSignals: true, logger, taskList: { t: async () => { ran++; } } }));
    await sleep(2000);
    r.socket.run = w.ok ? { ran } : w.error;
    if (w.ok) await attempt(() => w.value.stop());
    await attempt(() => utils.release());
  }
  await server.stop();
  await db.close();
  return r;
}
