/**
 * The tiny random LLaMA-style model the transformers tests train (2 layers, its own byte-level
 * BPE fitted to the texts it will see), built offline into a save_pretrained folder.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const MAKE_TINY_LLAMA = fileURLToPath(new URL('../engines/transformers/make_tiny_llama.py', import.meta.url));

/** Builds the model at dest, its tokenizer fitted to texts. */
export function makeTinyLlama(python: string, dest: string, texts: readonly string[]): void {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'trainhook-texts-'));
  try {
    const file = path.join(scratch, 'texts.json');
    fs.writeFileSync(file, JSON.stringify(texts));
    const built = spawnSync(python, [MAKE_TINY_LLAMA, dest, file], { encoding: 'utf8' });
    assert.equal(built.status, 0, built.stderr);
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}
