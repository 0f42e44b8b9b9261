"""Builds a tiny random LLaMA-style causal LM and its tokenizer in a folder, offline.

`python make_tiny_llama.py <folder> <texts.json>`: a byte-level BPE trained in memory on the given
strings (tokenizers), wrapped as a PreTrainedTokenizerFast, and a 2-layer LlamaConfig model with
hidden size 64 on its vocabulary, both written with save_pretrained. Nothing is downloaded.
"""

import json
import os
import sys

os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"})

import torch  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

out, texts_file = sys.argv[1], sys.argv[2]
texts = json.load(open(texts_file, encoding="utf-8"))
specials = ["<unk>", "<s>", "</s>", "<pad>"]
bpe = Tokenizer(models.BPE(unk_token="<unk>"))
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
bpe.decoder = decoders.ByteLevel()
bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
torch.manual_seed(0)
config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=2, max_position_embeddings=256, bos_token_id=tok.bos_token_id,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
model = LlamaForCausalLM(config)
model.save_pretrained(out, safe_serialization=True)
tok.save_pretrained(out)
print(json.dumps({"vocab": len(tok), "parameters": sum(p.numel() for p in model.parameters())}))
