import assert from 'node:assert/strict';
import { test } from 'node:test';
import { llavaEntry, llavaJson } from './llava.js';

test('a LLaVA entry asks with <image> before the prompt; a text sample has no image and no tag', () => {
  assert.deepEqual(llavaEntry('v-0', { image: 'images/v/000000.jpg', prompt: 'What is here?', completion: 'A car.' }), {
    id: 'v-0',
    image: 'images/v/000000.jpg',
    conversations: [
      { from: 'human', value: '<image>\nWhat is here?' },
      { from: 'gpt', value: 'A car.' },
    ],
  });
  const text = llavaEntry('t-1', { image: null, prompt: 'Say hi.', completion: 'Hi.' });
  assert.equal('image' in text, false);
  assert.equal(text.conversations[0].value, 'Say hi.');
  assert.deepEqual(JSON.parse(llavaJson([text])), [text]);
});
