import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { JobError } from '../core/errors.js';
import { createOutboundDispatcher } from '../net/outbound.js';
import { serveBytes, startFileServer, type FileServer } from '../../test/helpers/file-server.js';
import { downloadToFile, redactUrl, type DownloadOptions } from './download.js';

const body = randomBytes(300_000);
const sha = createHash('sha256').update(body).digest('hex');
let srv: FileServer;
let tmp: string;
const dispatcher = createOutboundDispatcher(['127.0.0.1']);

before(async () => {
  srv = await startFileServer();
  tmp = await mkdtemp(path.join(os.tmpdir(), 'trainhook-download-'));
  srv.route('/ok.zip', serveBytes(body));
  srv.route('/flaky.zip', (req, res, hit) => (hit === 1 ? res.writeHead(500).end('oops') : serveBytes(body)(req, res, hit)));
  srv.route('/busy.zip', (req, res, hit) =>
    hit === 1 ? res.writeHead(503, { 'retry-after': '0' }).end() : serveBytes(body)(req, res, hit),
  );
  srv.route('/always500.zip', (_req, res) => res.writeHead(500).end());
  srv.route('/forbidden.zip', (_req, res) => res.writeHead(403).end('expired'));
  srv.route('/big-announced.zip', (_req, res) => res.writeHead(200, { 'content-length': 10_000_000 }).end());
  srv.route('/big-chunked.zip', (_req, res) => {
    res.writeHead(200); // no Content-Length: the cap must count
    let sent = 0;
    const pump = () => {
      while (sent < 5_000_000) {
        sent += 64 * 1024;
        if (!res.write(Buffer.alloc(64 * 1024))) return res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
  srv.route('/redirect', (_req, res) => res.writeHead(302, { location: '/ok.zip' }).end());
  srv.route('/redirect-loop', (_req, res) => res.writeHead(302, { location: '/redirect-loop' }).end());
  srv.route('/redirect-broken', (_req, res) => res.writeHead(302, { location: 'http://[::1' }).end());
  srv.route('/redirect-ftp', (_req, res) => res.writeHead(302, { location: 'ftp://127.0.0.1/x.zip' }).end());
  srv.route('/redirect-metadata', (_req, res) => res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end());
  srv.route('/silent', () => {}); // never answers
  srv.route('/stall', (_req, res) => {
    res.writeHead(200, { 'content-length': body.length });
    res.write(body.subarray(0, 1000)); // then nothing
  });
});
after(async () => {
  await srv.close();
  await dispatcher.close();
  await rm(tmp, { recursive: true, force: true });
});

let n = 0;
const dest = () => path.join(tmp, `f${n++}.zip`);
const opts = (o: Partial<DownloadOptions> = {}): DownloadOptions => ({
  dispatcher,
  maxBytes: 1_000_000,
  timeoutMs: 5000,
  retries: 2,
  backoffMs: 10,
  ...o,
});

async function expectFail(p: Promise<unknown>, check: (e: JobError) => void) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof JobError, String(e));
    check(e);
    return true;
  });
}
const details = (e: JobError) => e.details as { url: string; status: number | null; attempt: number; reason: string | null };

describe('downloadToFile', () => {
  it('streams to disk, verifies sha256 and reports progress', async () => {
    const d = dest();
    const seen: number[] = [];
    const r = await downloadToFile(srv.url('/ok.zip?token=abc'), d, opts({ sha256: sha.toUpperCase(), onProgress: (b) => seen.push(b) }));
    assert.deepEqual(r, { bytes: body.length, sha256: sha, attempts: 1, notModified: false, validators: { etag: null, lastModified: null } });
    assert.deepEqual(await readFile(d), body);
    assert.equal(seen.at(-1), body.length);
    assert.equal(existsSync(`${d}.part`), false);
  });

  it('fails on a sha256 mismatch without retrying, and leaves no file', async () => {
    const d = dest();
    const before = srv.hits('/ok.zip');
    await expectFail(downloadToFile(srv.url('/ok.zip'), d, opts({ sha256: '0'.repeat(64) })), (e) => {
      assert.equal(e.code, 'DATASET_DOWNLOAD_FAILED');
      assert.match(e.message, /sha256 mismatch: expected 0{64}, got [0-9a-f]{64}/);
      assert.equal(details(e).reason, 'SHA256_MISMATCH');
    });
    assert.equal(srv.hits('/ok.zip') - before, 1);
    assert.equal(existsSync(d) || existsSync(`${d}.part`), false);
  });

  it('retries a 500 and succeeds on the next attempt', async () => {
    const r = await downloadToFile(srv.url('/flaky.zip'), dest(), opts());
    assert.equal(r.attempts, 2);
    assert.equal(srv.hits('/flaky.zip'), 2);
  });

  it('honours Retry-After on 503', async () => {
    const r = await downloadToFile(srv.url('/busy.zip'), dest(), opts({ backoffMs: 60_000 }));
    assert.equal(r.attempts, 2);
  });

  it('gives up after the retries on persistent 5xx', async () => {
    await expectFail(downloadToFile(srv.url('/always500.zip'), dest(), opts({ retries: 2 })), (e) => {
      assert.match(e.message, /after 3 attempts: HTTP 500/);
      assert.deepEqual({ status: details(e).status, attempt: details(e).attempt }, { status: 500, attempt: 3 });
    });
    assert.equal(srv.hits('/always500.zip'), 3);
  });

  it('does not retry a 404, and keeps the query string (token) out of the error', async () => {
    await expectFail(downloadToFile(srv.url('/missing.zip?X-Amz-Signature=supersecret'), dest(), opts()), (e) => {
      assert.equal(e.code, 'DATASET_DOWNLOAD_FAILED');
      assert.match(e.message, /HTTP 404/);
      assert.match(e.message, /check that the URL is right/);
      assert.equal(details(e).url, srv.url('/missing.zip'));
      assert.equal(details(e).attempt, 1);
      assert.doesNotMatch(JSON.stringify({ m: e.message, d: e.details }), /supersecret/);
    });
    assert.equal(srv.hits('/missing.zip'), 1);
  });

  it('explains a 403 as an expired or private link', async () => {
    await expectFail(downloadToFile(srv.url('/forbidden.zip'), dest(), opts()), (e) => assert.match(e.message, /expired/));
    assert.equal(srv.hits('/forbidden.zip'), 1);
  });

  it('refuses an announced Content-Length over maxBytes', async () => {
    await expectFail(downloadToFile(srv.url('/big-announced.zip'), dest(), opts()), (e) => {
      assert.equal(details(e).reason, 'TOO_LARGE');
      assert.match(e.message, /10000000 bytes, over the 1000000-byte limit/);
    });
    assert.equal(srv.hits('/big-announced.zip'), 1);
  });

  it('stops a body without Content-Length once it passes maxBytes', async () => {
    const d = dest();
    await expectFail(downloadToFile(srv.url('/big-chunked.zip'), d, opts()), (e) => {
      assert.equal(details(e).reason, 'TOO_LARGE');
      assert.match(e.message, /passed the 1000000-byte limit/);
    });
    assert.equal(existsSync(d) || existsSync(`${d}.part`), false);
  });

  it('follows a redirect, and checks every hop against the SSRF guard', async () => {
    assert.equal((await downloadToFile(srv.url('/redirect'), dest(), opts({ sha256: sha }))).bytes, body.length);
    await expectFail(downloadToFile(srv.url('/redirect-metadata'), dest(), opts()), (e) => {
      assert.equal(details(e).reason, 'SSRF_BLOCKED');
      assert.match(e.message, /169\.254\.169\.254/);
    });
    await expectFail(downloadToFile(srv.url('/redirect-loop'), dest(), opts({ maxRedirects: 3 })), (e) =>
      assert.match(e.message, /too many redirects/),
    );
    // A Location that is no URL, or not http(s), fails at once: another attempt gets the same.
    for (const [route, why] of [['/redirect-broken', /redirect to an invalid URL/], ['/redirect-ftp', /unsupported scheme ftp:/]] as const) {
      await expectFail(downloadToFile(srv.url(route), dest(), opts()), (e) => {
        assert.match(e.message, why);
        assert.equal(details(e).attempt, 1);
      });
      assert.equal(srv.hits(route), 1);
    }
  });

  it('refuses 127.0.0.1 when it is not allow-listed, without retrying', async () => {
    const strict = createOutboundDispatcher([]);
    const before = srv.hits('/ok.zip');
    try {
      await expectFail(downloadToFile(srv.url('/ok.zip'), dest(), opts({ dispatcher: strict })), (e) => {
        assert.equal(e.code, 'DATASET_DOWNLOAD_FAILED');
        assert.equal(details(e).reason, 'SSRF_BLOCKED');
        assert.equal(details(e).attempt, 1);
        assert.match(e.message, /loopback address; add it to OUTBOUND_ALLOW/);
      });
      await expectFail(downloadToFile('http://169.254.169.254/latest/meta-data/', dest(), opts({ dispatcher: strict })), (e) =>
        assert.equal(details(e).reason, 'SSRF_BLOCKED'),
      );
    } finally {
      await strict.close();
    }
    assert.equal(srv.hits('/ok.zip'), before);
  });

  it('times out a server that never answers, and one that stalls mid-body', async () => {
    await expectFail(downloadToFile(srv.url('/silent'), dest(), opts({ timeoutMs: 300, retries: 1 })), (e) => {
      assert.match(e.message, /after 2 attempts: the server stopped answering \(no response headers/);
    });
    await expectFail(downloadToFile(srv.url('/stall'), dest(), opts({ timeoutMs: 300, retries: 0 })), (e) => {
      assert.match(e.message, /stopped answering \(no data/);
    });
  });

  it('stops when cancelled', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    await expectFail(downloadToFile(srv.url('/silent'), dest(), opts({ signal: ac.signal })), (e) => assert.equal(e.code, 'CANCELLED'));
  });

  it('rejects non-http schemes and reports model downloads with their own code', async () => {
    await expectFail(downloadToFile('file:///etc/passwd', dest(), opts()), (e) => assert.match(e.message, /unsupported URL scheme/));
    await expectFail(downloadToFile(srv.url('/missing.pt'), dest(), opts({ errorCode: 'MODEL_DOWNLOAD_FAILED' })), (e) =>
      assert.equal(e.code, 'MODEL_DOWNLOAD_FAILED'),
    );
  });

  it('redacts URLs', () => {
    assert.equal(redactUrl('https://user:pw@host.example:8443/a/b.zip?sig=1#x'), 'https://host.example:8443/a/b.zip');
    assert.equal(redactUrl('nope'), '(invalid URL)');
  });
});
