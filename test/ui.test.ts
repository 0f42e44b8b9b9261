/**
 * The status pages in a real browser (playwright-core driving Debian's chromium): log in, watch
 * a running job's progress advance on the dashboard without a reload, watch the job page's
 * charts gain a point per epoch, cancel from the page. Screenshots go to test-output/.
 *
 * No training runs here: the server is API-only (RUN_JOBS=false) and the test moves the job
 * through the same transitions and event bus as src/jobs/execute.ts does.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { jobDriver } from './helpers/job-driver.js';
import { ROOT, TOKEN, api, startTestServer, trainBody, type TestServer } from './helpers/server.js';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const OUT = path.join(ROOT, 'test-output');
const NODE = 'ui-test-node';
const haveChromium = fs.existsSync(CHROMIUM);
if (!haveChromium && process.env['CI']) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);

/** Drives one job as the executor would: each change in a transaction, then announced. */
function driver(server: TestServer) {
  const base = jobDriver(server, NODE);
  return {
    ...base,
    async epoch(id: string, n: number, total: number) {
      const metrics = {
        box_loss: 1.5 / n, cls_loss: 2 / n, dfl_loss: 1.2 / n + 0.5,
        precision: 0.3 + n * 0.05, recall: 0.25 + n * 0.05, mAP50: 0.2 + n * 0.1, 'mAP50-95': 0.1 + n * 0.06,
      };
      return base.record(
        id,
        {
          phase: 'training', progress: 10 + (85 * n) / total, currentEpoch: n, totalEpochs: total, etaSeconds: (total - n) * 30,
          metricsCurrent: { ...metrics, epoch: n }, metricsBest: { mAP50: metrics.mAP50, 'mAP50-95': metrics['mAP50-95'], epoch: n },
        },
        'epoch',
        { epoch: n, metrics, epochSeconds: 30 },
      );
    },
    complete: (id: string) => base.finish(id, 'completed'),
  };
}

async function textOf(page: Page, selector: string): Promise<string> {
  return (await page.locator(selector).first().textContent()) ?? '';
}

describe('status pages in a browser', { skip: haveChromium ? false : `no ${CHROMIUM}` }, () => {
  let server: TestServer;
  let browser: Browser;
  let page: Page;
  let drive: ReturnType<typeof driver>;
  let jobId: string;

  before(async () => {
    fs.mkdirSync(OUT, { recursive: true });
    server = await startTestServer({ env: { RUN_JOBS: 'false', SSE_HEARTBEAT_SECONDS: '1', LOG_LEVEL: 'info', TRAIN_RATE_LIMIT_PER_MINUTE: '1000' } });
    drive = driver(server);
    const call = api(server.url);
    const submitted = await call('/api/v1/train', {
      method: 'POST',
      json: trainBody({ model_config: { name: 'poste-detector-v1', base_model: 'yolo11n.pt', epochs: 5, batch_size: 16, image_size: 640, optimizer: 'AdamW' } }),
    });
    assert.equal(submitted.status, 202, submitted.text);
    jobId = submitted.json.job_id;
    // A second job stays queued, so the queue section has a position to show.
    await call('/api/v1/train', { method: 'POST', json: trainBody({ model_config: { name: 'cabo-detector-v2', base_model: 'yolo11n.pt', epochs: 3 } }) });
    await drive.start();
    await drive.record(jobId, { phase: 'training', progress: 10, totalEpochs: 5 }, 'phase');

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('a page asks for the token first, then opens', async () => {
    await page.goto(`${server.url}/`);
    assert.match(page.url(), /\/login\?next=%2F$/);
    await page.screenshot({ path: path.join(OUT, 'ui-login.png'), fullPage: true });
    await page.fill('#token', 'wrong-token-wrong-token');
    await page.click('button[type=submit]');
    assert.match(await textOf(page, '.alert'), /not the API token/);
    await page.fill('#token', TOKEN);
    await page.click('button[type=submit]');
    await page.waitForURL(`${server.url}/`);
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === 'trainhook_session');
    assert.ok(session?.httpOnly, 'session cookie is HttpOnly');
    assert.equal(session?.sameSite, 'Lax');
  });

  test('the dashboard shows a running job advancing without a reload', async () => {
    await page.goto(`${server.url}/`);
    await page.waitForSelector('#live-status[data-state="on"]');
    await page.evaluate(() => ((window as unknown as { noReload: number }).noReload = 42));
    const card = `.card[data-job="${jobId}"]`;
    assert.match(await textOf(page, `${card} [data-f="progress-text"]`), /^10% · Epoch 0\/5 · Training/);
    assert.match(await textOf(page, '.queue'), /#1\s+cabo-detector-v2/);

    await drive.epoch(jobId, 1, 5);
    await page.waitForFunction((sel) => document.querySelector(sel)?.textContent?.startsWith('27% · Epoch 1/5'), `${card} [data-f="progress-text"]`);
    await drive.epoch(jobId, 2, 5);
    await page.waitForFunction((sel) => document.querySelector(sel)?.textContent?.startsWith('44% · Epoch 2/5'), `${card} [data-f="progress-text"]`);
    assert.equal(await page.locator(`${card} progress`).evaluate((p) => (p as HTMLProgressElement).value), 44);
    assert.equal(await textOf(page, `${card} [data-f="headline"]`), '0.400');
    assert.equal(await textOf(page, `${card} [data-f="eta"]`), '1m 30s');
    // A resource sample reaches the page too (the dashboard stream's `resources` event).
    const sampled = await textOf(page, '[data-r="sampled"]');
    await new Promise((r) => setTimeout(r, 1100));
    await server.deps.monitor.sampleNow();
    await page.waitForFunction((before) => document.querySelector('[data-r="sampled"]')?.textContent !== before, sampled);
    assert.equal(await page.evaluate(() => (window as unknown as { noReload: number }).noReload), 42, 'the page was not reloaded');
    await page.screenshot({ path: path.join(OUT, 'ui-dashboard.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: path.join(OUT, 'ui-dashboard-phone.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  test('the job page chart gains a point at each epoch', async () => {
    await page.goto(`${server.url}/jobs/${jobId}`);
    await page.waitForSelector('#live-status[data-state="on"]');
    const points = () => page.locator('#chart-map').getAttribute('data-points');
    assert.equal(await points(), '2');
    assert.equal(await page.locator('#chart-map svg .s0 .pt').count(), 2);
    for (const n of [3, 4]) {
      await drive.epoch(jobId, n, 5);
      await page.waitForFunction((want) => document.querySelector('#chart-map')?.getAttribute('data-points') === want, String(n));
      assert.equal(await page.locator('#chart-map svg .s0 .pt').count(), n, 'mAP50 markers');
      assert.equal(await page.locator('#chart-map svg .s1 .pt').count(), n, 'mAP50-95 markers');
      assert.equal(await page.locator('#chart-loss').getAttribute('data-points'), String(n));
      assert.equal(await page.locator('#epoch-table tbody tr').count(), n);
    }
    assert.equal(await textOf(page, '[data-m="mAP50"]'), '0.600');
    assert.equal(await textOf(page, '[data-f="epoch"]'), '4');
    assert.match(await textOf(page, '[data-f="progress-text"]'), /^78\.0% complete/);
    assert.notEqual(await textOf(page, '[data-f="elapsed"]'), '—');
    // The monitor's sample, as the job's resources column carries it to the page.
    await drive.record(
      jobId,
      { resources: { gpu_utilization: 87.5, memory_used_gb: 12.3, temperature_c: 72, device: 'cuda:0', sampled_at: new Date().toISOString(), peak_memory_used_gb: 12.9, peak_temperature_c: 74 } },
      'progress',
    );
    await page.waitForFunction(() => document.querySelector('[data-res="memory"]')?.textContent === '12.3 GB (peak 12.9 GB)');
    assert.equal(await textOf(page, '[data-res="temperature"]'), '72 °C (peak 74 °C)');
    assert.equal(await page.locator('[data-f="resources-empty"]').isVisible(), false);
    await page.screenshot({ path: path.join(OUT, 'ui-job.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: path.join(OUT, 'ui-job-phone.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  test('a dropped stream reconnects by itself and catches up on what it missed', async () => {
    await page.goto(`${server.url}/jobs/${jobId}`);
    await page.waitForSelector('#live-status[data-state="on"]');
    const resumedBefore = server.deps.streams.stats().resumed;
    assert.ok(server.deps.streams.disconnectAll() >= 1);
    await page.waitForSelector('#live-status[data-state="retry"]');
    assert.match(await textOf(page, '#live-status'), /retrying in \d+ s/);
    await drive.epoch(jobId, 5, 6); // sent while the page is not connected
    await page.waitForFunction(() => document.querySelector('#chart-map')?.getAttribute('data-points') === '5', undefined, { timeout: 10_000 });
    await page.waitForSelector('#live-status[data-state="on"]');
    assert.equal(server.deps.streams.stats().resumed, resumedBefore + 1, 'resumed from its last id, not from a snapshot');
  });

  test('Cancel asks, cancels the job and the page says so', async () => {
    await page.goto(`${server.url}/jobs/${jobId}`);
    await page.waitForSelector('#live-status[data-state="on"]');
    let asked = '';
    page.once('dialog', (d) => {
      asked = d.message();
      void d.accept();
    });
    await page.click('#cancel-form button');
    await page.waitForFunction(() => document.querySelector('[data-f="status"]')?.textContent?.includes('Cancelled'));
    assert.match(asked, /Cancel this training job/);
    assert.equal(await page.locator('#cancel-form').count(), 0, 'no Cancel button on a cancelled job');
    assert.equal(await page.locator('[data-f="final-notice"]').isVisible(), true);
    const job = await api(server.url)(`/api/v1/jobs/${jobId}`);
    assert.equal(job.json.status, 'cancelled');
    assert.equal(job.json.error.code, 'CANCELLED');
    await page.screenshot({ path: path.join(OUT, 'ui-job-cancelled.png'), fullPage: true });
  });

  test('the dashboard moves a finished job out of the active list by itself', async () => {
    await page.goto(`${server.url}/`);
    await page.waitForSelector('#live-status[data-state="on"]');
    assert.equal(await page.locator('.card[data-job]').count(), 0);
    const second = await drive.start();
    await page.waitForSelector(`.card[data-job="${second.id}"]`);
    assert.match(await textOf(page, '.queue, .panel:has(#queued-h) .empty'), /queue is empty/);
    await drive.record(second.id, { phase: 'training', progress: 50, currentEpoch: 1, totalEpochs: 3 }, 'progress');
    await drive.complete(second.id);
    await page.waitForFunction(() => document.querySelector('[data-count="completed"]')?.textContent === '1');
    assert.equal(await page.locator('.card[data-job]').count(), 0);
    assert.match(await textOf(page, '.panel:has(#recent-h) table'), /cabo-detector-v2\s*✔ Completed/);
  });

  test('a logged-in user downloads the model from the job page', async () => {
    const call = api(server.url);
    const submitted = await call('/api/v1/train', { method: 'POST', json: trainBody({ model_config: { name: 'isolador-v3', base_model: 'yolo11n.pt', epochs: 2 } }) });
    assert.equal(submitted.status, 202, submitted.text);
    const id = submitted.json.job_id as string;
    const running = await drive.start();
    assert.equal(running.id, id);
    const dir = server.deps.files.dir(id);
    fs.mkdirSync(path.join(dir, 'weights'), { recursive: true });
    const best = path.join(dir, 'weights', 'best.pt');
    fs.writeFileSync(best, Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 251)));
    await drive.epoch(id, 1, 2);
    // While validation runs, the time left reads as that, live (the estimate is 0 s then).
    await page.goto(`${server.url}/jobs/${id}`);
    await page.waitForSelector('#live-status[data-state="on"]');
    await drive.record(id, { phase: 'validating', progress: 95, etaSeconds: 0 }, 'phase');
    await page.waitForFunction(() => document.querySelector('[data-f="eta"]')?.textContent === 'validating');
    await drive.finish(id, 'completed', { progress: 100, phase: 'done', model: { best, size_bytes: 4096, format: 'pytorch', best_epoch: 1 } });
    await page.goto(`${server.url}/jobs/${id}`);
    await page.screenshot({ path: path.join(OUT, 'ui-job-files.png'), fullPage: true });
    const link = page.locator('[data-f="model-download"]');
    assert.match((await link.getAttribute('href')) ?? '', new RegExp(`^/downloads/${id}/best\\.pt\\?exp=\\d+&sig=`));
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    assert.equal(download.suggestedFilename(), 'best.pt');
    const saved = await download.path();
    assert.deepEqual(fs.readFileSync(saved), fs.readFileSync(best));
    // The JSON button opens with the page's session alone.
    await page.click('[data-f="json"]');
    await page.waitForURL(`${server.url}/api/v1/jobs/${id}`);
    assert.equal(JSON.parse((await page.locator('body').textContent()) ?? '').status, 'completed');
    await page.goBack();
  });

  test('an empty chart says so instead of drawing a scale', async () => {
    const call = api(server.url);
    const r = await call('/api/v1/train', { method: 'POST', json: trainBody({ model_config: { name: 'empty-chart', base_model: 'yolo11n.pt', epochs: 2 } }) });
    await page.goto(`${server.url}/jobs/${r.json.job_id}`);
    await page.waitForSelector('#chart-map svg');
    assert.equal(await page.locator('#chart-map svg .tick').count(), 0, 'no 0.00 / 0.00 / 0.00 axis');
    assert.equal(await textOf(page, '#chart-map svg .empty-label'), 'No data yet');
    assert.equal(await textOf(page, '#chart-loss svg .empty-label'), 'No data yet');
    assert.equal((await call(`/api/v1/jobs/${r.json.job_id}`, { method: 'DELETE' })).status, 200);
  });

  test('pages through the job history and filters it', async () => {
    const call = api(server.url);
    const before = (await call('/api/v1/jobs?limit=1')).json.total as number;
    for (let i = 0; i < 21; i++) {
      const r = await call('/api/v1/train', { method: 'POST', json: trainBody({ model_config: { name: `history-${i}`, base_model: 'yolo11n.pt', epochs: 1 } }) });
      assert.equal(r.status, 202, r.text);
    }
    const total = before + 21;
    await page.goto(`${server.url}/`);
    await page.click('[data-f="history"]');
    await page.waitForURL(`${server.url}/jobs`);
    assert.equal(await textOf(page, '[data-f="range"]'), `1–20 of ${total}`);
    assert.equal(await page.locator('#history-table tbody tr').count(), 20);
    assert.match(await textOf(page, '#history-table tbody tr'), /history-20/);
    await page.click('[data-f="next"]');
    await page.waitForURL(`${server.url}/jobs?page=2`);
    assert.equal(await textOf(page, '[data-f="range"]'), `21–${total} of ${total}`);
    assert.equal(await textOf(page, '[data-f="page"]'), 'Page 2 of 2');
    await page.click('[data-f="prev"]');
    await page.waitForURL(`${server.url}/jobs`);
    // Filters: the form keeps them, and the pages after them carry them along.
    await page.selectOption('select[name="status"]', 'completed');
    await page.click('#history-filter button[type=submit]');
    await page.waitForURL(/status=completed/);
    const names = await page.locator('#history-table tbody tr td:first-child').allTextContents();
    assert.deepEqual(names.sort(), ['cabo-detector-v2', 'isolador-v3']);
    assert.equal(await page.locator('select[name="status"]').inputValue(), 'completed');
    await page.fill('input[name="name"]', 'ISOLADOR');
    await page.click('#history-filter button[type=submit]');
    assert.deepEqual(await page.locator('#history-table tbody tr td:first-child').allTextContents(), ['isolador-v3']);
    // On a phone the table scrolls sideways, and the page says so.
    await page.goto(`${server.url}/jobs`);
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForSelector('.scroll-hint');
    assert.match(await textOf(page, '.scroll-hint'), /Scroll the table sideways/);
    const box = page.locator('.table-wrap').first();
    assert.ok(await box.evaluate((e) => e.scrollWidth > e.clientWidth), 'the table is wider than the phone');
    await page.screenshot({ path: path.join(OUT, 'ui-history-phone.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.waitForSelector('.scroll-hint', { state: 'detached' });
    await page.screenshot({ path: path.join(OUT, 'ui-history.png'), fullPage: true });
  });
});
