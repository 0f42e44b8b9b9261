/**
 * The HTTP contract of the service core (SPEC §2), over real HTTP, on PGlite and (when
 * TEST_DATABASE_URL is set) on PostgreSQL. RUN_JOBS=false keeps submitted jobs queued, so
 * queue positions, the queue cap and cancellation of queued jobs are deterministic here; the
 * training path has its own tests.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { signRequest } from '../src/security/request-signature.js';
import { backends } from './helpers/database.js';
import { TOKEN, api, startTestServer, trainBody, type TestServer } from './helpers/server.js';

for (const backend of backends()) {
  describe(`API core on ${backend}`, () => {
    let server: TestServer;
    let call: ReturnType<typeof api>;

    before(async () => {
      server = await startTestServer({
        backend,
        env: { RUN_JOBS: 'false', MAX_QUEUE_LENGTH: '4', MAX_BODY_BYTES: '4096' },
      });
      call = api(server.url);
    });
    after(() => server.stop());

    test('401 without or with a wrong bearer token', async () => {
      assert.equal((await api(server.url, '')('/api/v1/jobs')).status, 401);
      const wrong = await api(server.url, 'x'.repeat(TOKEN.length))('/api/v1/jobs');
      assert.equal(wrong.status, 401);
      assert.equal(wrong.json.error.code, 'UNAUTHORIZED');
    });

    test('202 on a valid body, with links and an estimated start', async () => {
      const r = await call('/api/v1/train', { method: 'POST', json: trainBody() });
      assert.equal(r.status, 202, r.text);
      assert.equal(r.json.status, 'queued');
      assert.match(r.json.job_id, /^[0-9a-f-]{36}$/);
      assert.equal(r.json.queue_position, 1);
      assert.equal(r.json.links.self, `${server.url}/api/v1/jobs/${r.json.job_id}`);
      assert.ok('estimated_start_time' in r.json);
      const job = await call(`/api/v1/jobs/${r.json.job_id}`);
      assert.equal(job.status, 200);
      assert.equal(job.json.status, 'queued');
      assert.equal(job.json.phase, 'queued');
      assert.equal(job.json.total_epochs, 2);
      assert.equal(job.json.queue_position, 1);
      assert.equal(job.json.name, 'test-model');
    });

    test('400 lists every problem: unknown fields and wrong types', async () => {
      const body = trainBody({ surprise: 1 }) as any;
      body.model_config.epochs = 'ten';
      body.model_config.learning_rat = 0.1;
      body.dataset.url = 'ftp://nope';
      const r = await call('/api/v1/train', { method: 'POST', json: body });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.code, 'VALIDATION_ERROR');
      const paths = r.json.error.details.map((d: { path: string[] }) => d.path.join('.'));
      assert.ok(paths.includes('model_config.epochs'), paths.join());
      assert.ok(paths.includes('dataset.url'), paths.join());
      const messages = JSON.stringify(r.json.error.details);
      assert.match(messages, /surprise/);
      assert.match(messages, /learning_rat/);
      assert.ok(!/at .*\.ts:\d+/.test(r.text), 'no stack trace in errors');
    });

    test('400 on callback_url without callback_secret, and on malformed JSON', async () => {
      const r = await call('/api/v1/train', { method: 'POST', json: trainBody({ callback_url: 'https://example.com/hook' }) });
      assert.equal(r.status, 400);
      assert.deepEqual(r.json.error.details[0].path, ['callback_secret']);
      const bad = await call('/api/v1/train', {
        method: 'POST',
        body: '{"model_config": ',
        headers: { 'content-type': 'application/json' },
      });
      assert.equal(bad.status, 400);
      assert.ok(bad.json.error.code);
    });

    test('409 on a duplicate job_id, carrying the existing job', async () => {
      const id = crypto.randomUUID();
      const first = await call('/api/v1/train', { method: 'POST', json: trainBody({ job_id: id }) });
      assert.equal(first.status, 202);
      const again = await call('/api/v1/train', { method: 'POST', json: trainBody({ job_id: id }) });
      assert.equal(again.status, 409);
      assert.equal(again.json.error.code, 'JOB_EXISTS');
      assert.equal(again.json.job.job_id, id);
      assert.equal(again.json.job.status, 'queued');
    });

    test('413 on a body over the limit', async () => {
      const body = trainBody({ model_config: { name: 'x'.repeat(8000), epochs: 1 } });
      const r = await call('/api/v1/train', { method: 'POST', json: body });
      assert.equal(r.status, 413);
      assert.equal(r.json.error.code, 'PAYLOAD_TOO_LARGE');
    });

    test('404 on unknown jobs and routes', async () => {
      for (const p of [`/api/v1/jobs/${crypto.randomUUID()}`, '/api/v1/jobs/not-a-uuid']) {
        const r = await call(p);
        assert.equal(r.status, 404);
        assert.equal(r.json.error.code, 'JOB_NOT_FOUND');
      }
      assert.equal((await call(`/api/v1/jobs/${crypto.randomUUID()}`, { method: 'DELETE' })).status, 404);
      assert.equal((await call('/nope')).json.error.code, 'NOT_FOUND');
    });

    test('405 with Allow on known paths; 415 and 400 on bodies; strict numbers in queries', async () => {
      const patch = await call('/api/v1/jobs', { method: 'PATCH' });
      assert.equal(patch.status, 405);
      assert.equal(patch.headers.get('allow'), 'GET, HEAD');
      assert.equal(patch.json.error.code, 'METHOD_NOT_ALLOWED');
      const put = await call(`/api/v1/jobs/${crypto.randomUUID()}`, { method: 'PUT' });
      assert.equal(put.status, 405);
      assert.equal(put.headers.get('allow'), 'GET, HEAD, DELETE');
      // A route of its own is not a value of the pattern beside it: /jobs/compare has no DELETE.
      const compare = await call('/api/v1/jobs/compare', { method: 'DELETE' });
      assert.equal(compare.status, 405);
      assert.equal(compare.headers.get('allow'), 'GET, HEAD');
      assert.equal((await call('/api/v1/train')).headers.get('allow'), 'POST');
      assert.equal((await api(server.url, '')('/health', { method: 'POST' })).status, 405);
      assert.equal((await call('/api/v1/nope', { method: 'PATCH' })).status, 404, 'unknown paths stay 404');

      const text = await call('/api/v1/config/resolve', { method: 'POST', body: '{}', headers: { 'content-type': 'text/plain' } });
      assert.equal(text.status, 415);
      assert.equal(text.json.error.code, 'UNSUPPORTED_MEDIA_TYPE');
      const none = await call('/api/v1/config/resolve', { method: 'POST' });
      assert.equal(none.status, 400, none.text);
      assert.equal(none.json.error.code, 'BODY_REQUIRED');
      assert.equal((await call('/api/v1/train', { method: 'POST' })).json.error.code, 'BODY_REQUIRED');
      assert.equal((await call('/api/v1/config/resolve', { method: 'POST', json: {} })).status, 200, 'an empty JSON object is a body');

      for (const q of ['offset=', 'offset=0x10', 'offset=1e3', 'offset=-1', 'offset=1000000001', 'limit=2.5']) {
        const r = await call(`/api/v1/jobs?${q}`);
        assert.equal(r.status, 400, q);
        assert.equal(r.json.error.code, 'VALIDATION_ERROR', q);
      }
      assert.equal((await call('/api/v1/jobs?offset=1000000000')).status, 200);
      const download = await call(`/api/v1/jobs/${crypto.randomUUID()}/model?download=AAA`);
      assert.equal(download.status, 400);
    });

    test('the OpenAPI document states what the server checks', async () => {
      const doc = (await api(server.url, '')('/openapi.json')).json;
      const op = (p: string, m: string) => doc.paths[p][m];
      const param = (p: string, name: string) => op(p, 'get').parameters.find((x: { name: string }) => x.name === name);
      for (const p of ['/api/v1/jobs', '/api/v1/models', '/api/v1/jobs/{id}/callbacks', '/api/v1/jobs/{id}/logs']) {
        assert.deepEqual(param(p, 'offset').schema, { type: 'integer', minimum: 0, maximum: 1_000_000_000, default: 0 }, p);
      }
      for (const [p, m] of [['/api/v1/train', 'post'], ['/api/v1/config/resolve', 'post'], ['/api/v1/models/{id}/export', 'post']] as const) {
        assert.ok(op(p, m).responses['415'], `${m} ${p} documents 415`);
        assert.equal(op(p, m).requestBody.required, true);
      }
      for (const p of ['/api/v1/jobs/{id}/model', '/api/v1/jobs/{id}/artifacts/{name}']) {
        assert.ok(op(p, 'get').responses['400'], `${p} documents 400`);
        const types = Object.keys(op(p, 'get').responses['200'].content);
        for (const t of ['application/json', 'application/octet-stream', 'text/csv', 'image/png']) assert.ok(types.includes(t), `${p}: ${t}`);
      }
      const train = doc.components.schemas.TrainRequest;
      assert.deepEqual(train.oneOf.map((b: { required: string[] }) => b.required), [['model_config'], ['config', 'name']]);
      assert.deepEqual(train.dependentRequired, { callback_url: ['callback_secret'] });
      const ids = param('/api/v1/jobs/compare', 'ids');
      assert.equal(ids.explode, false);
      assert.equal(ids.schema.uniqueItems, true);
    });

    test('DELETE cancels a queued job; a second DELETE is 409', async () => {
      const r = await call('/api/v1/train', { method: 'POST', json: trainBody() });
      const id = r.json.job_id;
      const del = await call(`/api/v1/jobs/${id}`, { method: 'DELETE' });
      assert.equal(del.status, 200);
      assert.equal(del.json.status, 'cancelled');
      const job = await call(`/api/v1/jobs/${id}`);
      assert.equal(job.json.status, 'cancelled');
      assert.equal(job.json.error.code, 'CANCELLED');
      assert.ok(job.json.finished_at);
      const again = await call(`/api/v1/jobs/${id}`, { method: 'DELETE' });
      assert.equal(again.status, 409);
      assert.equal(again.json.error.code, 'JOB_FINISHED');
    });

    test('list: newest first, status filter, paging', async () => {
      const all = await call('/api/v1/jobs?limit=500');
      assert.equal(all.status, 200);
      assert.equal(all.json.total, all.json.jobs.length);
      const created = all.json.jobs.map((j: { created_at: string }) => j.created_at);
      assert.deepEqual(created, [...created].sort().reverse());
      const cancelled = await call('/api/v1/jobs?status=cancelled');
      assert.ok(cancelled.json.jobs.length >= 1);
      assert.ok(cancelled.json.jobs.every((j: { status: string }) => j.status === 'cancelled'));
      const page = await call('/api/v1/jobs?limit=1&offset=1');
      assert.equal(page.json.jobs.length, 1);
      assert.equal(page.json.jobs[0].job_id, all.json.jobs[1].job_id);
      assert.equal((await call('/api/v1/jobs?status=bogus')).status, 400);
      assert.equal((await call('/api/v1/jobs?limit=0')).status, 400);
    });

    test('503 when the queue is full, with Retry-After', async () => {
      let r;
      for (let i = 0; i < 10; i++) {
        r = await call('/api/v1/train', { method: 'POST', json: trainBody() });
        if (r.status !== 202) break;
      }
      assert.equal(r!.status, 503);
      assert.equal(r!.json.error.code, 'QUEUE_FULL');
      assert.ok(Number(r!.headers.get('retry-after')) > 0);
      const queued = await call('/api/v1/jobs?status=queued');
      assert.equal(queued.json.total, 4);
    });

    test('/health, /openapi.json and /docs', async () => {
      const h = await api(server.url, '')('/health');
      assert.equal(h.status, 200);
      assert.equal(h.json.status, 'healthy');
      assert.equal(h.json.database.ok, true);
      assert.equal(h.json.database.kind, backend);
      assert.equal(h.json.queue_size, 4);
      assert.equal(typeof h.json.gpu_available, 'boolean');
      const doc = await api(server.url, '')('/openapi.json');
      assert.equal(doc.status, 200);
      assert.ok(doc.json.paths['/api/v1/train'].post);
      assert.ok(doc.json.paths['/api/v1/jobs/{id}'].get);
      assert.ok(doc.json.components.schemas.TrainRequest);
      const docs = await api(server.url, '')('/docs');
      assert.equal(docs.status, 200);
      assert.match(docs.text, /swagger/i);
    });

    test('the token never appears in logs; requests are logged with a request id', async () => {
      const all = server.logs.join('\n');
      assert.ok(server.logs.length > 5);
      assert.ok(!all.includes(TOKEN), 'token leaked into logs');
      const req = server.logs.map((l) => JSON.parse(l)).find((l) => l.msg === 'request');
      assert.ok(req.request_id);
      const queued = server.logs.map((l) => JSON.parse(l)).find((l) => l.msg === 'job queued');
      assert.ok(queued.job_id && queued.request_id);
    });
  });
}

describe('signed requests and rate limits', () => {
  const SECRET = 'signing-secret-0123456789';
  let server: TestServer;
  let call: ReturnType<typeof api>;
  before(async () => {
    server = await startTestServer({
      env: { RUN_JOBS: 'false', REQUEST_SIGNING_SECRET: SECRET, TRAIN_RATE_LIMIT_PER_MINUTE: '6' },
    });
    call = api(server.url);
  });
  after(() => server.stop());

  const signed = (body: string, ts: number, secret = SECRET) => ({
    'content-type': 'application/json',
    'x-trainhook-timestamp': String(ts),
    'x-trainhook-signature': signRequest(secret, ts, body),
  });

  test('valid signature → 202; wrong, stale, missing or replayed → 401; then 429', async () => {
    const now = Math.floor(Date.now() / 1000);
    const body = JSON.stringify(trainBody());
    const ok = await call('/api/v1/train', { method: 'POST', body, headers: signed(body, now) });
    assert.equal(ok.status, 202, ok.text);

    const replay = await call('/api/v1/train', { method: 'POST', body, headers: signed(body, now) });
    assert.equal(replay.status, 401);
    assert.match(replay.json.error.message, /replayed/);

    const wrong = await call('/api/v1/train', { method: 'POST', body, headers: signed(body, now, 'another-secret-0123456789') });
    assert.equal(wrong.status, 401);
    assert.match(wrong.json.error.message, /bad_signature/);

    const tampered = await call('/api/v1/train', { method: 'POST', body: body.replace('test-model', 'evil-model'), headers: signed(body, now) });
    assert.equal(tampered.status, 401);

    const stale = await call('/api/v1/train', { method: 'POST', body, headers: signed(body, now - 301) });
    assert.equal(stale.status, 401);
    assert.match(stale.json.error.message, /tolerance/);

    const missing = await call('/api/v1/train', { method: 'POST', json: trainBody() });
    assert.equal(missing.status, 401);

    // Six requests a minute: the seventh is refused with Retry-After.
    const limited = await call('/api/v1/train', { method: 'POST', body, headers: signed(body, now + 1) });
    assert.equal(limited.status, 429);
    assert.equal(limited.json.error.code, 'RATE_LIMITED');
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);

    const logs = server.logs.join('\n');
    assert.ok(!logs.includes(SECRET) && !logs.includes(TOKEN));
    assert.ok(!logs.includes(signed(body, now)['x-trainhook-signature'].slice(3)), 'signature leaked into logs');
  });
});
