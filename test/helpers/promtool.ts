/**
 * Prometheus' own linter for the /metrics text. Never installed by the tests: `promtool` on
 * PATH (.ci/run installs Debian's prometheus package, which ships it). Without it the check is
 * skipped, except when REQUIRE_PROMTOOL=1 (set by .ci/run), where a missing promtool fails.
 */
import { spawn, spawnSync } from 'node:child_process';

export function promtoolAvailable(): boolean {
  const r = spawnSync('promtool', ['--version'], { encoding: 'utf8', timeout: 30_000 });
  return r.status === 0;
}

/** Whether CI asked for the check to run (a missing promtool is then a failure, not a skip). */
export const promtoolRequired = process.env['REQUIRE_PROMTOOL'] === '1';

/** `promtool check metrics` on a scrape: its exit code and what it printed. */
export function promtoolCheckMetrics(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', (err) => resolve({ code: null, output: `${output}${err.message}` }));
    child.on('close', (code) => resolve({ code, output }));
    child.stdin.end(text);
  });
}
