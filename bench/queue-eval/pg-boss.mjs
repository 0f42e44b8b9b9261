// pg-boss against what trainhook's queue needs (docs/QUEUE.md). Not a test: run by hand,
//   node bench/queue-eval/pg-boss.mjs            (QEVAL_PGBOSS=<version> to pick one; default latest)
// Needs PostgreSQL at QEVAL_DATABASE_URL (admin URL, default postgres://postgres@127.0.0.1:5432/postgres);
// creates and drops a scratch database. Installs pg-boss into a temp folder and removes it.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ADMIN_URL, attempt, installInto, openPglite, report, scratchDatabase, sleep } from './lib.mjs';

const HEARTBEAT = 10; // pg-boss's minimum heartbeatSeconds

// The child: a node that claims one job, heartbeats it, and is then killed with SIGKILL.
if (process.argv[2] === 'child') {
  const { PgBoss } = await import(process.env.QEVAL_MODULE);
  const boss = new PgBoss({ connectionString: process.env.QEVAL_URL, superviseIntervalSeconds: 1 });
  boss.on('error', () => {});
  await boss.start();
  const [job] = await boss.fetch('train');
  process.send({ claimed: job?.id });
  setInterval(() => boss.touch('train', job.id).catch(() => {}), (HEARTBEAT / 2) * 1000);
} else {
  await main();
}

async function main() {
  const lib = installInto([`pg-boss@${process.env.QEVAL_PGBOSS ?? 'latest'}`, 'pg']);
  const pg = (await lib.import('pg')).default;
  const mod = await lib.import('pg-boss');
  const { PgBoss, fromPglite } = mod;
  const out = { library: 'pg-boss', version: lib.version('pg-boss'), node: process.version, postgres: {}, pglite: {} };
  out.loadavg = (await import('node:os')).loadavg().map((l) => +l.toFixed(1));
  const scratch = await scratchDatabase(pg, 'qeval_pgboss');
  try {
    if (process.env.QEVAL_ONLY === 'bench') {
      const boss = new PgBoss({ connectionString: scratch.url });
      await boss.start();
      out.postgres = { claimBench: await claimBench(boss) };
      await boss.stop({ graceful: false, wait: true });
      lib.cleanup();
      await scratch.drop();
      report(out);
      process.exit(0);
    }
    out.postgres = await onPostgres(PgBoss, scratch.url, (await import('node:module')).createRequire(lib.dir + '/package.json').resolve('pg-boss'), pg);
  } finally {
    await scratch.drop();
  }
  out.pglite = await onPglite(PgBoss, fromPglite);
  lib.cleanup();
  report(out);
  process.exit(0);
}

async function onPostgres(PgBoss, url, modulePath, pg) {
  const r = {};
  const boss = new PgBoss({ connectionString: url, superviseIntervalSeconds: 1, monitorIntervalSeconds: 1 });
  boss.on('error', (e) => (r.lastErrorEvent = String(e?.message ?? e)));
  let t = performance.now();
  await boss.start();
  r.startWithSchemaMs = Math.round(performance.now() - t);

  // A 10-hour job, and our JOB_MAX_HOURS default (72 h).
  r.expire10h = await attempt(() => boss.createQueue('train10h', { expireInSeconds: 10 * 3600 }));
  r.expire72h = await attempt(() => boss.createQueue('train72h', { expireInSeconds: 72 * 3600 }));
  r.heartbeat60 = await attempt(() => boss.createQueue('hb60', { heartbeatSeconds: 60, expireInSeconds: 10 * 3600 }));

  // Takeover: a node claims a job, heartbeats it, dies (SIGKILL); how long until another node gets it?
  await boss.createQueue('train', { heartbeatSeconds: HEARTBEAT, expireInSeconds: 10 * 3600, retryLimit: 5 });
  const id = await boss.send('train', { job: 'long' });
  const child = fork(fileURLToPath(import.meta.url), ['child'], { env: { ...process.env, QEVAL_MODULE: 'file://' + modulePath, QEVAL_URL: url } });
  const claimed = await new Promise((res) => child.once('message', (m) => res(m.claimed)));
  r.takeover = { heartbeatSeconds: HEARTBEAT, childClaimed: claimed === id };
  // Alive and heartbeating for 3 heartbeat periods: nobody else may take it.
  const aliveUntil = Date.now() + 3 * HEARTBEAT * 1000;
  let stolenWhileAlive = false;
  while (Date.now() < aliveUntil) {
    const got = await boss.fetch('train');
    if (got.length) stolenWhileAlive = true;
    await sleep(1000);
  }
  r.takeover.stolenWhileAlive = stolenWhileAlive;
  child.kill('SIGKILL');
  const killedAt = Date.now();
  let taken;
  while (Date.now() - killedAt < 120_000) {
    [taken] = await boss.fetch('train', { includeMetadata: true });
    if (taken) break;
    await sleep(250);
  }
  r.takeover.secondsToTakeOver = taken ? (Date.now() - killedAt) / 1000 : null;
  r.takeover.retryCountAfter = taken?.retryCount;
  r.takeover.sameId = taken?.id === id;

  // Heartbeats against expireInSeconds: does touching keep a job past its expiry?
  await boss.createQueue('shortexpire', { heartbeatSeconds: HEARTBEAT, expireInSeconds: 15, retryLimit: 0 });
  const sid = await boss.send('shortexpire', {});
  await boss.fetch('shortexpire');
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    await boss.touch('shortexpire', sid);
    await sleep(2000);
  }
  r.expiryDespiteHeartbeat = (await boss.findJobs('shortexpire', { id: sid }))[0]?.state;

  // Per-device slots: a node with cuda:1 asks for the next job; the queue holds one for cuda:0 first.
  await boss.createQueue('devices');
  await boss.send('devices', { requestedDevice: 'cuda:0' });
  await boss.send('devices', { requestedDevice: 'auto' });
  const [first] = await boss.fetch('devices');
  r.perDevice = { fetchForCuda1GotRequestedDevice: first?.data.requestedDevice, fetchOptions: 'batchSize, priority range, startAfter, groupConcurrency: no filter on data' };
  // Priority ranges and groupConcurrency are the nearest thing: a priority per device is not a filter
  // for "auto or mine", and groups cap concurrency, they do not route.

  // Queue position / ETA: no API; the nearest is counting in pgboss.job ourselves.
  await boss.createQueue('pos');
  const ids = [];
  for (let i = 0; i < 1000; i++) ids.push(await boss.send('pos', { i }));
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  t = performance.now();
  const { rows } = await client.query(
    `select count(*)::int as ahead from pgboss.job j, (select created_on, id from pgboss.job where name = 'pos' and id = $1) me
     where j.name = 'pos' and j.state in ('created','retry') and (j.created_on, j.id) < (me.created_on, me.id)`,
    [ids[500]],
  );
  r.queuePosition = { api: false, sqlPositionOfJob501: rows[0].ahead + 1, sqlMs: +(performance.now() - t).toFixed(2), stats: await attempt(() => boss.getQueueStats('pos')) };
  if (r.queuePosition.stats.ok) r.queuePosition.stats = Object.keys(r.queuePosition.stats.value[0] ?? {});

  // Retries with backoff.
  await boss.createQueue('retry', { retryLimit: 3, retryDelay: 2, retryBackoff: true });
  const rid = await boss.send('retry', {});
  await boss.fetch('retry');
  await boss.fail('retry', rid, { code: 'WORKER_CRASHED' });
  const failed = (await boss.findJobs('retry', { id: rid }))[0];
  r.retry = { stateAfterFail: failed.state, retryCount: failed.retryCount, startAfterInSeconds: Math.round((new Date(failed.startAfter) - Date.now()) / 1000) };

  // Cancel a running job: the state changes; does the worker holding it find out?
  await boss.createQueue('cancel');
  const cid = await boss.send('cancel', {});
  await boss.fetch('cancel');
  const cancel = await attempt(() => boss.cancel('cancel', cid));
  const afterCancel = (await boss.findJobs('cancel', { id: cid }))[0]?.state;
  const touchAfterCancel = await attempt(() => boss.touch('cancel', cid));
  const completeAfterCancel = await attempt(() => boss.complete('cancel', cid));
  r.cancelRunning = { cancel: cancel.ok ? cancel.value : cancel.error, stateAfterCancel: afterCancel, holderTouchAfterCancel: touchAfterCancel.ok ? touchAfterCancel.value : touchAfterCancel.error, holderCompletesAnyway: completeAfterCancel.ok ? completeAfterCancel.value : completeAfterCancel.error, holderNotified: 'no push to the holder: it learns only if it polls (touch/findJobs)' };

  // NOTIFY: pg-boss's own LISTEN/NOTIFY wakes workers; a row-change trigger of our own would go on pgboss.job.
  // Our read cache learns of changes from a trigger (migrations/0003): can one sit on pgboss.job?
  const { rows: trg } = await client.query(`select c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'pgboss' and c.relname = 'job'`);
  r.notify = { pgbossJobRelkind: trg[0]?.relkind };
  const created = await attempt(() => client.query(`
    create function qeval_job_notify() returns trigger language plpgsql as $$
    begin perform pg_notify('qeval_jobs', new.id::text || ' ' || new.state::text); return null; end $$;
    create trigger qeval_job_notify after insert or update on pgboss.job for each row execute function qeval_job_notify();`));
  r.notify.createTrigger = created.ok ? 'ok' : created.error;
  const heard = [];
  const listener = new pg.Client({ connectionString: url });
  await listener.connect();
  listener.on('notification', (m) => heard.push(m.payload.split(' ')[1]));
  await listener.query('listen qeval_jobs');
  await boss.createQueue('notify');
  const nid = await boss.send('notify', {});
  await boss.fetch('notify');
  await boss.complete('notify', nid);
  await sleep(500);
  r.notify.statesHeard = heard;
  await listener.end();

  r.claimBench = await claimBench(boss);
  await client.end();
  await boss.stop({ graceful: false, wait: true });
  return r;
}

/** 2000 jobs, fetched one at a time and completed, on one node. */
async function claimBench(boss) {
  await boss.createQueue('bench');
  await boss.insert('bench', Array.from({ length: 2000 }, (_, i) => ({ data: { i } })));
  const t = performance.now();
  let n = 0;
  let claimMs = 0;
  for (;;) {
    const c = performance.now();
    const got = await boss.fetch('bench');
    claimMs += performance.now() - c;
    if (!got.length) break;
    await boss.complete('bench', got[0].id);
    n++;
  }
  const ms = performance.now() - t;
  return { jobs: n, claimAndCompleteMsPerJob: +(ms / n).toFixed(3), claimMsPerJob: +(claimMs / n).toFixed(3), jobsPerSecond: Math.round((n / ms) * 1000) };
}

async function onPglite(PgBoss, fromPglite) {
  const r = {};
  const lite = await openPglite();
  r.pgliteVersion = lite.version;
  const boss = new PgBoss({ db: fromPglite(lite.db), backend: 'pglite' });
  boss.on('error', (e) => (r.lastErrorEvent = String(e?.message ?? e)));
  const t0 = performance.now();
  r.start = await attempt(() => boss.start());
  r.startWithSchemaMs = Math.round(performance.now() - t0);
  if (r.start.ok) {
    r.start = 'ok';
    const { rows } = await lite.db.query(`select count(*)::int as n from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'pgboss' and c.relkind in ('r', 'p')`);
    r.tablesInSchema = rows[0].n;
    r.createQueue = await attempt(() => boss.createQueue('train', { retryLimit: 2 }));
    r.send = await attempt(() => boss.send('train', { a: 1 }));
    const fetched = await attempt(() => boss.fetch('train'));
    r.fetchedSame = fetched.ok && fetched.value[0]?.id === r.send.value;
    if (fetched.ok && fetched.value[0]) r.complete = await attempt(() => boss.complete('train', fetched.value[0].id));
    await attempt(() => boss.stop({ graceful: false, wait: true }));
  }
  await lite.close();
  return r;
}
