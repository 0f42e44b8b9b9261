/**
 * The shape of src/, checked: imports run one way. No module imports itself through others
 * (no import cycle), and no two folders import each other. An engine's folder counts as part of
 * src/engines/: engines plug in there. Type-only imports count too: they tie modules as much.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ROOT } from './helpers/server.js';

const SRC = path.join(ROOT, 'src');

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [p] : [];
  });
}

/** The relative imports of a module, resolved to files under src/. */
function importsOf(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g)) {
    const target = path.resolve(path.dirname(file), (m[1] ?? m[2])!).replace(/\.js$/, '.ts');
    if (target.startsWith(SRC + path.sep) && fs.existsSync(target)) out.push(target);
  }
  return out;
}

/** A module's folder under src/ ("." for the composition root: main, server, app). */
const folderOf = (file: string) => {
  const rel = path.relative(SRC, file).split(path.sep);
  return rel.length > 1 ? rel[0]! : '.';
};

const files = sources(SRC);
const graph = new Map(files.map((f) => [f, importsOf(f)]));

test('src/ has no import cycle', () => {
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const stack: string[] = [];
  const visit = (f: string) => {
    state.set(f, 'open');
    stack.push(f);
    for (const t of graph.get(f) ?? []) {
      if (state.get(t) === 'open') cycles.push([...stack.slice(stack.indexOf(t)), t].map((x) => path.relative(SRC, x)).join(' → '));
      else if (!state.has(t)) visit(t);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of files) if (!state.has(f)) visit(f);
  assert.deepEqual(cycles, []);
});

test('no two folders of src/ import each other, and nothing imports the composition root', () => {
  const edges = new Set<string>();
  for (const [f, targets] of graph) {
    for (const t of targets) if (folderOf(f) !== folderOf(t)) edges.add(`${folderOf(f)} → ${folderOf(t)}`);
  }
  const both = [...edges].filter((e) => {
    const [a, b] = e.split(' → ');
    return a! < b! && edges.has(`${b} → ${a}`);
  });
  assert.deepEqual(both, []);
  assert.deepEqual([...edges].filter((e) => e.endsWith('→ .')), []);
  // The folder graph has no longer cycle either.
  const next = new Map<string, string[]>();
  for (const e of edges) {
    const [a, b] = e.split(' → ') as [string, string];
    next.set(a, [...(next.get(a) ?? []), b]);
  }
  const reach = (from: string, to: string, seen = new Set<string>()): boolean =>
    (next.get(from) ?? []).some((n) => n === to || (!seen.has(n) && (seen.add(n), reach(n, to, seen))));
  assert.deepEqual([...next.keys()].filter((a) => reach(a, a)), []);
});

test('outside src/engines/, no code names an engine or its metrics', () => {
  const welded = files.filter((f) => {
    const rel = path.relative(SRC, f);
    if (rel.startsWith(`engines${path.sep}`)) return false;
    // Comments and messages may mention them (the YOLO dataset format is Ultralytics' own); code may not.
    const code = fs
      .readFileSync(f, 'utf8')
      .replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '')
      .replace(/'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|`(?:[^`\\]|\\.)*`/g, "''");
    return /ultralytics|rfdetr|mAP50|box_loss|best_pt/i.test(code);
  });
  assert.deepEqual(welded.map((f) => path.relative(SRC, f)), []);
});
