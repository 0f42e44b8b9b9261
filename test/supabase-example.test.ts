/**
 * examples/supabase-webhook-ingest under Deno, as Supabase runs it (its default export, started
 * by `deno serve`), receiving a real trainhook server's signed callbacks and writing through
 * supabase-js to a local stand-in of the Supabase REST endpoint, whose database holds the
 * example's migrations. The jobs are moved without Python (test/helpers/job-driver.ts), so
 * every change goes through the same transactions, outbox and dispatcher as a training run.
 *
 * Deno is installed from the npm registry when missing (test/helpers/deno.ts); the function's
 * npm: imports are fetched once into Deno's cache. When Deno cannot be had at all the test is
 * skipped with the reason, except under CI, where it fails. On PGlite and, with
 * TEST_DATABASE_URL, PostgreSQL (both the trainhook server's and the stand-in's database).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { backends, type Backend } from './helpers/database.js';
import { denoCacheDir, findOrInstallDeno } from './helpers/deno.js';
import { jobDriver } from './helpers/job-driver.js';
import { ROOT, api, startTestServer, trainBody, type TestServer } from './helpers/server.js';
import { startSupabaseRest, supabaseDatabase, type SqlRunner, type SupabaseRest } from './helpers/supabase-rest.js';
import { waitFor } from './helpers/wait.js';

const EXAMPLE = path.join(ROOT, 'examples', 'supabase-webhook-ingest', 'supabase');
const FUNCTION = path.join(EXAMPLE, 'functions', 'webhook-ingest', 'index.ts');
const MIGRATIONS = path.join(EXAMPLE, 'migrations');
const SECRET = `whsec_${crypto.randomBytes(32).toString('base64')}`;
const SERVICE_KEY = `service-role-${crypto.randomBytes(12).toString('hex')}`;
const USER = crypto.randomUUID();
const NODE = 'supabase-example-node';
/** Deno reads no project config of the repository around the example, and writes no lock file. */
const DENO_FLAGS = ['--no-lock', '--node-modules-dir=none'];

const deno = await findOrInstallDeno((line) => process.stderr.write(`supabase example: ${line}\n`));

interface DenoFunction {
  url: string;
  output: string[];
  stop(): Promise<void>;
}

/** `deno serve` on the function with this environment; resolves once it listens. */
async function startFunction(bin: string, env: Record<string, string | undefined>): Promise<DenoFunction> {
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, DENO_DIR: denoCacheDir(), NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1', ...env })) {
    if (v !== undefined) childEnv[k] = v;
  }
  const child: ChildProcess = spawn(
    bin,
    ['serve', ...DENO_FLAGS, '--host', '127.0.0.1', '--port', '0', '--allow-net=127.0.0.1', '--allow-env', FUNCTION],
    { cwd: path.dirname(FUNCTION), env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const output: string[] = [];
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    // The first start fetches the npm packages into Deno's cache.
    const timer = setTimeout(() => reject(new Error(`deno serve did not start:\n${output.join('\n')}`)), 180_000);
    const onData = (d: Buffer) => {
      output.push(...d.toString().split('\n').filter(Boolean));
      const m = /Listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output.join('\n'));
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`deno serve exited with ${code}:\n${output.join('\n')}`));
    });
  });
  return {
    url,
    output,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

function metricsAt(e: number): Record<string, number> {
  return {
    box_loss: 1.5 / e,
    cls_loss: 0.75 / e,
    dfl_loss: 0.5 / e,
    precision: 0.5 + e / 10,
    recall: 0.4 + e / 10,
    mAP50: 0.3 + e / 10,
    'mAP50-95': 0.2 + e / 10,
    lr: 0.01,
    epoch: e,
  };
}

if ('error' in deno) {
  const reason = `Deno could not be installed: ${deno.error}`;
  // CI reaches the npm registry: there, no Deno is a failure, never a pass.
  if (process.env['CI']) test('the Supabase example under Deno', () => assert.fail(reason));
  else test('the Supabase example under Deno', { skip: reason }, () => {});
} else {
  const bin = deno.bin;

  test('the function type-checks under Deno', async () => {
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(bin, ['check', ...DENO_FLAGS, FUNCTION], {
        cwd: path.dirname(FUNCTION),
        env: { ...process.env, DENO_DIR: denoCacheDir(), NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      child.on('close', (code) => resolve({ code, out }));
    });
    assert.equal(r.code, 0, r.out);
  });

  test('misconfigured, it starts and answers 500 per request, naming the setting', async () => {
    const post = async (url: string) => {
      const res = await fetch(url, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
      return { status: res.status, text: await res.text() };
    };
    const unset = await startFunction(bin, { TRAINING_CALLBACK_SECRET: undefined, SUPABASE_URL: 'http://127.0.0.1:9', SUPABASE_SERVICE_ROLE_KEY: 'k' });
    try {
      assert.deepEqual(await post(unset.url), { status: 500, text: 'TRAINING_CALLBACK_SECRET is not set' });
      assert.equal((await fetch(unset.url)).status, 405);
    } finally {
      await unset.stop();
    }
    const malformed = await startFunction(bin, { TRAINING_CALLBACK_SECRET: 'whsec_!!not-base64!!', SUPABASE_URL: 'http://127.0.0.1:9', SUPABASE_SERVICE_ROLE_KEY: 'k' });
    try {
      const r = await post(malformed.url);
      assert.equal(r.status, 500);
      assert.match(r.text, /^TRAINING_CALLBACK_SECRET is malformed: /);
      assert.ok(!r.text.includes('not-base64'), 'the secret is not echoed');
    } finally {
      await malformed.stop();
    }
  });

  for (const backend of backends()) describeWith(bin, backend);
}

function describeWith(bin: string, backend: Backend) {
  describe(`the Supabase example under Deno, trainhook on ${backend}`, () => {
    let db: SqlRunner;
    let rest: SupabaseRest;
    let server: TestServer;
    let fn: DenoFunction;
    let call: ReturnType<typeof api>;
    let drive: ReturnType<typeof jobDriver>;

    before(async () => {
      db = await supabaseDatabase(backend);
      const migrations = fs.readdirSync(MIGRATIONS).filter((f) => f.endsWith('.sql')).sort();
      assert.ok(migrations.length > 0, 'the example ships its migrations');
      // Twice: a migration must also apply over an app that has the tables already.
      for (let i = 0; i < 2; i++) for (const f of migrations) await db.exec(fs.readFileSync(path.join(MIGRATIONS, f), 'utf8'));
      await db.query('insert into auth.users (id, email) values ($1, $2)', [USER, 'owner@example.com']);
      rest = await startSupabaseRest(db, SERVICE_KEY);
      server = await startTestServer({
        backend,
        env: { RUN_JOBS: 'false', NODE_ID: NODE, CALLBACK_RETRY_SCHEDULE: '0,0.3,0.3,0.3', CALLBACK_POLL_INTERVAL_MS: '200', LOG_LEVEL: 'info' },
      });
      call = api(server.url);
      drive = jobDriver(server, NODE);
      fn = await startFunction(bin, { SUPABASE_URL: rest.url, SUPABASE_SERVICE_ROLE_KEY: SERVICE_KEY, TRAINING_CALLBACK_SECRET: SECRET });
    });
    after(async () => {
      await fn?.stop();
      await server?.stop();
      await rest?.close();
      await db?.close();
    });

    /** The app's row for a job, as its train-yolo-model function would have written it. */
    const appJob = async (id: string) => {
      await db.query(
        `insert into training_jobs (id, user_id, dataset_id, model_name, base_model, epochs, batch_size, image_size, learning_rate, status)
         values ($1, $2, $3, 'poste-detector', 'yolo11n.pt', 2, 4, 64, 0.01, 'queued')`,
        [id, USER, crypto.randomUUID()],
      );
    };
    const row = async (id: string) => (await db.query<Record<string, any>>('select * from training_jobs where id = $1', [id]))[0]!;
    const seen = async (id: string) =>
      db.query<{ id: string; type: string }>('select id, type from training_webhook_events where job_id = $1 order by received_at, id', [id]);

    const submit = async (id: string, extra: Record<string, unknown> = {}) => {
      const r = await call('/api/v1/train', {
        method: 'POST',
        json: trainBody({ job_id: id, callback_url: fn.url, callback_secret: SECRET, ...extra }),
      });
      assert.equal(r.status, 202, r.text);
    };

    type EventView = { event_id: string; type: string; state: string; in_flight: boolean; payload: any; last_status_code: number | null; attempt_log: unknown[] };
    /** Every callback of the job has been answered (no event pending or in flight); oldest first. */
    const settled = (id: string) =>
      waitFor(`the callbacks of ${id} to settle`, async () => {
        const list = await call(`/api/v1/jobs/${id}/callbacks?limit=100`);
        const events = list.json.events as EventView[];
        return list.json.counts.pending === 0 && events.length > 0 && events.every((e) => !e.in_flight) && events.reverse();
      }, 30_000);

    test('progress, then completion: the row follows the job and ends with the model URL and final metrics', async () => {
      const id = crypto.randomUUID();
      await appJob(id);
      await submit(id);
      const running = await drive.start();
      assert.equal(running.id, id);
      await drive.record(id, { phase: 'downloading', progress: 0 }, 'phase');
      await drive.record(id, { phase: 'training', progress: 10 }, 'phase');
      await settled(id);
      let r = await row(id);
      assert.equal(r['status'], 'training');
      assert.equal(r['progress'], 10);
      assert.equal(r['current_epoch'], 0);
      assert.equal(r['loss'], null, 'no loss before the first epoch ends');
      const startedAt = r['started_at'];
      assert.ok(startedAt, 'started_at set by the first progress');
      for (const e of [1, 2]) {
        const m = metricsAt(e);
        await drive.record(id, { progress: 10 + 40 * e, currentEpoch: e, totalEpochs: 2, metricsCurrent: m, metricsBest: { mAP50: m['mAP50']!, 'mAP50-95': m['mAP50-95']!, epoch: e } }, 'epoch');
      }
      let events = await settled(id);
      assert.ok(events.every((e) => e.state === 'delivered' || e.state === 'superseded'), JSON.stringify(events.map((e) => [e.type, e.state, e.last_status_code])));
      r = await row(id);
      assert.equal(r['status'], 'training');
      assert.equal(r['progress'], 90);
      assert.equal(r['current_epoch'], 2);
      assert.equal(r['loss'], metricsAt(2)['box_loss']);
      assert.equal(r['metrics'].current.mAP50, metricsAt(2)['mAP50']);
      assert.deepEqual(r['metrics'].best, { mAP50: metricsAt(2)['mAP50'], 'mAP50-95': metricsAt(2)['mAP50-95'], epoch: 2 });
      assert.deepEqual(r['started_at'], startedAt, 'started_at kept');
      assert.equal(r['completed_at'], null);
      const delivered = events.filter((e) => e.state === 'delivered');
      assert.deepEqual((await seen(id)).map((s) => s.id).sort(), delivered.map((e) => e.event_id).sort(), 'one dedup row per delivered event');
      const patches = rest.writes('training_jobs').filter((w) => w.filters['id'] === `eq.${id}`);
      assert.equal(patches.length, delivered.length, 'one update per delivered progress');
      assert.ok(patches.length >= 2, `${patches.length} progress updates`);
      assert.deepEqual(patches.map((p) => 'started_at' in (p.body as object)), patches.map((_, i) => i === 0), 'started_at written once');

      const dir = server.deps.files.dir(id);
      fs.mkdirSync(path.join(dir, 'weights'), { recursive: true });
      const best = crypto.randomBytes(2048);
      fs.writeFileSync(path.join(dir, 'weights', 'best.pt'), best);
      await drive.finish(id, 'completed', {
        phase: 'done',
        progress: 100,
        model: { best: path.join(dir, 'weights', 'best.pt'), size_bytes: best.length, format: 'pytorch', best_epoch: 2 },
        metricsCurrent: metricsAt(2),
      });
      events = await settled(id);
      const completion = events.at(-1)!;
      assert.equal(completion.type, 'training_completed');
      assert.equal(completion.state, 'delivered');
      assert.equal(completion.last_status_code, 204);
      r = await row(id);
      assert.equal(r['status'], 'completed');
      assert.equal(r['progress'], 100);
      assert.equal(r['model_url'], completion.payload.model.download_url);
      assert.match(r['model_url'], /^http:\/\/127\.0\.0\.1:\d+\/downloads\//);
      const model = await fetch(r['model_url']);
      assert.equal(model.status, 200);
      assert.deepEqual(Buffer.from(await model.arrayBuffer()), best, 'the stored URL downloads the model');
      const m = metricsAt(2);
      assert.deepEqual(r['metrics'], {
        mAP50: m['mAP50'],
        'mAP50-95': m['mAP50-95'],
        precision: m['precision'],
        recall: m['recall'],
        box_loss: m['box_loss'],
        cls_loss: m['cls_loss'],
        dfl_loss: m['dfl_loss'],
        best_epoch: 2,
        total_epochs: 2,
      });
      assert.equal(r['loss'], m['box_loss']);
      assert.ok(r['completed_at']);
      assert.equal(r['error_message'], null);
      assert.deepEqual((await seen(id)).at(-1), { id: completion.event_id, type: 'training_completed' });
    });

    test('a redelivery, of the completion or of an old progress, writes nothing', async () => {
      const [id] = (await db.query<{ id: string }>(`select id from training_jobs where status = 'completed'`)).map((r) => r.id);
      assert.ok(id, 'the completed job of the test before');
      const before = await row(id);
      const seenBefore = await seen(id);
      const writesBefore = rest.writes().length;
      const events = await settled(id);
      for (const event of [events.at(-1)!, events.find((e) => e.type === 'training_progress' && e.state === 'delivered')!]) {
        const attempts = event.attempt_log.length;
        const r = await call(`/api/v1/jobs/${id}/callbacks/${event.event_id}/redeliver`, { method: 'POST' });
        assert.equal(r.status, 202, r.text);
        await waitFor(`the redelivery of ${event.type}`, async () => {
          const again = (await settled(id)).find((e) => e.event_id === event.event_id)!;
          return again.attempt_log.length === attempts + 1 && again.state === 'delivered';
        });
      }
      assert.equal(rest.writes().length, writesBefore, 'no insert, update or delete was applied');
      const refused = rest.requests.filter((q) => q.method === 'POST' && q.table === 'training_webhook_events' && q.status === 409);
      assert.deepEqual(refused.slice(-2).map((q) => (q.body as { type: string }).type), ['training_completed', 'training_progress']);
      assert.deepEqual(await seen(id), seenBefore);
      assert.deepEqual(await row(id), before, 'the row is unchanged, still completed');
    });

    test('a failure is recorded with its code and message', async () => {
      const id = crypto.randomUUID();
      await appJob(id);
      await submit(id);
      await drive.start();
      await drive.record(id, { phase: 'training', progress: 10 }, 'phase');
      await drive.record(id, { progress: 50, currentEpoch: 1, metricsCurrent: metricsAt(1) }, 'epoch');
      await drive.finish(id, 'failed', {
        error: { code: 'TRAINING_DIVERGED', message: 'loss became NaN', details: { batch: 3 }, phase: 'training', epoch: 1 },
      });
      const events = await settled(id);
      assert.equal(events.at(-1)!.payload.status, 'failed');
      const r = await row(id);
      assert.equal(r['status'], 'failed');
      assert.equal(r['error_message'], 'TRAINING_DIVERGED: loss became NaN');
      assert.equal(r['current_epoch'], 1);
      assert.equal(r['model_url'], null);
    });

    test('a cancellation, queued or running, is recorded as cancelled with code CANCELLED, whichever status the callback says', async () => {
      const queued = crypto.randomUUID();
      await appJob(queued);
      await submit(queued);
      assert.equal((await call(`/api/v1/jobs/${queued}`, { method: 'DELETE' })).status, 200);

      const running = crypto.randomUUID();
      await appJob(running);
      await submit(running, { callback_options: { cancelled_status: 'cancelled' } });
      await drive.start();
      await drive.record(running, { phase: 'training', progress: 10 }, 'phase');
      await settled(running);
      assert.equal((await row(running))['status'], 'training');
      assert.equal((await call(`/api/v1/jobs/${running}`, { method: 'DELETE' })).status, 200);

      for (const [id, sent] of [
        [queued, 'failed'],
        [running, 'cancelled'],
      ] as const) {
        const last = (await settled(id)).at(-1)!;
        assert.equal(last.type, 'training_failed');
        assert.equal(last.state, 'delivered');
        assert.equal(last.payload.status, sent, '"failed" by default; "cancelled" when the job asked');
        assert.equal(last.payload.error.code, 'CANCELLED');
        const r = await row(id);
        assert.equal(r['status'], 'cancelled');
        assert.equal(r['error_message'], 'CANCELLED: Job cancelled by request');
      }
    });

    test('a job missing from training_jobs gets 410, which stops its callbacks', async () => {
      const id = crypto.randomUUID();
      await submit(id);
      assert.equal((await call(`/api/v1/jobs/${id}`, { method: 'DELETE' })).status, 200);
      const [event] = await settled(id);
      assert.equal(event!.state, 'dead');
      assert.equal(event!.last_status_code, 410);
      assert.equal(event!.attempt_log.length, 1);
      assert.equal((await seen(id)).length, 0);
    });

    test('unsigned, wrongly signed or tampered requests are refused and write nothing', async () => {
      const [done] = await db.query<{ id: string }>(`select id from training_jobs where status = 'completed'`);
      const body = JSON.stringify({ type: 'training_failed', job_id: done!.id, status: 'failed', error: { code: 'UNKNOWN_ERROR', message: 'forged' } });
      const writes = rest.writes().length;
      const sign = (secret: string, payload: string) => {
        const id = `msg_${crypto.randomBytes(8).toString('hex')}`;
        const ts = new Date();
        const signature = new Webhook(secret).sign(id, ts, payload);
        return { 'webhook-id': id, 'webhook-timestamp': String(Math.floor(ts.getTime() / 1000)), 'webhook-signature': signature };
      };
      const attempts: Array<Record<string, string>> = [
        { 'x-callback-secret': SECRET },
        sign(`whsec_${crypto.randomBytes(32).toString('base64')}`, body),
        sign(SECRET, body.replace('forged', 'forgeD')),
      ];
      for (const headers of attempts) {
        const res = await fetch(fn.url, { method: 'POST', body, headers: { 'content-type': 'application/json', 'x-job-id': done!.id, ...headers } });
        assert.equal(res.status, 401, JSON.stringify(Object.keys(headers)));
      }
      assert.equal(rest.writes().length, writes);
      assert.equal((await row(done!.id))['status'], 'completed');
    });
  });
}
