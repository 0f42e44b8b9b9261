import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { callbackHeaders, signingKey } from './signing.js';

const body = JSON.stringify({ type: 'training_progress', job_id: 'x', progress: { percentage: 45 } });
const headersFor = (secret: string, nowSeconds = Math.floor(Date.now() / 1000)) =>
  callbackHeaders({
    eventId: 'msg_test',
    jobId: 'x',
    type: 'training_progress',
    secret,
    body,
    sendSecretHeader: true,
    userAgent: 'trainhook/test',
    nowSeconds,
  });

test('a whsec_ secret verifies with standardwebhooks as is', () => {
  const secret = `whsec_${crypto.randomBytes(24).toString('base64')}`;
  const parsed = new Webhook(secret).verify(body, headersFor(secret));
  assert.deepEqual(parsed, JSON.parse(body));
});

test('a plain secret is its UTF-8 bytes: verifies with format raw over those bytes', () => {
  const secret = 'sk_live_abc123xyz789-ção';
  const headers = headersFor(secret);
  assert.equal(headers['x-callback-secret'], secret);
  assert.deepEqual(signingKey(secret), Buffer.from(secret, 'utf8'));
  const wh = new Webhook(new TextEncoder().encode(secret), { format: 'raw' });
  assert.deepEqual(wh.verify(body, headers), JSON.parse(body));
});

test('a changed body, id or secret, or a stale timestamp, fails verification', () => {
  const secret = 'plain-secret';
  const wh = new Webhook(new TextEncoder().encode(secret), { format: 'raw' });
  const h = headersFor(secret);
  assert.throws(() => wh.verify(body.replace('45', '46'), h));
  assert.throws(() => wh.verify(body, { ...h, 'webhook-id': 'msg_other' }));
  assert.throws(() => new Webhook(new TextEncoder().encode('other'), { format: 'raw' }).verify(body, h));
  assert.throws(() => wh.verify(body, headersFor(secret, Math.floor(Date.now() / 1000) - 3600)));
});

test('headers: content type, job id, type, webhook-*; no secret header when switched off', () => {
  const h = callbackHeaders({
    eventId: 'msg_1',
    jobId: 'job-1',
    type: 'training_failed',
    secret: 's',
    body,
    sendSecretHeader: false,
    userAgent: 'ua',
    nowSeconds: 1700000000,
  });
  assert.equal(h['content-type'], 'application/json');
  assert.equal(h['x-job-id'], 'job-1');
  assert.equal(h['x-callback-type'], 'training_failed');
  assert.equal(h['webhook-id'], 'msg_1');
  assert.equal(h['webhook-timestamp'], '1700000000');
  assert.match(h['webhook-signature']!, /^v1,[A-Za-z0-9+/]+=*$/);
  assert.equal(h['x-callback-secret'], undefined);
});
