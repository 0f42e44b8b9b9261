/**
 * GET /metrics scraped and parsed as Prometheus text: the SPEC §2 names are there, the job
 * counters move as jobs finish, and the GPU gauges come from nvidia-smi. This machine has no
 * GPU, so a fake nvidia-smi on PATH prints what a two-GPU host prints; the same run checks that
 * a running job gets its device's sample in `resources` and a warning in its log when a
 * threshold is crossed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { claimNextJob, markRunning } from '../src/jobs/transitions.js';
import { jobDriver } from './helpers/job-driver.js';
import { promtoolAvailable, promtoolCheckMetrics, promtoolRequired } from './helpers/promtool.js';
import { api, startTestServer, tempDir, trainBody, type TestServer } from './helpers/server.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text exposition format 0.0.4: every line must parse, or this throws. */
function parsePrometheus(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const [n, line] of text.split('\n').entries()) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
      if (!m) throw new Error(`line ${n + 1}: bad comment: ${line}`);
      if (m[1] === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3]!)) throw new Error(`line ${n + 1}: bad type ${m[3]}`);
        types.set(m[2]!, m[3]!);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
    if (!m) throw new Error(`line ${n + 1}: bad sample: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[3] ?? '';
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
    let pos = 0;
    while (pos < body.length) {
      re.lastIndex = pos;
      const l = re.exec(body);
      if (!l) throw new Error(`line ${n + 1}: bad labels: ${body}`);
      labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
      pos = re.lastIndex;
    }
    // Values as Prometheus reads them (Go's ParseFloat): NaN and Inf in any case (prom-client writes "Nan").
    const raw = m[4]!;
    const special: Record<string, number> = { nan: NaN, '+inf': Infinity, inf: Infinity, '-inf': -Infinity };
    const value = raw.toLowerCase() in special ? special[raw.toLowerCase()]! : Number(raw);
    if (Number.isNaN(value) && raw.toLowerCase() !== 'nan') throw new Error(`line ${n + 1}: bad value ${raw}`);
    samples.push({ name: m[1]!, labels, value });
  }
  return { types, samples };
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

const FAKE_SMI = `#!/bin/sh
# A fake nvidia-smi: what a host with an RTX 4090 and a hot, nearly full A100 prints.
case "$*" in
  *utilization.gpu*)
    echo "0, NVIDIA GeForce RTX 4090, 87, 12595, 24564, 72, 285.42"
    echo "1, NVIDIA A100-SXM4-80GB, 64, 78000, 81920, 88, [N/A]"
    ;;
  *)
    echo "0, NVIDIA GeForce RTX 4090"
    echo "1, NVIDIA A100-SXM4-80GB"
    ;;
esac
`;
const MIB = 1024 * 1024;
const NODE = 'metrics-node';

describe('/metrics and resource monitoring', () => {
  let server: TestServer;
  let savedPath: string | undefined;
  let fakeDir: string;

  before(async () => {
    fakeDir = tempDir('fake-nvidia-smi-');
    fs.writeFileSync(path.join(fakeDir, 'nvidia-smi'), FAKE_SMI, { mode: 0o755 });
    savedPath = process.env['PATH'];
    process.env['PATH'] = `${fakeDir}:${savedPath}`;
    server = await startTestServer({
      env: { RUN_JOBS: 'false', NODE_ID: NODE, MONITOR_INTERVAL_SECONDS: '3600', GPU_TEMP_WARN_C: '85', GPU_MEMORY_WARN_PERCENT: '95' },
    });
    await server.deps.monitor.sampleNow();
  });
  after(async () => {
    await server.stop();
    process.env['PATH'] = savedPath;
    fs.rmSync(fakeDir, { recursive: true, force: true });
  });

  const scrape = async () => {
    const res = await fetch(`${server.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    return parsePrometheus(await res.text());
  };

  test('every SPEC §2 metric is exposed with its type', async () => {
    await fetch(`${server.url}/health`);
    const { types } = await scrape();
    const want: Record<string, string> = {
      training_jobs_total: 'counter',
      training_jobs: 'gauge',
      training_duration_seconds: 'histogram',
      active_training_jobs: 'gauge',
      queue_size: 'gauge',
      gpu_utilization_percent: 'gauge',
      gpu_memory_used_bytes: 'gauge',
      gpu_temperature_celsius: 'gauge',
      http_request_duration_seconds: 'histogram',
    };
    for (const [name, type] of Object.entries(want)) assert.equal(types.get(name), type, name);
  });

  test('promtool check metrics passes on a scrape', async (t) => {
    if (!promtoolAvailable()) {
      if (promtoolRequired) assert.fail('REQUIRE_PROMTOOL=1 but promtool is not on PATH (Debian: apt-get install prometheus)');
      t.skip('promtool not on PATH');
      return;
    }
    // A scrape with a job in it and a request timed, so every family has samples.
    await api(server.url)('/api/v1/jobs');
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const { code, output } = await promtoolCheckMetrics(text);
    assert.equal(code, 0, output);
    assert.equal(output.trim(), '', 'no lint warnings');
    assert.match(text, /^nodejs_active_handles\{/m, 'the per-type handle gauge stays');
    assert.doesNotMatch(text, /^# TYPE \S+_total gauge$/m);
  });

  test('GPU gauges come from nvidia-smi, one series per device', async () => {
    const { samples } = await scrape();
    assert.equal(value(samples, 'gpu_utilization_percent', { device: 'cuda:0' }), 87);
    assert.equal(value(samples, 'gpu_utilization_percent', { device: 'cuda:1' }), 64);
    assert.equal(value(samples, 'gpu_memory_used_bytes', { device: 'cuda:0' }), 12595 * MIB);
    assert.equal(value(samples, 'gpu_memory_used_bytes', { device: 'cuda:1' }), 78000 * MIB);
    assert.equal(value(samples, 'gpu_temperature_celsius', { device: 'cuda:1' }), 88);
    const dashboard = await (await fetch(`${server.url}/partials/resources`, { headers: { authorization: `Bearer ${server.env['API_TOKEN']}` } })).text();
    assert.match(dashboard, /GPU cuda:0: NVIDIA GeForce RTX 4090/);
    assert.match(dashboard, /Temperature: <b>88 °C<\/b>/);
  });

  test('job counters move as jobs are accepted, start and finish', async () => {
    const before = (await scrape()).samples;
    const total = (s: Sample[], status: string) => value(s, 'training_jobs_total', { status }) ?? 0;
    const call = api(server.url);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await call('/api/v1/train', { method: 'POST', json: trainBody() })).json.job_id);
    const current = (s: Sample[], status: string) => value(s, 'training_jobs', { status });
    let now = (await scrape()).samples;
    assert.equal(total(now, 'queued') - total(before, 'queued'), 3);
    assert.equal(current(now, 'queued'), 3, 'the gauge counts the jobs queued now');
    assert.equal(current(now, 'training'), 0);
    assert.equal(value(now, 'queue_size'), 3);

    const drive = jobDriver(server, NODE);
    const runAndFinish = async (state: 'completed' | 'failed') => {
      const running = await drive.start();
      await drive.finish(running.id, state);
    };
    await runAndFinish('completed');
    now = (await scrape()).samples;
    assert.equal(total(now, 'completed') - total(before, 'completed'), 1);
    assert.equal(total(now, 'training') - total(before, 'training'), 1, 'training counts jobs that started');
    assert.equal(value(now, 'training_duration_seconds_count', { status: 'completed' }), 1);

    await runAndFinish('failed');
    assert.equal((await call(`/api/v1/jobs/${ids[2]}`, { method: 'DELETE' })).status, 200);
    now = (await scrape()).samples;
    assert.equal(total(now, 'failed') - total(before, 'failed'), 1);
    assert.equal(total(now, 'cancelled') - total(before, 'cancelled'), 1);
    assert.equal(total(now, 'completed') - total(before, 'completed'), 1, 'counters never go back');
    assert.deepEqual(
      ['queued', 'training', 'completed', 'failed', 'cancelled'].map((s) => current(now, s)),
      [0, 0, 1, 1, 1],
      'the gauge follows the jobs out of queued',
    );
    assert.equal(value(now, 'queue_size'), 0);
    assert.ok(value(now, 'http_request_duration_seconds_count', { method: 'POST', route: '/api/v1/train', status: '202' })! >= 3);
  });

  test("a running job gets its device's sample in resources, and a warning in its log once", async () => {
    const call = api(server.url);
    const id = (await call('/api/v1/train', { method: 'POST', json: trainBody({ resources: { device: 'cuda:1' } }) })).json.job_id;
    const { db } = server.deps.database;
    const claimed = await claimNextJob(db, { nodeId: NODE, device: 'cuda:1', leaseSeconds: 600 });
    assert.equal(claimed?.id, id);
    await markRunning(db, id, NODE);
    await server.deps.monitor.sampleNow();
    const row = await server.deps.jobs.get(id);
    const r = row!.resources as Record<string, unknown>;
    assert.equal(r['gpu_utilization'], 64);
    assert.equal(r['memory_used_gb'], 81.79);
    assert.equal(r['temperature_c'], 88);
    assert.equal(r['device'], 'cuda:1');
    assert.equal(r['peak_temperature_c'], 88);
    const log = fs.readFileSync(path.join(server.workdir, 'jobs', id, 'worker.log'), 'utf8');
    assert.match(log, /WARNING GPU temperature above GPU_TEMP_WARN_C on cuda:1 \(NVIDIA A100-SXM4-80GB\): 88 °C ≥ 85 °C/);
    assert.match(log, /WARNING GPU memory above GPU_MEMORY_WARN_PERCENT on cuda:1 .*: 95\.2 % ≥ 95 %/);
    await server.deps.monitor.sampleNow();
    assert.equal(fs.readFileSync(path.join(server.workdir, 'jobs', id, 'worker.log'), 'utf8'), log, 'no repeat while it stays hot');
    assert.ok(server.logs.some((l) => l.includes('GPU temperature above GPU_TEMP_WARN_C') && l.includes('"device":"cuda:1"')));
    const api1 = await call(`/api/v1/jobs/${id}`);
    assert.equal(api1.status, 200);
  });
});
