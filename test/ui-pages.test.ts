/**
 * The status pages over plain HTTP: the session opens the API's reads the pages link to (and
 * nothing else), the job page's files as signed download links, Export through the page, the
 * job history (paging and filters), and the smaller points: the summed loss names its parts,
 * the ETA while validating, a dataset check failure in the checks phase, logs without colour
 * codes.
 *
 * Jobs move through the same job store the executor uses (test/helpers/job-driver.ts); the
 * dataset-check case runs the real pipeline on a ZIP served from 127.0.0.1.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { metricsView } from '../src/ui/data.js';
import { backends } from './helpers/database.js';
import { jobDriver } from './helpers/job-driver.js';
import { startFileServer, type FileServer } from './helpers/file-server.js';
import { rawZip } from './helpers/raw-zip.js';
import { TOKEN, api, startTestServer, trainBody, type TestServer } from './helpers/server.js';
import { waitFor } from './helpers/wait.js';

async function login(server: TestServer): Promise<string> {
  const res = await fetch(`${server.url}/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: server.url },
    body: new URLSearchParams({ token: TOKEN, next: '/' }),
  });
  assert.equal(res.status, 303);
  return (res.headers.get('set-cookie') ?? '').split(';')[0]!;
}

async function page(server: TestServer, pathname: string, cookie: string): Promise<{ status: number; html: string }> {
  const res = await fetch(server.url + pathname, { headers: { cookie }, redirect: 'manual' });
  return { status: res.status, html: await res.text() };
}

const csrfIn = (html: string) => /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? assert.fail('a CSRF token on the page');
const unescape = (s: string) => s.replace(/&amp;/g, '&');

async function submit(server: TestServer, name: string): Promise<string> {
  const r = await api(server.url)('/api/v1/train', { method: 'POST', json: trainBody({ model_config: { name, base_model: 'yolo11n.yaml', epochs: 3 } }) });
  assert.equal(r.status, 202, r.text);
  return r.json.job_id as string;
}

for (const backend of backends()) {
  describe(`status pages: links, exports, history on ${backend}`, () => {
    let server: TestServer;
    let drive: ReturnType<typeof jobDriver>;
    let cookie: string;
    before(async () => {
      server = await startTestServer({ backend, env: { RUN_JOBS: 'false', LOG_LEVEL: 'warn', TRAIN_RATE_LIMIT_PER_MINUTE: '1000' } });
      drive = jobDriver(server, 'ui-pages-node');
      cookie = await login(server);
    });
    after(() => server?.stop());

    /** Cancels what earlier tests left queued, so the next claim takes the job a test submits. */
    async function emptyQueue() {
      const call = api(server.url);
      const { json } = await call('/api/v1/jobs?status=queued&limit=100');
      for (const j of json.jobs as { job_id: string }[]) assert.equal((await call(`/api/v1/jobs/${j.job_id}`, { method: 'DELETE' })).status, 200);
    }

    /** A job that ran and completed, with the files a run leaves: weights, a CSV, a log. */
    async function completedJob(name: string) {
      await emptyQueue();
      const id = await submit(server, name);
      const started = await drive.start();
      assert.equal(started.id, id);
      const dir = server.deps.files.dir(id);
      fs.mkdirSync(path.join(dir, 'weights'), { recursive: true });
      const best = path.join(dir, 'weights', 'best.pt');
      const last = path.join(dir, 'weights', 'last.pt');
      fs.writeFileSync(best, Buffer.from(`best weights of ${name}`));
      fs.writeFileSync(last, Buffer.from(`last weights of ${name}, a little longer`));
      fs.writeFileSync(path.join(dir, 'results.csv'), 'epoch,mAP50\n1,0.5\n');
      fs.writeFileSync(path.join(dir, 'worker.log'), 'training\n');
      await drive.record(id, { phase: 'training', progress: 50, currentEpoch: 2, totalEpochs: 3, datasetInfo: { classes: ['poste'] } }, 'epoch', {
        epoch: 2,
        metrics: { box_loss: 1, cls_loss: 2, dfl_loss: 0.5, mAP50: 0.5, 'mAP50-95': 0.3 },
        epochSeconds: 3,
      });
      const row = await drive.finish(id, 'completed', {
        progress: 100,
        phase: 'done',
        model: { best, last, size_bytes: fs.statSync(best).size, format: 'pytorch', best_epoch: 2 },
        artifacts: [{ name: 'results.csv', path: path.join(dir, 'results.csv'), size: 18 }],
      });
      return { id, row, best, last };
    }

    test("the page's session opens the API's reads its links point to, and nothing else", async () => {
      const id = await submit(server, 'session-json');
      const { html } = await page(server, `/jobs/${id}`, cookie);
      const json = /href="([^"]+)" data-f="json"/.exec(html)?.[1];
      assert.equal(json, `/api/v1/jobs/${id}`);
      const read = await fetch(server.url + json, { headers: { cookie, 'sec-fetch-site': 'same-origin' } });
      assert.equal(read.status, 200);
      assert.equal(((await read.json()) as { job_id: string }).job_id, id);
      // Typed into the address bar, or a browser that sends no Sec-Fetch-Site.
      assert.equal((await fetch(server.url + json, { headers: { cookie, 'sec-fetch-site': 'none' } })).status, 200);
      assert.equal((await fetch(server.url + json, { headers: { cookie } })).status, 200);
      assert.equal((await fetch(`${server.url}/api/v1/jobs/${id}/logs/download`, { headers: { cookie } })).status, 200);
      // Another site's link or script, a forged or missing cookie, and every write still need the token.
      for (const site of ['cross-site', 'same-site']) {
        const res: Response = await fetch(`${server.url}/api/v1/jobs/${id}`, { headers: { cookie, 'sec-fetch-site': site } });
        assert.equal(res.status, 401, site);
        assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
      }
      assert.equal((await fetch(server.url + json)).status, 401);
      const [name, value] = cookie.split('=') as [string, string];
      const forged = `${name}=${value.replace(/.$/, (ch) => (ch === 'A' ? 'B' : 'A'))}`;
      assert.equal((await fetch(server.url + json, { headers: { cookie: forged } })).status, 401);
      const cancel = await fetch(`${server.url}/api/v1/jobs/${id}`, { method: 'DELETE', headers: { cookie, 'sec-fetch-site': 'same-origin', origin: server.url } });
      assert.equal(cancel.status, 401);
      const train = await fetch(`${server.url}/api/v1/train`, {
        method: 'POST',
        headers: { cookie, 'content-type': 'application/json', origin: server.url },
        body: JSON.stringify(trainBody()),
      });
      assert.equal(train.status, 401);
      assert.equal((await api(server.url)(`/api/v1/jobs/${id}`)).json.status, 'queued', 'nothing was cancelled');
      // A wrong token is refused even with a good cookie beside it.
      assert.equal((await fetch(server.url + json, { headers: { cookie, authorization: 'Bearer nope-nope-nope' } })).status, 401);
    });

    test('the model, checkpoints and artifacts are signed, expiring links that download without a token', async () => {
      const { id, best, last } = await completedJob('downloads-v1');
      const { status, html } = await page(server, `/jobs/${id}`, cookie);
      assert.equal(status, 200);
      const model = /href="([^"]+)" download data-f="model-download"/.exec(html)?.[1];
      assert.ok(model, 'the model is a link');
      assert.match(model, new RegExp(`^/downloads/${id}/best\\.pt\\?exp=\\d+&amp;sig=[\\w-]{43}$`));
      const got = await fetch(server.url + unescape(model));
      assert.equal(got.status, 200);
      assert.deepEqual(Buffer.from(await got.arrayBuffer()), fs.readFileSync(best));
      const links = [...html.matchAll(/href="(\/downloads\/[^"]+)" download/g)].map((m) => unescape(m[1]!));
      for (const name of ['best.pt', 'last.pt', 'results.csv']) assert.ok(links.some((l) => l.startsWith(`/downloads/${id}/${name}?`)), name);
      const lastLink = links.find((l) => l.includes('/last.pt?'))!;
      assert.deepEqual(Buffer.from(await (await fetch(server.url + lastLink)).arrayBuffer()), fs.readFileSync(last));
      // The signature covers the file and the expiry.
      const edited = lastLink.replace(/exp=(\d+)/, (_, e: string) => `exp=${Number(e) + 60}`);
      assert.equal((await fetch(server.url + edited)).status, 403);
      assert.equal((await fetch(server.url + lastLink.replace('last.pt', 'best.pt'))).status, 403);
      assert.match(html, /Download links are signed and expire/);
    });

    test('Export goes through the page with the session and its CSRF token, like Cancel', async () => {
      const { id, row } = await completedJob('export-v1');
      const noModel = await page(server, `/jobs/${id}`, cookie);
      assert.doesNotMatch(noModel.html, /id="export-form"/, 'nothing to export before the model is registered');
      const model = await server.deps.registry.register(row);
      assert.ok(model);
      const { html } = await page(server, `/jobs/${id}`, cookie);
      assert.match(html, new RegExp(`Registered as <code>model:${model.id}</code>`));
      const formats = [...html.matchAll(/<option value="(\w+)">/g)].map((m) => m[1]);
      assert.deepEqual(formats, server.deps.registry.exportFormats(model), 'the formats of its engine and task');
      const csrf = csrfIn(html);
      const post = (fields: Record<string, string>, headers: Record<string, string> = { origin: server.url }) =>
        fetch(`${server.url}/jobs/${id}/export`, {
          method: 'POST',
          redirect: 'manual',
          headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', ...headers },
          body: new URLSearchParams(fields),
        });
      assert.equal((await post({ format: 'onnx' })).status, 403, 'no token');
      assert.equal((await post({ format: 'onnx', csrf: 'x'.repeat(43) })).status, 403, 'a wrong token');
      assert.equal((await post({ format: 'onnx', csrf }, { origin: 'https://evil.example' })).status, 403, 'another origin');
      const bad = await post({ format: 'tflite', csrf });
      assert.equal(bad.status, 400);
      assert.match(await bad.text(), /tflite is not an export format of this model/);
      const anonymous = await fetch(`${server.url}/jobs/${id}/export`, { method: 'POST', redirect: 'manual', headers: { origin: server.url } });
      assert.equal(anonymous.status, 303);
      assert.match(anonymous.headers.get('location') ?? '', /^\/login\?next=/);
      const queued = await submit(server, 'export-none');
      const none = await fetch(`${server.url}/jobs/${queued}/export`, {
        method: 'POST',
        headers: { cookie, origin: server.url, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ format: 'onnx', csrf }),
      });
      assert.equal(none.status, 404);
      assert.match(await none.text(), /no registered model/);
      assert.equal((await server.deps.registry.exports([model.id])).length, 0, 'no refused request exported anything');

      // A real export: these weights are not a model, so the engine's exporter fails, and the page says why.
      const failed = await post({ format: 'onnx', csrf });
      assert.equal(failed.status, 500);
      const text = await failed.text();
      assert.match(text, /Not exported/);
      assert.match(text, /<p>[A-Z]+_[A-Z_]+: [^<]+<\/p>/, "the worker's error code and message");
    });

    test('the job history pages through every job and filters by status, name and date', async () => {
      const call = api(server.url);
      const done = await completedJob('hist-finished');
      const before = (await call('/api/v1/jobs?limit=1')).json.total as number;
      const ids: string[] = [];
      for (let i = 0; i < 23; i++) ids.push(await submit(server, `hist-${String(i).padStart(2, '0')}${i === 7 ? '_100%' : ''}`));
      const total = before + 23;
      const first = await page(server, '/jobs', cookie);
      assert.equal(first.status, 200);
      assert.match(first.html, new RegExp(`data-f="range">1–20 of ${total}<`));
      assert.equal([...first.html.matchAll(/<tr data-job=/g)].length, 20);
      assert.match(first.html, /hist-22/, 'newest first');
      const next = unescape(/href="([^"]+)" rel="next"/.exec(first.html)?.[1] ?? '');
      assert.equal(next, '/jobs?page=2');
      const second = await page(server, next, cookie);
      assert.match(second.html, new RegExp(`data-f="range">21–${Math.min(40, total)} of ${total}<`));
      assert.match(second.html, /href="\/jobs" rel="prev"/);

      // Name: a part of it, any case; % and _ are plain characters.
      const byName = await page(server, '/jobs?name=HIST-0', cookie);
      assert.equal([...byName.html.matchAll(/<tr data-job=/g)].length, 10);
      assert.doesNotMatch(byName.html, /href="[^"]*" rel="next"/);
      const literal = await page(server, `/jobs?name=${encodeURIComponent('_100%')}`, cookie);
      assert.equal([...literal.html.matchAll(/<tr data-job=/g)].length, 1);
      assert.match(literal.html, new RegExp(`data-job="${ids[7]}"`));

      // Status, kept across pages along with the other filters.
      const completed = await page(server, '/jobs?status=completed&name=hist', cookie);
      assert.equal([...completed.html.matchAll(/<tr data-job=/g)].length, 1);
      assert.match(completed.html, new RegExp(`data-job="${done.id}"`));
      assert.match(completed.html, /<option value="completed" selected>/);
      const many = await page(server, '/jobs?status=queued&name=hist', cookie);
      assert.equal(unescape(/href="([^"]+)" rel="next"/.exec(many.html)?.[1] ?? ''), '/jobs?status=queued&name=hist&page=2');

      // Dates: submission days in UTC, both ends included.
      const today = new Date().toISOString().slice(0, 10);
      const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
      const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
      assert.match((await page(server, `/jobs?from=${today}&to=${today}&name=hist`, cookie)).html, /data-f="range">1–20 of 24</);
      assert.match((await page(server, `/jobs?from=${tomorrow}`, cookie)).html, /No job matches these filters/);
      assert.match((await page(server, `/jobs?to=${yesterday}`, cookie)).html, /No job matches these filters/);
      // The form sends empty fields: they are no filter.
      assert.match((await page(server, '/jobs?status=&name=&from=&to=', cookie)).html, new RegExp(`of ${total}<`));

      for (const q of ['status=running', 'from=2025-02-30', 'to=yesterday', 'page=0', 'page=x', 'colour=red', `from=${tomorrow}&to=${today}`]) {
        const bad = await page(server, `/jobs?${q}`, cookie);
        assert.equal(bad.status, 400, q);
        assert.match(bad.html, /These filters could not be used/, q);
      }
      assert.match((await page(server, '/jobs?page=99', cookie)).html, /This page is past the last one/);
      // Linked from the dashboard; a login first, like every page.
      assert.match((await page(server, '/', cookie)).html, /<a href="\/jobs" data-f="history">/);
      const anonymous = await fetch(`${server.url}/jobs?status=failed`, { redirect: 'manual' });
      assert.equal(anonymous.status, 303);
      assert.equal(anonymous.headers.get('location'), `/login?next=${encodeURIComponent('/jobs?status=failed')}`);
    });

    test('the summed loss names its parts, and the ETA says validating while validation runs', async () => {
      await emptyQueue();
      const id = await submit(server, 'validating-v1');
      assert.equal((await drive.start()).id, id);
      await drive.record(id, { phase: 'training', progress: 60, currentEpoch: 2, totalEpochs: 3, etaSeconds: 45, metricsCurrent: { box_loss: 1, cls_loss: 2, dfl_loss: 0.5, mAP50: 0.4 } }, 'epoch');
      const spec = server.deps.engines.get('ultralytics')!.metrics('detect');
      const parts = spec.losses.map((k) => spec.fields.find((f) => f.key === k)!.label);
      assert.ok(parts.length > 1);
      const dash = await page(server, '/', cookie);
      const card = dash.html.slice(dash.html.indexOf(`data-job="${id}"`));
      assert.match(card, new RegExp(`data-f="loss-label">Loss \\(${parts.join(' \\+ ')}\\)</span>: <b data-f="loss">3\\.500</b>`));
      assert.match(card, /data-f="eta">45s</);
      await drive.record(id, { phase: 'validating', progress: 95, etaSeconds: 0 }, 'phase');
      assert.match((await page(server, '/', cookie)).html, new RegExp(`data-job="${id}"[\\s\\S]*?data-f="eta">validating<`));
      assert.match((await page(server, `/jobs/${id}`, cookie)).html, /data-f="eta">validating</);
      // A queued job has no time left to show, and neither has a finished one.
      const queued = await submit(server, 'queued-eta');
      assert.match((await page(server, `/jobs/${queued}`, cookie)).html, /data-f="eta">—</);
      // Every engine's loss chart and labels come from its declaration.
      for (const engine of server.deps.engines.list()) {
        for (const task of engine.tasks) {
          const view = metricsView(engine.metrics(task));
          for (const c of view.charts) assert.ok(c.series.length > 0, `${engine.name} ${task} ${c.id}`);
        }
      }
    });

    test('logs read and download without colour codes, also when written before they were stripped', async () => {
      const id = await submit(server, 'ansi-log');
      const file = server.deps.files.logFile(id);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, '\x1b[34m\x1b[1mtrain:\x1b[0m Scanning... 20 images\n\x1b[31mWARNING\x1b[0m ⚠️ low memory\n');
      const plain = 'train: Scanning... 20 images\nWARNING ⚠️ low memory\n';
      const lines = await api(server.url)(`/api/v1/jobs/${id}/logs`);
      assert.deepEqual(lines.json.lines, ['train: Scanning... 20 images', 'WARNING ⚠️ low memory']);
      assert.equal((await api(server.url)(`/api/v1/jobs/${id}/logs/download`)).text, plain);
      const dl = await fetch(`${server.url}/jobs/${id}/logs`, { headers: { cookie } });
      assert.equal(dl.status, 200);
      assert.match(dl.headers.get('content-disposition') ?? '', /attachment/);
      assert.equal(await dl.text(), plain);
    });

    test('every page loads the table script, and wide tables sit in a focusable scroll box', async () => {
      const { html } = await page(server, '/jobs', cookie);
      assert.match(html, /<script src="\/static\/tables\.js\?v=[^"]+" defer><\/script>/);
      assert.match(html, /<div class="table-wrap"><table id="history-table">/);
      const js = await (await fetch(`${server.url}/static/tables.js`)).text();
      assert.match(js, /Scroll the table sideways/);
      const css = await (await fetch(`${server.url}/static/style.css`)).text();
      assert.match(css, /\.table-wrap \{ overflow-x: auto;[^}]*radial-gradient/);
    });
  });
}

describe('status pages with UI_PUBLIC_READ=true', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ env: { RUN_JOBS: 'false', UI_PUBLIC_READ: 'true', LOG_LEVEL: 'warn' } });
  });
  after(() => server?.stop());

  test('a reader without a login sees no download links, no JSON button, and the API stays closed', async () => {
    const id = await submit(server, 'public-v1');
    const drive = jobDriver(server, 'ui-pages-public');
    await drive.start();
    const dir = server.deps.files.dir(id);
    fs.mkdirSync(path.join(dir, 'weights'), { recursive: true });
    const best = path.join(dir, 'weights', 'best.pt');
    fs.writeFileSync(best, 'weights');
    await drive.finish(id, 'completed', { model: { best, size_bytes: 7, best_epoch: 1 } });
    const html = await (await fetch(`${server.url}/jobs/${id}`)).text();
    assert.match(html, /best\.pt/);
    assert.doesNotMatch(html, /\/downloads\//);
    assert.doesNotMatch(html, /data-f="json"/);
    assert.match(html, /Log in<\/a> to download these files/);
    assert.equal((await fetch(`${server.url}/api/v1/jobs/${id}`, { headers: { 'sec-fetch-site': 'same-origin' } })).status, 401);
    assert.match(await (await fetch(`${server.url}/jobs`)).text(), /public-v1/, 'the history is readable like the other pages');
  });
});

describe('a dataset that fails its checks', () => {
  let server: TestServer;
  let files: FileServer;
  before(async () => {
    files = await startFileServer();
    server = await startTestServer({ env: { DEVICES: 'cpu', LOG_LEVEL: 'warn', DOWNLOAD_RETRIES: '0' } });
  });
  after(async () => {
    await server?.stop();
    await files?.close();
  });

  test('fails in the checks phase, and the page says so', async () => {
    const zip = rawZip([{ name: 'readme.txt', data: 'no images, no labels, no data.yaml' }]);
    files.route('/not-a-dataset.zip', (_req, res) => res.writeHead(200, { 'content-type': 'application/zip', 'content-length': zip.length }).end(zip));
    const call = api(server.url);
    const r = await call('/api/v1/train', { method: 'POST', json: trainBody({ dataset: { url: files.url('/not-a-dataset.zip') } }) });
    assert.equal(r.status, 202, r.text);
    const id = r.json.job_id as string;
    const job = await waitFor('the job to fail', async () => {
      const j = await call(`/api/v1/jobs/${id}`);
      return j.json.status === 'failed' ? j.json : null;
    }, 60_000);
    assert.equal(job.error.code, 'DATASET_INVALID');
    assert.equal(job.error.phase, 'checking');
    const html = await (await fetch(`${server.url}/jobs/${id}`, { headers: { cookie: await login(server) } })).text();
    assert.match(html, /data-f="error-phase">\(dataset checks\)</);
    assert.doesNotMatch(html, /phase downloading/);
  });
});
