/**
 * Callback secrets through the API: submit refuses every secret that cannot work (400 saying
 * what a valid one is), accepted ones sign real deliveries that the standardwebhooks verifier
 * accepts, and a job stored with an unusable secret (before submit refused them) fails its
 * deliveries at once with the reason recorded, instead of retrying for days. RUN_JOBS=false:
 * jobs are moved by the test (a queued job's cancellation is its callback). On PGlite and, with
 * TEST_DATABASE_URL, PostgreSQL.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { Webhook } from 'standardwebhooks';
import { jobs } from '../src/db/schema.js';
import { backends } from './helpers/database.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import { ROOT, api, startTestServer, trainBody, type TestServer } from './helpers/server.js';
import { waitFor } from './helpers/wait.js';

const WHSEC = `whsec_${crypto.randomBytes(32).toString('base64')}`;
const PLAIN = 'sk_live_0123456789abcdefghij';

for (const backend of backends()) {
  describe(`callback secrets on ${backend}`, () => {
    let server: TestServer;
    let receiver: Receiver;
    let call: ReturnType<typeof api>;

    before(async () => {
      receiver = await startReceiver();
      server = await startTestServer({
        backend,
        env: { RUN_JOBS: 'false', CALLBACK_RETRY_SCHEDULE: '0,0.2,0.2,0.2', CALLBACK_POLL_INTERVAL_MS: '200', LOG_LEVEL: 'info' },
      });
      call = api(server.url);
    });
    after(async () => {
      await server?.stop();
      await receiver?.close();
    });

    const submit = (secret: string, path = '/hook') =>
      call('/api/v1/train', { method: 'POST', json: trainBody({ callback_url: `${receiver.url}${path}`, callback_secret: secret }) });

    /** Cancels a queued job (its one callback) and waits until that event has settled. */
    const cancelAndSettle = async (id: string) => {
      assert.equal((await call(`/api/v1/jobs/${id}`, { method: 'DELETE' })).status, 200);
      return waitFor(`the callback of ${id} to settle`, async () => {
        const list = await call(`/api/v1/jobs/${id}/callbacks`);
        const event = list.json.events[0];
        return event && event.state !== 'pending' && !event.in_flight && event;
      });
    };

    test('400 for each secret that cannot work, naming the field and what a valid secret is', async () => {
      const refused: Array<[string, RegExp]> = [
        ['whsec_', /key would be empty/],
        ['whsec_…', /not valid standard base64/],
        [`whsec_${crypto.randomBytes(32).toString('base64url')}!`, /not valid standard base64/],
        [`whsec_${crypto.randomBytes(8).toString('base64')}`, /8 bytes; Standard Webhooks keys are 24 to 64/],
        ['sk_live_0123456789abcdef😀', /not printable ASCII/],
        ['sk_live_0123456789abcdef\r\nx-evil: 1', /not printable ASCII/],
        ['sk_live_abc123xyz789', /at least 24 characters/],
        ['', /empty/],
      ];
      for (const [secret, why] of refused) {
        const r = await submit(secret);
        assert.equal(r.status, 400, `${JSON.stringify(secret)}: ${r.text}`);
        assert.equal(r.json.error.code, 'VALIDATION_ERROR');
        const detail = r.json.error.details.find((d: { path: string[] }) => d.path.join('.') === 'callback_secret');
        assert.ok(detail, r.text);
        assert.match(detail.message, why);
        assert.match(detail.message, /whsec_.*base64.*24 to 64 random bytes.*24 to 500 printable ASCII/);
      }
      assert.equal((await call('/api/v1/jobs')).json.total, 0, 'nothing was queued');
    });

    test('accepted secrets sign real deliveries that standardwebhooks verifies', async () => {
      for (const [secret, verifier] of [
        [WHSEC, new Webhook(WHSEC)],
        [PLAIN, new Webhook(new TextEncoder().encode(PLAIN), { format: 'raw' })],
      ] as const) {
        const r = await submit(secret, '/ok');
        assert.equal(r.status, 202, r.text);
        const event = await cancelAndSettle(r.json.job_id);
        assert.equal(event.state, 'delivered', JSON.stringify(event));
        const got = receiver.received.find((x) => x.headers['x-job-id'] === r.json.job_id)!;
        assert.equal(got.headers['x-callback-secret'], secret);
        const parsed = verifier.verify(got.body, got.headers) as { type: string; error: { code: string } };
        assert.equal(parsed.type, 'training_failed');
        assert.equal(parsed.error.code, 'CANCELLED');
      }
    });

    test('a stored secret that can never work fails its delivery at once, with the reason and without the secret', async () => {
      const { db } = server.deps.database;
      const unusable: Array<[string, RegExp]> = [
        ['whsec_', /key would be empty/],
        ['whsec_not base64 at all!', /not valid standard base64/],
        ['sk_live_0123456789abcdef😀', /character 25 cannot be sent in the X-Callback-Secret header/],
        ['sk_live_0123456789abcdef\nx', /character 25 cannot be sent/],
      ];
      for (const [secret, why] of unusable) {
        const r = await submit(PLAIN, '/never');
        assert.equal(r.status, 202, r.text);
        // As a row written before submit refused such secrets.
        await db.update(jobs).set({ callbackSecret: secret }).where(eq(jobs.id, r.json.job_id));
        const event = await cancelAndSettle(r.json.job_id);
        assert.equal(event.state, 'dead', `${JSON.stringify(secret)}: ${JSON.stringify(event)}`);
        assert.equal(event.attempts, 1, 'no retries');
        assert.match(event.last_error, /^not sent: the job's callback_secret is unusable/);
        assert.match(event.last_error, why);
        assert.match(event.last_error, /a valid callback_secret is either/);
        if (secret.length > 6) assert.ok(!event.last_error.includes(secret.slice(6)), 'the secret is not in the error');
        assert.equal(event.attempt_log.length, 1);
        assert.equal(event.attempt_log[0].status_code, null);
      }
      assert.equal(receiver.count('/never'), 0, 'no request was made');
      assert.ok(!server.logs.some((l) => l.includes('0123456789abcdef😀')), 'no secret in the logs');
    });

    test('a weak stored secret that still works keeps delivering', async () => {
      const r = await submit(PLAIN, '/ok');
      const weak = 'short-but-working';
      await server.deps.database.db.update(jobs).set({ callbackSecret: weak }).where(eq(jobs.id, r.json.job_id));
      const event = await cancelAndSettle(r.json.job_id);
      assert.equal(event.state, 'delivered');
      const got = receiver.received.find((x) => x.headers['x-job-id'] === r.json.job_id)!;
      assert.ok(new Webhook(new TextEncoder().encode(weak), { format: 'raw' }).verify(got.body, got.headers));
    });

    test('the OpenAPI document states the rule and callback_options', async () => {
      const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as any;
      const props = doc.components.schemas.TrainRequest.properties;
      assert.match(props.callback_secret.pattern, /whsec_/);
      assert.match(props.callback_secret.description, /24 to 64 random bytes/);
      const options = props.callback_options.$ref ? doc.components.schemas.CallbackOptions : props.callback_options;
      assert.deepEqual(options.properties.cancelled_status.enum, ['failed', 'cancelled']);
      assert.equal(options.properties.cancelled_status.default, 'failed');
      assert.equal(new RegExp(props.callback_secret.pattern, 'u').test(WHSEC), true);
    });

    test("the README's example request is accepted as written; a body not sent as JSON gets 415", async () => {
      const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
      const example = /curl -s -X POST http:\/\/127\.0\.0\.1:8000\/api\/v1\/train[\s\S]*?-d '([^']+)'/.exec(readme);
      assert.ok(example, 'the README shows a POST /api/v1/train');
      const body = JSON.parse(example[1]!);
      assert.match(body.callback_secret, /^whsec_/);
      const r = await call('/api/v1/train', { method: 'POST', json: body });
      assert.equal(r.status, 202, r.text);
      const text = await call('/api/v1/train', { method: 'POST', body: JSON.stringify(trainBody()), headers: { 'content-type': 'text/plain' } });
      assert.equal(text.status, 415, text.text);
    });

    test('callback_options.cancelled_status: only "failed" or "cancelled"', async () => {
      const bad = await call('/api/v1/train', {
        method: 'POST',
        json: trainBody({ callback_url: `${receiver.url}/ok`, callback_secret: PLAIN, callback_options: { cancelled_status: 'aborted' } }),
      });
      assert.equal(bad.status, 400);
      assert.deepEqual(bad.json.error.details[0].path, ['callback_options', 'cancelled_status']);
      const unknown = await call('/api/v1/train', {
        method: 'POST',
        json: trainBody({ callback_url: `${receiver.url}/ok`, callback_secret: PLAIN, callback_options: { cancel_status: 'failed' } }),
      });
      assert.equal(unknown.status, 400, 'unknown keys are errors');
      for (const [options, status] of [
        [undefined, 'failed'],
        [{}, 'failed'],
        [{ cancelled_status: 'failed' }, 'failed'],
        [{ cancelled_status: 'cancelled' }, 'cancelled'],
      ] as const) {
        const r = await call('/api/v1/train', {
          method: 'POST',
          json: trainBody({ callback_url: `${receiver.url}/ok`, callback_secret: PLAIN, ...(options ? { callback_options: options } : {}) }),
        });
        assert.equal(r.status, 202, r.text);
        const event = await cancelAndSettle(r.json.job_id);
        assert.equal(event.state, 'delivered');
        assert.equal(event.payload.status, status, JSON.stringify(options));
        assert.equal(event.payload.error.code, 'CANCELLED');
        assert.equal((await call(`/api/v1/jobs/${r.json.job_id}`)).json.status, 'cancelled', 'the API says cancelled either way');
      }
    });
  });
}
