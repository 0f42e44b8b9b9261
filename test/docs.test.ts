/**
 * /docs works offline: the page names only this server's assets, each is served from the pinned
 * swagger-ui-dist package with its content type, and (where Debian's chromium is installed) a
 * real browser that may reach nothing but this server renders every operation of /openapi.json.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { startTestServer, type TestServer } from './helpers/server.js';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const haveChromium = fs.existsSync(CHROMIUM);
if (!haveChromium && process.env['CI']) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
const DIST = path.dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

describe('/docs from the pinned swagger-ui-dist package', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ env: { RUN_JOBS: 'false' } });
  });
  after(() => server.stop());

  test('the page references only local assets, served with their content types', async () => {
    const res = await fetch(`${server.url}/docs`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    const html = await res.text();
    const refs = [...html.matchAll(/\b(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    assert.ok(refs.length >= 3, html);
    for (const ref of refs) assert.match(ref, /^\/(?!\/)/, `${ref} is a path on this server`);
    assert.doesNotMatch(html, /https?:\/\//, 'no absolute URL anywhere in the page');

    const want: Record<string, RegExp> = { '.css': /^text\/css/, '.js': /^text\/javascript/, '.png': /^image\/png/ };
    for (const ref of refs) {
      const asset = await fetch(`${server.url}${ref}`);
      assert.equal(asset.status, 200, ref);
      const type = want[path.extname(ref)];
      assert.ok(type, `an expected kind of asset: ${ref}`);
      assert.match(asset.headers.get('content-type') ?? '', type, ref);
      const body = Buffer.from(await asset.arrayBuffer());
      const file = path.join(DIST, path.basename(ref));
      if (fs.existsSync(file)) assert.ok(body.equals(fs.readFileSync(file)), `${ref} is the package's file`);
      else assert.match(body.toString(), /SwaggerUIBundle\(\{ url: '\/openapi\.json'/, ref);
    }
    const missing = await fetch(`${server.url}/docs/assets/package.json`);
    assert.equal(missing.status, 404, 'only the page assets are served');
    assert.equal((await missing.json()).error.code, 'NOT_FOUND');
  });

  test('a browser with no network beyond this server renders every operation', { skip: !haveChromium && 'no chromium' }, async () => {
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
    });
    try {
      const page = await browser.newPage();
      const elsewhere: string[] = [];
      const origin = new URL(server.url).origin;
      await page.route('**/*', (route) => {
        const url = route.request().url();
        if (url.startsWith(origin) || url.startsWith('data:')) return route.continue();
        elsewhere.push(url);
        return route.abort();
      });
      const problems: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') problems.push(m.text());
      });
      page.on('pageerror', (e) => problems.push(e.message));
      await page.goto(`${server.url}/docs`);
      await page.waitForSelector('.opblock', { timeout: 30_000 });
      const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
      const operations = Object.values(doc.paths).reduce((n, p) => n + Object.keys(p).length, 0);
      assert.equal(await page.locator('.opblock').count(), operations);
      assert.deepEqual(elsewhere, [], 'nothing asked of any other host');
      assert.deepEqual(problems, [], 'no script or CSP errors');
    } finally {
      await browser.close();
    }
  });
});
