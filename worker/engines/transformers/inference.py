"""Generate text with a model trainhook exported (transformers engine), offline, on the CPU.

    python inference.py "What colour is the cat? " [--max-new-tokens 32] [--temperature 1.0]
                        [--do-sample] [--seed 0] [--base /path/to/base-model] [--model ./model]

The folder next to this script (`model/`, or --model) is one of:
- a LoRA adapter (adapter_config.json + adapter_model.safetensors): loaded on its base model with
  peft; give the base model's folder with --base (default: the path the adapter was trained from);
- a merged or fully trained model (config.json + model.safetensors + tokenizer): transformers alone;
- an int8 model (config.json + model_int8.pt + tokenizer): the model is built from config.json,
  its Linear layers quantized with torch.ao.quantization.quantize_dynamic (qint8, CPU only), and
  the saved quantized state dict loaded into it (torch.load, weights_only).

The prompt is encoded as trainhook trained it: the tokenizer's BOS token, then the prompt's tokens;
what is printed is the generated continuation alone. trainhook's worker imports this file too, so
the API's /generate and this script generate the same way. Nothing here reaches the network.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                   "TOKENIZERS_PARALLELISM": "false"})

INT8_WEIGHTS = "model_int8.pt"


def kind_of(folder: Path) -> str:
    if (folder / "adapter_config.json").is_file():
        return "adapter"
    if (folder / INT8_WEIGHTS).is_file():
        return "int8"
    return "model"


def quantize(model: Any) -> Any:
    import torch
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def load(folder: str | Path, base: str | Path | None = None) -> tuple[Any, Any, str]:
    """(model in eval mode, tokenizer, kind) of an exported folder or a trainhook model folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    kind = kind_of(folder)
    if kind == "adapter":
        from peft import PeftModel

        if base is None:
            base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
        tok_dir = folder if (folder / "tokenizer_config.json").is_file() else Path(base)
        tok = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(base, local_files_only=True, dtype=torch.float32)
        model = PeftModel.from_pretrained(model, folder, local_files_only=True)
    elif kind == "int8":
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        model = quantize(AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval())
        model.load_state_dict(torch.load(folder / INT8_WEIGHTS, map_location="cpu", weights_only=True))
    else:
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    model.eval()
    return model, tok, kind


def prompt_ids(tok: Any, prompt: str) -> list[int]:
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    return bos + list(tok(prompt, add_special_tokens=False)["input_ids"])


def generate(model: Any, tok: Any, prompt: str, max_new_tokens: int = 32, temperature: float = 1.0,
             do_sample: bool = False, seed: int | None = None) -> dict[str, Any]:
    import torch

    ids = prompt_ids(tok, prompt)
    if seed is not None:
        torch.manual_seed(seed)
    started = time.perf_counter()
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample,
                               "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                               "eos_token_id": tok.eos_token_id}
    if do_sample:
        options["temperature"] = temperature
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), **options)
    new = out[0, len(ids):].tolist()
    finished = bool(new) and new[-1] == tok.eos_token_id
    return {
        "text": tok.decode(new, skip_special_tokens=True),
        "tokens": len(new),
        "token_ids": new,
        "prompt_tokens": len(ids),
        "finish_reason": "eos" if finished else "length",
        "seconds": round(time.perf_counter() - started, 4),
    }


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description="Generate a completion with a trainhook-exported model")
    p.add_argument("prompt")
    p.add_argument("--model", default=str(here / "model"), help="the exported model folder (default: ./model)")
    p.add_argument("--base", default=None, help="the base model folder (adapter exports only)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--do-sample", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    opts = p.parse_args(argv)
    model, tok, _kind = load(opts.model, opts.base)
    result = generate(model, tok, opts.prompt, opts.max_new_tokens, opts.temperature, opts.do_sample, opts.seed)
    print(json.dumps(result) if opts.json else result["text"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
