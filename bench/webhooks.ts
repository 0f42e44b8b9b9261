/**
 * Webhook dispatcher bench (issue 4): `npx tsx bench/webhooks.ts`. Not a test.
 *
 * Jobs change through the real transition hook (update the job row and write the outbox row in
 * one transaction, as src/jobs/execute.ts does): each job makes BENCH_EVENTS changes,
 * BENCH_EVENTS-1 epoch ends and then its completion. The real CallbackDispatcher delivers them
 * over HTTP (undici through the SSRF guard, Standard Webhooks signature) to a receiver in a
 * worker thread that answers 200 at once. Two runs:
 *
 *   live     BENCH_LIVE_JOBS jobs change while the dispatcher delivers: p50/p99 from the
 *            commit of a change to the receiver having its callback. Its callbacks/s is
 *            bounded by how fast the database commits changes, not by the dispatcher.
 *   backlog  the receiver was unreachable while BENCH_BACKLOG_JOBS jobs ran (the outbox owes
 *            each job its latest progress and its completion: coalescing): the dispatcher
 *            starts and drains it. Its callbacks/s is the dispatcher's capacity.
 *
 * Both check that nothing is lost: every event the outbox owes (enqueued − superseded) is
 * received exactly once, and each job's completion arrives last.
 * Target (issue 4): ≥ 1,000 callbacks/s on the 2-core dev machine.
 *
 * Environment (all optional):
 *   BENCH_LIVE_JOBS=200 BENCH_BACKLOG_JOBS=2000 BENCH_EVENTS=10
 *   BENCH_PRODUCERS=4         transactions committing job changes concurrently
 *   BENCH_BATCH=1             job changes per transaction (the pipeline commits one at a time)
 *   BENCH_MIN_INTERVAL_MS=0   CALLBACK_PROGRESS_MIN_INTERVAL_MS (0: measure the dispatcher)
 *   BENCH_CONCURRENCY         CALLBACK_CONCURRENCY (attempts in flight; default: the server's)
 *   BENCH_BACKENDS=pglite,postgres   postgres needs BENCH_DATABASE_URL (an admin URL; a fresh
 *   BENCH_DATABASE_URL=postgres://…  database is created for the run and dropped after it)
 *   BENCH_JSON=<file>         also write the results as JSON
 *   BENCH_STRICT=1            exit 1 when the target is missed or anything is lost
 */
import { Engines } from '../src/engines/index.js';
import { JobFiles } from '../src/jobs/files.js';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { count, eq, inArray } from 'drizzle-orm';
import postgres from 'postgres';
import { CallbackDispatcher } from '../src/callbacks/dispatcher.js';
import { createCallbackHook } from '../src/callbacks/hook.js';
import { loadConfig } from '../src/core/config.js';
import { openDatabase, type Database, type Tx } from '../src/db/client.js';
import { migrate } from '../src/db/migrate.js';
import { callbackEvents, jobs } from '../src/db/schema.js';
import { finishJob, updateActiveJob } from '../src/jobs/transitions.js';
import { createLoggers } from '../src/core/logger.js';
import { createOutboundDispatcher } from '../src/net/outbound.js';

const env = process.env;
const num = (name: string, dflt: number) => Number(env[name] ?? dflt);
const LIVE_JOBS = num('BENCH_LIVE_JOBS', 200);
const BACKLOG_JOBS = num('BENCH_BACKLOG_JOBS', 2000);
const EVENTS = num('BENCH_EVENTS', 10);
const PRODUCERS = num('BENCH_PRODUCERS', 4);
const BATCH = num('BENCH_BATCH', 1);
const MIN_INTERVAL_MS = String(num('BENCH_MIN_INTERVAL_MS', 0));
const CONCURRENCY = env['BENCH_CONCURRENCY'];
const TARGET = 1000;
const NODE_ID = 'bench-node';

/** The receiver: its own process (the other core), so it takes no CPU time of the dispatcher's. */
const RECEIVER_SOURCE = `
const http = require('node:http');
let got = [];
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const at = performance.timeOrigin + performance.now();
    const body = JSON.parse(Buffer.concat(chunks).toString());
    const key = body.type === 'training_completed' ? body.job_id + ':done' : body.job_id + ':' + body.progress.current_epoch;
    got.push([key, req.headers['webhook-id'], at]);
    res.writeHead(200).end();
  });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
process.on('message', (m) => {
  if (m === 'report') { process.send({ got }); got = []; }
  if (m === 'close') { server.closeAllConnections(); server.close(() => process.exit(0)); }
});
`;

type Got = Array<[key: string, webhookId: string, at: number]>;

interface RunResult {
  backend: string;
  run: 'live' | 'backlog';
  jobs: number;
  changes: number;
  commits_per_s: number;
  enqueued: number;
  superseded: number;
  owed: number;
  received: number;
  duplicates: number;
  lost: number;
  dead: number;
  completion_last: boolean;
  callbacks_per_s: number;
  /** CPU time of this process (dispatcher + database; the receiver is another process) per wall second. */
  cpu_cores: number;
  callbacks_per_cpu_s: number;
  p50_ms: number | null;
  p99_ms: number | null;
  ok: boolean;
}

async function bench(backend: 'pglite' | 'postgres'): Promise<RunResult[]> {
  const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'trainhook-bench-webhooks-'));
  let dropDb = async () => {};
  let databaseUrl: string | undefined;
  if (backend === 'postgres') {
    const admin = env['BENCH_DATABASE_URL']!;
    const name = `th_bench_${crypto.randomBytes(5).toString('hex')}`;
    const sql = postgres(admin, { max: 1, onnotice: () => {} });
    await sql.unsafe(`create database ${name}`);
    await sql.end();
    const u = new URL(admin);
    u.pathname = `/${name}`;
    databaseUrl = u.toString();
    dropDb = async () => {
      const a = postgres(admin, { max: 1, onnotice: () => {} });
      await a.unsafe(`drop database if exists ${name} with (force)`);
      await a.end();
    };
  }

  const receiver = spawn(process.execPath, ['-e', RECEIVER_SOURCE], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve) => receiver.once('message', (m: { port: number }) => resolve(m.port)));
  const report = () => {
    receiver.send('report');
    return new Promise<Got>((resolve) => receiver.once('message', (m: { got: Got }) => resolve(m.got)));
  };

  const config = loadConfig({
    WORKDIR: workdir,
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    OUTBOUND_ALLOW: '127.0.0.1',
    CALLBACK_PROGRESS_MIN_INTERVAL_MS: MIN_INTERVAL_MS,
    ...(CONCURRENCY ? { CALLBACK_CONCURRENCY: CONCURRENCY } : {}),
  });
  const { logger } = createLoggers('warn');
  const database: Database = await openDatabase(config);
  await migrate(database);
  const { db } = database;
  const http = createOutboundDispatcher(config.outboundAllow, { agent: { keepAliveTimeout: 60_000 } });
  let dispatcher = new CallbackDispatcher({ db, config, nodeId: NODE_ID, logger, dispatcher: http, userAgent: 'trainhook-bench' });
  const engines = new Engines();
  const hook = createCallbackHook({
    config,
    files: new JobFiles(config.workdir, engines),
    engines,
    linkSigningKey: 'bench-link-key-0123456789abcdef0123456789',
    baseUrl: () => 'http://127.0.0.1:8000',
    onEnqueued: (at) => dispatcher.wakeAt(at),
  });

  const newJobs = async (n: number) => {
    const ids = Array.from({ length: n }, () => crypto.randomUUID());
    for (let i = 0; i < n; i += 500) {
      await db.insert(jobs).values(
        ids.slice(i, i + 500).map((id) => ({
          id,
          name: `bench-${id.slice(0, 8)}`,
          engine: 'ultralytics',
          task: 'detect',
          totalEpochs: EVENTS,
          request: {},
          callbackUrl: `http://127.0.0.1:${port}/hook`,
          callbackSecret: 'bench-secret',
          state: 'running' as const,
          phase: 'training' as const,
          nodeId: NODE_ID,
          startedAt: new Date(),
        })),
      );
    }
    return ids;
  };

  const now = () => performance.timeOrigin + performance.now();
  const committedAt = new Map<string, number>();
  const key = (id: string, k: number) => (k < EVENTS ? `${id}:${k}` : `${id}:done`);
  /** One job change as the pipeline records it. */
  const change = async (tx: Tx, id: string, k: number) => {
    if (k < EVENTS) {
      const row = await updateActiveJob(tx, id, NODE_ID, {
        progress: 10 + (85 * k) / EVENTS,
        currentEpoch: k,
        metricsCurrent: { box_loss: 1 / k, mAP50: k / EVENTS, epoch: k },
        metricsBest: { mAP50: k / EVENTS, 'mAP50-95': k / EVENTS / 2, epoch: k },
      });
      await hook(tx, row!, 'epoch');
    } else {
      const row = await finishJob(tx, id, NODE_ID, 'completed', { model: { size_bytes: 1e6, format: 'pytorch' } });
      await hook(tx, row!, 'completed');
    }
  };
  /** Every job takes a step before any takes the next. */
  const produce = async (ids: string[], live: boolean) => {
    const work: Array<[string, number]> = [];
    for (let k = 1; k <= EVENTS; k++) for (const id of ids) work.push([id, k]);
    let next = 0;
    const producer = async () => {
      while (next < work.length) {
        const batch = work.slice(next, next + BATCH);
        next += batch.length;
        await db.transaction(async (tx) => {
          for (const [id, k] of batch) await change(tx, id, k);
        });
        const t = now();
        for (const [id, k] of batch) committedAt.set(key(id, k), t);
        if (live) dispatcher.wake(); // what the server's JobEvents listener does after a commit
        // A real job's changes come from I/O (the worker's stdout), never from a busy loop of
        // microtasks, which on PGlite (in-process, no socket) would starve every socket.
        await new Promise((r) => setImmediate(r));
      }
    };
    await Promise.all(Array.from({ length: PRODUCERS }, producer));
  };
  const drained = async () => {
    for (;;) {
      const [row] = await db.select({ n: count() }).from(callbackEvents).where(eq(callbackEvents.state, 'pending'));
      if ((row?.n ?? 0) === 0 && dispatcher.inFlightCount === 0) return;
      await new Promise((r) => setTimeout(r, 50)); // (each poll is a statement on the same database)
    }
  };
  const summarize = async (
    run: 'live' | 'backlog',
    ids: string[],
    got: Got,
    from: number,
    produceSeconds: number,
    cpu: { usage: NodeJS.CpuUsage; wall: number },
  ) => {
    const states = await db
      .select({ state: callbackEvents.state, n: count() })
      .from(callbackEvents)
      .where(inArray(callbackEvents.jobId, ids))
      .groupBy(callbackEvents.state);
    const n = (s: string) => states.find((r) => r.state === s)?.n ?? 0;
    const enqueued = states.reduce((a, r) => a + r.n, 0);
    const superseded = n('superseded');
    const owed = enqueued - superseded;
    const unique = new Set(got.map((g) => g[1]));
    const lastPerJob = new Map<string, string>();
    for (const [k] of got) lastPerJob.set(k.split(':')[0]!, k);
    const completionLast = lastPerJob.size === ids.length && [...lastPerJob.values()].every((k) => k.endsWith(':done'));
    const lastAt = Math.max(...got.map((g) => g[2]));
    const lat = got.map(([k, , at]) => at - committedAt.get(k)!).sort((a, b) => a - b);
    const pct = (p: number) => Math.round(lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))]! * 10) / 10;
    const r: RunResult = {
      backend,
      run,
      jobs: ids.length,
      changes: ids.length * EVENTS,
      commits_per_s: Math.round((ids.length * EVENTS) / produceSeconds),
      enqueued,
      superseded,
      owed,
      received: got.length,
      duplicates: got.length - unique.size,
      lost: owed - unique.size,
      dead: n('dead'),
      completion_last: completionLast,
      callbacks_per_s: Math.round(got.length / ((lastAt - from) / 1000)),
      cpu_cores: Math.round(((cpu.usage.user + cpu.usage.system) / 1e6 / cpu.wall) * 100) / 100,
      callbacks_per_cpu_s: Math.round(got.length / ((cpu.usage.user + cpu.usage.system) / 1e6)),
      p50_ms: run === 'live' ? pct(50) : null,
      p99_ms: run === 'live' ? pct(99) : null,
      ok: false,
    };
    r.ok = r.lost === 0 && r.duplicates === 0 && r.dead === 0 && n('delivered') === got.length && completionLast;
    console.log(
      `${backend.padEnd(8)} ${run.padEnd(7)} ${ids.length} jobs × ${EVENTS} changes (${r.commits_per_s} changes/s committed): ` +
        `enqueued ${enqueued}, superseded ${superseded}, owed ${owed}, received ${got.length}, duplicates ${r.duplicates}, lost ${r.lost}, dead ${r.dead}`,
    );
    console.log(
      `${''.padEnd(17)}${r.callbacks_per_s} callbacks/s` +
        (run === 'live' ? `, commit→receipt p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms` : ' draining the backlog') +
        ` (this process busy ${Math.round(r.cpu_cores * 100)}% of a core: ${r.callbacks_per_cpu_s} callbacks per CPU second)` +
        `; sent == received: ${r.ok ? 'yes' : 'NO'}`,
    );
    return r;
  };

  const results: RunResult[] = [];
  if (LIVE_JOBS > 0) {
    const liveIds = await newJobs(LIVE_JOBS);
    await dispatcher.start();
    const liveStart = now();
    const cpu0 = process.cpuUsage();
    await produce(liveIds, true);
    const liveSeconds = (now() - liveStart) / 1000;
    await drained();
    const cpu = { usage: process.cpuUsage(cpu0), wall: (now() - liveStart) / 1000 };
    results.push(await summarize('live', liveIds, await report(), liveStart, liveSeconds, cpu));
    await dispatcher.stop();
  }

  // Backlog: changes committed while nothing delivered, then one dispatcher drains them.
  const backlogIds = await newJobs(BACKLOG_JOBS);
  const t0 = now();
  await produce(backlogIds, false);
  const backlogSeconds = (now() - t0) / 1000;
  dispatcher = new CallbackDispatcher({ db, config, nodeId: NODE_ID, logger, dispatcher: http, userAgent: 'trainhook-bench' });
  const drainStart = now();
  const cpu0 = process.cpuUsage();
  await dispatcher.start();
  await drained();
  const cpu = { usage: process.cpuUsage(cpu0), wall: (now() - drainStart) / 1000 };
  results.push(await summarize('backlog', backlogIds, await report(), drainStart, backlogSeconds, cpu));
  await dispatcher.stop();

  await http.close();
  receiver.send('close');
  await database.close();
  await dropDb();
  fs.rmSync(workdir, { recursive: true, force: true });
  return results;
}

const backendList = (env['BENCH_BACKENDS'] ?? (env['BENCH_DATABASE_URL'] ? 'pglite,postgres' : 'pglite'))
  .split(',')
  .map((b) => b.trim()) as Array<'pglite' | 'postgres'>;
console.log(
  `webhook bench: ${EVENTS} changes per job, ${PRODUCERS} producers × ${BATCH} change(s) per transaction, ` +
    `dispatcher concurrency ${CONCURRENCY ?? loadConfig({}).callbacks.concurrency}, progress min interval ${MIN_INTERVAL_MS} ms; ` +
    `${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(1)}, node ${process.version}`,
);
const results: RunResult[] = [];
for (const b of backendList) {
  if (b === 'postgres' && !env['BENCH_DATABASE_URL']) {
    console.log('postgres: skipped (set BENCH_DATABASE_URL)');
    continue;
  }
  results.push(...(await bench(b)));
}
const backlog = results.filter((r) => r.run === 'backlog');
const met = backlog.length > 0 && backlog.every((r) => r.callbacks_per_s >= TARGET) && results.every((r) => r.ok);
console.log(`target ≥ ${TARGET} callbacks/s (dispatcher capacity) with nothing lost: ${met ? 'met' : 'MISSED'}`);
if (env['BENCH_JSON']) fs.writeFileSync(env['BENCH_JSON'], JSON.stringify(results, null, 2));
if (env['BENCH_STRICT'] && !met) process.exit(1);
process.exit(0);
