/**
 * Status reads come from memory (src/jobs/read-cache.ts), so these check that a read never
 * keeps showing a job as it was: after this node's own changes, after a write to the jobs
 * table that bypasses trainhook's code (only the table's trigger can tell), and, on
 * PostgreSQL, after changes made by another node sharing the database.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { backends, freshPostgresDatabase } from './helpers/database.js';
import { waitFor } from './helpers/wait.js';
import { api, startTestServer, tempDir, trainBody, type TestServer } from './helpers/server.js';

const API_ONLY = { RUN_JOBS: 'false', MAX_QUEUE_LENGTH: '1000' };

/**
 * Reads a job until the server keeps it. The first read can come before the notification of
 * the job's insert, which then evicts it (or the read is not kept at all), so one read is not
 * enough under load.
 */
async function readUntilKept(server: TestServer, call: ReturnType<typeof api>, id: string): Promise<any> {
  let json: any;
  await waitFor(`job ${id} kept by the read cache`, async () => {
    json = (await call(`/api/v1/jobs/${id}`)).json;
    return server.deps.jobs.cache.get(id) !== undefined;
  }, 10_000);
  return json;
}

async function submit(call: ReturnType<typeof api>, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await call('/api/v1/train', { method: 'POST', json: trainBody() });
    assert.equal(r.status, 202, r.text);
    ids.push(r.json.job_id);
  }
  return ids;
}

for (const backend of backends()) {
  describe(`status reads follow every change on ${backend}`, () => {
    let server: TestServer;
    let call: ReturnType<typeof api>;
    before(async () => {
      server = await startTestServer({ backend, env: API_ONLY });
      call = api(server.url);
    });
    after(() => server.stop());

    test("this node's changes show on the next read, and so do places in line", async () => {
      const [first, second, third] = await submit(call, 3);
      assert.equal((await call(`/api/v1/jobs/${third}`)).json.queue_position, 3);
      assert.equal((await readUntilKept(server, call, first!)).status, 'queued');

      assert.equal((await call(`/api/v1/jobs/${first}`, { method: 'DELETE' })).status, 200);
      assert.equal((await call(`/api/v1/jobs/${first}`)).json.status, 'cancelled');
      assert.equal((await call(`/api/v1/jobs/${second}`)).json.queue_position, 1);
      assert.equal((await call(`/api/v1/jobs/${third}`)).json.queue_position, 2);
    });

    test('a write that bypasses trainhook reaches status reads through the table trigger', async () => {
      const [id] = await submit(call, 1);
      assert.equal((await readUntilKept(server, call, id!)).name, 'test-model');
      await server.deps.database.db.execute(sql`update jobs set name = 'renamed by hand' where id = ${id}`);
      await waitFor('the renamed job', async () => (await call(`/api/v1/jobs/${id}`)).json.name === 'renamed by hand', 5000);
    });

    test('the response is the job view, unchanged by caching', async () => {
      const [id] = await submit(call, 1);
      const a = await call(`/api/v1/jobs/${id}`);
      const b = await call(`/api/v1/jobs/${id}`);
      assert.equal(a.headers.get('content-type'), 'application/json');
      assert.equal(a.text, b.text);
      assert.equal(a.json.job_id, id);
      assert.equal(a.json.links.self, `${server.url}/api/v1/jobs/${id}`);
    });
  });
}

if (backends().includes('postgres')) {
  describe('two nodes sharing PostgreSQL', () => {
    let db: Awaited<ReturnType<typeof freshPostgresDatabase>>;
    let a: TestServer;
    let b: TestServer;
    before(async () => {
      db = await freshPostgresDatabase();
      a = await startTestServer({ env: { ...API_ONLY, DATABASE_URL: db.url, WORKDIR: tempDir() } });
      b = await startTestServer({ env: { ...API_ONLY, DATABASE_URL: db.url, WORKDIR: tempDir() } });
    });
    after(async () => {
      await a.stop();
      await b.stop();
      await db.drop();
    });

    test("a node's cached reads follow the other node's changes", async () => {
      const onA = api(a.url);
      const onB = api(b.url);
      const [first, second] = await submit(onA, 2);
      // Read on B until it knows both (its queue index learns of A's jobs by notification).
      await waitFor('B to see the second job second in line', async () => (await onB(`/api/v1/jobs/${second}`)).json?.queue_position === 2, 5000);
      assert.equal((await readUntilKept(b, onB, first!)).status, 'queued');

      assert.equal((await onA(`/api/v1/jobs/${first}`, { method: 'DELETE' })).status, 200);
      await waitFor('B to show the cancel made on A', async () => (await onB(`/api/v1/jobs/${first}`)).json.status === 'cancelled', 5000);
      assert.equal((await onB(`/api/v1/jobs/${second}`)).json.queue_position, 1);
    });

    test('a dropped LISTEN connection empties the cache: what was notified meanwhile is lost', async () => {
      const onA = api(a.url);
      const onB = api(b.url);
      const [id, untouched] = await submit(onA, 2);
      for (const j of [id, untouched]) {
        assert.equal((await readUntilKept(b, onB, j!)).name, 'test-model');
      }
      const [killed] = await a.deps.database.rows<{ n: number }>(sql`
        select count(pg_terminate_backend(pid))::int as n from pg_stat_activity
        where datname = current_database() and query ilike 'listen%' and pid <> pg_backend_pid()`);
      assert.equal(killed?.n, 2, "both nodes' listening connections");
      // Only the resync on re-listen evicts a job that did not change.
      await waitFor('B to empty its cache on re-listen', async () => !b.deps.jobs.cache.get(untouched!), 10_000);
      await a.deps.database.db.execute(sql`update jobs set name = 'renamed by hand' where id = ${id}`);
      await waitFor('B to show the change', async () => (await onB(`/api/v1/jobs/${id}`)).json.name === 'renamed by hand', 10_000);
    });
  });
}
