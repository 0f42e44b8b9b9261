import assert from 'node:assert/strict';
import { test } from 'node:test';
import { safeEqual, secretMatcher } from './compare.js';

test('secretMatcher accepts the secret and nothing else', () => {
  const secret = 'tok-0123456789abcdef-é';
  const is = secretMatcher(secret);
  assert.equal(is(secret), true);
  assert.equal(is(secret), true, 'reusable');
  for (const other of ['', 'tok', secret.slice(0, -1), `${secret}x`, `${secret}\0`, secret.replace('é', 'e'), secret.toUpperCase()]) {
    assert.equal(is(other), false, JSON.stringify(other));
    assert.equal(safeEqual(other, secret), false);
  }
  // A secret that ends in what a short candidate's padding would hold.
  assert.equal(secretMatcher('ab\0')('ab'), false);
});
