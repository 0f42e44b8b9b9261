/**
 * No peer can end the process. Every host here answers the HTTP/1.0 way (Connection: close,
 * the whole body, then FIN) while this side reads slower than the bytes arrive: the shape that
 * made undici 7's HTTP/1 client throw an uncatchable AssertionError from its socket 'end'
 * handler, taking the server and every running job with it.
 *
 * First the shared outbound client on its own, with a reader that holds back (deterministic:
 * the parser state the bug needs is reached on every run), then a server child process, run
 * as `npm start` runs it, against a dataset host, a base-model host (https, trusted through
 * NODE_EXTRA_CA_CERTS as an operator would) and a callback receiver: /health answers
 * throughout, every job ends with its code, and callbacks are recorded and retried.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { createOutboundDispatcher } from '../src/net/outbound.js';
import { startClosingHost, type Answer, type ClosingHost } from './helpers/closing-host.js';
import { backends } from './helpers/database.js';
import { ROOT, TOKEN, api, backendEnv, startChildServer, tempDir, trainBody, type ChildServer } from './helpers/server.js';
import { writeSyntheticDataset, zipDirectory } from './helpers/synthetic-dataset.js';

const TLS_DIR = path.join(ROOT, 'test/fixtures/tls');

/** Reads a body one chunk at a time, waiting between chunks: a consumer slower than the peer. */
async function readSlowly(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) {
    chunks.push(chunk as Buffer);
    await sleep(1);
  }
  return Buffer.concat(chunks);
}

describe('the outbound client and a peer that closes after its body', () => {
  const big = randomBytes(1_000_000);
  // Exactly the body stream's high-water mark: the last byte fills it, so a client that pauses
  // its parser under back-pressure is paused right at the end of the message.
  const edge = randomBytes(64 * 1024);
  let host: ClosingHost;
  const dispatcher = createOutboundDispatcher(['127.0.0.1']);
  before(async () => {
    host = await startClosingHost((p): Answer => {
      if (p === '/big') return { body: big };
      if (p === '/big-eof') return { body: big, contentLength: 'none' };
      if (p === '/short') return { body: big.subarray(0, 600_000), contentLength: big.length };
      if (p === '/edge') return { body: edge };
      return { body: edge, contentLength: 'none' };
    });
  });
  after(async () => {
    await dispatcher.close();
    await host.close();
  });

  test('a large body with Content-Length arrives whole at a slow reader', async () => {
    const res = await request(host.url('/big'), { dispatcher });
    assert.equal(res.statusCode, 200);
    assert.ok((await readSlowly(res.body)).equals(big));
  });

  test('a large EOF-delimited body arrives whole at a slow reader', async () => {
    const res = await request(host.url('/big-eof'), { dispatcher });
    assert.ok((await readSlowly(res.body)).equals(big));
  });

  test('a body cut short before its Content-Length is an error of that request, nothing more', async () => {
    const res = await request(host.url('/short'), { dispatcher });
    await assert.rejects(readSlowly(res.body), (e: Error & { code?: string }) => {
      assert.equal(typeof e.code, 'string', String(e));
      return true;
    });
    // The same client goes on serving.
    const again = await request(host.url('/big'), { dispatcher });
    assert.ok((await readSlowly(again.body)).equals(big));
  });

  for (const p of ['/edge', '/edge-eof']) {
    test(`a body not read until the peer has closed (${p})`, async () => {
      const res = await request(host.url(p), { dispatcher });
      // Give the FIN, sent with the body, time to be read before the body is.
      await sleep(300);
      assert.ok((await readSlowly(res.body)).equals(edge));
    });
  }
});

const CLASSES = ['red-box', 'green-disc'];

for (const backend of backends()) {
  describe(`peers that close after their body, against a server process on ${backend}`, () => {
    const cleanup: Array<() => Promise<void>> = [];
    let child: ChildServer;
    let call: ReturnType<typeof api>;
    let host: ClosingHost;
    let tlsHost: ClosingHost;
    let receiver: ClosingHost;
    let datasetZip: Buffer;
    const garbage = randomBytes(4_000_000);

    before(async () => {
      const files = tempDir('trainhook-peers-');
      cleanup.push(async () => fs.rmSync(files, { recursive: true, force: true }));
      await writeSyntheticDataset(path.join(files, 'src'), { task: 'detect', train: 8, val: 4, imgsz: 64, classes: CLASSES, seed: 3 });
      await zipDirectory(path.join(files, 'src'), path.join(files, 'dataset.zip'));
      datasetZip = fs.readFileSync(path.join(files, 'dataset.zip'));

      // Not a checkpoint, and always the same refusal from the loader (random bytes may unpickle into anything).
      const notACheckpoint = Buffer.alloc(garbage.length, 'x');
      const datasetAnswer = (p: string): Answer => {
        if (p.startsWith('/valid')) return { body: datasetZip };
        if (p === '/not-a-checkpoint.pt') return { body: notACheckpoint };
        if (p.startsWith('/garbage-eof')) return { body: garbage, contentLength: 'none' };
        if (p.startsWith('/garbage')) return { body: garbage };
        return { body: garbage.subarray(0, 3_000_000), contentLength: garbage.length }; // /short…
      };
      host = await startClosingHost(datasetAnswer);
      tlsHost = await startClosingHost(datasetAnswer, {
        tls: { key: fs.readFileSync(path.join(TLS_DIR, 'key.pem')), cert: fs.readFileSync(path.join(TLS_DIR, 'cert.pem')) },
      });
      // First attempt of each job's first event: 500 with a large EOF-delimited binary body (a
      // NUL among its first bytes, which the error text keeps out of the database); then 200
      // with a large body and its Content-Length. Both close after the body.
      const failure = Buffer.concat([Buffer.from('upstream \0 failure '), garbage.subarray(0, 1_000_000)]);
      receiver = await startClosingHost((_p, nth) =>
        nth === 1 ? { status: 500, body: failure, contentLength: 'none' } : { body: garbage.subarray(0, 1_000_000) },
      );
      cleanup.push(() => host.close(), () => tlsHost.close(), () => receiver.close());

      const db = await backendEnv(backend);
      cleanup.push(db.drop);
      child = await startChildServer({
        WORKDIR: tempDir('trainhook-peers-work-'),
        API_TOKEN: TOKEN,
        OUTBOUND_ALLOW: '127.0.0.1',
        DEVICES: 'cpu',
        DOWNLOAD_RETRIES: '1',
        // One attempt per job: what is counted here is the HTTP client's retries, not the job's.
        JOB_MAX_ATTEMPTS: '1',
        CALLBACK_RETRY_SCHEDULE: '0,0.2,0.2,0.2',
        // How an operator trusts a private CA; nothing test-only in the server.
        NODE_EXTRA_CA_CERTS: path.join(TLS_DIR, 'cert.pem'),
        ...db.env,
      });
      cleanup.push(() => child.kill());
      call = api(child.url);
    });
    after(async () => {
      for (const c of cleanup.reverse()) await c().catch(() => {});
    });

    /** Waits for every job to finish, checking between polls that the server answers /health. */
    async function finished(ids: string[], timeoutMs: number): Promise<Map<string, any>> {
      const deadline = Date.now() + timeoutMs;
      const done = new Map<string, any>();
      while (done.size < ids.length) {
        assert.equal(child.child.exitCode, null, `the server process exited:\n${child.output.slice(-30).join('\n')}`);
        const health = await call('/health').catch((e: Error) => assert.fail(`/health: ${e.message}\n${child.output.slice(-30).join('\n')}`));
        assert.equal(health.status, 200, health.text);
        for (const id of ids.filter((i) => !done.has(i))) {
          const j = (await call(`/api/v1/jobs/${id}`)).json;
          if (['completed', 'failed', 'cancelled'].includes(j.status)) done.set(id, j);
        }
        if (Date.now() > deadline) assert.fail(`jobs still running after ${timeoutMs} ms`);
        await sleep(200);
      }
      return done;
    }

    async function submit(body: Record<string, unknown>): Promise<string> {
      const r = await call('/api/v1/train', { method: 'POST', json: body });
      assert.equal(r.status, 202, r.text);
      return r.json.job_id;
    }

    const detect = (url: string, extra: Record<string, unknown> = {}, model: Record<string, unknown> = {}) =>
      trainBody({
        model_config: { name: 'peers', task: 'detect', base_model: 'yolo11n.yaml', epochs: 1, batch_size: 4, image_size: 64, ...model },
        dataset: { url },
        ...extra,
      });

    test('a dataset host: each job ends with its code and /health answers throughout', async () => {
      const expected = new Map<string, string>();
      expected.set(await submit(detect(host.url('/valid.zip'))), 'completed');
      for (let i = 0; i < 10; i++) expected.set(await submit(detect(host.url(`/garbage-${i}.zip`))), 'DATASET_CORRUPTED');
      for (let i = 0; i < 3; i++) expected.set(await submit(detect(host.url(`/garbage-eof-${i}.zip`))), 'DATASET_CORRUPTED');
      for (let i = 0; i < 3; i++) expected.set(await submit(detect(host.url(`/short-${i}.zip`))), 'DATASET_DOWNLOAD_FAILED');

      const jobs = await finished([...expected.keys()], 300_000);
      for (const [id, want] of expected) {
        const j = jobs.get(id);
        if (want === 'completed') assert.equal(j.status, 'completed', JSON.stringify(j.error));
        else assert.equal(j.error?.code, want, `${id}: ${JSON.stringify(j.error)}`);
      }
      // The short bodies were retried (DOWNLOAD_RETRIES=1): two attempts each.
      for (let i = 0; i < 3; i++) assert.equal(host.hits(`/short-${i}.zip`), 2);
    });

    test('a base-model host (https): the download succeeds or fails with MODEL_DOWNLOAD_FAILED', async () => {
      const short = await submit(detect(host.url('/valid-a.zip'), {}, { base_model: tlsHost.url('/short.pt') }));
      const whole = await submit(detect(host.url('/valid-b.zip'), {}, { base_model: tlsHost.url('/not-a-checkpoint.pt') }));
      const jobs = await finished([short, whole], 300_000);
      const s = jobs.get(short);
      assert.equal(s.error?.code, 'MODEL_DOWNLOAD_FAILED', JSON.stringify(s.error));
      assert.match(s.error.message, /closed after|ECONNRESET|other side closed/);
      assert.equal(tlsHost.hits('/short.pt'), 2, 'retried once');
      // The whole file arrived (one request), and the worker then refused it as a checkpoint.
      const w = jobs.get(whole);
      assert.equal(w.status, 'failed');
      assert.match(w.error?.message ?? '', /invalid load key, 'x'/, JSON.stringify(w.error));
      assert.doesNotMatch(w.error.message, /download/);
      assert.equal(tlsHost.hits('/not-a-checkpoint.pt'), 1);
    });

    test('a callback receiver: a failed attempt is recorded and retried, then delivered', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        ids.push(
          await submit(detect(host.url(`/garbage-cb-${i}.zip`), { callback_url: `${receiver.url(`/hook/${i}`)}`, callback_secret: 'peers-callback-secret-0123456789' })),
        );
      }
      await finished(ids, 120_000);
      for (const id of ids) {
        let events: any[] = [];
        const deadline = Date.now() + 30_000;
        for (;;) {
          events = (await call(`/api/v1/jobs/${id}/callbacks`)).json.events;
          const final = events.find((e) => e.type === 'training_failed');
          if (final?.state === 'delivered') break;
          if (Date.now() > deadline) assert.fail(`training_failed not delivered: ${JSON.stringify(events)}`);
          assert.equal((await call('/health')).status, 200);
          await sleep(200);
        }
        const attempts = events.flatMap((e) => e.attempt_log);
        const failed = attempts.find((a) => a.status_code === 500);
        assert.ok(failed, JSON.stringify(attempts));
        assert.match(failed.error, /^HTTP 500: upstream failure /);
        assert.ok(attempts.some((a) => a.status_code === 200), JSON.stringify(attempts));
        for (const e of events) assert.notEqual(e.state, 'dead', JSON.stringify(e));
      }
      assert.equal(child.child.exitCode, null);
    });
  });
}
