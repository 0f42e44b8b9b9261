/**
 * Every node reports (issue 13): the node registry behind GET /api/v1/nodes, /health, /metrics
 * and the dashboard, on both backends; a graceful stop hands back a claim at once and marks the
 * node left. On PostgreSQL, two real server processes share the queue: node A is sent SIGTERM
 * while it trains, and node B takes the job over long before A's lease would have expired and
 * finishes it, each epoch recorded once.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setupPython } from '../scripts/setup-python.mjs';
import { announceNode } from '../src/nodes/registry.js';
import { nodes as nodesTable } from '../src/db/schema.js';
import { sql } from 'drizzle-orm';
import { backends } from './helpers/database.js';
import { serveFile, startFileServer, type FileServer } from './helpers/file-server.js';
import { promtoolAvailable, promtoolCheckMetrics } from './helpers/promtool.js';
import {
  TOKEN,
  api,
  backendEnv,
  startChildServer,
  startTestServer,
  tempDir,
  trainBody,
  type ChildServer,
  type TestServer,
} from './helpers/server.js';
import { writeSyntheticDataset, zipDirectory } from './helpers/synthetic-dataset.js';
import { waitFor } from './helpers/wait.js';

interface NodeJson {
  node_id: string;
  self: boolean;
  status: string;
  run_jobs: boolean;
  last_seen_at: string;
  last_seen_seconds: number;
  left_at: string | null;
  devices: { device: string; slots: number; job_ids: string[] }[];
  jobs: { job_id: string; state: string; device: string | null }[];
}

const nodesOf = async (url: string): Promise<NodeJson[]> => {
  const r = await api(url)('/api/v1/nodes');
  assert.equal(r.status, 200, r.text);
  return r.json.nodes;
};

for (const backend of backends()) {
  describe(`node registry on ${backend}`, () => {
    let server: TestServer;
    before(async () => {
      // A short lease: the heartbeat (a third of it) ticks within the test.
      server = await startTestServer({ backend, env: { NODE_ID: 'node-one', DEVICES: 'cpu', LEASE_SECONDS: '6' } });
    });
    after(() => server.stop());

    test('the node registers with its devices and renews at each lease tick', async () => {
      const [me, ...others] = await nodesOf(server.url);
      assert.equal(others.length, 0);
      assert.equal(me!.node_id, 'node-one');
      assert.equal(me!.self, true);
      assert.equal(me!.status, 'alive');
      assert.equal(me!.run_jobs, true);
      assert.equal(me!.left_at, null);
      assert.deepEqual(me!.devices, [{ device: 'cpu', slots: 1, job_ids: [] }]);
      const first = me!.last_seen_at;
      const later = await waitFor('a heartbeat', async () => {
        const [n] = await nodesOf(server.url);
        return n!.last_seen_at > first && n;
      }, 10_000);
      assert.ok(later.last_seen_seconds < 3, `a fresh heartbeat, ${later.last_seen_seconds} s old`);
      assert.equal((await api(server.url, 'wrong-token')('/api/v1/nodes')).status, 401);
    });

    test('/health carries the node id and the cluster', async () => {
      const h = await api(server.url, '')('/health');
      assert.equal(h.status, 200);
      assert.equal(h.json.node_id, 'node-one');
      assert.deepEqual(h.json.nodes.map((n: { node_id: string; status: string }) => [n.node_id, n.status]), [['node-one', 'alive']]);
    });

    test('a node silent past its lease period is stale; one that left says so', async () => {
      const { db } = server.deps.database;
      const base = { hostname: 'elsewhere', pid: 1, version: 'x', runJobs: true, devices: [{ device: 'cuda:0', slots: 1 }], leaseSeconds: 60 };
      await announceNode(db, { ...base, id: 'node-silent' });
      await announceNode(db, { ...base, id: 'node-gone' });
      await db.update(nodesTable).set({ lastSeenAt: sql`now() - interval '61 seconds'` }).where(sql`${nodesTable.id} = 'node-silent'`);
      await db.update(nodesTable).set({ leftAt: sql`now()` }).where(sql`${nodesTable.id} = 'node-gone'`);
      const all = await nodesOf(server.url);
      assert.deepEqual(
        all.map((n) => [n.node_id, n.status]),
        [
          ['node-one', 'alive'],
          ['node-silent', 'stale'],
          ['node-gone', 'left'],
        ],
      );
      assert.ok(all[1]!.last_seen_seconds >= 61);

      const text = await (await fetch(`${server.url}/metrics`)).text();
      assert.match(text, /^trainhook_node_info\{node_id="node-one",version="[^"]+",hostname="[^"]+"\} 1$/m);
      assert.match(text, /^trainhook_nodes\{status="alive"\} 1$/m);
      assert.match(text, /^trainhook_nodes\{status="stale"\} 1$/m);
      assert.match(text, /^trainhook_nodes\{status="left"\} 1$/m);
      assert.match(text, /^trainhook_node_last_seen_seconds\{node_id="node-silent"\} (6[1-9]|[7-9]\d)/m);
      assert.doesNotMatch(text, /trainhook_node_last_seen_seconds\{node_id="node-gone"\}/, 'a node that left has no heartbeat age');
      assert.match(text, /^trainhook_node_jobs\{node_id="node-one"\} 0$/m);
      if (promtoolAvailable()) {
        const { code, output } = await promtoolCheckMetrics(text);
        assert.equal(code, 0, output);
        assert.equal(output.trim(), '', 'no lint warnings');
      }

      const page = await (await fetch(`${server.url}/`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
      assert.match(page, /<h2 id="nodes-h">Nodes/);
      assert.match(page, /<tr data-node="node-one" data-status="alive">/);
      assert.match(page, /<tr data-node="node-silent" data-status="stale">[\s\S]*?Stale: no heartbeat/);
      assert.match(page, /<tr data-node="node-gone" data-status="left">/);
      assert.match(page, /node-one<\/b> <span class="muted small">\(this node\)/);
    });
  });

  describe(`graceful stop on ${backend}`, () => {
    const cleanup: Array<() => Promise<void>> = [];
    after(async () => {
      for (const c of cleanup.reverse()) await c().catch(() => {});
    });

    test('a claim not yet started goes back to the queue at once and the node is marked left', async () => {
      const db = await backendEnv(backend);
      cleanup.push(db.drop);
      const workdir = tempDir();
      // RUN_JOBS=false: no slot of its own takes the job, the claim below is the only one. A
      // lease of ten minutes: only the hand-back can put the job back in the queue here.
      const env = { ...db.env, WORKDIR: workdir, RUN_JOBS: 'false', LEASE_SECONDS: '600' };
      const a = await startTestServer({ env: { ...env, NODE_ID: 'node-a' } });
      const submitted = await api(a.url)('/api/v1/train', { method: 'POST', json: trainBody() });
      assert.equal(submitted.status, 202, submitted.text);
      const id = submitted.json.job_id as string;
      const claimed = await a.store.claim('cpu');
      assert.equal(claimed?.id, id);
      const held = await nodesOf(a.url);
      assert.deepEqual(held[0]!.jobs.map((j) => [j.job_id, j.state]), [[id, 'claimed']]);
      await a.close();
      assert.ok(a.logs.some((l) => l.includes('claim handed back to the queue on shutdown') && l.includes(id)));

      const b = await startTestServer({ env: { ...env, NODE_ID: 'node-b' } });
      cleanup.push(() => b.close());
      const job = (await api(b.url)(`/api/v1/jobs/${id}`)).json;
      assert.equal(job.status, 'queued');
      assert.equal(job.queue_position, 1);
      assert.deepEqual(job.attempts.map((x: { attempt: number; outcome: string }) => [x.attempt, x.outcome]), [[1, 'interrupted']]);
      const all = await nodesOf(b.url);
      assert.deepEqual(
        all.map((n) => [n.node_id, n.status, n.run_jobs, n.devices.length]),
        [
          ['node-b', 'alive', false, 0],
          ['node-a', 'left', false, 0],
        ],
      );
      assert.ok(all[1]!.left_at);
    });
  });
}

if (backends().includes('postgres')) {
  describe('hand-back between two server processes on PostgreSQL', () => {
    let host: FileServer;
    let python: string;
    let a: ChildServer | undefined;
    let b: ChildServer | undefined;
    let drop: () => Promise<void> = async () => {};

    before(async () => {
      python = await setupPython();
      const files = tempDir('trainhook-nodes-data-');
      const root = path.join(files, 'src');
      await writeSyntheticDataset(root, { task: 'detect', train: 16, val: 8, imgsz: 64, classes: ['red-box', 'green-disc'], seed: 7 });
      await zipDirectory(root, path.join(files, 'detect.zip'));
      host = await startFileServer();
      host.route('/detect.zip', serveFile(path.join(files, 'detect.zip')));
    });
    after(async () => {
      await a?.kill();
      await b?.kill();
      await host.close();
      await drop();
    });

    test('SIGTERM on node A: node B claims the job at once and finishes it, each epoch once', async () => {
      const db = await backendEnv('postgres');
      drop = db.drop;
      const LEASE_SECONDS = 300;
      const EPOCHS = 6;
      // One WORKDIR for both: the job's run folder (and last.pt) is where node B resumes it.
      const env = {
        ...db.env,
        WORKDIR: tempDir(),
        API_TOKEN: TOKEN,
        DEVICES: 'cpu',
        OUTBOUND_ALLOW: '127.0.0.1',
        PYTHON: python,
        LEASE_SECONDS: String(LEASE_SECONDS),
      };
      a = await startChildServer({ ...env, NODE_ID: 'node-a' });
      const callA = api(a.url);
      const r = await callA('/api/v1/train', {
        method: 'POST',
        json: trainBody({
          dataset: { url: host.url('/detect.zip') },
          model_config: { name: 'handback', base_model: 'yolo11n.yaml', epochs: EPOCHS, batch_size: 8, image_size: 64, seed: 1, augmentation: { mosaic: 0 } },
        }),
      });
      assert.equal(r.status, 202, r.text);
      const id = r.json.job_id as string;
      await waitFor('node A to start the job', async () => (await callA(`/api/v1/jobs/${id}`)).json.status === 'training', 60_000);
      // Node B starts once A holds the job, so the first claim is A's.
      b = await startChildServer({ ...env, NODE_ID: 'node-b' });
      const callB = api(b.url);
      const beforeStop = await waitFor('epoch 2 on node A', async () => {
        const j = (await callA(`/api/v1/jobs/${id}`)).json;
        return j.current_epoch >= 2 && j;
      }, 300_000);
      assert.equal(beforeStop.status, 'training', 'the job still runs when node A is stopped');
      assert.ok(beforeStop.current_epoch < EPOCHS);
      const cluster = await nodesOf(b.url);
      assert.deepEqual(
        cluster.map((n) => [n.node_id, n.status, n.self]),
        [
          ['node-a', 'alive', false],
          ['node-b', 'alive', true],
        ],
      );
      assert.deepEqual(cluster[0]!.devices, [{ device: 'cpu', slots: 1, job_ids: [id] }]);

      const stopAt = Date.now();
      await a.kill('SIGTERM');
      const stopMs = Date.now() - stopAt;
      assert.equal(a.child.exitCode, 0, a.output.slice(-20).join('\n'));
      const takenOver = await waitFor('node B to claim the job', async () => {
        const j = (await callB(`/api/v1/jobs/${id}`)).json;
        return j.attempts.length === 2 && j;
      }, 60_000);
      const claimMs = Date.parse(takenOver.attempts[1].started_at) - stopAt;
      assert.ok(claimMs < 15_000, `node B claimed it ${claimMs} ms after SIGTERM (the lease was ${LEASE_SECONDS} s)`);
      const afterStop = await nodesOf(b.url);
      assert.deepEqual(
        afterStop.map((n) => [n.node_id, n.status]),
        [
          ['node-b', 'alive'],
          ['node-a', 'left'],
        ],
      );

      const job = await waitFor('node B to finish the job', async () => {
        const j = (await callB(`/api/v1/jobs/${id}`)).json;
        return ['completed', 'failed'].includes(j.status) && j;
      }, 600_000);
      assert.equal(job.status, 'completed', JSON.stringify(job.error));
      assert.deepEqual(
        job.attempts.map((x: { attempt: number; outcome: string }) => [x.attempt, x.outcome]),
        [
          [1, 'interrupted'],
          [2, 'completed'],
        ],
      );
      assert.ok(job.attempts[1].start_epoch >= 2, 'node B resumed after the epochs node A completed');
      const epochs = (await callB(`/api/v1/jobs/${id}/metrics`)).json.epochs.map((e: { epoch: number }) => e.epoch);
      assert.deepEqual(epochs, Array.from({ length: EPOCHS }, (_, i) => i + 1));
      const csv = fs.readFileSync(path.join(env.WORKDIR, 'jobs', id, 'results.csv'), 'utf8').trim().split('\n');
      assert.deepEqual(
        csv.slice(1).map((line) => Number(line.split(',')[0])),
        Array.from({ length: EPOCHS }, (_, i) => i + 1),
        "Ultralytics' own record: each epoch once",
      );
      assert.ok(a.output.some((l) => l.includes('job re-queued for shutdown') && l.includes(id)));
      process.stdout.write(`# hand-back: node A stopped in ${stopMs} ms; node B claimed the job ${claimMs} ms after SIGTERM (lease ${LEASE_SECONDS} s)\n`);
    });
  });
}
