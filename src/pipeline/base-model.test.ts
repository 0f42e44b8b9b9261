import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { Agent } from 'undici';
import { JobError } from '../core/errors.js';
import { resolveBaseModel, type BaseModelOptions } from './base-model.js';

describe("a 'directory' base model: a folder under the local models folder, by name", () => {
  const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'trainhook-dirs-'));
  const models = path.join(workdir, 'elsewhere');
  fs.mkdirSync(path.join(models, 'tiny.v1'), { recursive: true });
  fs.mkdirSync(path.join(workdir, 'hf-models', 'default-place'), { recursive: true });
  const opts = (modelDirs?: string): BaseModelOptions => ({
    workdir,
    task: 'causal-lm',
    dispatcher: new Agent(),
    maxBytes: 1,
    timeoutMs: 1,
    retries: 0,
    modelDirs,
    registered: async () => ({ problem: 'none' }),
  });
  const refused = async (name: string, modelDirs: string | undefined, message: RegExp) => {
    await assert.rejects(resolveBaseModel({ kind: 'directory', name }, opts(modelDirs)), (err: unknown) => {
      assert.ok(err instanceof JobError);
      assert.equal(err.code, 'MODEL_DOWNLOAD_FAILED');
      assert.match(err.message, message);
      return true;
    });
  };

  test('answers the folder, in HF_MODELS_DIR or else workdir/hf-models', async () => {
    assert.deepEqual(await resolveBaseModel({ kind: 'directory', name: 'tiny.v1' }, opts(models)), {
      model: path.join(models, 'tiny.v1'),
      source: path.join(models, 'tiny.v1'),
      sha256: null,
    });
    assert.equal((await resolveBaseModel({ kind: 'directory', name: 'default-place' }, opts())).model, path.join(workdir, 'hf-models', 'default-place'));
  });

  test('a missing folder says where to place it; a path is never followed', async () => {
    await refused('absent', models, new RegExp(`place its save_pretrained folder .* at ${path.join(models, 'absent').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    for (const name of ['..', '../hf-models/default-place', '/etc', 'a/b', '.hidden', '']) await refused(name, models, /is not a folder name/);
  });
});
