/**
 * Access to the status pages over plain HTTP: login and its cookie, CSRF on Cancel, public
 * read-only mode, the logs endpoints, escaping and security headers.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UiAuth } from '../src/http/session.js';
import { TOKEN, api, startTestServer, trainBody, type TestServer } from './helpers/server.js';

async function submit(server: TestServer, name = 'auth-model'): Promise<string> {
  const r = await api(server.url)('/api/v1/train', { method: 'POST', json: trainBody({ model_config: { name, base_model: 'yolo11n.yaml', epochs: 2 } }) });
  assert.equal(r.status, 202, r.text);
  return r.json.job_id as string;
}

async function login(server: TestServer): Promise<string> {
  const res = await fetch(`${server.url}/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: server.url },
    body: new URLSearchParams({ token: TOKEN, next: '/jobs/x' }),
  });
  assert.equal(res.status, 303);
  assert.equal(res.headers.get('location'), '/jobs/x');
  const cookie = res.headers.get('set-cookie') ?? '';
  assert.match(cookie, /^trainhook_session=[^;]+;/);
  assert.match(cookie, /HttpOnly/);
  assert.match(cookie, /SameSite=Lax/);
  assert.match(cookie, /Path=\//);
  return cookie.split(';')[0]!;
}

async function csrfOf(server: TestServer, cookie: string, jobId: string): Promise<string> {
  const html = await (await fetch(`${server.url}/jobs/${jobId}`, { headers: { cookie } })).text();
  const m = /name="csrf" value="([^"]+)"/.exec(html);
  assert.ok(m, 'the job page carries a CSRF token');
  return m[1]!;
}

describe('status page access (login required)', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ env: { RUN_JOBS: 'false' } });
  });
  after(() => server.stop());

  test('without credentials: pages redirect to the login form, streams and partials answer 401', async () => {
    const id = await submit(server);
    for (const p of ['/', `/jobs/${id}`]) {
      const res = await fetch(server.url + p, { redirect: 'manual' });
      assert.equal(res.status, 303, p);
      assert.equal(res.headers.get('location'), `/login?next=${encodeURIComponent(p)}`);
    }
    for (const p of [`/stream/progress/${id}`, '/stream/dashboard', '/partials/dashboard']) {
      const res = await fetch(server.url + p);
      assert.equal(res.status, 401, p);
      await res.body?.cancel();
    }
    const login = await fetch(`${server.url}/login`);
    assert.equal(login.status, 200);
    assert.match(login.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    assert.equal(login.headers.get('x-frame-options'), 'DENY');
  });

  test('a wrong token is refused; the right one gives a session cookie that opens pages', async () => {
    const bad = await fetch(`${server.url}/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: 'x'.repeat(TOKEN.length), next: '/' }),
    });
    assert.equal(bad.status, 401);
    assert.equal(bad.headers.get('set-cookie'), null);
    const cookie = await login(server);
    const page = await fetch(`${server.url}/`, { headers: { cookie } });
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('cache-control'), 'no-store');
    assert.match(await page.text(), /Active training jobs/);
  });

  test('a tampered or expired cookie is refused; next= never leaves the site', async () => {
    const cookie = await login(server);
    const tampered = cookie.replace(/=(\d+)\./, (_m, exp) => `=${Number(exp) + 1000}.`);
    assert.equal((await fetch(`${server.url}/`, { headers: { cookie: tampered }, redirect: 'manual' })).status, 303);
    const auth = new UiAuth({ apiToken: TOKEN, publicRead: false, publicUrl: undefined });
    const expired = auth.issue(Date.now() - 13 * 3600 * 1000);
    assert.equal(auth.verify(expired), false);
    assert.equal((await fetch(`${server.url}/`, { headers: { cookie: `trainhook_session=${expired}` }, redirect: 'manual' })).status, 303);
    const other = new UiAuth({ apiToken: 'another-token-0123456789', publicRead: false, publicUrl: undefined }).issue();
    assert.equal(auth.verify(other), false, 'a cookie of another token');
    const evil = await fetch(`${server.url}/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: TOKEN, next: '//evil.example/x' }),
    });
    assert.equal(evil.headers.get('location'), '/');
  });

  test('Cancel with the cookie needs the form token and our origin', async () => {
    const cookie = await login(server);
    const id = await submit(server);
    const csrf = await csrfOf(server, cookie, id);
    const post = (headers: Record<string, string>, body: Record<string, string>) =>
      fetch(`${server.url}/jobs/${id}/cancel`, {
        method: 'POST',
        redirect: 'manual',
        headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body: new URLSearchParams(body),
      });
    assert.equal((await post({ origin: server.url }, {})).status, 403, 'no token');
    assert.equal((await post({ origin: server.url }, { csrf: csrf.slice(0, -2) + 'xx' })).status, 403, 'wrong token');
    assert.equal((await post({ origin: 'https://evil.example' }, { csrf })).status, 403, 'foreign origin');
    assert.equal((await post({}, { csrf })).status, 403, 'no origin, no referer');
    assert.equal((await api(server.url)(`/api/v1/jobs/${id}`)).json.status, 'queued', 'nothing was cancelled');
    const ok = await post({ referer: `${server.url}/jobs/${id}` }, { csrf });
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.get('location'), `/jobs/${id}?notice=cancelled`);
    assert.equal((await api(server.url)(`/api/v1/jobs/${id}`)).json.status, 'cancelled');
    const again = await post({ origin: server.url, accept: 'application/json' }, { csrf });
    assert.equal(again.status, 409);
    const page = await (await fetch(`${server.url}/jobs/${id}?notice=cancelled`, { headers: { cookie } })).text();
    assert.match(page, /Cancellation requested/);
    assert.doesNotMatch(page, /id="cancel-form"/);
  });

  test('Cancel with a bearer token needs no form token', async () => {
    const id = await submit(server);
    const res = await fetch(`${server.url}/jobs/${id}/cancel`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, accept: 'application/json' },
    });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { status: string }).status, 'cancelled');
  });

  test('what a job carries is escaped; JSON in the page cannot close its script tag', async () => {
    const name = '</script><script>alert(1)</script><b>x</b>';
    const id = await submit(server, name);
    const job = await server.deps.jobs.get(id);
    await server.deps.database.db.insert((await import('../src/db/schema.js')).jobEpochs).values({
      jobId: job!.id,
      epoch: 1,
      metrics: { mAP50: 0.5, '</script><script>alert(2)</script>': 1 },
    });
    const html = await (await fetch(`${server.url}/jobs/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    assert.doesNotMatch(html, /<script>alert/);
    assert.match(html, /&lt;\/script&gt;&lt;script&gt;alert\(1\)/);
    assert.match(html, /\\u003c\/script>\\u003cscript>alert\(2\)/);
  });

  test('the job page lists callback deliveries with their last response', async () => {
    const r = await api(server.url)('/api/v1/train', {
      method: 'POST',
      json: trainBody({ callback_url: 'https://app.example/functions/v1/webhook-ingest?key=secret', callback_secret: 'cb-secret-0123456789abcdef' }),
    });
    const id = r.json.job_id as string;
    const { callbackEvents, callbackAttempts } = await import('../src/db/schema.js');
    const { db } = server.deps.database;
    await db.insert(callbackEvents).values([
      { id: `msg_ui_${id.slice(0, 8)}_1`, jobId: id, type: 'training_progress', payload: {}, state: 'delivered', attempts: 1, deliveredAt: new Date() },
      { id: `msg_ui_${id.slice(0, 8)}_2`, jobId: id, type: 'training_completed', payload: {}, state: 'pending', attempts: 2, lastError: 'HTTP 503 from receiver' },
    ]);
    await db.insert(callbackAttempts).values([
      { eventId: `msg_ui_${id.slice(0, 8)}_1`, statusCode: 200, latencyMs: 41.7 },
      { eventId: `msg_ui_${id.slice(0, 8)}_2`, statusCode: 503, latencyMs: 12 },
      { eventId: `msg_ui_${id.slice(0, 8)}_2`, statusCode: 503, latencyMs: 15 },
    ]);
    const html = await (await fetch(`${server.url}/jobs/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    const table = html.slice(html.indexOf('id="cb-h"'));
    assert.match(table, /training_completed<\/td>\s*<td>◷ pending<\/td>\s*<td>2<\/td>\s*<td>HTTP 503 · 15 ms<br><span class="muted small">HTTP 503 from receiver/);
    assert.match(table, /training_progress<\/td>\s*<td>✔ delivered<\/td>\s*<td>1<\/td>\s*<td>HTTP 200 · 42 ms/);
    assert.match(html, /https:\/\/app\.example\/functions\/v1\/webhook-ingest\?…/, 'the callback URL without its query');
    assert.doesNotMatch(html, /key=secret|cb-secret/);
  });

  test('logs: paged lines through the API, a download through the page (login required)', async () => {
    const id = await submit(server);
    const file = path.join(server.workdir, 'jobs', id, 'worker.log');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const lines = Array.from({ length: 25 }, (_, i) => `line ${i}`);
    lines[3] = 'epoch 1/2: 10%\repoch 1/2: 50%\repoch 1/2: 100%';
    fs.writeFileSync(file, `${lines.join('\n')}\n`);
    const call = api(server.url);
    const first = await call(`/api/v1/jobs/${id}/logs?limit=10`);
    assert.equal(first.status, 200, first.text);
    assert.equal(first.json.total_lines, 25);
    assert.equal(first.json.lines.length, 10);
    assert.equal(first.json.lines[3], 'epoch 1/2: 100%', 'a redrawn line reads as its last state');
    assert.equal(first.json.next_offset, 10);
    const last = await call(`/api/v1/jobs/${id}/logs?offset=20&limit=10`);
    assert.deepEqual(last.json.lines, ['line 20', 'line 21', 'line 22', 'line 23', 'line 24']);
    assert.equal(last.json.next_offset, null);
    assert.equal((await call(`/api/v1/jobs/${id}/logs?limit=0`)).status, 400);
    assert.equal((await api(server.url, '')(`/api/v1/jobs/${id}/logs`)).status, 401);
    assert.equal((await call(`/api/v1/jobs/00000000-0000-4000-8000-000000000000/logs`)).status, 404);
    const dl = await call(`/api/v1/jobs/${id}/logs/download`);
    assert.equal(dl.status, 200);
    assert.match(dl.headers.get('content-disposition') ?? '', /attachment; filename="trainhook-.*\.log"/);
    assert.equal(dl.text, fs.readFileSync(file, 'utf8'));
    const cookie = await login(server);
    const page = await fetch(`${server.url}/jobs/${id}/logs`, { headers: { cookie } });
    assert.equal(page.status, 200);
    assert.equal(await page.text(), fs.readFileSync(file, 'utf8'));
    assert.equal((await fetch(`${server.url}/jobs/${id}/logs`, { redirect: 'manual' })).status, 303);
  });
});

describe('status page access (UI_PUBLIC_READ=true)', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ env: { RUN_JOBS: 'false', UI_PUBLIC_READ: 'true' } });
  });
  after(() => server.stop());

  test('pages and streams open without a login; Cancel and logs still need one', async () => {
    const id = await submit(server);
    assert.equal((await fetch(`${server.url}/`)).status, 200);
    const page = await fetch(`${server.url}/jobs/${id}`);
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.doesNotMatch(html, /id="cancel-form"/);
    assert.match(html, /Log in<\/a> to cancel this job/);
    const stream = await fetch(`${server.url}/stream/progress/${id}`);
    assert.equal(stream.status, 200);
    assert.match(stream.headers.get('content-type') ?? '', /^text\/event-stream/);
    await stream.body?.cancel();
    const cancel = await fetch(`${server.url}/jobs/${id}/cancel`, { method: 'POST', headers: { accept: 'application/json', origin: server.url } });
    assert.equal(cancel.status, 401);
    const form = await fetch(`${server.url}/jobs/${id}/cancel`, { method: 'POST', redirect: 'manual', headers: { origin: server.url } });
    assert.equal(form.status, 303);
    assert.match(form.headers.get('location') ?? '', /^\/login\?next=/);
    assert.equal((await api(server.url)(`/api/v1/jobs/${id}`)).json.status, 'queued');
    assert.equal((await fetch(`${server.url}/jobs/${id}/logs`, { redirect: 'manual' })).status, 303);
  });
});
