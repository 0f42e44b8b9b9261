/**
 * deploy/prometheus/alerts.yml: Prometheus accepts it (`promtool check rules`), its own unit
 * tests pass (`promtool test rules`: the rules fire on the series they are meant for), and
 * every metric it names is one a real server exports on /metrics.
 *
 * promtool comes from Debian's prometheus package. Without it the promtool checks are skipped,
 * saying so; with REQUIRE_PROMTOOL=1 (CI sets it) they fail instead.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { api, ROOT, startTestServer } from './helpers/server.js';

const DIR = path.join(ROOT, 'deploy/prometheus');
const RULES = path.join(DIR, 'alerts.yml');

const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' }).status === 0 ? 'promtool' : null;
const required = process.env['REQUIRE_PROMTOOL'] === '1';
const missing = 'promtool not found (apt-get install prometheus)';

function runPromtool(args: string[]): string {
  if (!promtool) assert.fail(`${missing}, and REQUIRE_PROMTOOL=1 requires it`);
  try {
    return execFileSync(promtool, args, { cwd: DIR, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    assert.fail(`promtool ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

const skip = !promtool && !required ? `${missing}; set REQUIRE_PROMTOOL=1 to fail instead` : false;

test('promtool check rules accepts deploy/prometheus/alerts.yml', { skip }, () => {
  assert.match(runPromtool(['check', 'rules', 'alerts.yml']), /SUCCESS: \d+ rules found/);
});

test('promtool test rules: the rules fire on the series they are meant for', { skip }, () => {
  assert.match(runPromtool(['test', 'rules', 'alerts.test.yml']), /SUCCESS/);
});

test('every metric the rules name is exported on /metrics', async () => {
  const rules = fs.readFileSync(RULES, 'utf8');
  const exprs = [...rules.matchAll(/^\s+expr: (?:>\n)?((?:.*\n)*?)(?=\s+(?:for|labels):)/gm)].map((m) => m[1]!).join('\n');
  const named = new Set([...exprs.matchAll(/\b(host_\w+|gpu_\w+|queue_size|training_\w+|callback_\w+|trainhook_\w+)\b/g)].map((m) => m[1]!));
  assert.ok(named.size >= 10, `metrics found in the rules: ${[...named].join(', ')}`);
  const server = await startTestServer({ env: { RUN_JOBS: 'false' } });
  try {
    await server.deps.monitor.sampleNow();
    const text = (await api(server.url)('/metrics')).text;
    const exported = new Set([...text.matchAll(/^# TYPE (\w+) /gm)].map((m) => m[1]!));
    assert.deepEqual([...named].filter((n) => !exported.has(n)), []);
  } finally {
    await server.stop();
  }
});
