/**
 * Soak drill: the real server (src/main.ts in a child process, as `npm start` runs it) trains
 * five jobs while it is SIGKILLed 20 times at moments spread over the dataset download, its
 * extraction, training, the final validation and callback delivery, and started again each
 * time on the same work directory and database. Only the server process is killed: its
 * workers are orphaned and must stop by their lifeline, as they would after a real crash.
 *
 * At the end every job must be completed, with epochs 1..N each recorded once; every callback
 * event of the outbox delivered (the receiver saw its id, the server lists none pending or
 * dead); and no worker process left running under the drill's work directory.
 *
 *   node --import tsx test/soak-drill.ts            PGlite; PostgreSQL too when TEST_DATABASE_URL is set
 *   SOAK_KILLS=20 SOAK_SEED=7 SOAK_BACKENDS=pglite   kills, random seed, backends to run
 *
 * It ends with "soak drill: PASS" or "soak drill: FAIL" and exits non-zero on failure.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { setupPython } from '../scripts/setup-python.mjs';
import { backends, type Backend } from './helpers/database.js';
import { prng, writeSyntheticDataset, zipDirectory } from './helpers/synthetic-dataset.js';
import { TOKEN, api, backendEnv, startChildServer, tempDir, type ChildServer } from './helpers/server.js';

const JOBS = 5;
const EPOCHS = 3;
const KILLS = Number(process.env['SOAK_KILLS'] ?? 20);
const SEED = Number(process.env['SOAK_SEED'] ?? Math.floor(Math.random() * 1e6));
const SECRET = 'soak-drill-callback-secret-0123456789';
const PHASES = ['download', 'extraction', 'training', 'finalizing', 'callback'] as const;
type KillPhase = (typeof PHASES)[number];
/** How long one kill waits for its phase before it takes whatever moment comes. */
const PHASE_WAIT_MS = 20_000;
/** The whole drill's limit per backend: a server that never finishes fails instead of hanging CI. */
const DRILL_LIMIT_MS = 12 * 60_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The server running now: an interrupted drill takes it down (its workers follow by their lifeline). */
let live: ChildServer | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    live?.child.kill('SIGKILL');
    process.exit(130);
  });
}

/** A dataset host that sends each ZIP in slices, so a download lasts long enough to be interrupted. */
async function startDatasetHost(zips: ReadonlyMap<string, Buffer>) {
  const inFlight = new Map<string, number>();
  const served = new Map<string, number>();
  const sockets = new Set<import('node:net').Socket>();
  const server = http.createServer((req, res) => {
    const name = new URL(req.url ?? '/', 'http://x').pathname;
    inFlight.set(name, (inFlight.get(name) ?? 0) + 1);
    const done = () => inFlight.set(name, (inFlight.get(name) ?? 1) - 1);
    res.on('close', done);
    const zip = zips.get(name);
    if (!zip) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/zip', 'content-length': zip.length });
    const slices = 20;
    const step = Math.ceil(zip.length / slices);
    let i = 0;
    const next = () => {
      if (res.destroyed) return;
      if (i >= zip.length) {
        res.end();
        served.set(name, (served.get(name) ?? 0) + 1);
        return;
      }
      res.write(zip.subarray(i, i + step));
      i += step;
      setTimeout(next, 100);
    };
    next();
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: (name: string) => `http://127.0.0.1:${port}${name}`,
    downloading: (name: string) => (inFlight.get(name) ?? 0) > 0,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

/** A webhook receiver that takes its time to answer, so deliveries are often in flight. */
async function startSlowReceiver(rand: () => number) {
  const seen = new Map<string, number>();
  let inFlight = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      inFlight++;
      let open = true;
      res.on('close', () => {
        if (open) inFlight--;
        open = false;
      });
      const id = String(req.headers['webhook-id'] ?? '');
      setTimeout(() => {
        if (res.destroyed) return;
        seen.set(id, (seen.get(id) ?? 0) + 1);
        res.writeHead(200).end('ok');
      }, 150 + rand() * 600);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    seen,
    inFlight: () => inFlight,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

/** Worker processes (worker/main.py) whose command line names a file under the work directory. */
function workersUnder(workdir: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let cmd: string;
    try {
      cmd = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const args = cmd.split('\0');
    if (args.some((a) => a.endsWith('worker/main.py')) && args.some((a) => a.startsWith(workdir + path.sep))) {
      // A zombie has exited: it is its parent's to reap, not a worker left running.
      try {
        if (/^\S+ \(.*\) Z/.test(fs.readFileSync(`/proc/${entry}/stat`, 'utf8'))) continue;
      } catch {
        continue;
      }
      pids.push(Number(entry));
    }
  }
  return pids;
}

type Job = { id: string; name: string; status: string; phase: string; current_epoch: number | null };

async function drill(backend: Backend, zips: ReadonlyMap<string, Buffer>, python: string): Promise<string[]> {
  const started = Date.now();
  const rand = prng(SEED);
  const failures: string[] = [];
  const host = await startDatasetHost(zips);
  const receiver = await startSlowReceiver(rand);
  const db = await backendEnv(backend);
  const workdir = tempDir('trainhook-soak-');
  const env: Record<string, string> = {
    ...db.env,
    WORKDIR: workdir,
    API_TOKEN: TOKEN,
    DEVICES: 'cpu',
    OMP_NUM_THREADS: '1',
    PYTHON: python,
    OUTBOUND_ALLOW: '127.0.0.1',
    LEASE_SECONDS: '5',
    JOB_MAX_ATTEMPTS: '100',
    CALLBACK_RETRY_SCHEDULE: '0,1,2,5,10,30',
    CANCEL_GRACE_SECONDS: '5',
  };
  let server: ChildServer = (live = await startChildServer(env));
  const kills: Record<KillPhase | 'fallback', number> = { download: 0, extraction: 0, training: 0, finalizing: 0, callback: 0, fallback: 0 };
  let restarts = 0;
  let orphanMaxMs = 0;
  const orphanChecks: Promise<void>[] = [];
  try {
    let call = api(server.url);
    const ids: string[] = [];
    for (let i = 0; i < JOBS; i++) {
      const r = await call('/api/v1/train', {
        method: 'POST',
        json: {
          model_config: { name: `soak-${i}`, base_model: 'yolo11n.yaml', epochs: EPOCHS, batch_size: 8, image_size: 64, seed: 1, augmentation: { mosaic: 0 } },
          dataset: { url: host.url(`/job${i}.zip`) },
          resources: { device: 'cpu', workers: 0 },
          callback_url: receiver.url,
          callback_secret: SECRET,
        },
      });
      if (r.status !== 202) throw new Error(`submit ${i}: ${r.status} ${r.text}`);
      ids.push(r.json.job_id);
    }
    const names = new Map(ids.map((id, i) => [id, `/job${i}.zip`]));
    const jobDir = (id: string) => path.join(workdir, 'jobs', id);
    const extracting = () => {
      try {
        return fs.readdirSync(path.join(workdir, 'datasets', '.tmp')).some((f) => f.endsWith('.d'));
      } catch {
        return false;
      }
    };
    const running = async (): Promise<Job | undefined> => {
      const r = await call('/api/v1/jobs?status=training&limit=5').catch(() => null);
      const j = r?.json?.jobs?.[0];
      return j ? { id: j.job_id, name: j.name, status: j.status, phase: j.phase, current_epoch: j.current_epoch } : undefined;
    };
    /** The phase a kill now would interrupt, seen from outside (the host, the files, the API). */
    const momentIs = async (want: KillPhase): Promise<boolean> => {
      if (want === 'callback') return receiver.inFlight() > 0;
      const job = await running();
      if (!job) return false;
      if (want === 'download') return job.phase === 'downloading' && host.downloading(names.get(job.id)!);
      if (want === 'extraction') {
        // The shared dataset store extracts into datasets/.tmp/<uuid>.d and renames it into place.
        return (
          job.phase === 'downloading' &&
          !host.downloading(names.get(job.id)!) &&
          extracting() &&
          !fs.existsSync(path.join(jobDir(job.id), 'dataset-info.json'))
        );
      }
      if (want === 'training') return job.phase === 'training';
      return job.phase === 'validating' || job.phase === 'finalizing';
    };
    const allDone = async () => {
      const r = await call('/api/v1/jobs?limit=50').catch(() => null);
      return r?.json?.jobs?.every((j: Job) => j.status === 'completed' || j.status === 'failed' || j.status === 'cancelled') ?? false;
    };

    for (let k = 0; k < KILLS; k++) {
      const want = PHASES[k % PHASES.length]!;
      // Let the restarted server get going before the next kill (0.3–1.5 s), then wait for the
      // moment. The first job is downloading already: its kill does not wait.
      if (k > 0) await sleep(300 + rand() * 1200);
      const waitStart = Date.now();
      let hit: KillPhase | 'fallback' | null = null;
      let missed = false;
      while (Date.now() - waitStart < PHASE_WAIT_MS) {
        if (await momentIs(want)) {
          // Somewhere inside the phase, not always at its first sight; still in it when killed.
          // A phase left during the wait is killed at its next sight, with no wait: on a fast
          // machine a job's training lasts seconds, and the drill must not run out of jobs.
          const within = missed ? 0 : want === 'training' ? rand() * 400 : want === 'download' ? rand() * 600 : 0;
          if (within > 0) {
            await sleep(within);
            if (!(await momentIs(want))) {
              missed = true;
              continue;
            }
          }
          hit = want;
          break;
        }
        if (await allDone()) break;
        await sleep(want === 'finalizing' || want === 'extraction' ? 5 : 40);
      }
      if (await allDone()) {
        console.log(`kill ${k + 1}: every job had finished; ${KILLS - k} kills left unused`);
        failures.push(`jobs finished before kill ${k + 1} of ${KILLS}: the drill is too short to spread its kills`);
        break;
      }
      hit ??= 'fallback';
      kills[hit]++;
      const job = await running();
      const orphans = () => workersUnder(workdir);
      await server.kill('SIGKILL');
      const killedAt = Date.now();
      const left = orphans();
      console.log(
        `kill ${String(k + 1).padStart(2)} at ${((killedAt - started) / 1000).toFixed(1)}s: ${hit}` +
          (job ? ` (${job.name} ${job.phase}, epoch ${job.current_epoch ?? 0})` : '') +
          `, receiver in flight ${receiver.inFlight()}, orphaned workers ${left.length}`,
      );
      // The orphans must go by their lifeline; how long they took is reported.
      if (left.length) {
        orphanChecks.push(
          (async () => {
            const deadline = Date.now() + 60_000;
            while (left.some((pid) => fs.existsSync(`/proc/${pid}`) && workersUnder(workdir).includes(pid))) {
              if (Date.now() > deadline) {
                failures.push(`orphaned workers ${left.join(',')} still running 60 s after kill ${k + 1}`);
                return;
              }
              await sleep(50);
            }
            orphanMaxMs = Math.max(orphanMaxMs, Date.now() - killedAt);
          })(),
        );
      }
      server = live = await startChildServer(env);
      restarts++;
      call = api(server.url);
    }

    // Every job to its end, then every callback to its receiver.
    const deadline = started + DRILL_LIMIT_MS;
    let jobs: Array<Job & { job_id: string; error: unknown }> = [];
    for (;;) {
      const r = await call('/api/v1/jobs?limit=50');
      jobs = r.json.jobs;
      if (jobs.every((j) => ['completed', 'failed', 'cancelled'].includes(j.status))) break;
      if (Date.now() > deadline) {
        failures.push(`jobs not finished in time: ${jobs.map((j) => `${j.name} ${j.status}/${j.phase}`).join(', ')}`);
        break;
      }
      await sleep(500);
    }
    for (const j of jobs) {
      if (j.status !== 'completed') failures.push(`${j.name}: ${j.status} ${JSON.stringify(j.error)}`);
      const epochs = ((await call(`/api/v1/jobs/${j.job_id}/metrics`)).json.epochs as { epoch: number }[]).map((e) => e.epoch);
      const want = Array.from({ length: EPOCHS }, (_, i) => i + 1);
      if (JSON.stringify(epochs) !== JSON.stringify(want)) failures.push(`${j.name}: epochs recorded ${JSON.stringify(epochs)}, want ${JSON.stringify(want)}`);
    }
    type Ev = { event_id: string; state: string; type: string };
    const events = async (id: string) => {
      const all: Ev[] = [];
      for (let offset = 0; ; offset += 500) {
        const page = (await call(`/api/v1/jobs/${id}/callbacks?limit=500&offset=${offset}`)).json;
        all.push(...(page.events as Ev[]));
        if (all.length >= page.total || page.events.length === 0) return all;
      }
    };
    let pending: string[] = [];
    let total = 0;
    for (;;) {
      pending = [];
      total = 0;
      for (const id of ids) {
        for (const e of await events(id)) {
          if (e.state === 'superseded') continue;
          total++;
          if (e.state !== 'delivered' || !receiver.seen.has(e.event_id)) pending.push(`${id} ${e.type} ${e.event_id} ${e.state}`);
        }
      }
      if (pending.length === 0 || Date.now() > deadline) break;
      await sleep(500);
    }
    for (const id of ids) {
      const ends = (await events(id)).filter((e) => e.type !== 'training_progress').map((e) => e.type);
      if (JSON.stringify(ends) !== '["training_completed"]') failures.push(`${id}: terminal callback events ${JSON.stringify(ends)}, want one training_completed`);
    }
    if (pending.length) failures.push(`${pending.length} callback events not delivered:\n  ${pending.slice(0, 10).join('\n  ')}`);
    const finals = [...receiver.seen.keys()].length;

    await Promise.all(orphanChecks);
    await server.kill('SIGTERM');
    const after = Date.now() + 30_000;
    while (workersUnder(workdir).length && Date.now() < after) await sleep(100);
    const leftBehind = workersUnder(workdir);
    if (leftBehind.length) failures.push(`worker processes left behind: ${leftBehind.join(', ')}`);

    const wall = ((Date.now() - started) / 1000).toFixed(0);
    console.log(
      `soak drill on ${backend}: ${JOBS} jobs × ${EPOCHS} epochs, ${restarts} restarts, kills per phase ${JSON.stringify(kills)}, ` +
        `${total} callback events (${finals} ids seen by the receiver), slowest orphan exit ${orphanMaxMs} ms, wall ${wall} s, seed ${SEED}`,
    );
  } catch (err) {
    failures.push(`drill error: ${(err as Error).stack ?? err}`);
  } finally {
    await server.kill('SIGKILL').catch(() => {});
    await sleep(1000);
    for (const pid of workersUnder(workdir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await host.close();
    await receiver.close();
    await db.drop().catch(() => {});
    if (failures.length) console.log(`server output (last 40 lines):\n${server.output.slice(-40).join('\n')}`);
    else fs.rmSync(workdir, { recursive: true, force: true });
  }
  return failures.map((f) => `${backend}: ${f}`);
}

async function main() {
  process.env['OMP_NUM_THREADS'] = '1';
  const python = await setupPython();
  const src = tempDir('trainhook-soak-data-');
  await writeSyntheticDataset(path.join(src, 'ds'), { task: 'detect', train: 16, val: 8, imgsz: 64, classes: ['red-box', 'green-disc'], seed: 7 });
  // Extra files the extraction must write (and the check ignores), so it lasts long enough to be interrupted.
  const extra = path.join(src, 'ds', 'extra');
  fs.mkdirSync(extra);
  for (let i = 0; i < 1500; i++) fs.writeFileSync(path.join(extra, `note-${i}.txt`), `filler ${i}\n`.repeat(40));
  // One archive per job, each with a file of its own: the dataset store keys archives by their
  // sha256, and the same bytes for every job would be downloaded and extracted by the first alone.
  const zips = new Map<string, Buffer>();
  for (let i = 0; i < JOBS; i++) {
    fs.writeFileSync(path.join(src, 'ds', 'job.txt'), `job ${i}\n`);
    await zipDirectory(path.join(src, 'ds'), path.join(src, `job${i}.zip`));
    zips.set(`/job${i}.zip`, fs.readFileSync(path.join(src, `job${i}.zip`)));
  }
  fs.rmSync(src, { recursive: true, force: true });

  const only = process.env['SOAK_BACKENDS']?.split(',');
  const failures: string[] = [];
  for (const backend of backends()) {
    if (only && !only.includes(backend)) continue;
    failures.push(...(await drill(backend, zips, python)));
  }
  if (failures.length) {
    console.log(`soak drill: FAIL\n- ${failures.join('\n- ')}`);
    process.exit(1);
  }
  console.log('soak drill: PASS');
  process.exit(0);
}

await main();
