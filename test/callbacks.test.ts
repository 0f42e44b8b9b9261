/**
 * Webhooks end to end (SPEC §3, issue 4): a real server, a real receiver on 127.0.0.1, and a
 * scripted training pipeline in place of the Python worker, which records phases, batch
 * progress, epochs and the outcome exactly as src/jobs/execute.ts does (one transaction per
 * change, with the transition hook; the event after the commit). On PGlite and, with
 * TEST_DATABASE_URL, PostgreSQL.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { asc, eq } from 'drizzle-orm';
import { Webhook } from 'standardwebhooks';
import { callbackEvents } from '../src/db/schema.js';
import type { PipelineContext } from '../src/pipeline/execute.js';
import type { Executor } from '../src/scheduler/scheduler.js';
import { signDownloadLink } from '../src/security/links.js';
import { backends } from './helpers/database.js';
import { startReceiver, type Receiver, type Received } from './helpers/receiver.js';
import { api, startTestServer, trainBody, type TestServer } from './helpers/server.js';

const SECRET = 'sk_live_abc123xyz789_0123456';
const MIN_INTERVAL_MS = 150;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Script {
  epochs: number;
  stepsPerEpoch: number;
  stepMs: number;
  outcome: 'completed' | 'failed';
}

const SCRIPTS: Record<string, Script> = {
  full: { epochs: 2, stepsPerEpoch: 4, stepMs: 40, outcome: 'completed' },
  short: { epochs: 1, stepsPerEpoch: 2, stepMs: 10, outcome: 'completed' },
  diverges: { epochs: 1, stepsPerEpoch: 2, stepMs: 10, outcome: 'failed' },
  long: { epochs: 100, stepsPerEpoch: 20, stepMs: 50, outcome: 'completed' },
};

/** The training pipeline of execute.ts, scripted: same job store, same hook, no Python. */
function fakeTraining(ctx: PipelineContext): Executor {
  const { store } = ctx;
  return async function executeScripted(claimed, { signal }) {
    const s = SCRIPTS[claimed.name] ?? SCRIPTS['short']!;
    const record = (patch: Parameters<typeof store.record>[1], change: Parameters<typeof store.record>[2]) => store.record(claimed.id, patch, change);
    const finish = (state: 'completed' | 'failed', patch: Parameters<typeof store.finish>[2]) => store.finish(claimed.id, state, patch);
    const running = await store.start(claimed.id);
    if (!running) return;
    const dir = ctx.files.dir(claimed.id);
    fs.mkdirSync(path.join(dir, 'weights'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'worker.log'), 'epoch 1\nepoch 2\n');

    if (!(await record({ phase: 'downloading', progress: 0 }, 'phase'))) return;
    const datasetInfo = {
      task: 'detect',
      total_images: 15,
      train_images: 12,
      val_images: 3,
      classes: ['poste', 'transformador', 'cabo'],
      class_distribution: { poste: 8, transformador: 2, cabo: 11 },
    };
    if (!(await record({ phase: 'preparing', progress: 5, datasetInfo }, 'phase'))) return;
    if (!(await record({ phase: 'training', progress: 10 }, 'phase'))) return;
    let best: Record<string, number | null> = {};
    let metrics: Record<string, number | null> = {};
    for (let e = 1; e <= s.epochs; e++) {
      for (let k = 1; k < s.stepsPerEpoch; k++) {
        await sleep(s.stepMs);
        if (signal.aborted) return;
        const fraction = (e - 1 + k / s.stepsPerEpoch) / s.epochs;
        if (!(await record({ progress: 10 + 85 * fraction, currentEpoch: e - 1, etaSeconds: 60 }, 'progress'))) return;
      }
      await sleep(s.stepMs);
      if (signal.aborted) return;
      metrics = metricsAt(e);
      best = { mAP50: metrics['mAP50']!, 'mAP50-95': metrics['mAP50-95']!, epoch: e };
      const fraction = e / s.epochs;
      const patch = { progress: 10 + 85 * fraction, currentEpoch: e, totalEpochs: s.epochs, metricsCurrent: metrics, metricsBest: best };
      if (!(await record(patch, 'epoch'))) return;
    }
    if (s.outcome === 'failed') {
      await finish('failed', {
        error: { code: 'TRAINING_DIVERGED', message: 'loss became NaN', details: { batch: 3 }, phase: 'training', epoch: s.epochs },
      });
      return;
    }
    if (!(await record({ phase: 'validating', progress: 95 }, 'phase'))) return;
    const bestPt = path.join(dir, 'weights', 'best.pt');
    fs.writeFileSync(bestPt, crypto.randomBytes(4096));
    fs.writeFileSync(path.join(dir, 'weights', 'last.pt'), crypto.randomBytes(100));
    const artifacts = ['results.csv', 'confusion_matrix.png', 'BoxPR_curve.png', 'BoxF1_curve.png'].map((name) => {
      fs.writeFileSync(path.join(dir, name), `${name} contents`);
      return { name, path: path.join(dir, name), size: fs.statSync(path.join(dir, name)).size };
    });
    if (!(await record({ artifacts }, 'progress'))) return;
    await finish('completed', {
      currentEpoch: s.epochs,
      model: { best: bestPt, last: path.join(dir, 'weights', 'last.pt'), size_bytes: 4096, format: 'pytorch', best_epoch: s.epochs },
      metricsCurrent: metrics,
    });
  };
}

function metricsAt(e: number): Record<string, number> {
  return {
    box_loss: 1 / e,
    cls_loss: 0.5 / e,
    dfl_loss: 0.25 / e,
    precision: 0.5 + e / 100,
    recall: 0.4 + e / 100,
    mAP50: 0.3 + e / 100,
    'mAP50-95': 0.2 + e / 100,
    lr: 0.01,
    epoch: e,
  };
}

const verifier = new Webhook(new TextEncoder().encode(SECRET), { format: 'raw' });

/** Every retry of an event carries its id and the same body; ids are never reused. */
function assertStableIds(got: Received[], requireRetry = true) {
  const bodies = new Map<string, string>();
  for (const r of got) {
    const id = r.headers['webhook-id']!;
    if (bodies.has(id)) assert.equal(r.body, bodies.get(id), `retry of ${id} with another body`);
    bodies.set(id, r.body);
  }
  const retried = got.filter((r, i) => got.findIndex((o) => o.headers['webhook-id'] === r.headers['webhook-id']) !== i);
  if (requireRetry) assert.ok(retried.length > 0, 'some event was retried');
}

type AttemptJson = { attempted_at: string; error: string | null; status_code: number | null };
function firstAttempt(list: { events: { attempt_log: AttemptJson[] }[] }): AttemptJson {
  const all = list.events.flatMap((e) => e.attempt_log).sort((a, b) => a.attempted_at.localeCompare(b.attempted_at));
  assert.ok(all[0], 'no attempt recorded');
  return all[0];
}

function forJob(all: Received[], jobId: string): Received[] {
  return all.filter((r) => r.headers['x-job-id'] === jobId);
}

for (const backend of backends()) {
  describe(`callbacks on ${backend}`, () => {
    let server: TestServer;
    let receiver: Receiver;
    let call: ReturnType<typeof api>;
    let flakyCompleted = 0;
    /** Per path: how the receiver answers its nth request. */
    const behaviours: Record<string, (nth: number, r: Received) => ReturnType<Receiver['respond']>> = {
      '/ok': () => ({ status: 200 }),
      '/flaky': (nth, r) => {
        // The first three requests fail, and the first two tries of the completion.
        if (r.json?.type === 'training_completed') flakyCompleted++;
        return nth <= 3 || (r.json?.type === 'training_completed' && flakyCompleted <= 2)
          ? { status: 500, body: 'database is down' }
          : { status: 204 };
      },
      '/hang': () => 'hang',
      '/gone': () => ({ status: 410 }),
      '/moved': (nth) => (nth <= 2 ? { status: 302, headers: { location: `${receiver.url}/moved-to` } } : { status: 200 }),
      '/moved-to': () => ({ status: 200 }),
      '/down': () => ({ status: 500 }),
      '/busy': (nth) => (nth === 1 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 }),
    };

    before(async () => {
      receiver = await startReceiver((r, nth) => (behaviours[r.path] ?? (() => ({ status: 404 })))(nth, r));
      server = await startTestServer({
        backend,
        env: {
          DEVICES: 'cpu',
          CALLBACK_RETRY_SCHEDULE: '0,0.2,0.2,0.2,0.2,0.2',
          CALLBACK_TIMEOUT_SECONDS: '2',
          CALLBACK_PROGRESS_MIN_INTERVAL_MS: String(MIN_INTERVAL_MS),
          CALLBACK_POLL_INTERVAL_MS: '200',
          LOG_LEVEL: 'info',
        },
        overrides: { makeExecutor: fakeTraining },
      });
      call = api(server.url);
    });
    after(async () => {
      await server?.stop();
      await receiver?.close();
    });

    const submit = async (name: keyof typeof SCRIPTS, callbackPath: string | null, extra: Record<string, unknown> = {}) => {
      const body = trainBody({
        model_config: { name, base_model: 'yolo11n.yaml', epochs: SCRIPTS[name]!.epochs },
        ...(callbackPath ? { callback_url: `${receiver.url}${callbackPath}`, callback_secret: SECRET } : {}),
        ...extra,
      });
      const r = await call('/api/v1/train', { method: 'POST', json: body });
      assert.equal(r.status, 202, r.text);
      return r.json.job_id as string;
    };
    const waitForStatus = async (id: string, statuses: string[], timeoutMs = 20_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const r = await call(`/api/v1/jobs/${id}`);
        if (statuses.includes(r.json.status)) return r.json;
        if (Date.now() > deadline) throw new Error(`job ${id} still ${r.json.status}`);
        await sleep(25);
      }
    };
    const outbox = (jobId: string) =>
      server.deps.database.db
        .select()
        .from(callbackEvents)
        .where(eq(callbackEvents.jobId, jobId))
        .orderBy(asc(callbackEvents.seq));
    const settled = async (jobId: string) => {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const rows = await outbox(jobId);
        if (rows.length && rows.every((r) => r.state !== 'pending')) return rows;
        if (Date.now() > deadline) throw new Error(`outbox of ${jobId} not settled: ${JSON.stringify(rows.map((r) => r.state))}`);
        await sleep(25);
      }
    };

    let fullJob: string;
    let completedBody: any;

    test('a whole job: signed progress then completed, bodies of seed 003, latest state delivered', async () => {
      fullJob = await submit('full', '/ok');
      await waitForStatus(fullJob, ['completed']);
      const rows = await settled(fullJob);
      const got = forJob(receiver.received, fullJob);
      assert.ok(got.length >= 3, `only ${got.length} callbacks`);
      for (const r of got) {
        assert.deepEqual(verifier.verify(r.body, r.headers), r.json, 'standardwebhooks verifies it');
        assert.equal(r.headers['x-callback-secret'], SECRET);
        assert.equal(r.headers['content-type'], 'application/json');
        assert.equal(r.headers['x-job-id'], fullJob);
        assert.equal(r.headers['x-callback-type'], r.json.type);
        assert.match(r.headers['webhook-id']!, /^msg_[\w-]{22}$/);
      }
      const progress = got.filter((r) => r.json.type === 'training_progress');
      const last = got.at(-1)!;
      assert.equal(last.json.type, 'training_completed');
      assert.equal(got.filter((r) => r.json.type === 'training_completed').length, 1);
      // Every event not replaced by a newer one reached the receiver once, in commit order.
      const expected = rows.filter((r) => r.state === 'delivered').map((r) => r.id);
      assert.deepEqual(got.map((r) => r.headers['webhook-id']), expected);
      assert.ok(rows.every((r) => r.state === 'delivered' || (r.state === 'superseded' && r.type === 'training_progress')));
      assert.ok(rows.some((r) => r.state === 'superseded'), 'progress every 40 ms with a 150 ms floor coalesces');
      // Rate limit: each delivered progress event was taken (claims stamp next_attempt_at) at
      // least the minimum interval after the one before it.
      const starts = rows.filter((r) => r.type === 'training_progress' && r.state === 'delivered').map((r) => r.nextAttemptAt.getTime());
      assert.equal(starts.length, progress.length);
      for (let i = 1; i < starts.length; i++) {
        assert.ok(starts[i]! - starts[i - 1]! >= MIN_INTERVAL_MS - 1, `gap ${starts[i]! - starts[i - 1]!} ms`);
      }
      const percentages = progress.map((r) => r.json.progress.percentage);
      assert.deepEqual([...percentages].sort((a, b) => a - b), percentages, 'progress never goes back');
      // The last progress state (validating) is delivered before the completion.
      assert.equal(progress.at(-1)!.json.progress.phase, 'validating');

      const p = progress.at(-1)!.json;
      assert.deepEqual(Object.keys(p), ['type', 'job_id', 'timestamp', 'progress', 'metrics', 'resources']);
      assert.deepEqual(Object.keys(p.progress), ['percentage', 'current_epoch', 'total_epochs', 'phase', 'eta_seconds']);
      assert.deepEqual(Object.keys(p.metrics.current), ['box_loss', 'cls_loss', 'dfl_loss', 'precision', 'recall', 'mAP50', 'mAP50-95']);
      const m2 = metricsAt(2);
      assert.deepEqual(p.metrics.best, { mAP50: m2['mAP50'], 'mAP50-95': m2['mAP50-95'], epoch: 2 });
      assert.equal(p.metrics.current.recall, m2['recall']);
      assert.equal(p.progress.percentage, 95);
      assert.equal(p.progress.total_epochs, 2);
      assert.match(p.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

      completedBody = last.json;
      assert.deepEqual(Object.keys(completedBody), [
        'type', 'job_id', 'timestamp', 'status', 'duration_seconds', 'model', 'final_metrics', 'artifacts', 'dataset_info',
      ]);
      assert.equal(completedBody.status, 'completed');
      assert.deepEqual(Object.keys(completedBody.model), ['name', 'download_url', 'size_mb', 'format', 'expires_at']);
      assert.equal(completedBody.model.name, 'full');
      assert.equal(completedBody.model.format, 'pytorch');
      assert.equal(completedBody.model.size_mb, 0);
      const expires = Date.parse(completedBody.model.expires_at) - Date.now();
      assert.ok(expires > 6.9 * 86400_000 && expires <= 7 * 86400_000, 'links live 7 days by default');
      const { lr: _lr, epoch: _e, ...final } = m2;
      assert.deepEqual(completedBody.final_metrics, { ...final, best_epoch: 2, total_epochs: 2 });
      assert.deepEqual(Object.keys(completedBody.final_metrics), [
        'mAP50', 'mAP50-95', 'precision', 'recall', 'box_loss', 'cls_loss', 'dfl_loss', 'best_epoch', 'total_epochs',
      ]);
      assert.deepEqual(Object.keys(completedBody.artifacts), ['confusion_matrix', 'pr_curve', 'f1_curve', 'results_csv', 'training_logs']);
      for (const url of Object.values(completedBody.artifacts)) assert.match(String(url), /\/downloads\/.+\?exp=\d+&sig=/);
      assert.deepEqual(completedBody.dataset_info, {
        total_images: 15, train_images: 12, val_images: 3,
        classes: ['poste', 'transformador', 'cabo'], class_distribution: { poste: 8, transformador: 2, cabo: 11 },
      });
    });

    test('signed download links: work without a token, refused when expired or tampered', async () => {
      assert.ok(completedBody, 'needs the completed job of the previous test');
      const model = await fetch(completedBody.model.download_url);
      assert.equal(model.status, 200);
      const bytes = Buffer.from(await model.arrayBuffer());
      assert.deepEqual(bytes, fs.readFileSync(path.join(server.deps.files.dir(fullJob), 'weights', 'best.pt')));
      assert.match(model.headers.get('content-disposition')!, /filename="best\.pt"/);
      const csv = await fetch(completedBody.artifacts.results_csv);
      assert.equal(await csv.text(), 'results.csv contents');
      const logs = await fetch(completedBody.artifacts.training_logs);
      assert.equal(await logs.text(), 'epoch 1\nepoch 2\n');

      const url = new URL(completedBody.model.download_url);
      const sig = url.searchParams.get('sig')!;
      const tampered = [
        url.href.replace(`sig=${sig}`, `sig=${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`),
        url.href.replace(/exp=(\d+)/, (_m, e) => `exp=${Number(e) + 3600}`),
        url.href.replace('best.pt', 'last.pt'),
        url.href.replace(/sig=[^&]+/, ''),
      ];
      for (const t of tampered) {
        const r = await fetch(t);
        assert.equal(r.status, 403, t);
        assert.equal(((await r.json()) as any).error.code, 'LINK_INVALID');
      }
      const key = server.deps.secrets.linkSigningKey;
      const old = signDownloadLink({
        key, baseUrl: server.url, jobId: fullJob, name: 'best.pt', ttlSeconds: 60, nowSeconds: Math.floor(Date.now() / 1000) - 120,
      });
      const expired = await fetch(old.url);
      assert.equal(expired.status, 403);
      assert.equal(((await expired.json()) as any).error.code, 'LINK_EXPIRED');
      // A valid signature on a name outside the job's files serves nothing.
      for (const name of ['../../api-token', '..', 'api-token', 'worker-spec.json']) {
        const l = signDownloadLink({ key, baseUrl: server.url, jobId: fullJob, name, ttlSeconds: 60 });
        assert.equal((await fetch(l.url)).status, 404, name);
      }

      // With the API token: a fresh signed link, or the file itself.
      const link = await call(`/api/v1/jobs/${fullJob}/model`);
      assert.equal(link.status, 200, link.text);
      assert.equal(link.json.name, 'best.pt');
      assert.equal(link.json.size_bytes, 4096);
      assert.equal((await fetch(link.json.url)).status, 200);
      const direct = await call(`/api/v1/jobs/${fullJob}/model?download=true`);
      assert.equal(direct.status, 200);
      assert.equal(direct.headers.get('content-length'), '4096');
      const pr = await call(`/api/v1/jobs/${fullJob}/artifacts/pr_curve`);
      assert.equal(pr.json.name, 'BoxPR_curve.png');
      const listing = await call(`/api/v1/jobs/${fullJob}/artifacts`);
      assert.ok(listing.json.files.some((f: { name: string }) => f.name === 'worker.log'));
      assert.equal((await call(`/api/v1/jobs/${fullJob}/artifacts/nope.png`)).status, 404);
      assert.equal((await api(server.url, '')(`/api/v1/jobs/${fullJob}/model`)).status, 401);
    });

    test('GET callbacks lists events with attempts; redeliver sends the same event again', async () => {
      const list = await call(`/api/v1/jobs/${fullJob}/callbacks`);
      assert.equal(list.status, 200, list.text);
      assert.equal(list.json.counts.pending, 0);
      const completed = list.json.events[0];
      assert.equal(completed.type, 'training_completed');
      assert.equal(completed.state, 'delivered');
      assert.equal(completed.attempt_log.length, 1);
      assert.equal(completed.attempt_log[0].status_code, 200);
      assert.equal(completed.attempt_log[0].manual, false);
      assert.equal(completed.payload.model.name, 'full');

      const before = forJob(receiver.received, fullJob).length;
      const r = await call(`/api/v1/jobs/${fullJob}/callbacks/${completed.event_id}/redeliver`, { method: 'POST' });
      assert.equal(r.status, 202, r.text);
      await receiver.waitFor((all) => forJob(all, fullJob).length > before);
      const again = forJob(receiver.received, fullJob).at(-1)!;
      assert.equal(again.headers['webhook-id'], completed.event_id);
      assert.equal(again.body, JSON.stringify(completedBody), 'the same bytes as the first time');
      assert.deepEqual(verifier.verify(again.body, again.headers), completedBody);
      await settled(fullJob);
      const after = await call(`/api/v1/jobs/${fullJob}/callbacks?limit=1`);
      assert.deepEqual(after.json.events[0].attempt_log.map((a: { manual: boolean }) => a.manual), [false, true]);
      assert.equal((await call(`/api/v1/jobs/${fullJob}/callbacks/msg_nope/redeliver`, { method: 'POST' })).status, 404);
    });

    test('a receiver failing with 500 three times, then 2xx, gets every event in order with stable ids', async () => {
      const id = await submit('short', '/flaky');
      await waitForStatus(id, ['completed']);
      const rows = await settled(id);
      const got = forJob(receiver.received, id);
      assert.deepEqual(got.slice(0, 4).map((r) => r.status), [500, 500, 500, 204]);
      assertStableIds(got);
      // The completion failed twice: three tries, one id, one body.
      const completions = got.filter((r) => r.json.type === 'training_completed');
      assert.deepEqual(completions.map((r) => r.status), [500, 500, 204]);
      assert.equal(new Set(completions.map((r) => r.headers['webhook-id'])).size, 1);
      assert.equal(completions.at(-1), got.at(-1), 'the completion is the last thing received');
      const seqOf = new Map(rows.map((r) => [r.id, r.seq]));
      const seqs = got.map((r) => seqOf.get(r.headers['webhook-id']!)!);
      assert.deepEqual([...seqs].sort((a, b) => a - b), seqs, 'never out of order, retries included');
      const delivered = got.filter((r) => r.status === 204).map((r) => r.headers['webhook-id']);
      assert.deepEqual(delivered, rows.filter((r) => r.state === 'delivered').map((r) => r.id), 'each delivered once');
      assert.equal(rows.filter((r) => r.state === 'dead').length, 0);
      assert.equal(rows.at(-1)!.type, 'training_completed');
      assert.equal(rows.at(-1)!.state, 'delivered');
      const list = await call(`/api/v1/jobs/${id}/callbacks?limit=500`);
      const completedEvent = list.json.events[0];
      assert.deepEqual(completedEvent.attempt_log.map((a: { status_code: number }) => a.status_code), [500, 500, 204]);
      assert.match(completedEvent.attempt_log[0].error, /HTTP 500: database is down/);
      // A progress event that failed and was then replaced by newer progress keeps its attempts.
      const attempted = list.json.events.flatMap((e: { attempt_log: unknown[] }) => e.attempt_log);
      assert.equal(attempted.length, got.length, 'every request is recorded as an attempt');
    });

    test('a receiver that hangs delays neither training nor other jobs', async () => {
      // Ordering, not wall time: each check holds while the one attempt made so far is still
      // open, i.e. before the 2 s callback timeout; a blocked pipeline would only get there after it.
      const hung = await submit('short', '/hang');
      const job = await waitForStatus(hung, ['completed']);
      assert.equal(job.status, 'completed');
      await receiver.waitFor((all) => forJob(all, hung).length >= 1, 5000, 'the hung attempt');
      assert.equal(receiver.hanging(), 1, 'training finished while its first callback still hung');
      assert.equal(forJob(receiver.received, hung).length, 1);
      const other = await submit('short', '/ok');
      await receiver.waitFor(
        (all) => forJob(all, other).some((r) => r.json?.type === 'training_completed'),
        5000,
        "the other job's completion",
      );
      assert.equal(receiver.hanging(), 1, "the other job's callbacks went out while the first receiver still hung");
      assert.equal(forJob(receiver.received, hung).length, 1, 'the hung attempt is still the only one');
      // After the 2 s timeout the attempt is recorded as failed and retried.
      await receiver.waitFor((all) => forJob(all, hung).length >= 2, 5000, 'the retry after the timeout');
      const list = await call(`/api/v1/jobs/${hung}/callbacks?limit=500`);
      assert.match(firstAttempt(list.json).error!, /timed out after 2000 ms/);
    });

    test('410 Gone stops every callback of that job', async () => {
      const id = await submit('short', '/gone');
      await waitForStatus(id, ['completed']);
      const rows = await settled(id);
      await sleep(300);
      const got = forJob(receiver.received, id);
      assert.equal(got.length, 1, 'one attempt, then silence');
      assert.equal(got[0]!.status, 410);
      assert.ok(rows.every((r) => r.state === 'dead' || r.state === 'superseded'), JSON.stringify(rows.map((r) => r.state)));
      // The first event may have been superseded by a newer progress before its attempt: the one
      // event that was attempted is the one that got the 410.
      const attempted = rows.filter((r) => r.lastStatusCode !== null);
      assert.equal(attempted.length, 1, 'one event was attempted');
      assert.equal(attempted[0]!.lastStatusCode, 410);
      assert.equal(rows.at(-1)!.type, 'training_completed');
      assert.match(rows.at(-1)!.lastError!, /410 Gone/);
    });

    test('a 3xx is a failure: the redirect is not followed, the event is retried', async () => {
      const id = await submit('short', '/moved');
      await waitForStatus(id, ['completed']);
      const rows = await settled(id);
      assert.equal(receiver.count('/moved-to'), 0, 'never followed');
      const got = forJob(receiver.received, id);
      assert.deepEqual(got.slice(0, 3).map((r) => r.status), [302, 302, 200]);
      // (The refused progress event may be replaced by newer progress before its retry.)
      assertStableIds(got, false);
      assert.ok(rows.every((r) => r.state === 'delivered' || r.state === 'superseded'));
      const list = await call(`/api/v1/jobs/${id}/callbacks?limit=500`);
      assert.match(firstAttempt(list.json).error!, /redirect not followed \(HTTP 302 to http:\/\/127\.0\.0\.1:\d+\/moved-to\)/);
    });

    test('Retry-After on 429 is honoured over the schedule', async () => {
      const id = await submit('short', '/busy');
      await waitForStatus(id, ['completed']);
      await settled(id);
      const got = forJob(receiver.received, id);
      assert.equal(got[0]!.status, 429);
      const gap = got[1]!.at - got[0]!.at;
      assert.ok(gap >= 950 && gap < 2500, `second attempt after ${gap} ms (schedule says 200 ms, Retry-After 1 s)`);
    });

    test('after the last retry an event is dead, and the next event of the job goes', async () => {
      const id = await submit('short', '/down');
      await waitForStatus(id, ['completed']);
      const rows = await settled(id);
      const completed = rows.at(-1)!;
      assert.equal(completed.type, 'training_completed');
      assert.equal(completed.state, 'dead');
      assert.equal(completed.attempts, 6, 'the six attempts of CALLBACK_RETRY_SCHEDULE');
      assert.ok(rows.every((r) => r.state === 'dead' || r.state === 'superseded'));
      const list = await call(`/api/v1/jobs/${id}/callbacks?limit=1`);
      assert.deepEqual(list.json.events[0].attempt_log.map((a: { status_code: number }) => a.status_code), [500, 500, 500, 500, 500, 500]);
      // Dead events block nothing: the completion went out after the progress before it died.
      const got = forJob(receiver.received, id);
      assert.equal(got.at(-1)!.json.type, 'training_completed');
    });

    test('a callback_url the SSRF policy refuses is dead at once, never connected to', async () => {
      const r = await call('/api/v1/train', {
        method: 'POST',
        json: trainBody({
          model_config: { name: 'short', base_model: 'yolo11n.yaml', epochs: 1 },
          callback_url: 'http://10.255.255.1:9/hook',
          callback_secret: SECRET,
        }),
      });
      assert.equal(r.status, 202, r.text);
      await waitForStatus(r.json.job_id, ['completed']);
      const rows = await settled(r.json.job_id);
      const completed = rows.at(-1)!;
      assert.equal(completed.state, 'dead');
      assert.equal(completed.attempts, 1);
      assert.match(completed.lastError!, /refused to connect to 10\.255\.255\.1.*OUTBOUND_ALLOW/);
    });

    test('training_failed for a failure and for cancellations (queued and running), status as callback_options says', async () => {
      const failed = await submit('diverges', '/ok');
      await waitForStatus(failed, ['failed']);
      await settled(failed);
      const f = forJob(receiver.received, failed).at(-1)!.json;
      assert.deepEqual(Object.keys(f), ['type', 'job_id', 'timestamp', 'status', 'error', 'partial_metrics']);
      assert.equal(f.type, 'training_failed');
      assert.equal(f.status, 'failed');
      assert.deepEqual(f.error, { code: 'TRAINING_DIVERGED', message: 'loss became NaN', details: { batch: 3 }, phase: 'training', epoch: 1 });
      assert.equal(f.partial_metrics.mAP50, metricsAt(1)['mAP50']);
      assert.equal(f.partial_metrics.epoch, 1);

      const running = await submit('long', '/ok', { callback_options: { cancelled_status: 'cancelled' } });
      await waitForStatus(running, ['training']);
      const queued = await submit('long', '/ok');
      await sleep(300);
      assert.equal((await call(`/api/v1/jobs/${queued}`, { method: 'DELETE' })).status, 200);
      assert.equal((await call(`/api/v1/jobs/${running}`, { method: 'DELETE' })).status, 200);
      for (const [id, phase, status] of [
        [queued, 'queued', 'failed'],
        [running, 'training', 'cancelled'],
      ] as const) {
        await settled(id);
        const last = forJob(receiver.received, id).at(-1)!.json;
        assert.equal(last.type, 'training_failed');
        assert.equal(last.status, status, 'default "failed"; "cancelled" when callback_options asks for it');
        assert.equal(last.error.code, 'CANCELLED');
        assert.equal(last.error.phase, phase);
      }
      assert.equal(forJob(receiver.received, queued).length, 1, 'a queued job only gets its cancellation');
    });

    test('a job without callback_url writes no events', async () => {
      const id = await submit('short', null);
      await waitForStatus(id, ['completed']);
      const list = await call(`/api/v1/jobs/${id}/callbacks`);
      assert.equal(list.status, 200);
      assert.equal(list.json.total, 0);
      assert.equal(list.json.callback_url, null);
      assert.equal((await call(`/api/v1/jobs/${crypto.randomUUID()}/callbacks`)).status, 404);
    });

    test('the routes are in the OpenAPI document', async () => {
      const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
      for (const [p, method] of [
        ['/api/v1/jobs/{id}/callbacks', 'get'],
        ['/api/v1/jobs/{id}/callbacks/{event_id}/redeliver', 'post'],
        ['/api/v1/jobs/{id}/model', 'get'],
        ['/api/v1/jobs/{id}/artifacts', 'get'],
        ['/api/v1/jobs/{id}/artifacts/{name}', 'get'],
        ['/downloads/{id}/{name}', 'get'],
      ] as const) {
        assert.ok(doc.paths[p]?.[method], `${method} ${p}`);
      }
    });

    test('deliveries appear on /metrics by outcome', async () => {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      assert.match(text, /callback_deliveries_total\{outcome="delivered"\} \d+/);
      assert.match(text, /callback_deliveries_total\{outcome="gone"\} 1/);
      assert.match(text, /callback_deliveries_total\{outcome="failed"\} \d+/);
    });
  });
}

