/**
 * The samples of a stored jsonl dataset, as validate and split read them: every line of its
 * train/val/test files (or its single data.jsonl), parsed, with where it came from. The dataset
 * was checked when it was stored, so a line that does not parse is skipped here, not refused.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { readJsonlLayout } from '../jsonl.js';
import { PrepareError } from './errors.js';

export type SplitName = 'train' | 'val' | 'test' | 'data';

export type StoredSample = {
  split: SplitName;
  line: number;
  image: string | null;
  prompt: string;
  completion: string;
  /** The raw object, written back as it was by split. */
  value: Record<string, unknown>;
  meta: { video?: string; frame?: number; classes?: string[]; template?: string };
};

/** An `image` path that stays inside the dataset: relative, no `..`, no backslash tricks. */
export function safeImagePath(image: string): string | null {
  const p = image.replace(/\\/g, '/');
  if (p.startsWith('/') || /^[a-zA-Z]:/.test(p) || /[\u0000-\u001f]/.test(p)) return null;
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.length === 0 || parts.includes('..')) return null;
  return parts.join('/');
}

function metaOf(v: unknown): StoredSample['meta'] {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return {};
  const o = v as Record<string, unknown>;
  const meta: StoredSample['meta'] = {};
  if (typeof o['video'] === 'string') meta.video = o['video'];
  if (typeof o['frame'] === 'number') meta.frame = o['frame'];
  if (Array.isArray(o['classes'])) meta.classes = o['classes'].filter((c): c is string => typeof c === 'string');
  if (typeof o['template'] === 'string') meta.template = o['template'];
  return meta;
}

function textOf(o: Record<string, unknown>): { prompt: string; completion: string } {
  if (typeof o['prompt'] === 'string' || typeof o['completion'] === 'string') {
    return { prompt: String(o['prompt'] ?? ''), completion: String(o['completion'] ?? '') };
  }
  const msgs = Array.isArray(o['messages']) ? (o['messages'] as Array<Record<string, unknown>>) : [];
  const said = (role: string) => msgs.filter((m) => m?.['role'] === role).map((m) => String(m['content'] ?? '')).join('\n');
  return { prompt: [said('system'), said('user')].filter(Boolean).join('\n'), completion: said('assistant') };
}

async function readLines(file: string, split: SplitName, out: StoredSample[]): Promise<void> {
  const lines = (await readFile(file, 'utf8')).split('\n');
  lines.forEach((raw, i) => {
    if (raw.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      return;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return;
    const o = value as Record<string, unknown>;
    out.push({ split, line: i + 1, image: typeof o['image'] === 'string' ? o['image'] : null, ...textOf(o), value: o, meta: metaOf(o['meta']) });
  });
}

const isFile = (p: string) => stat(p).then((s) => s.isFile(), () => false);

/** The samples of a dataset's extracted files, and the folder its image paths are relative to. */
export async function readStoredSamples(filesDir: string): Promise<{ root: string; samples: StoredSample[] }> {
  let layout;
  try {
    layout = await readJsonlLayout(filesDir);
  } catch (err) {
    throw new PrepareError('DATASET_NOT_JSONL', `the dataset is not a jsonl dataset: ${(err as Error).message}`);
  }
  const samples: StoredSample[] = [];
  if ('data' in layout.files) await readLines(layout.files.data, 'data', samples);
  else {
    await readLines(layout.files.train, 'train', samples);
    await readLines(layout.files.val, 'val', samples);
    const test = path.join(layout.root, 'test.jsonl');
    if (await isFile(test)) await readLines(test, 'test', samples);
  }
  return { root: layout.root, samples };
}
