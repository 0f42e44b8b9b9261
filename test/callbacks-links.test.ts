/** Signed download links and callback bodies, without a server. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { completedPayload, failedPayload, progressPayload } from '../src/callbacks/payloads.js';
import type { JobRow } from '../src/db/schema.js';
import { Engines } from '../src/engines/index.js';
import { JobFiles } from '../src/jobs/files.js';
import { downloadPath, signDownloadLink, verifyDownloadLink } from '../src/security/links.js';

const KEY = 'k'.repeat(43);
const JOB = '550e8400-e29b-41d4-a716-446655440000';

function check(url: string, nowSeconds?: number, key = KEY) {
  const u = new URL(url);
  return verifyDownloadLink({
    key,
    path: u.pathname,
    exp: u.searchParams.get('exp') ?? undefined,
    sig: u.searchParams.get('sig') ?? undefined,
    ...(nowSeconds === undefined ? {} : { nowSeconds }),
  });
}

test('a link verifies until it expires, then reads as expired', () => {
  const now = 1_800_000_000;
  const link = signDownloadLink({ key: KEY, baseUrl: 'https://th.example/', jobId: JOB, name: 'best.pt', ttlSeconds: 3600, nowSeconds: now });
  assert.equal(link.url.split('?')[0], `https://th.example/downloads/${JOB}/best.pt`);
  assert.equal(link.expires_at, '2027-01-15T09:00:00Z');
  assert.deepEqual(check(link.url, now), { ok: true });
  assert.deepEqual(check(link.url, now + 3600), { ok: true });
  assert.deepEqual(check(link.url, now + 3601), { ok: false, reason: 'expired' });
});

test('any edit breaks it: path, job, expiry, signature, key', () => {
  const now = 1_800_000_000;
  const link = signDownloadLink({ key: KEY, baseUrl: 'http://h', jobId: JOB, name: 'results.csv', ttlSeconds: 60, nowSeconds: now });
  const u = new URL(link.url);
  const sig = u.searchParams.get('sig')!;
  const edits = [
    link.url.replace('results.csv', 'results.png'),
    link.url.replace(JOB, JOB.replace('0000', '0001')),
    link.url.replace(/exp=\d+/, `exp=${now + 999999}`),
    link.url.replace(sig, sig.slice(0, -1) + (sig.endsWith('A') ? 'B' : 'A')),
  ];
  for (const e of edits) assert.deepEqual(check(e, now), { ok: false, reason: 'bad_signature' }, e);
  assert.deepEqual(check(link.url, now, 'x'.repeat(43)), { ok: false, reason: 'bad_signature' });
  assert.deepEqual(check(link.url.replace(/&sig=.*/, ''), now), { ok: false, reason: 'malformed' });
  assert.deepEqual(check(link.url.replace(/exp=\d+/, 'exp=soon'), now), { ok: false, reason: 'malformed' });
  assert.equal(downloadPath(JOB, 'a b.png'), `/downloads/${JOB}/a%20b.png`);
});

const base: JobRow = {
  id: JOB,
  seq: 1,
  name: 'poste-detector-v1',
  state: 'running',
  phase: 'training',
  progress: 45.123,
  currentEpoch: 45,
  totalEpochs: 100,
  engine: 'ultralytics',
  task: 'detect',
  request: {},
  trainArgs: null,
  baseModel: null,
  callbackUrl: 'https://app.example/hook',
  callbackSecret: 's',
  requestedDevice: 'auto',
  device: 'cuda:0',
  nodeId: 'n',
  leaseExpiresAt: null,
  attempts: 1,
  attemptLog: [],
  retryAt: null,
  etaSeconds: 1980,
  metricsCurrent: { box_loss: 0.02347, cls_loss: 0.01562, dfl_loss: 0.00891, precision: 0.8765, recall: 0.8342, mAP50: 0.8914, 'mAP50-95': 0.7234, lr: 0.01, epoch: 45 },
  metricsBest: { mAP50: 0.8954, 'mAP50-95': 0.7289, epoch: 42 },
  error: null,
  datasetInfo: null,
  model: null,
  artifacts: null,
  resources: { gpu_utilization: 87.5, memory_used_gb: 12.3, temperature_c: 72 },
  createdAt: new Date('2025-01-20T10:00:00Z'),
  updatedAt: new Date('2025-01-20T10:35:42Z'),
  startedAt: new Date('2025-01-20T10:00:10Z'),
  finishedAt: null,
  datasetSha256: null,
  diskBytes: null,
  filesRemovedAt: null,
};
const engines = new Engines();
const ctx = { files: new JobFiles('/nonexistent', engines), engines, now: new Date('2025-01-20T10:35:42.123Z'), link: () => ({ url: 'u', expires_at: 'e' }) };

test('training_progress is seed 003 §4.2.1', () => {
  assert.deepEqual(progressPayload(base, ctx), {
    type: 'training_progress',
    job_id: JOB,
    timestamp: '2025-01-20T10:35:42Z',
    progress: { percentage: 45.12, current_epoch: 45, total_epochs: 100, phase: 'training', eta_seconds: 1980 },
    metrics: {
      current: { box_loss: 0.02347, cls_loss: 0.01562, dfl_loss: 0.00891, precision: 0.8765, recall: 0.8342, mAP50: 0.8914, 'mAP50-95': 0.7234 },
      best: { mAP50: 0.8954, 'mAP50-95': 0.7289, epoch: 42 },
    },
    resources: { gpu_utilization: 87.5, memory_used_gb: 12.3, temperature_c: 72 },
  });
  const early = progressPayload({ ...base, metricsCurrent: null, metricsBest: null, resources: null }, ctx);
  assert.equal(early.metrics.current.mAP50, null);
  assert.deepEqual(early.metrics.best, { mAP50: null, 'mAP50-95': null, epoch: null });
  assert.equal(early.resources, null);
});

test('training_completed without files: nulls, never a broken link', () => {
  const done = { ...base, state: 'completed' as const, phase: 'done' as const, finishedAt: new Date('2025-01-20T11:00:10Z') };
  const p = completedPayload(done, ctx);
  assert.equal(p.duration_seconds, 3600);
  assert.deepEqual(p.model, { name: 'poste-detector-v1', download_url: null, size_mb: null, format: 'pytorch', expires_at: null });
  assert.deepEqual(p.artifacts, { confusion_matrix: null, pr_curve: null, f1_curve: null, results_csv: null, training_logs: null });
  assert.equal(p.dataset_info, null);
  assert.equal(p.final_metrics.best_epoch, 42);
});

test('training_failed carries the error and partial metrics; a cancel says failed unless the job asked for cancelled', () => {
  const failed = {
    ...base,
    state: 'failed' as const,
    error: { code: 'DATASET_INVALID', message: 'Missing data.yaml', details: { problems: [] }, phase: 'preparing', epoch: null },
    metricsCurrent: null,
  };
  assert.deepEqual(failedPayload(failed, ctx), {
    type: 'training_failed',
    job_id: JOB,
    timestamp: '2025-01-20T10:35:42Z',
    status: 'failed',
    error: { code: 'DATASET_INVALID', message: 'Missing data.yaml', details: { problems: [] }, phase: 'preparing', epoch: null },
    partial_metrics: null,
  });
  const cancelledJob = { ...base, state: 'cancelled' as const, error: { code: 'CANCELLED', message: 'Job cancelled by request', details: null, phase: 'training', epoch: 45 } };
  const cancelled = failedPayload(cancelledJob, ctx);
  assert.equal(cancelled.status, 'failed', 'the default: a cancel is a failure with code CANCELLED');
  assert.equal(cancelled.error.code, 'CANCELLED');
  assert.equal(cancelled.partial_metrics?.mAP50, 0.8914);
  assert.equal(cancelled.partial_metrics?.epoch, 45);
  const asked = (cancelled_status: string) => failedPayload({ ...cancelledJob, request: { callback_options: { cancelled_status } } }, ctx);
  assert.equal(asked('cancelled').status, 'cancelled');
  assert.equal(asked('cancelled').error.code, 'CANCELLED');
  assert.equal(asked('failed').status, 'failed');
  // The option speaks of cancellations only: a failure stays failed.
  assert.equal(failedPayload({ ...failed, request: { callback_options: { cancelled_status: 'cancelled' } } }, ctx).status, 'failed');
});
