/**
 * Cluster drill: three real server processes (src/main.ts, as `npm start` runs it) on one
 * PostgreSQL and one S3-compatible store, each node with a work directory of its own: an API
 * node (RUN_JOBS=false) and two worker nodes.
 *
 *   1. A job is submitted through the API node and claimed by one of the worker nodes.
 *   2. After its second epoch that node and its worker are SIGKILLed, as a machine that dies.
 *   3. The other worker node takes the job over when the lease runs out, resumes it from the
 *      last.pt in the bucket (its own disk never saw the job) and completes it: epochs 1..N
 *      each recorded once, every callback delivered, in the order the outbox wrote them.
 *   4. The API node, which never trained anything, serves the model, the log and an artifact.
 *   5. The dead node comes back as a new machine (an empty work directory) while the other one
 *      leaves; a fine-tune with `model:<id>` runs there, on a node that did not train the base.
 *
 *   node --import tsx test/cluster-drill.ts      needs TEST_DATABASE_URL (PostgreSQL); installs moto
 *
 * It ends with "cluster drill: PASS" or "cluster drill: FAIL" and exits non-zero on failure.
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { setupPython } from '../scripts/setup-python.mjs';
import { startFileServer } from './helpers/file-server.js';
import { startReceiver, type Received } from './helpers/receiver.js';
import { startS3Server } from './helpers/s3-server.js';
import { TOKEN, api, backendEnv, startChildServer, tempDir, type ChildServer } from './helpers/server.js';
import { writeSyntheticDataset, zipDirectory } from './helpers/synthetic-dataset.js';

const EPOCHS = 5;
const KILL_AFTER_EPOCH = 2;
const LEASE_SECONDS = 5;
const SECRET = 'cluster-drill-callback-secret-0123456789';
const DRILL_LIMIT_MS = 10 * 60_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const live = new Set<ChildServer>();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const s of live) s.child.kill('SIGKILL');
    process.exit(130);
  });
}

/** Worker processes (worker/main.py) whose command line names a file under a work directory. */
function workersUnder(workdir: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (!args.some((a) => a.endsWith('worker/main.py')) || !args.some((a) => a.startsWith(workdir + path.sep))) continue;
      if (/^\S+ \(.*\) Z/.test(fs.readFileSync(`/proc/${entry}/stat`, 'utf8'))) continue;
      pids.push(Number(entry));
    } catch {
      /* gone */
    }
  }
  return pids;
}

function killAll(pids: number[]) {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

async function until<T>(what: string, probe: () => Promise<T | undefined | null | false>, limitMs = 5 * 60_000, everyMs = 250): Promise<T> {
  const end = Date.now() + limitMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

async function main(): Promise<string[]> {
  const failures: string[] = [];
  if (!process.env['TEST_DATABASE_URL']) {
    console.log('cluster drill: no TEST_DATABASE_URL; a cluster needs PostgreSQL');
    return ['TEST_DATABASE_URL is not set'];
  }
  process.env['OMP_NUM_THREADS'] = '1';
  const started = Date.now();
  const python = await setupPython();
  const s3 = await startS3Server();
  const db = await backendEnv('postgres');
  const receiver = await startReceiver();
  const src = tempDir('trainhook-cluster-data-');
  await writeSyntheticDataset(path.join(src, 'ds'), { task: 'detect', train: 16, val: 8, imgsz: 64, classes: ['red-box', 'green-disc'], seed: 3 });
  await zipDirectory(path.join(src, 'ds'), path.join(src, 'data.zip'));
  const zip = fs.readFileSync(path.join(src, 'data.zip'));
  const files = await startFileServer();
  files.route('/data.zip', (_req, res) => res.writeHead(200, { 'content-type': 'application/zip', 'content-length': zip.length }).end(zip));
  const bucketName = `drill-${crypto.randomBytes(4).toString('hex')}`;
  const bucket = s3.storage(bucketName, 'cluster');
  await bucket.ensureBucket();

  const shared: Record<string, string> = {
    ...db.env,
    ...s3.env(bucketName, 'cluster'),
    STORAGE_PUBLIC: 'false',
    API_TOKEN: TOKEN,
    LINK_SIGNING_KEY: crypto.randomBytes(32).toString('hex'),
    DEVICES: 'cpu',
    OMP_NUM_THREADS: '1',
    PYTHON: python,
    OUTBOUND_ALLOW: '127.0.0.1',
    LEASE_SECONDS: String(LEASE_SECONDS),
    CALLBACK_RETRY_SCHEDULE: '0,1,2,5',
  };
  const node = (id: string, extra: Record<string, string> = {}) => {
    const workdir = tempDir(`trainhook-cluster-${id}-`);
    return { id, workdir, env: { ...shared, NODE_ID: id, WORKDIR: workdir, ...extra } };
  };
  const apiNode = node('api', { RUN_JOBS: 'false' });
  const workers = [node('worker-a'), node('worker-b')];
  const servers = new Map<string, ChildServer>();
  const start = async (n: { id: string; env: Record<string, string> }) => {
    const s = await startChildServer(n.env);
    live.add(s);
    servers.set(n.id, s);
    return s;
  };
  const stop = async (id: string, signal: NodeJS.Signals) => {
    const s = servers.get(id)!;
    await s.kill(signal);
    live.delete(s);
  };

  try {
    const front = await start(apiNode);
    for (const w of workers) await start(w);
    const call = api(front.url);

    // 1. Submit through the API node.
    const submitted = await call('/api/v1/train', {
      method: 'POST',
      json: {
        model_config: { name: 'cluster-base', base_model: 'yolo11n.yaml', epochs: EPOCHS, batch_size: 8, image_size: 64, seed: 1, augmentation: { mosaic: 0 } },
        dataset: { url: files.url('/data.zip') },
        resources: { device: 'cpu', workers: 0 },
        callback_url: `${receiver.url}/base`,
        callback_secret: SECRET,
      },
    });
    if (submitted.status !== 202) throw new Error(`submit: ${submitted.status} ${submitted.text}`);
    const jobId: string = submitted.json.job_id;

    // 2. The node training it dies after epoch KILL_AFTER_EPOCH, with its worker.
    const job = () => call(`/api/v1/jobs/${jobId}`).then((r) => r.json);
    await until(`epoch ${KILL_AFTER_EPOCH}`, async () => ((await job()).current_epoch ?? 0) >= KILL_AFTER_EPOCH && (await job()).status === 'training');
    const trainer = await until('the node that trains', async () => workers.find((w) => workersUnder(w.workdir).length > 0));
    const survivor = workers.find((w) => w !== trainer)!;
    const epochAtKill = (await job()).current_epoch as number;
    // Its checkpoint goes up in the background after an epoch: wait for it and its state files.
    await until('last.pt and its state files in the bucket', async () => {
      const keys = (await bucket.list(`jobs/${jobId}/`)).map((o) => o.key);
      return ['files/weights/last.pt', 'files/results.csv', 'files/trainhook-state.json'].every((k) => keys.includes(`jobs/${jobId}/${k}`));
    }, 60_000);
    const orphans = workersUnder(trainer.workdir);
    await stop(trainer.id, 'SIGKILL');
    killAll(orphans);
    // The machine is gone, its disk with it.
    fs.rmSync(trainer.workdir, { recursive: true, force: true });
    // The epochs the stored last.pt holds: where the survivor must resume.
    const stored = path.join(tempDir('trainhook-cluster-stored-'), 'last.pt');
    if (!(await bucket.getToFile(`jobs/${jobId}/files/weights/last.pt`, stored))) throw new Error('last.pt vanished from the bucket');
    const { stdout } = await promisify(execFile)(python, ['-c', 'import sys, torch; print(int(torch.load(sys.argv[1], weights_only=False)["epoch"]) + 1)', stored]);
    const storedEpochs = Number(stdout.trim().split('\n').pop());
    const killedAt = Date.now();
    console.log(`killed ${trainer.id} at epoch ${epochAtKill} (${((killedAt - started) / 1000).toFixed(1)} s); ${survivor.id} should take over`);

    // 3. The survivor takes it over after the lease and completes it.
    await until('the job on the survivor', async () => workersUnder(survivor.workdir).length > 0, (LEASE_SECONDS + 60) * 1000);
    const takeoverS = (Date.now() - killedAt) / 1000;
    const done = await until('the job to finish', async () => {
      const j = await job();
      return ['completed', 'failed', 'cancelled'].includes(j.status) ? j : undefined;
    }, DRILL_LIMIT_MS);
    if (done.status !== 'completed') failures.push(`job ended ${done.status}: ${JSON.stringify(done.error)}`);
    const epochs = ((await call(`/api/v1/jobs/${jobId}/metrics`)).json.epochs as { epoch: number }[]).map((e) => e.epoch);
    const want = Array.from({ length: EPOCHS }, (_, i) => i + 1);
    if (JSON.stringify(epochs) !== JSON.stringify(want)) failures.push(`epochs recorded ${JSON.stringify(epochs)}, want ${JSON.stringify(want)}`);
    const survivorLog = fs.existsSync(path.join(survivor.workdir, 'jobs', jobId, 'worker.log'))
      ? fs.readFileSync(path.join(survivor.workdir, 'jobs', jobId, 'worker.log'), 'utf8')
      : '';
    if (!/resum/i.test(survivorLog)) failures.push(`the survivor's worker log does not say it resumed:\n${survivorLog.slice(-2000)}`);
    const resumedFrom = servers.get(survivor.id)!.output.map((l) => {
      try {
        return JSON.parse(l) as { msg?: string; job_id?: string; resumed_from_epoch?: number | null };
      } catch {
        return {};
      }
    }).find((l) => l.msg === 'worker started' && l.job_id === jobId)?.resumed_from_epoch;
    if (resumedFrom !== storedEpochs) failures.push(`the survivor resumed from epoch ${resumedFrom}, the stored last.pt holds ${storedEpochs}`);

    // Callbacks: all delivered, received in the outbox's order, epochs never going back.
    type Ev = { event_id: string; state: string; type: string };
    const outbox = async () => ((await call(`/api/v1/jobs/${jobId}/callbacks?limit=500`)).json.events as Ev[]).filter((e) => e.state !== 'superseded');
    await until('every callback delivered', async () => (await outbox()).every((e) => e.state === 'delivered'), 60_000).catch((e: Error) => failures.push(e.message));
    // The API lists a job's events newest first.
    const order = (await outbox()).map((e) => e.event_id).reverse();
    const got = receiver.received.filter((r: Received) => r.path === '/base' && r.status === 200);
    const seen = [...new Set(got.map((r) => r.headers['webhook-id']))];
    if (JSON.stringify(seen) !== JSON.stringify(order)) failures.push(`callbacks received in order ${JSON.stringify(seen)}, outbox order ${JSON.stringify(order)}`);
    const progressEpochs = got.filter((r) => r.json?.type === 'training_progress').map((r) => r.json.progress.current_epoch ?? 0);
    // The survivor repeats the epochs after the stored last.pt (recorded once each): progress may
    // step back once, at the takeover, to the epoch after the stored one, and never otherwise.
    const backs = progressEpochs.flatMap((e, i) => (i > 0 && e < progressEpochs[i - 1]! ? [e] : []));
    if (backs.length > 1 || (backs.length === 1 && backs[0]! < storedEpochs)) {
      failures.push(`progress callbacks went back in epochs other than once to the stored checkpoint (epoch ${storedEpochs}): ${JSON.stringify(progressEpochs)}`);
    }
    const ends = got.filter((r) => r.json?.type !== 'training_progress').map((r) => r.json?.type);
    if (JSON.stringify([...new Set(ends)]) !== '["training_completed"]') failures.push(`terminal callbacks ${JSON.stringify(ends)}`);

    // 4. The API node serves the model, the log and an artifact (proxied: STORAGE_PUBLIC=false).
    const model = await until('the registered model', async () => ((await call('/api/v1/models')).json.models as { model_id: string; source_job_id: string }[]).find((m) => m.source_job_id === jobId));
    const fetchOk = async (what: string, url: string, check: (b: Buffer) => string | null) => {
      const res = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } });
      const body = Buffer.from(await res.arrayBuffer());
      const problem = res.status !== 200 ? `status ${res.status}: ${body.toString().slice(0, 300)}` : check(body);
      if (problem) failures.push(`API node serving ${what}: ${problem}`);
      else console.log(`API node served ${what}: ${body.length} bytes`);
    };
    const bestOnSurvivor = fs.readFileSync(path.join(survivor.workdir, 'jobs', jobId, 'weights', 'best.pt'));
    const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
    await fetchOk('the job\'s best.pt', `${front.url}/api/v1/jobs/${jobId}/model?download=true`, (b) => (sha(b) === sha(bestOnSurvivor) ? null : 'not the bytes of the survivor\'s best.pt'));
    const modelView = (await call(`/api/v1/models/${model.model_id}`)).json;
    await fetchOk('the model', modelView.download.url, (b) => (b.length > 1000 ? null : `only ${b.length} bytes`));
    await fetchOk('the log', `${front.url}/api/v1/jobs/${jobId}/logs/download`, (b) => (/epoch/i.test(b.toString()) ? null : 'no epoch in the log'));
    const artifact = (await call(`/api/v1/jobs/${jobId}/artifacts/results.csv`)).json;
    await fetchOk('results.csv', artifact.url, (b) => (b.toString().split('\n').filter(Boolean).length === EPOCHS + 1 ? null : `results.csv:\n${b.toString()}`));
    const logPage = (await call(`/api/v1/jobs/${jobId}/logs?limit=1000`)).json;
    if (!(logPage?.total_lines > 0)) failures.push(`API node's log page: ${JSON.stringify(logPage).slice(0, 300)}`);

    // 5. The dead node returns as a new machine; the survivor leaves; a fine-tune of the model runs there.
    const reborn = node(trainer.id);
    await start(reborn);
    await stop(survivor.id, 'SIGTERM');
    const fine = await call('/api/v1/train', {
      method: 'POST',
      json: {
        model_config: { name: 'cluster-fine', base_model: `model:${model.model_id}`, epochs: 2, batch_size: 8, image_size: 64, seed: 1, augmentation: { mosaic: 0 } },
        dataset: { url: files.url('/data.zip') },
        resources: { device: 'cpu', workers: 0 },
      },
    });
    if (fine.status !== 202) throw new Error(`fine-tune submit: ${fine.status} ${fine.text}`);
    const fineDone = await until('the fine-tune to finish', async () => {
      const j = (await call(`/api/v1/jobs/${fine.json.job_id}`)).json;
      return ['completed', 'failed', 'cancelled'].includes(j.status) ? j : undefined;
    }, DRILL_LIMIT_MS);
    if (fineDone.status !== 'completed') failures.push(`fine-tune ended ${fineDone.status}: ${JSON.stringify(fineDone.error)}`);
    if (!fs.existsSync(path.join(reborn.workdir, 'jobs', fine.json.job_id))) failures.push(`the fine-tune did not run on ${reborn.id}`);

    console.log(
      `cluster drill: base job ${EPOCHS} epochs, killed ${trainer.id} at epoch ${epochAtKill} (bucket's last.pt: ${storedEpochs}), ${survivor.id} took over after ${takeoverS.toFixed(1)} s ` +
        `(lease ${LEASE_SECONDS} s), ${order.length} callbacks in order, fine-tune on a fresh ${reborn.id}: ${fineDone.status}; wall ${((Date.now() - started) / 1000).toFixed(0)} s`,
    );
  } catch (err) {
    failures.push(`drill error: ${(err as Error).stack ?? err}`);
  } finally {
    for (const s of live) await s.kill('SIGKILL').catch(() => {});
    await sleep(500);
    for (const w of [apiNode, ...workers]) killAll(workersUnder(w.workdir));
    if (failures.length) for (const [id, s] of servers) console.log(`--- ${id} output (last 30 lines):\n${s.output.slice(-30).join('\n')}`);
    await files.close();
    await receiver.close();
    await db.drop().catch(() => {});
    bucket.destroy();
    await s3.close();
  }
  return failures;
}

const failures = await main();
if (failures.length) {
  console.log(`cluster drill: FAIL\n- ${failures.join('\n- ')}`);
  process.exit(1);
}
console.log('cluster drill: PASS');
process.exit(0);
