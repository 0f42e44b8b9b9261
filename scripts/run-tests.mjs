#!/usr/bin/env node
/**
 * `npm test`: runs every *.test.ts under src/ and test/ with node's test runner (through tsx),
 * one file at a time (training tests use both cores), and ends with a plain
 * "N passed, N failed" line. Extra arguments select files: `npm test -- test/api.test.ts`.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function find(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : find(p);
    return e.name.endsWith('.test.ts') ? [path.relative(root, p)] : [];
  });
}

const files = process.argv.length > 2 ? process.argv.slice(2) : [...find(path.join(root, 'src')), ...find(path.join(root, 'test'))].sort();
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...files],
  { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
);
// The spec reporter's summary lines ("ℹ pass 12"), read line by line as they pass: the list of
// failing tests it prints after them can be longer than any tail kept of the output.
const summary = {};
let partial = '';
child.stdout.setEncoding('utf8'); // whole characters per chunk ("ℹ" is three bytes)
child.stdout.on('data', (d) => {
  process.stdout.write(d);
  const lines = (partial + d).split('\n');
  partial = lines.pop() ?? '';
  for (const line of lines) readSummary(line);
});
function readSummary(line) {
  // Strip ANSI colours before reading it.
  const m = /^ℹ (pass|fail|cancelled|skipped) (\d+)\s*$/.exec(line.replace(/\x1b\[[0-9;]*m/g, ''));
  if (m) summary[m[1]] = Number(m[2]);
}
child.on('exit', (code, signal) => {
  readSummary(partial);
  const pass = summary.pass ?? 0;
  const fail = (summary.fail ?? 0) + (summary.cancelled ?? 0);
  // Skips are said, never folded into the passes (each carries its reason in the report above).
  const skipped = summary.skipped ?? 0;
  process.stdout.write(`\n${pass} passed, ${fail} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  process.exit(code ?? (signal ? 1 : 0));
});
