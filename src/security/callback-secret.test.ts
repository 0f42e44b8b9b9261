import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { callbackHeaders, signingKey } from '../callbacks/signing.js';
import {
  CALLBACK_SECRET_PATTERN,
  callbackSigningKey,
  newCallbackSecretProblem,
  unusableCallbackSecret,
} from './callback-secret.js';

const b64 = (n: number) => crypto.randomBytes(n).toString('base64');
const whsec = (n: number) => `whsec_${b64(n)}`;
const body = JSON.stringify({ type: 'training_completed', job_id: 'j' });

/** Signs as the dispatcher does, and verifies as a receiver would with the standardwebhooks library. */
function verifiesWithStandardWebhooks(secret: string): boolean {
  const headers = callbackHeaders({
    eventId: 'msg_x',
    jobId: 'j',
    type: 'training_completed',
    secret,
    body,
    sendSecretHeader: true,
    userAgent: 'ua',
  });
  const wh = secret.startsWith('whsec_') ? new Webhook(secret) : new Webhook(new TextEncoder().encode(secret), { format: 'raw' });
  return JSON.stringify(wh.verify(body, headers)) === body;
}

/** Whether fetch/undici can carry the value as an X-Callback-Secret header unchanged. */
function headerCarries(value: string): boolean {
  try {
    return new Headers([['x-callback-secret', value]]).get('x-callback-secret') === value;
  } catch {
    return false;
  }
}

const ACCEPTED = [
  whsec(24),
  whsec(25), // ends "=="
  whsec(26), // ends "="
  whsec(32),
  whsec(64),
  'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwQv0ncKBH3Vc=',
  'sk_live_abc123xyz789_0123456',
  'x'.repeat(24),
  '!#$%&()*+,-./:;<=>?@[]^_`{|}~'.padEnd(30, 'Z'),
  crypto.randomBytes(250).toString('hex'),
];

test('every accepted secret signs callbacks that the standardwebhooks verifier accepts, and travels in a header', () => {
  for (const secret of ACCEPTED) {
    assert.equal(newCallbackSecretProblem(secret), null, secret);
    assert.equal(unusableCallbackSecret(secret, true), null, secret);
    assert.ok(verifiesWithStandardWebhooks(secret), secret);
    assert.ok(headerCarries(secret), secret);
  }
});

/**
 * Every refused secret, and why: the standardwebhooks verifier refuses it too ('verifier'), HTTP
 * cannot carry it in X-Callback-Secret ('header'), it is a weak key ('weak': the verifier would
 * take it, the policy does not), or it is base64 that decoders read differently ('ambiguous').
 */
const REFUSED: Array<[string, string, 'verifier' | 'header' | 'weak' | 'ambiguous', RegExp]> = [
  ['empty', '', 'verifier', /empty/],
  ['whsec_ alone', 'whsec_', 'verifier', /key would be empty/],
  ['whsec_ with non-base64 characters', `whsec_${b64(32).slice(0, 20)}!$${b64(32).slice(0, 22)}`, 'verifier', /not valid standard base64/],
  ['whsec_ with a space', `whsec_ ${b64(32)}`, 'verifier', /not valid standard base64/],
  ['whsec_ with an emoji', `whsec_${b64(32)}😀`, 'verifier', /not valid standard base64/],
  ['whsec_ with the README ellipsis', 'whsec_…', 'verifier', /not valid standard base64/],
  ['whsec_ base64url', `whsec_${'-_'.repeat(16)}`, 'verifier', /not valid standard base64/],
  ['whsec_ without padding', `whsec_${b64(32).replace(/=+$/, '')}`, 'ambiguous', /not valid standard base64/],
  ['whsec_ with stray bits before the padding', `whsec_${b64(32).slice(0, -2)}B=`, 'ambiguous', /not valid standard base64/],
  ['whsec_ of 23 bytes', whsec(23), 'weak', /23 bytes; Standard Webhooks keys are 24 to 64/],
  ['whsec_ of 1 byte', whsec(1), 'weak', /1 bytes/],
  ['whsec_ of 65 bytes', whsec(65), 'weak', /65 bytes/],
  ['plain with an emoji', 'sk_live_0123456789abcdef😀', 'header', /character 25 is not printable ASCII/],
  ['plain with a newline', 'sk_live_0123456789abcdef\nx', 'header', /character 25 is not printable ASCII/],
  ['plain with a trailing space', 'sk_live_0123456789abcdef ', 'header', /character 25 is not printable ASCII/],
  ['plain with a NUL', 'sk_live_0123456789abcdef\0', 'header', /not printable ASCII/],
  ['plain of 23 characters', 'x'.repeat(23), 'weak', /at least 24 characters/],
  ['plain, the usual sk_live_ example', 'sk_live_abc123xyz789', 'weak', /at least 24 characters/],
  ['plain of 501 characters', 'x'.repeat(501), 'weak', /at most 500/],
];

test('every refused secret says what a valid one is, and is refused by the verifier, unusable in a header, or weak', () => {
  for (const [what, secret, why, message] of REFUSED) {
    const problem = newCallbackSecretProblem(secret);
    assert.ok(problem, `${what} is refused`);
    assert.match(problem, message, what);
    if (secret.length > 6) assert.ok(!problem.includes(secret.slice(6)), `${what}: the message never quotes the secret`);
    if (why === 'verifier') {
      assert.throws(() => new Webhook(secret), /incorrect characters|Secret can't be empty|incorrect padding/, what);
    } else if (why === 'header') {
      assert.equal(headerCarries(secret), false, what);
    } else if (why === 'weak') {
      assert.ok(verifiesWithStandardWebhooks(secret), `${what}: works, but is refused as a weak key`);
    }
  }
});

test('signing refuses an empty or partly decoded key, never signs with it', () => {
  for (const secret of ['', 'whsec_', 'whsec_!!!!', 'whsec_AAAA AAAA', `whsec_${b64(32).replace(/=+$/, '')}`]) {
    assert.throws(() => signingKey(secret), { name: 'UnusableSecretError', message: /callback_secret cannot sign/ }, JSON.stringify(secret));
    assert.throws(() => callbackHeaders({ eventId: 'e', jobId: 'j', type: 't', secret, body, sendSecretHeader: false, userAgent: 'u' }), { name: 'UnusableSecretError' });
  }
  const bytes = crypto.randomBytes(32);
  assert.deepEqual(signingKey(`whsec_${bytes.toString('base64')}`), bytes);
});

test('a stored secret that can never deliver is told apart from a weak one that still works', () => {
  // Stored before submit refused them: these deliver (their receivers were built with them).
  assert.equal(unusableCallbackSecret('short-secret', true), null);
  assert.equal(unusableCallbackSecret(whsec(4), true), null);
  assert.equal(unusableCallbackSecret('sk_live_ção_0123456789', true), null, 'Latin-1 goes in a header');
  // These never can.
  assert.match(unusableCallbackSecret('whsec_', true)!, /empty/);
  assert.match(unusableCallbackSecret('whsec_not base64', false)!, /base64/);
  assert.match(unusableCallbackSecret('sk_live_😀_0123456789abcdef', true)!, /character 9 cannot be sent in the X-Callback-Secret header/);
  assert.match(unusableCallbackSecret('line\nbreak-0123456789abcdef', true)!, /character 5/);
  assert.match(unusableCallbackSecret(' padded-0123456789abcdef', true)!, /whitespace/);
  // Without the header, only the key matters.
  assert.equal(unusableCallbackSecret('sk_live_😀_0123456789abcdef', false), null);
  assert.equal(callbackSigningKey('').ok, false);
});

test('the OpenAPI pattern accepts exactly what submit accepts; every accepted one verifies and travels', () => {
  const pattern = new RegExp(CALLBACK_SECRET_PATTERN, 'u');
  // A seeded generator: a disagreement is reproducible.
  let seed = 0x2545f491;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ !~é😀\n';
  const candidates: string[] = [...ACCEPTED, ...REFUSED.map((r) => r[1])];
  for (let i = 0; i < 4000; i++) {
    const kind = rand(4);
    if (kind === 0) {
      const bytes = Buffer.from(Array.from({ length: rand(70) }, () => rand(256)));
      let s = bytes.toString('base64');
      const edit = rand(5);
      if (edit === 1) s = s.replace(/=+$/, '');
      if (edit === 2 && s.length > 0) s = s.slice(0, -1) + alphabet[rand(alphabet.length)];
      if (edit === 3 && s.length > 2) s = s.slice(0, rand(s.length)) + alphabet[rand(alphabet.length)] + s.slice(1 + rand(s.length));
      candidates.push(`whsec_${s}`);
    } else {
      const long = kind === 3;
      const length = long ? 495 + rand(10) : rand(40);
      const chars = Array.from({ length }, () => (rand(10) === 0 ? alphabet[rand(alphabet.length)]! : String.fromCharCode(0x21 + rand(94))));
      candidates.push(chars.join(''));
    }
  }
  let accepted = 0;
  for (const s of candidates) {
    const ok = newCallbackSecretProblem(s) === null;
    accepted += ok ? 1 : 0;
    assert.equal(pattern.test(s), ok, `pattern and rule disagree on ${JSON.stringify(s)}`);
    if (ok) assert.ok(verifiesWithStandardWebhooks(s) && headerCarries(s), JSON.stringify(s));
  }
  assert.ok(accepted > 500 && accepted < candidates.length - 500, `both outcomes tried (${accepted} of ${candidates.length} accepted)`);
});
