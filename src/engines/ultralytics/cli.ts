/**
 * The `yolo` command line equivalent to a resolved config, and its inverse.
 *
 * Rendering: `yolo <task> train data=data.yaml model=… key=value…` with every key whose value
 * differs from Ultralytics' default (the CLI fills in the rest from the same default.yaml).
 * Values are written so that Ultralytics' own parser (cfg/__init__.py: shell split, then
 * smart_value: none/true/false, else ast.literal_eval, else the string) reads back exactly the
 * config's value, and tokens are shell-quoted only when they need it.
 *
 * Parsing (parseCommandLine) mirrors that parser, for round-trip checks and for a UI that
 * lets users paste a command; test/configs.test.ts also checks lines with Ultralytics itself.
 */
import { ultralyticsDefaults, type ConfigTask } from './catalog.js';

/** data= in a preview: the normalized data.yaml the server writes into the job's folder. */
export const DATA_PLACEHOLDER = 'data.yaml';

function isPlainEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Python literal of a value, as smart_value/literal_eval reads it back. */
export function pythonLiteral(value: unknown): string {
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (typeof value === 'number') return numberLiteral(value);
  if (Array.isArray(value)) return `[${value.map(pythonLiteral).join(',')}]`;
  if (typeof value === 'string') {
    // A bare string survives when smart_value would leave it a string; otherwise quote it.
    return smartValue(value) === value && !/\s/.test(value) ? value : `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  }
  throw new TypeError(`no CLI form for ${typeof value}`);
}

function numberLiteral(n: number): string {
  if (!Number.isFinite(n)) throw new TypeError(`no CLI form for ${n}`);
  // JS "1e-7" is a valid Python float literal too; integers stay integers.
  return String(n);
}

const SAFE_TOKEN = /^[\w@%+=:,./[\]-]+$/;

export function shellQuote(token: string): string {
  return SAFE_TOKEN.test(token) ? token : `'${token.replace(/'/g, `'\\''`)}'`;
}

/** argv after `yolo`: task, mode, then key=value tokens (model and data first). */
export function commandArgv(task: ConfigTask, config: Record<string, unknown>, data = DATA_PLACEHOLDER): string[] {
  const defaults = ultralyticsDefaults(task);
  const argv = [task, 'train', `data=${pythonLiteral(data)}`];
  if (config['model'] !== undefined && config['model'] !== null) argv.push(`model=${pythonLiteral(config['model'])}`);
  for (const [key, value] of Object.entries(config)) {
    if (key === 'model') continue;
    if (key in defaults && isPlainEqual(value, defaults[key])) continue;
    argv.push(`${key}=${pythonLiteral(value)}`);
  }
  return argv;
}

export function commandLine(task: ConfigTask, config: Record<string, unknown>, data = DATA_PLACEHOLDER): string {
  return ['yolo', ...commandArgv(task, config, data)].map(shellQuote).join(' ');
}

// --- parsing -------------------------------------------------------------------------------

/** POSIX-shell word splitting for the quoting commandLine produces (single, double quotes, backslash). */
export function shellSplit(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (ch === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new SyntaxError('unterminated single quote');
      cur += line.slice(i + 1, end);
      i = end;
      inWord = true;
    } else if (ch === '"') {
      i++;
      for (; i < line.length && line[i] !== '"'; i++) {
        if (line[i] === '\\' && /["\\$`]/.test(line[i + 1] ?? '')) i++;
        cur += line[i];
      }
      if (i >= line.length) throw new SyntaxError('unterminated double quote');
      inWord = true;
    } else if (ch === '\\') {
      cur += line[++i] ?? '';
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

/**
 * Ultralytics' smart_value for the literals a config can hold: None/True/False (any case),
 * numbers, lists of numbers, quoted strings; anything else stays the string it was.
 */
export function smartValue(v: string): unknown {
  const lower = v.toLowerCase();
  if (lower === 'none') return null;
  if (lower === 'true') return true;
  if (lower === 'false') return false;
  const literal = pythonLiteralValue(v.trim());
  return literal === NOT_LITERAL ? v : literal;
}

const NOT_LITERAL = Symbol('not a literal');

/** A subset of ast.literal_eval: numbers, quoted strings, None/True/False, [lists] and (tuples). */
function pythonLiteralValue(s: string): unknown {
  if (/^[+-]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)([eE][+-]?\d+)?$/.test(s) && !/__|_$|^_|_\.|\._/.test(s)) {
    return Number(s.replace(/_/g, ''));
  }
  if (s === 'None') return null;
  if (s === 'True') return true;
  if (s === 'False') return false;
  const quoted = /^'((?:[^'\\]|\\.)*)'$|^"((?:[^"\\]|\\.)*)"$/.exec(s);
  if (quoted) return (quoted[1] ?? quoted[2]!).replace(/\\(.)/g, '$1');
  if ((s.startsWith('[') && s.endsWith(']')) || (s.startsWith('(') && s.endsWith(')'))) {
    const inner = s.slice(1, -1).trim();
    if (inner === '') return [];
    const parts = inner.split(',').map((p) => p.trim());
    if (parts[parts.length - 1] === '') parts.pop();
    const values = parts.map(pythonLiteralValue);
    return values.includes(NOT_LITERAL) ? NOT_LITERAL : values;
  }
  return NOT_LITERAL;
}

export interface ParsedCommand {
  task: string | null;
  mode: string | null;
  args: Record<string, unknown>;
}

const TASK_WORDS = new Set(['detect', 'segment', 'classify', 'pose', 'obb']);
const MODE_WORDS = new Set(['train', 'val', 'predict', 'export', 'track', 'benchmark']);

/** A `yolo …` line → task, mode and key=value arguments (as Ultralytics' entrypoint reads them). */
export function parseCommandLine(line: string): ParsedCommand {
  const words = shellSplit(line.trim());
  if (words[0] === 'yolo') words.shift();
  const out: ParsedCommand = { task: null, mode: null, args: {} };
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq > 0) {
      const key = word.slice(0, eq).trim();
      const raw = word.slice(eq + 1).trim();
      if (!raw) throw new SyntaxError(`missing '${key}' value`);
      out.args[key] = smartValue(raw);
    } else if (TASK_WORDS.has(word)) out.task = word;
    else if (MODE_WORDS.has(word)) out.mode = word;
    else throw new SyntaxError(`unexpected word ${JSON.stringify(word)}`);
  }
  if (out.args['task'] !== undefined) out.task = String(out.args['task']);
  if (out.args['mode'] !== undefined) out.mode = String(out.args['mode']);
  delete out.args['task'];
  delete out.args['mode'];
  return out;
}
