/**
 * SSE fan-out benchmark (not a test): `npx tsx bench/sse.ts [clients] [epochs]`.
 *
 * A trainhook server runs in a child process (API-only, PGlite in a temp workdir) with one
 * running job. This process opens CLIENTS (default 1,000) concurrent streams on that job over
 * real HTTP, then the server records EPOCHS epochs the way jobs/execute.ts does (epoch row +
 * job update in one transaction, then the event on the bus). For every epoch and client it
 * measures the delay from the event being emitted on the server to its arrival at the client
 * (both clocks are this machine's: performance.timeOrigin + now()). It prints p50/p95/p99/max
 * and the server's memory (RSS and heap after a forced GC) before the clients, with them
 * connected, after the epochs and after they left.
 *
 * Targets (issue 5): p99 under 200 ms, memory growth under 100 MB.
 */
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TOKEN = 'bench-token-0123456789abcdef';
const now = () => performance.timeOrigin + performance.now();

type Mem = { rss: number; heapUsed: number; external: number; arrayBuffers: number };
type ToChild = { type: 'epoch'; n: number } | { type: 'mem' } | { type: 'stats' } | { type: 'stop' };
type FromChild =
  | { type: 'ready'; url: string; jobId: string }
  | { type: 'epoch'; n: number; emittedAt: number; fanoutMs: number; fanoutCpuMs: number }
  | { type: 'mem'; mem: Mem }
  | { type: 'stats'; stats: Record<string, number> };

// ─── server side (child process) ─────────────────────────────────────────────
async function serverMain(): Promise<void> {
  const { loadConfig } = await import('../src/core/config.js');
  const { startServer } = await import('../src/server.js');
  const { claimNextJob, markRunning, recordEpoch, updateActiveJob } = await import('../src/jobs/transitions.js');
  const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'trainhook-bench-sse-'));
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    WORKDIR: workdir,
    API_TOKEN: TOKEN,
    RUN_JOBS: 'false',
    LOG_LEVEL: 'warn',
    NODE_ID: 'bench-node',
    MONITOR_INTERVAL_SECONDS: '5',
  });
  const server = await startServer(config);
  const res = await fetch(`${server.url}/api/v1/train`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      model_config: { name: 'bench', base_model: 'yolo11n.yaml', epochs: 1000 },
      dataset: { url: 'https://example.com/d.zip' },
      resources: { device: 'cpu' },
    }),
  });
  const { job_id: jobId } = (await res.json()) as { job_id: string };
  const { db } = server.deps.database;
  const claimed = await claimNextJob(db, { nodeId: 'bench-node', device: 'cpu', leaseSeconds: 3600 });
  await markRunning(db, claimed!.id, 'bench-node');

  const send = (m: FromChild) => process.send!(m);
  process.on('message', async (m: ToChild) => {
    if (m.type === 'epoch') {
      const metrics = { box_loss: 1 / m.n, cls_loss: 1 / m.n, dfl_loss: 1 / m.n, precision: 0.5, recall: 0.5, mAP50: 0.5, 'mAP50-95': 0.3 };
      const epoch = { epoch: m.n, metrics, epochSeconds: 10 };
      const row = await db.transaction(async (tx) => {
        await recordEpoch(tx, { jobId, ...epoch });
        return updateActiveJob(tx, jobId, 'bench-node', { progress: 10 + m.n / 10, currentEpoch: m.n, metricsCurrent: metrics, etaSeconds: 1000 - m.n });
      });
      const cpu = process.cpuUsage();
      const emittedAt = now();
      server.deps.events.emit({ job: row!, change: 'epoch', epoch });
      // Every client's write is issued in the microtasks that follow: done by the next macrotask.
      setImmediate(() => {
        const used = process.cpuUsage(cpu);
        send({ type: 'epoch', n: m.n, emittedAt, fanoutMs: now() - emittedAt, fanoutCpuMs: (used.user + used.system) / 1000 });
      });
    } else if (m.type === 'mem') {
      for (let i = 0; i < 3; i++) global.gc?.();
      const u = process.memoryUsage();
      send({ type: 'mem', mem: { rss: u.rss, heapUsed: u.heapUsed, external: u.external, arrayBuffers: u.arrayBuffers } });
    } else if (m.type === 'stats') {
      send({ type: 'stats', stats: server.deps.streams.stats() });
    } else if (m.type === 'stop') {
      await server.close();
      fs.rmSync(workdir, { recursive: true, force: true });
      process.exit(0);
    }
  });
  send({ type: 'ready', url: server.url, jobId });
}

// ─── clients (this process) ──────────────────────────────────────────────────
interface Client {
  arrivals: Map<number, number>;
  ac: AbortController;
  done: Promise<void>;
  ended: boolean;
}

/**
 * One stream over node:http (not fetch: web streams in 1,000 readers of one process would
 * measure this process more than the server).
 */
function openClient(url: string, onEpoch: () => void): Promise<Client> {
  return new Promise((resolve, reject) => {
    const ac = new AbortController();
    const client: Client = { arrivals: new Map(), ac, done: Promise.resolve(), ended: false };
    let finished: () => void;
    client.done = new Promise<void>((r) => (finished = r));
    const req = http.get(url, { headers: { authorization: `Bearer ${TOKEN}` }, signal: ac.signal, agent }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`stream answered ${res.statusCode}`));
      res.setEncoding('utf8');
      let buf = '';
      res.on('data', (chunk: string) => {
        const at = now();
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (!block.includes('event: progress')) continue;
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (!data) continue;
          const d = JSON.parse(data) as { snapshot?: boolean; change?: string; epoch: number };
          if (d.snapshot) resolve(client);
          else if (d.change === 'epoch') {
            client.arrivals.set(d.epoch, at);
            onEpoch();
          }
        }
      });
      const end = () => {
        client.ended = true;
        finished();
      };
      res.on('end', end);
      res.on('error', end);
      res.on('close', end);
    });
    req.on('error', (err) => {
      if (ac.signal.aborted) {
        client.ended = true;
        finished();
      } else reject(err);
    });
  });
}
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

async function main(): Promise<void> {
  const CLIENTS = Number(process.argv[2] ?? 1000);
  const EPOCHS = Number(process.argv[3] ?? 20);
  const self = fileURLToPath(import.meta.url);
  const child: ChildProcess = fork(self, ['--server'], {
    execArgv: ['--import', 'tsx', '--expose-gc', ...(process.env['BENCH_PROF'] ? ['--cpu-prof', '--cpu-prof-dir=' + process.env['BENCH_PROF']] : [])],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const waiters = new Map<string, (m: FromChild) => void>();
  child.on('message', (m: FromChild) => {
    const key = m.type === 'epoch' ? `epoch:${m.n}` : m.type;
    waiters.get(key)?.(m);
    waiters.delete(key);
  });
  const ask = <T extends FromChild>(key: string, msg?: ToChild) =>
    new Promise<T>((resolve) => {
      waiters.set(key, resolve as (m: FromChild) => void);
      if (msg) child.send(msg);
    });
  const mem = async () => (await ask<{ type: 'mem'; mem: Mem }>('mem', { type: 'mem' })).mem;

  const ready = await ask<{ type: 'ready'; url: string; jobId: string }>('ready');
  const streamUrl = `${ready.url}/stream/progress/${ready.jobId}`;
  const mem0 = await mem();

  let arrivedThisEpoch = 0;
  let notify: (() => void) | null = null;
  const onEpoch = () => {
    arrivedThisEpoch++;
    if (notify && arrivedThisEpoch >= CLIENTS) notify();
  };
  const t0 = now();
  const clients: Client[] = [];
  for (let i = 0; i < CLIENTS; i += 100) {
    clients.push(...(await Promise.all(Array.from({ length: Math.min(100, CLIENTS - i) }, () => openClient(streamUrl, onEpoch)))));
  }
  const connectMs = now() - t0;
  const mem1 = await mem();

  const emitted = new Map<number, number>();
  const fanout: number[] = [];
  const fanoutCpu: number[] = [];
  for (let n = 1; n <= EPOCHS; n++) {
    arrivedThisEpoch = 0;
    const all = new Promise<void>((resolve) => (notify = resolve));
    const e = await ask<{ type: 'epoch'; n: number; emittedAt: number; fanoutMs: number; fanoutCpuMs: number }>(`epoch:${n}`, { type: 'epoch', n });
    emitted.set(n, e.emittedAt);
    fanout.push(e.fanoutMs);
    fanoutCpu.push(e.fanoutCpuMs);
    await Promise.race([all, new Promise((r) => setTimeout(r, 10_000))]);
    notify = null;
    await new Promise((r) => setTimeout(r, 50));
  }
  const mem2 = await mem();
  const stats = (await ask<{ type: 'stats'; stats: Record<string, number> }>('stats', { type: 'stats' })).stats;

  const delays: number[] = [];
  let missing = 0;
  for (const c of clients) {
    for (let n = 1; n <= EPOCHS; n++) {
      const at = c.arrivals.get(n);
      if (at === undefined) missing++;
      else delays.push(at - emitted.get(n)!);
    }
  }
  delays.sort((a, b) => a - b);
  for (const c of clients) c.ac.abort();
  await Promise.all(clients.map((c) => c.done));
  await new Promise((r) => setTimeout(r, 1000));
  const mem3 = await mem();
  child.send({ type: 'stop' });

  const p99 = pct(delays, 99);
  const growth = mem2.rss - mem0.rss;
  const line = (label: string, m: Mem) => `  ${label.padEnd(26)} rss ${mb(m.rss).padStart(9)}   heap ${mb(m.heapUsed).padStart(9)}   external ${mb(m.external).padStart(8)}`;
  console.log(`SSE fan-out: ${CLIENTS} clients on one job, ${EPOCHS} epochs, node ${process.version}, ${os.cpus().length} CPUs`);
  console.log(`  connected in ${connectMs.toFixed(0)} ms (snapshot each); server counted ${stats['clients']} clients, ${stats['dropped_slow']} dropped as slow`);
  console.log(`  epoch event → client delay over ${delays.length} deliveries (${missing} missing):`);
  console.log(`    p50 ${pct(delays, 50).toFixed(1)} ms   p95 ${pct(delays, 95).toFixed(1)} ms   p99 ${p99.toFixed(1)} ms   max ${delays[delays.length - 1]!.toFixed(1)} ms`);
  fanout.sort((a, b) => a - b);
  fanoutCpu.sort((a, b) => a - b);
  console.log(
    `  server time to write one event to all ${CLIENTS} sockets: p50 ${pct(fanout, 50).toFixed(1)} ms, max ${fanout[fanout.length - 1]!.toFixed(1)} ms wall; p50 ${pct(fanoutCpu, 50).toFixed(1)} ms CPU`,
  );
  console.log(`  machine load average (1 min): ${os.loadavg()[0]!.toFixed(2)} on ${os.cpus().length} CPUs (other work on the machine shows up as delay)`);
  console.log('  server memory (after GC):');
  console.log(line('before clients', mem0));
  console.log(line(`${CLIENTS} clients connected`, mem1));
  console.log(line(`after ${EPOCHS} epochs`, mem2));
  console.log(line('after clients left', mem3));
  console.log(`  RSS growth with clients: ${mb(growth)} (heap ${mb(mem2.heapUsed - mem0.heapUsed)}); left after they went: ${mb(mem3.rss - mem0.rss)}`);
  const ok = p99 < 200 && growth < 100e6 && missing === 0;
  console.log(`  targets (p99 < 200 ms, growth < 100 MB, nothing missing): ${ok ? 'met' : 'NOT met'}`);
  process.exitCode = ok ? 0 : 1;
}

if (process.argv.includes('--server')) void serverMain();
else void main();
