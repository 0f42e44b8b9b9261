import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { JobError } from '../core/errors.js';
import type { AttemptEntry, AttemptOutcome } from '../db/schema.js';
import { failuresInRun, isTransient, retryDecision } from './retry-policy.js';

const entry = (attempt: number, outcome: AttemptOutcome | null): AttemptEntry => ({
  attempt,
  started_at: '2026-01-01T00:00:00Z',
  ended_at: outcome ? '2026-01-01T00:01:00Z' : null,
  outcome,
  node_id: 'n',
  device: 'cpu',
  start_epoch: 0,
  end_epoch: null,
  error: null,
});

describe('retry policy', () => {
  it('retries worker crashes, stalls and downloads that may succeed later; nothing else', () => {
    assert.equal(isTransient(new JobError('WORKER_CRASHED', 'killed')), true);
    assert.equal(isTransient(new JobError('WORKER_STALLED', 'silent')), true);
    assert.equal(isTransient(new JobError('DATASET_DOWNLOAD_FAILED', '503', { status: 503, transient: true })), true);
    assert.equal(isTransient(new JobError('DATASET_DOWNLOAD_FAILED', '404', { status: 404, transient: false })), false);
    assert.equal(
      isTransient(new JobError('MODEL_DOWNLOAD_FAILED', 'reset', { cause: { status: null, reason: 'ECONNRESET', transient: true } })),
      true,
    );
    assert.equal(isTransient(new JobError('MODEL_DOWNLOAD_FAILED', 'not on this server', { expected_path: '/x' })), false);
    for (const code of ['DATASET_INVALID', 'TRAINING_DIVERGED', 'CANCELLED', 'JOB_TIMEOUT', 'UNKNOWN_ERROR'] as const) {
      assert.equal(isTransient(new JobError(code, 'x', { transient: true })), false, code);
    }
  });

  it('counts the failures of the current run: interruptions do not count, a final failure or cancel starts a new run', () => {
    assert.equal(failuresInRun([]), 0);
    assert.equal(failuresInRun([entry(1, 'retrying'), entry(2, 'interrupted'), entry(3, 'retrying'), entry(4, null)]), 2);
    assert.equal(failuresInRun([entry(1, 'retrying'), entry(2, 'retrying'), entry(3, 'failed'), entry(4, 'retrying'), entry(5, null)]), 1);
    assert.equal(failuresInRun([entry(1, 'retrying'), entry(2, 'cancelled'), entry(3, null)]), 0);
  });

  it('backs off exponentially and stops at the attempt limit', () => {
    const crash = new JobError('WORKER_CRASHED', 'killed');
    const opts = { maxAttempts: 3, backoffMs: 30_000 };
    assert.deepEqual(retryDecision(crash, [entry(1, null)], opts), { retry: true, failures: 1, delayMs: 30_000 });
    assert.deepEqual(retryDecision(crash, [entry(1, 'retrying'), entry(2, null)], opts), { retry: true, failures: 2, delayMs: 60_000 });
    assert.deepEqual(retryDecision(crash, [entry(1, 'retrying'), entry(2, 'retrying'), entry(3, null)], opts), { retry: false });
    assert.deepEqual(retryDecision(new JobError('DATASET_INVALID', 'bad'), [entry(1, null)], opts), { retry: false });
    assert.deepEqual(retryDecision(crash, [entry(1, null)], { maxAttempts: 1, backoffMs: 1 }), { retry: false });
  });
});
