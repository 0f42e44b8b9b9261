import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { AnsiStripper, stripAnsi } from './ansi.js';
import { startPython } from './process.js';

const RED = '\x1b[31m';
const RESET = '\x1b[0m';

test('colours, cursor moves and window titles go; text, tabs and carriage returns stay', () => {
  assert.equal(stripAnsi(`${RED}Epoch${RESET} 1/5\tbox_loss 1.2`), 'Epoch 1/5\tbox_loss 1.2');
  assert.equal(stripAnsi('\x1b[1;34mbold blue\x1b[K\x1b[2A'), 'bold blue');
  assert.equal(stripAnsi('\x1b]0;title\x07after \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\'), 'after link');
  assert.equal(stripAnsi('50%|███  |\r100%|█████|'), '50%|███  |\r100%|█████|');
  assert.equal(stripAnsi('plain [31m text'), 'plain [31m text');
});

test('an escape cut between two chunks is held until the next one', () => {
  const s = new AnsiStripper();
  const out = [s.push('one \x1b'), s.push('[3'), s.push('2mgreen\x1b[0'), s.push('m two\n'), s.end()].join('');
  assert.equal(out, 'one green two\n');
  const t = new AnsiStripper();
  assert.equal(t.push('title \x1b]0;still open'), 'title ');
  assert.equal(t.end(), '', 'an escape that never ends is dropped');
  const u = new AnsiStripper();
  assert.equal(u.push('no escape at all'), 'no escape at all');
  assert.equal(u.end(), '');
});

test("a worker's coloured stderr is written to its log without the codes", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trainhook-ansi-'));
  const logFile = path.join(dir, 'worker.log');
  // Flushed in pieces so the escapes arrive cut across chunks, as a busy pipe delivers them.
  const script = [
    'import sys, time',
    'for part in ["\\x1b[3", "4mINFO\\x1b[", "0m loading\\n", "\\x1b[1;31mWARNING\\x1b[0m low memory\\n"]:',
    '    sys.stderr.write(part); sys.stderr.flush(); time.sleep(0.05)',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'colours.py'), script);
  const child = startPython({ python: 'python3', args: [path.join(dir, 'colours.py')], cwd: dir, logFile, onLine: () => {} });
  const exit = await child.exited;
  assert.equal(exit.code, 0);
  const log = fs.readFileSync(logFile, 'utf8');
  assert.match(log, /^INFO loading$/m);
  assert.match(log, /^WARNING low memory$/m);
  const workerLines = log.split('\n').filter((l) => !l.startsWith('[trainhook '));
  assert.doesNotMatch(workerLines.join('\n'), /\x1b|\[[\d;]*m/);
  assert.deepEqual(child.tail(), ['INFO loading', 'WARNING low memory']);
  fs.rmSync(dir, { recursive: true, force: true });
});
