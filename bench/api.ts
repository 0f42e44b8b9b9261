/**
 * API throughput bench (issue 2): `npx tsx bench/api.ts` (or `npm run bench`). Not a test.
 *
 * Starts a real trainhook server in a child process (`node --import tsx src/main.ts`, as
 * `npm start` runs it, with RUN_JOBS=false so every job stays queued) on a database filled
 * with BENCH_JOBS jobs, and a bare Hono app (@hono/node-server, one handler returning a job-like
 * JSON, no middleware, no database) in another child process. Then autocannon, in this process,
 * measures both with the same settings:
 *
 *   GET  /api/v1/jobs/{id}   random ids among the seeded jobs
 *   POST /api/v1/train       valid bodies, a unique job_id each
 *
 * and prints rps, p50, p99 and the ratio trainhook/bare. Target (issue 2): status reads at
 * >= 50% of the bare throughput with p99 < 10 ms.
 *
 * Backends: PGlite always (unless BENCH_BACKENDS says otherwise); PostgreSQL too when
 * BENCH_DATABASE_URL (an admin URL, e.g. postgres://postgres@127.0.0.1:5432/postgres) is set:
 * a fresh database is created there for the run and dropped after it.
 *
 * Environment (all optional):
 *   BENCH_JOBS=10000            jobs seeded before the server starts (bulk insert via src/db)
 *   BENCH_FINISHED_FRACTION=0   share of seeded jobs stored as completed (the rest queued)
 *   BENCH_CONNECTIONS=10        autocannon connections
 *   BENCH_DURATION=10           seconds per measured run
 *   BENCH_WARMUP=2              seconds of unmeasured warm-up before each run (0: none)
 *   BENCH_ROUNDS=3              rounds of (bare, trainhook) per endpoint; the median pair is reported
 *   BENCH_ENDPOINTS=get,post    which endpoints to measure
 *   BENCH_BACKENDS=pglite,postgres   which backends (postgres needs BENCH_DATABASE_URL)
 *   BENCH_DATABASE_URL=postgres://…  admin URL of a PostgreSQL server
 *   BENCH_CPU_PROF=<dir>        run the trainhook child with --cpu-prof into <dir> (.cpuprofile)
 *   BENCH_JSON=<file>           also write the results as JSON
 *   BENCH_KEEP=1                keep the temp workdir / PostgreSQL database afterwards
 *   BENCH_STRICT=1              exit 1 when the GET target is missed
 *   BENCH_LOG_LEVEL=warn        LOG_LEVEL of the trainhook child (info: one access-log line a request)
 *
 * Internal: `tsx bench/api.ts --bare` is the bare Hono child.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SELF = fileURLToPath(import.meta.url);
const TOKEN = 'bench-token-0123456789abcdef';

// ---------------------------------------------------------------------------------------------
// autocannon has no type declarations; the slice of its API used here.
interface Histogram {
  average: number;
  mean: number;
  stddev: number;
  min: number;
  max: number;
  total: number;
  p50: number;
  p90: number;
  p97_5: number;
  p99: number;
  p99_9: number;
}
interface AutocannonResult {
  requests: Histogram;
  latency: Histogram;
  throughput: Histogram;
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodeStats: Record<string, { count: number }>;
  '2xx': number;
}
interface AutocannonRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string;
  setupRequest?: (req: AutocannonRequest, context: Record<string, unknown>) => AutocannonRequest;
}
interface AutocannonOptions {
  url: string;
  connections: number;
  duration: number;
  headers?: Record<string, string>;
  method?: string;
  requests?: AutocannonRequest[];
  timeout?: number;
}
type Autocannon = (opts: AutocannonOptions) => Promise<AutocannonResult> & { stop(): void };
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

// ---------------------------------------------------------------------------------------------
// The bare Hono child.

async function runBare(): Promise<void> {
  const { Hono } = await import('hono');
  const { serve } = await import('@hono/node-server');
  const app = new Hono();
  const created = new Date().toISOString();
  // The same keys and about the same size as trainhook's job view of a queued job.
  const view = (id: string, base: string) => ({
    job_id: id,
    name: 'bench-model',
    status: 'queued',
    phase: 'queued',
    progress: 0,
    current_epoch: 0,
    total_epochs: 100,
    queue_position: 1234,
    device: null,
    metrics: { current: null, best: null },
    created_at: created,
    started_at: null,
    finished_at: null,
    eta_seconds: null,
    error: null,
    dataset_info: null,
    model: null,
    artifacts: [],
    config: { task: 'detect', base_model: 'yolo11n.yaml' },
    callback_url: null,
    links: { self: `${base}/api/v1/jobs/${id}`, status_page: `${base}/jobs/${id}`, stream: `${base}/stream/progress/${id}` },
  });
  app.get('/api/v1/jobs/:id', (c) => c.json(view(c.req.param('id'), new URL(c.req.url).origin)));
  app.post('/api/v1/train', async (c) => {
    const body = (await c.req.json()) as { job_id?: string };
    const id = body.job_id ?? crypto.randomUUID();
    const v = view(id, new URL(c.req.url).origin);
    return c.json(
      { job_id: id, status: 'queued', message: 'Training job queued successfully', queue_position: 1234, estimated_start_time: null, links: v.links },
      202,
    );
  });
  const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => {
    process.stdout.write(`${JSON.stringify({ msg: 'bare listening', url: `http://127.0.0.1:${info.port}` })}\n`);
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}

// ---------------------------------------------------------------------------------------------
// Children.

interface Child {
  url: string;
  child: ChildProcess;
  output: string[];
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (bound and released; the child binds it right after). */
async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Spawns `node <args>` and resolves once `ready(url)` answers. `url` is either given (a port
 * chosen here) or read from the first stdout line carrying `"url"`. With `logFile`, stdout goes
 * to that file unread: at LOG_LEVEL=info the server logs a line per request, and reading them
 * here would take the load generator's CPU.
 */
async function startChild(
  args: string[],
  env: Record<string, string>,
  opts: { url?: string; readyPath?: string; logFile?: string },
): Promise<Child> {
  const logFd = opts.logFile ? fs.openSync(opts.logFile, 'a') : null;
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', logFd ?? 'pipe', 'pipe'],
  });
  if (logFd !== null) fs.closeSync(logFd);
  const logTail = () => (opts.logFile ? `\n${fs.readFileSync(opts.logFile, 'utf8').split('\n').slice(-40).join('\n')}` : '');
  const output: string[] = [];
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let announced: ((url: string) => void) | undefined;
  const announcedUrl = new Promise<string>((resolve) => (announced = resolve));
  const onLine = (line: string) => {
    if (output.length < 500) output.push(line);
    if (line.startsWith('{') && line.includes('"url"')) {
      try {
        announced?.((JSON.parse(line) as { url: string }).url);
      } catch {
        /* not ours */
      }
    }
    if (/"level":"(warn|error|fatal)"/.test(line) || line.startsWith('trainhook:')) process.stderr.write(`  [child] ${line}\n`);
  };
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    let buf = '';
    stream.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
  }
  const died = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`child exited with ${code}:\n${output.join('\n')}${logTail()}`))),
  );
  died.catch(() => {});
  const deadline = Date.now() + 120_000;
  const ready = (async () => {
    const url = opts.url ?? (await announcedUrl);
    for (;;) {
      try {
        const res = await fetch(url + (opts.readyPath ?? '/'));
        await res.arrayBuffer();
        if (res.ok) return url;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) throw new Error(`child did not start:\n${output.join('\n')}${logTail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const url = await Promise.race([ready, died]);
  return {
    url,
    child,
    output,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      // SIGTERM: trainhook closes cleanly (and --cpu-prof writes its profile on exit).
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Seeding.

function trainBody(jobId?: string) {
  return {
    ...(jobId ? { job_id: jobId } : {}),
    model_config: { name: 'bench-model', base_model: 'yolo11n.yaml', epochs: 100, batch_size: 16, image_size: 640 },
    dataset: { url: 'https://datasets.example.com/bench/dataset.zip' },
    resources: { device: 'auto', workers: 8 },
  };
}

/** Bulk-inserts `n` jobs through the db layer (same schema and migrations as the server). */
async function seed(opts: { databaseUrl?: string; workdir: string; n: number; finishedFraction: number }): Promise<string[]> {
  const { openDatabase } = await import('../src/db/client.js');
  const { migrate } = await import('../src/db/migrate.js');
  const { jobs } = await import('../src/db/schema.js');
  const { trainRequestSchema } = await import('../src/jobs/request.js');
  const { Engines } = await import('../src/engines/index.js');
  const TrainRequestSchema = trainRequestSchema(new Engines());
  const database = await openDatabase({ databaseUrl: opts.databaseUrl, workdir: opts.workdir });
  try {
    await migrate(database);
    const ids: string[] = [];
    const now = Date.now();
    const CHUNK = 500;
    for (let start = 0; start < opts.n; start += CHUNK) {
      const rows: (typeof jobs.$inferInsert)[] = [];
      for (let i = start; i < Math.min(opts.n, start + CHUNK); i++) {
        const id = crypto.randomUUID();
        ids.push(id);
        // What JobService.submit stores: the parsed request (defaults filled), no callback_secret.
        const request = { ...TrainRequestSchema.parse(trainBody(id)), job_id: id };
        // Spread evenly: exactly round(n * fraction) of them finished.
        const f = opts.finishedFraction;
        const finished = Math.floor((i + 1) * f + 1e-9) > Math.floor(i * f + 1e-9);
        const created = new Date(now - (opts.n - i) * 60_000);
        rows.push({
          id,
          name: request.model_config.name,
          engine: request.model_config.framework,
          task: request.model_config.task,
          totalEpochs: request.model_config.epochs,
          request,
          requestedDevice: 'auto',
          createdAt: created,
          updatedAt: created,
          ...(finished
            ? {
                state: 'completed' as const,
                phase: 'done' as const,
                progress: 100,
                currentEpoch: 100,
                etaSeconds: 0,
                startedAt: new Date(created.getTime() + 1000),
                finishedAt: new Date(created.getTime() + 1000 + 1800_000),
                metricsCurrent: { 'metrics/mAP50(B)': 0.61, 'train/box_loss': 1.02 },
                metricsBest: { 'metrics/mAP50(B)': 0.63 },
              }
            : {}),
        });
      }
      await database.db.insert(jobs).values(rows);
    }
    return ids;
  } finally {
    await database.close();
  }
}

async function freshPostgres(adminUrl: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const { default: postgres } = await import('postgres');
  const name = `th_bench_${crypto.randomBytes(6).toString('hex')}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const a = postgres(adminUrl, { max: 1, onnotice: () => {} });
      await a.unsafe(`drop database if exists ${name} with (force)`);
      await a.end();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Measuring.

interface Row {
  backend: string;
  endpoint: 'GET /jobs/{id}' | 'POST /train';
  server: 'trainhook' | 'bare hono';
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** CPU time of the server process per response (user + system), µs; null where /proc is missing. */
  cpuUs: number | null;
  /** CPU time of the PostgreSQL backends serving it per response, µs (local PostgreSQL only). */
  dbUs: number | null;
  ok: number;
  non2xx: number;
  errors: number;
  codes: string;
}

const num = (name: string, def: number) => {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number`);
  return n;
};

function requestsFor(endpoint: Row['endpoint'], ids: string[]): AutocannonRequest[] {
  if (endpoint === 'GET /jobs/{id}') {
    return [
      {
        method: 'GET',
        setupRequest: (req) => ({ ...req, path: `/api/v1/jobs/${ids[Math.floor(Math.random() * ids.length)]}` }),
      },
    ];
  }
  return [
    {
      method: 'POST',
      path: '/api/v1/train',
      setupRequest: (req) => ({ ...req, body: JSON.stringify(trainBody(crypto.randomUUID())) }),
    },
  ];
}

/**
 * CPU seconds (user + system, all threads) used so far by these processes, from /proc; null
 * when it cannot be read (not Linux, or a PostgreSQL on another host). Unlike rps, CPU per
 * request hardly moves when other work shares the machine, so it is the steadier comparison.
 */
function cpuSeconds(pids: number[]): number | null {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after "(comm)": state is field 3, utime field 14, stime field 15.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      return null;
    }
  }
  return ticks / CLOCK_TICKS;
}
/** Waits (up to 30 s) until a process uses under 2% of a CPU over half a second. */
async function settle(pid: number | undefined): Promise<void> {
  if (!pid) return;
  const deadline = Date.now() + 30_000;
  let last = cpuSeconds([pid]);
  while (last !== null && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    const now = cpuSeconds([pid]);
    if (now === null || now - last < 0.01) return;
    last = now;
  }
}

/** USER_HZ: 100 on every mainstream Linux build. */
const CLOCK_TICKS = 100;

interface Measured {
  result: AutocannonResult;
  cpuSeconds: number | null;
  dbCpuSeconds: number | null;
}

async function measure(opts: {
  url: string;
  endpoint: Row['endpoint'];
  ids: string[];
  connections: number;
  duration: number;
  warmup: number;
  serverPid: number | undefined;
  /** Pids of the PostgreSQL backends serving the server (after warm-up, so the pool is open). */
  dbPids?: () => Promise<number[]>;
}): Promise<Measured> {
  const base = {
    url: opts.url,
    connections: opts.connections,
    timeout: 30,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    requests: requestsFor(opts.endpoint, opts.ids),
  };
  if (opts.warmup > 0) await autocannon({ ...base, duration: opts.warmup });
  const dbPids = opts.dbPids ? await opts.dbPids() : [];
  const cpu0 = opts.serverPid ? cpuSeconds([opts.serverPid]) : null;
  const db0 = dbPids.length ? cpuSeconds(dbPids) : null;
  const result = await autocannon({ ...base, duration: opts.duration });
  const cpu1 = opts.serverPid ? cpuSeconds([opts.serverPid]) : null;
  const db1 = dbPids.length ? cpuSeconds(dbPids) : null;
  return {
    result,
    cpuSeconds: cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null,
    // A backend that exits mid-run makes the second read fail: then no figure.
    dbCpuSeconds: db0 !== null && db1 !== null ? db1 - db0 : null,
  };
}

function toRow(backend: string, endpoint: Row['endpoint'], server: Row['server'], m: Measured): Row {
  const r = m.result;
  const total = Object.values(r.statusCodeStats ?? {}).reduce((a, s) => a + Number(s.count), 0);
  const perReq = (seconds: number | null) => (seconds !== null && total > 0 ? (seconds * 1e6) / total : null);
  return {
    backend,
    endpoint,
    server,
    // Completed responses per second over the whole run (requests.average is the mean of 1 s samples).
    rps: total / r.duration,
    cpuUs: perReq(m.cpuSeconds),
    dbUs: perReq(m.dbCpuSeconds),
    p50: r.latency.p50,
    p90: r.latency.p90,
    p99: r.latency.p99,
    max: r.latency.max,
    ok: r['2xx'],
    non2xx: r.non2xx,
    errors: r.errors,
    codes: Object.entries(r.statusCodeStats ?? {})
      .map(([code, s]) => `${code}:${s.count}`)
      .join(' '),
  };
}

function bareOf(rows: Row[], r: Row): Row | undefined {
  return rows.find((b) => b.backend === r.backend && b.endpoint === r.endpoint && b.server === 'bare hono');
}

/**
 * Throughput ratio predicted from CPU cost: bare µs/req over trainhook (server + database)
 * µs/req. What the rps ratio would be with a core each and nothing else running.
 */
function cpuRatio(r: Row, bare: Row | undefined): number | null {
  if (!bare || bare.cpuUs === null || r.cpuUs === null) return null;
  return bare.cpuUs / (r.cpuUs + (r.dbUs ?? 0));
}

function printTable(rows: Row[]): void {
  const header = [
    'backend',
    'endpoint',
    'server',
    'rps',
    'p50 ms',
    'p90 ms',
    'p99 ms',
    'max ms',
    'non-2xx',
    'errors',
    'cpu µs/req',
    'db µs/req',
    'rps ratio',
    'cpu ratio',
  ];
  const lines: string[][] = [header];
  const us = (v: number | null) => (v === null ? '-' : v.toFixed(0));
  for (const r of rows) {
    const bare = bareOf(rows, r);
    const ratio = r.server === 'trainhook' && bare && bare.rps > 0 ? `${((r.rps / bare.rps) * 100).toFixed(1)}%` : '';
    const cr = cpuRatio(r, bare);
    lines.push([
      r.backend,
      r.endpoint,
      r.server,
      r.rps.toFixed(0),
      r.p50.toFixed(2),
      r.p90.toFixed(2),
      r.p99.toFixed(2),
      r.max.toFixed(1),
      String(r.non2xx),
      String(r.errors),
      us(r.cpuUs),
      us(r.dbUs),
      ratio,
      r.server === 'trainhook' && cr !== null ? `${(cr * 100).toFixed(1)}%` : '',
    ]);
  }
  const widths = header.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  const fmt = (l: string[]) => l.map((c, i) => (i >= 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ');
  process.stdout.write(`\n${fmt(lines[0]!)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n`);
  for (const l of lines.slice(1)) process.stdout.write(`${fmt(l)}\n`);
}

async function runBackend(
  backend: 'pglite' | 'postgres',
  settings: {
    jobs: number;
    finishedFraction: number;
    connections: number;
    duration: number;
    warmup: number;
    rounds: number;
    cpuProf?: string | undefined;
    keep: boolean;
    logLevel: string;
    endpoints: Row['endpoint'][];
  },
  bare: Child,
): Promise<Row[]> {
  const workdir = fs.mkdtempSync(path.join(os.tmpdir(), `trainhook-bench-${backend}-`));
  let pg: { url: string; drop: () => Promise<void> } | undefined;
  let server: Child | undefined;
  let closeAdmin: (() => Promise<void>) | undefined;
  try {
    if (backend === 'postgres') pg = await freshPostgres(process.env['BENCH_DATABASE_URL']!);
    const t0 = performance.now();
    const ids = await seed({ databaseUrl: pg?.url, workdir, n: settings.jobs, finishedFraction: settings.finishedFraction });
    log(`${backend}: seeded ${ids.length} jobs in ${((performance.now() - t0) / 1000).toFixed(1)} s (${pg ? pg.url : workdir})`);

    const nodeArgs = ['--import', 'tsx'];
    if (settings.cpuProf) {
      fs.mkdirSync(settings.cpuProf, { recursive: true });
      // No --cpu-prof-name: tsx's loader thread writes a profile too, and a fixed name would let
      // it overwrite the main thread's. The main thread's is the biggest file of the run.
      nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${path.resolve(settings.cpuProf, backend)}`);
    }
    // LOG_LEVEL=warn hides the "trainhook listening" line, so the port is chosen here.
    const port = await freePort();
    server = await startChild(
      [...nodeArgs, path.join(ROOT, 'src/main.ts')],
      {
        PORT: String(port),
        HOST: '127.0.0.1',
        WORKDIR: workdir,
        API_TOKEN: TOKEN,
        RUN_JOBS: 'false',
        MAX_QUEUE_LENGTH: '100000000',
        TRAIN_RATE_LIMIT_PER_MINUTE: '1000000000',
        LOG_LEVEL: settings.logLevel,
        // Empty counts as unset (config.ts): PGlite under WORKDIR.
        DATABASE_URL: pg?.url ?? '',
      },
      { url: `http://127.0.0.1:${port}`, readyPath: '/health', logFile: path.join(workdir, 'server.log') },
    );
    log(`${backend}: trainhook at ${server.url}, bare hono at ${bare.url}`);
    // The server warms its job cache after it answers /health; neither server is measured
    // while that startup work still runs (it would take CPU from the bare server's run).
    await settle(server.child.pid);

    // The PostgreSQL backends of the server's pool, to count their CPU too (local server only).
    let dbPids: (() => Promise<number[]>) | undefined;
    if (pg) {
      const { default: postgres } = await import('postgres');
      const client = postgres(pg.url, { max: 1, onnotice: () => {} });
      closeAdmin = () => client.end({ timeout: 5 });
      dbPids = async () =>
        (
          await client<{ pid: number }[]>`select pid from pg_stat_activity
            where datname = current_database() and application_name = 'trainhook'`
        ).map((r) => r.pid);
    }

    const rows: Row[] = [];
    for (const endpoint of settings.endpoints) {
      // Rounds of (bare, trainhook), each pair measured back to back; the pair with the median
      // ratio is reported. One pair alone moved by ±15% between runs on this 2-core machine.
      const pairs: Row[][] = [];
      for (let round = 1; round <= settings.rounds; round++) {
        const pair: Row[] = [];
        for (const [name, url] of [
          ['bare hono', bare.url],
          ['trainhook', server.url],
        ] as const) {
          log(
            `${backend}: ${endpoint} on ${name}, round ${round}/${settings.rounds} ` +
              `(${settings.warmup} s warm-up + ${settings.duration} s, ${settings.connections} connections)`,
          );
          const child = name === 'trainhook' ? server : bare;
          const m = await measure({
            url,
            endpoint,
            ids,
            connections: settings.connections,
            duration: settings.duration,
            warmup: settings.warmup,
            serverPid: child.child.pid,
            ...(name === 'trainhook' && dbPids ? { dbPids } : {}),
          });
          const row = toRow(backend, endpoint, name, m);
          pair.push(row);
          log(
            `  ${row.rps.toFixed(0)} rps, p50 ${row.p50} ms, p99 ${row.p99} ms, cpu ${row.cpuUs?.toFixed(0) ?? '-'} µs/req` +
              `${row.dbUs !== null ? ` + db ${row.dbUs.toFixed(0)} µs/req` : ''}, codes ${row.codes || '(none)'}, errors ${row.errors}`,
          );
        }
        pairs.push(pair);
      }
      const ratio = (pair: Row[]) => (pair[0]!.rps > 0 ? pair[1]!.rps / pair[0]!.rps : 0);
      const sorted = [...pairs].sort((a, b) => ratio(a) - ratio(b));
      if (pairs.length > 1) {
        log(`${backend}: ${endpoint} rps ratio by round: ${pairs.map((p) => `${(ratio(p) * 100).toFixed(1)}%`).join(', ')}; median reported`);
      }
      rows.push(...sorted[Math.floor((sorted.length - 1) / 2)]!);
    }
    return rows;
  } finally {
    await closeAdmin?.();
    await server?.stop();
    if (!settings.keep) {
      await pg?.drop();
      fs.rmSync(workdir, { recursive: true, force: true });
    } else {
      log(`${backend}: kept ${pg?.url ?? workdir}`);
    }
  }
}

function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

async function main(): Promise<void> {
  const settings = {
    jobs: Math.max(1, Math.round(num('BENCH_JOBS', 10_000))),
    finishedFraction: Math.min(1, num('BENCH_FINISHED_FRACTION', 0)),
    connections: Math.max(1, Math.round(num('BENCH_CONNECTIONS', 10))),
    duration: Math.max(1, num('BENCH_DURATION', 10)),
    warmup: num('BENCH_WARMUP', 2),
    rounds: Math.max(1, Math.round(num('BENCH_ROUNDS', 3))),
    cpuProf: process.env['BENCH_CPU_PROF'] || undefined,
    keep: ['1', 'true', 'yes'].includes(process.env['BENCH_KEEP'] ?? ''),
    logLevel: process.env['BENCH_LOG_LEVEL'] || 'warn',
    endpoints: (process.env['BENCH_ENDPOINTS'] || 'get,post').split(',').map((e): Row['endpoint'] => {
      const key = e.trim().toLowerCase();
      if (key === 'get') return 'GET /jobs/{id}';
      if (key === 'post') return 'POST /train';
      throw new Error(`BENCH_ENDPOINTS: unknown endpoint ${e} (get, post)`);
    }),
  };
  const wanted = (process.env['BENCH_BACKENDS'] ?? (process.env['BENCH_DATABASE_URL'] ? 'pglite,postgres' : 'pglite'))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const b of wanted) {
    if (b !== 'pglite' && b !== 'postgres') throw new Error(`BENCH_BACKENDS: unknown backend ${b}`);
    if (b === 'postgres' && !process.env['BENCH_DATABASE_URL']) throw new Error('postgres backend needs BENCH_DATABASE_URL');
  }
  log(
    `node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}); ${settings.jobs} jobs, ` +
      `${settings.connections} connections, ${settings.duration} s per run; backends ${wanted.join(', ')}`,
  );

  const bare = await startChild(['--import', 'tsx', SELF, '--bare'], {}, { readyPath: '/api/v1/jobs/ready' });
  const rows: Row[] = [];
  let failed = false;
  try {
    for (const backend of wanted as ('pglite' | 'postgres')[]) {
      try {
        rows.push(...(await runBackend(backend, settings, bare)));
      } catch (err) {
        // One backend failing (e.g. no PostgreSQL) still prints the other's numbers.
        failed = true;
        log(`${backend}: FAILED: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  } finally {
    await bare.stop();
  }

  printTable(rows);
  process.stdout.write('\nTarget (issue 2): GET /jobs/{id} at >= 50% of bare Hono rps, p99 < 10 ms.\n');
  let missed = false;
  for (const r of rows.filter((x) => x.server === 'trainhook' && x.endpoint === 'GET /jobs/{id}')) {
    const bare = bareOf(rows, r);
    const ratio = bare ? r.rps / bare.rps : 0;
    const cr = cpuRatio(r, bare);
    const pass = ratio >= 0.5 && r.p99 < 10 && r.non2xx === 0 && r.errors === 0;
    missed ||= !pass;
    process.stdout.write(
      `  ${r.backend}: ${(ratio * 100).toFixed(1)}% of bare rps (by CPU cost ${cr === null ? '-' : `${(cr * 100).toFixed(1)}%`}), ` +
        `p99 ${r.p99.toFixed(2)} ms -> ${pass ? 'MET' : 'MISSED'}\n`,
    );
  }
  const load = os.loadavg()[0]!;
  if (load > os.cpus().length) {
    process.stdout.write(
      `  note: load average ${load.toFixed(1)} on ${os.cpus().length} CPUs: other work shared the machine, rps and latency are low; CPU µs/req and the cpu ratio are steadier.\n`,
    );
  }
  if (process.env['BENCH_JSON']) {
    fs.writeFileSync(process.env['BENCH_JSON'], `${JSON.stringify({ settings, cpus: os.cpus().length, node: process.version, rows }, null, 2)}\n`);
  }
  if (settings.cpuProf) process.stdout.write(`CPU profiles of the trainhook child in ${path.resolve(settings.cpuProf)}\n`);
  // The bench reports; with BENCH_STRICT=1 a missed target also makes the exit status 1.
  if (missed && ['1', 'true', 'yes'].includes(process.env['BENCH_STRICT'] ?? '')) process.exitCode = 1;
  if (failed) process.exitCode = 1;
}

if (process.argv.includes('--bare')) {
  await runBare();
} else {
  await main();
}
