import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hubCacheDir, parseHubId } from '../engines/hub.js';
import { selectHubFiles } from './hub-snapshot.js';

test('Hub ids: owner/name[@revision], each part one safe path segment', () => {
  assert.deepEqual(parseHubId('TinyLlama/TinyLlama-1.1B-Chat-v1.0'), { repo: 'TinyLlama/TinyLlama-1.1B-Chat-v1.0', revision: 'main' });
  assert.deepEqual(parseHubId('org/model@v1.0'), { repo: 'org/model', revision: 'v1.0' });
  assert.deepEqual(parseHubId(`org/model@${'0123456789abcdef'.repeat(2)}01234567`), { repo: 'org/model', revision: `${'0123456789abcdef'.repeat(2)}01234567` });
  for (const bad of ['model', 'a/b/c', 'org/../x', '../x/y', 'org/x@', 'org/x@a/b', '-org/x', 'org/x-', 'org/.x', 'org/x--y', 'org/x@..', 'org/x y', '']) {
    assert.equal(parseHubId(bad), null, bad);
  }
  assert.equal(hubCacheDir('/w', { repo: 'org/model', revision: 'main' }), '/w/hf-cache/org/model@main');
});

test('a snapshot holds what a model loads: safetensors and support files at the top; pickles only without safetensors', () => {
  const repo = [
    '.gitattributes', 'README.md', 'config.json', 'generation_config.json', 'model-00001-of-00002.safetensors',
    'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json',
    'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model', 'preprocessor_config.json',
    'chat_template.jinja', 'merges.txt', 'vocab.json', 'flax_model.msgpack', 'tf_model.h5', 'modeling_custom.py',
    'onnx/model.onnx', 'original/consolidated.00.pth', 'original/params.json', '../escape.json', 'LICENSE',
  ];
  assert.deepEqual(selectHubFiles(repo), [
    'chat_template.jinja', 'config.json', 'generation_config.json', 'merges.txt', 'model-00001-of-00002.safetensors',
    'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'preprocessor_config.json', 'special_tokens_map.json',
    'tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'vocab.json',
  ]);
  assert.deepEqual(selectHubFiles(['config.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json', 'tokenizer.json', 'flax_model.msgpack']), [
    'config.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json', 'tokenizer.json',
  ]);
});
