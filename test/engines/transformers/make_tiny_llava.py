"""Builds a tiny random LLaVA-style vision-language model, its tokenizer and processor, offline.

`python make_tiny_llava.py <folder> <texts.json>`: a byte-level BPE trained in memory on the given
strings (tokenizers) with an `<image>` special token, wrapped as a PreTrainedTokenizerFast; a CLIP
image processor for 32 px images; a LlavaProcessor joining them; and a LlavaForConditionalGeneration
of a 2-layer CLIP vision tower (hidden 32, patch 8) and a 2-layer LLaMA text model (hidden 64), all
written with save_pretrained. Nothing is downloaded.
"""

import json
import os
import sys

os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"})

import torch  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import (  # noqa: E402
    CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor,
    PreTrainedTokenizerFast,
)

IMAGE_SIZE, PATCH = 32, 8

out, texts_file = sys.argv[1], sys.argv[2]
texts = json.load(open(texts_file, encoding="utf-8"))
specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
bpe = Tokenizer(models.BPE(unk_token="<unk>"))
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
bpe.decoder = decoders.ByteLevel()
bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                              extra_special_tokens={"image_token": "<image>"})
image_token_id = tok.convert_tokens_to_ids("<image>")
image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
# CLIP's CLS token is one more feature than the patches; the "default" strategy drops it, and the
# processor must count it (num_additional_image_tokens=1) to expand <image> to as many tokens as
# the model gives features.
processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=PATCH,
                           vision_feature_select_strategy="default", num_additional_image_tokens=1,
                           chat_template=None)
torch.manual_seed(0)
vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                          image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=32)
text = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                   num_key_value_heads=2, max_position_embeddings=256, bos_token_id=tok.bos_token_id,
                   eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_token_id,
                     vision_feature_select_strategy="default", vision_feature_layer=-1, projector_hidden_act="gelu",
                     tie_word_embeddings=False)
model = LlavaForConditionalGeneration(config)
model.save_pretrained(out, safe_serialization=True)
processor.save_pretrained(out)
print(json.dumps({"vocab": len(tok), "image_token_id": image_token_id,
                  "parameters": sum(p.numel() for p in model.parameters())}))
