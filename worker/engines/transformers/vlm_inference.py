"""Answer a question about an image with a vision-language model trainhook exported (transformers
engine, task vision-lm), offline, on the CPU.

    python inference.py --image photo.jpg --prompt "What is in the picture?" [--max-new-tokens 32]
                        [--temperature 1.0] [--do-sample] [--seed 0] [--base /path/to/base-model]
                        [--model ./model] [--json]

The folder next to this script (`model/`, or --model) is one of:
- a LoRA adapter (adapter_config.json + adapter_model.safetensors, and the processor): loaded on its
  base model with peft; give the base model's folder with --base (default: the path the adapter
  was trained from);
- a merged or fully trained model (config.json + model.safetensors + the processor): transformers
  alone (AutoModelForImageTextToText);
- an int8 model (config.json + model_int8.pt + the processor): the model is built from config.json,
  its Linear layers quantized with torch.ao.quantization.quantize_dynamic (qint8, CPU only), and
  the saved quantized state dict loaded into it (torch.load, weights_only).

The input is built as trainhook trained it: the tokenizer's BOS token, then the processor's
expansion of "<image>\\n" + the prompt (the image token repeated once per image feature); what is
printed is the generated answer alone. trainhook's worker imports this file too, so the API's
/generate and this script generate the same way. Nothing here reaches the network.
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
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")


def is_vlm_folder(folder: str | Path | None) -> bool:
    """Whether a save_pretrained folder holds a vision-language model: its config has a vision
    tower (vision_config, as LLaVA, Qwen-VL, Idefics and PaliGemma have) or the folder a processor
    with an image processor; an adapter's folder is judged by its base model's."""
    if folder is None:
        return False
    folder = Path(folder)
    config = folder / "config.json"
    if config.is_file():
        try:
            c = json.loads(config.read_text(encoding="utf-8"))
        except ValueError:
            c = {}
        if isinstance(c, dict) and ("vision_config" in c or c.get("model_type") == "llava"):
            return True
    return any((folder / name).is_file() for name in PROCESSOR_FILES[1:]) or _processor_has_images(folder)


def _processor_has_images(folder: Path) -> bool:
    f = folder / "processor_config.json"
    if not f.is_file():
        return False
    try:
        return "image_processor" in json.loads(f.read_text(encoding="utf-8"))
    except ValueError:
        return False


def kind_of(folder: Path) -> str:
    if (folder / "adapter_config.json").is_file():
        return "adapter"
    if (folder / INT8_WEIGHTS).is_file():
        return "int8"
    return "model"


def quantize(model: Any) -> Any:
    """Every Linear of the language model and the projector to qint8; the vision tower's too."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def load_processor(folder: str | Path) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(folder, local_files_only=True)


def load_model(folder: str | Path, dtype: Any = None, **quantized: Any) -> Any:
    import torch
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True, dtype=dtype or torch.float32, **quantized)


def load(folder: str | Path, base: str | Path | None = None) -> tuple[Any, Any, str]:
    """(model in eval mode, processor, kind) of an exported folder or a trainhook model folder."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    folder = Path(folder)
    kind = kind_of(folder)
    if kind == "adapter":
        from peft import PeftModel

        if base is None:
            base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
        processor = load_processor(folder if (folder / "processor_config.json").is_file() else Path(base))
        model = PeftModel.from_pretrained(load_model(base), folder, local_files_only=True)
    elif kind == "int8":
        processor = load_processor(folder)
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        model = quantize(AutoModelForImageTextToText.from_config(config, dtype=torch.float32).eval())
        model.load_state_dict(torch.load(folder / INT8_WEIGHTS, map_location="cpu", weights_only=True))
    else:
        processor = load_processor(folder)
        model = load_model(folder)
    model.eval()
    return model, processor, kind


def image_token(processor: Any) -> str:
    return getattr(processor, "image_token", None) or "<image>"


def read_image(path: str | Path) -> Any:
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def prompt_inputs(processor: Any, image: Any, prompt: str) -> dict[str, Any]:
    """input_ids (BOS + the expanded image tokens + the prompt), attention_mask and pixel_values, batch of one."""
    import torch

    tok = processor.tokenizer
    enc = processor(text=f"{image_token(processor)}\n{prompt}", images=image, add_special_tokens=False, return_tensors="pt")
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    ids = bos + enc["input_ids"][0].tolist()
    out = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
    out["input_ids"] = torch.tensor([ids])
    out["attention_mask"] = torch.ones(1, len(ids), dtype=torch.long)
    return out


def logits(model: Any, processor: Any, image: Any, prompt: str) -> Any:
    import torch

    with torch.no_grad():
        return model(**prompt_inputs(processor, image, prompt)).logits[0].float()


def generate(model: Any, processor: Any, image: Any, prompt: str, max_new_tokens: int = 32, temperature: float = 1.0,
             do_sample: bool = False, seed: int | None = None) -> dict[str, Any]:
    import torch

    tok = processor.tokenizer
    inputs = prompt_inputs(processor, image, prompt)
    n = inputs["input_ids"].shape[1]
    if seed is not None:
        torch.manual_seed(seed)
    started = time.perf_counter()
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample,
                               "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                               "eos_token_id": tok.eos_token_id}
    if do_sample:
        options["temperature"] = temperature
    with torch.no_grad():
        out = model.generate(**inputs, **options)
    new = out[0, n:].tolist()
    finished = bool(new) and new[-1] == tok.eos_token_id
    return {
        "text": tok.decode(new, skip_special_tokens=True),
        "tokens": len(new),
        "token_ids": new,
        "prompt_tokens": n,
        "finish_reason": "eos" if finished else "length",
        "seconds": round(time.perf_counter() - started, 4),
    }


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description="Answer a prompt about an image with a trainhook-exported vision-language model")
    p.add_argument("--image", required=True, help="the image file (JPEG, PNG, …)")
    p.add_argument("--prompt", required=True, help="the question or instruction about the image")
    p.add_argument("--model", default=str(here / "model"), help="the exported model folder (default: ./model)")
    p.add_argument("--base", default=None, help="the base model folder (adapter exports only)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--do-sample", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    opts = p.parse_args(argv)
    model, processor, _kind = load(opts.model, opts.base)
    result = generate(model, processor, read_image(opts.image), opts.prompt, opts.max_new_tokens, opts.temperature,
                      opts.do_sample, opts.seed)
    print(json.dumps(result) if opts.json else result["text"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
