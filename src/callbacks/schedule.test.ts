import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../core/config.js';
import { parseRetryAfter, retryDelayMs } from './schedule.js';

test('the default schedule spans about three days over ten attempts', () => {
  const schedule = loadConfig({}).callbacks.retryScheduleSeconds;
  assert.equal(schedule.length, 10);
  const total = schedule.reduce((a, b) => a + b, 0);
  assert.ok(total > 2.5 * 86400 && total < 3.5 * 86400, String(total));
});

test('delays follow the schedule with ±10 % jitter, then the event is dead', () => {
  const s = [0, 5, 300];
  assert.equal(retryDelayMs(s, 1, null, () => 0.5), 5000);
  assert.equal(retryDelayMs(s, 1, null, () => 0), 4500);
  assert.equal(retryDelayMs(s, 1, null, () => 1), 5500);
  assert.equal(retryDelayMs(s, 2, null, () => 0.5), 300_000);
  assert.equal(retryDelayMs(s, 3), null);
});

test('Retry-After wins over the schedule, bounded to a day', () => {
  assert.equal(retryDelayMs([0, 5, 300], 1, 2000), 2000);
  assert.equal(retryDelayMs([0, 5], 1, 10 * 86400_000), 86400_000);
  assert.equal(retryDelayMs([0, 5], 2, 2000), null, 'no attempt left, whatever the receiver says');
  assert.equal(parseRetryAfter('120'), 120_000);
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now), 30_000);
  assert.equal(parseRetryAfter('soon'), null);
  assert.equal(parseRetryAfter(undefined), null);
});
