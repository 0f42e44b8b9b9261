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
let tail = '';
child.stdout.on('data', (d) => {
  process.stdout.write(d);
  tail = (tail + d.toString()).slice(-4000);
});
child.on('exit', (code, signal) => {
  // Strip ANSI colours before reading the spec reporter's summary.
  const plain = tail.replace(/\x1b\[[0-9;]*m/g, '');
  const pass = Number(/\bpass (\d+)/.exec(plain)?.[1] ?? 0);
  const fail = Number(/\bfail (\d+)/.exec(plain)?.[1] ?? 0) + Number(/\bcancelled (\d+)/.exec(plain)?.[1] ?? 0);
  // Skips are said, never folded into the passes (each carries its reason in the report above).
  const skipped = Number(/\bskipped (\d+)/.exec(plain)?.[1] ?? 0);
  process.stdout.write(`\n${pass} passed, ${fail} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  process.exit(code ?? (signal ? 1 : 0));
});
