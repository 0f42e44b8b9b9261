/**
 * GPU conditions through the tracker, sample by sample (no GPU needed: the samples are what
 * nvidia-smi reports, as numbers): fired once when a threshold is crossed, nothing while it
 * stays crossed, resolved once when it is not; an unreadable sample changes nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { GpuSample } from '../monitor/gpu.js';
import { evaluate, type Observation, type Thresholds } from './conditions.js';
import { AlertTracker } from './tracker.js';

const thresholds: Thresholds = {
  gpuTempC: 85,
  gpuMemoryPercent: 95,
  jobHours: 24,
  queueLength: 50,
  diskPercent: 90,
  stallSeconds: 900,
  callbackFailingHours: 24,
};

const gpu = (temperatureC: number, memoryUsedGb: number): GpuSample => ({
  index: 0,
  device: 'cuda:0',
  name: 'NVIDIA H200',
  utilizationPercent: 100,
  memoryUsedBytes: memoryUsedGb * 1e9,
  memoryTotalBytes: 140e9,
  temperatureC,
  powerWatts: 500,
});

const look = (gpus: GpuSample[]): Observation => ({ now: Date.now(), system: null, gpus, queueLength: 0, runningJobs: [], failingEndpoints: [] });

test('GPU temperature and memory: once when crossed, once when back, nothing in between', () => {
  const tracker = new AlertTracker();
  const step = (g: GpuSample[], unobserved = new Set<never>()) =>
    tracker.update(new Date(), evaluate(look(g), thresholds), unobserved).map((t) => `${t.type} ${t.condition.condition} ${t.condition.value}`);

  assert.deepEqual(step([gpu(70, 10)]), []);
  assert.deepEqual(step([gpu(86, 10)]), ['alert.fired gpu_temperature 86']);
  assert.deepEqual(step([gpu(90, 10)]), []);
  assert.deepEqual(step([gpu(88, 137)]), ['alert.fired gpu_memory 97.9']);
  assert.deepEqual(step([gpu(88, 137)]), []);
  // nvidia-smi failed this time: no GPU in the sample, and the GPU conditions are unobserved.
  assert.deepEqual(tracker.update(new Date(), evaluate(look([]), thresholds), new Set(['gpu_temperature', 'gpu_memory'])), []);
  assert.deepEqual(step([gpu(80, 137)]), ['alert.resolved gpu_temperature 88']);
  assert.deepEqual(step([gpu(80, 20)]), ['alert.resolved gpu_memory 97.9']);
  assert.deepEqual(step([gpu(80, 20)]), []);
});

test('10 °C over the threshold is critical', () => {
  const [c] = evaluate(look([gpu(96, 1)]), thresholds);
  assert.equal(c?.condition, 'gpu_temperature');
  assert.equal(c?.severity, 'critical');
  assert.equal(evaluate(look([gpu(94, 1)]), thresholds)[0]?.severity, 'warning');
});
