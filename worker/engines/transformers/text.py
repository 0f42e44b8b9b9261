"""transformers engine, task causal-lm: what train.py's training loop needs to know about a causal
language model (text → text). The loop itself (epochs, steps, checkpoints, resume, events) is
train.py's, the same for every task; vlm.py is the vision-lm counterpart of this module and reuses
its dataset reading, padding and loss.

A task module exposes: TASK, VISION (whether its base model folder holds a vision-language model),
load_processor, build_data, load_model, lora_targets, freeze, collate, FROZEN_NOTE, QLORA_KEEP
(the modules method qlora leaves in full precision, None for transformers' default).

Samples (datasets/jsonl.ts checked every line): {"prompt", "completion"} → BOS + prompt +
completion + EOS, the loss on completion + EOS only; {"messages": [...]} → each message as
"<|role|>\\n" + content + "\\n", the loss on the assistant's contents (+ EOS). Samples longer than
max_length are cut (a warning says how many).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

from runtime import JobFailure

TASK = "causal-lm"
VISION = False
# Said after the trainable parameter count: nothing is frozen beyond what LoRA leaves alone.
FROZEN_NOTE = ""
# Method qlora: transformers' own choice of what stays unquantized (the output layer).
QLORA_KEEP = None

# A single data.jsonl's split: the service's rule (src/datasets/jsonl.ts SPLIT, valCount).
SPLIT_SEED = 0
SPLIT_VAL_FRACTION = 0.1
VAL_FILES = ("val.jsonl", "valid.jsonl", "validation.jsonl")
IGNORE = -100


# --- dataset files (both tasks) -------------------------------------------------------------------


def val_count(n: int) -> int:
    """JavaScript's Math.round (half up), as the service counts it: not Python's round (half even)."""
    return min(n - 1, max(1, int(math.floor(n * SPLIT_VAL_FRACTION + 0.5))))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_splits(data_dir: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    root = Path(data_dir)
    train = root / "train.jsonl"
    if train.is_file():
        for name in VAL_FILES:
            if (root / name).is_file():
                return read_jsonl(train), read_jsonl(root / name)
    data = root / "data.jsonl"
    if not data.is_file():
        raise JobFailure("DATASET_INVALID", f"no train.jsonl + val.jsonl or data.jsonl in {root}")
    samples = read_jsonl(data)
    order = list(range(len(samples)))
    random.Random(SPLIT_SEED).shuffle(order)
    val = set(order[: val_count(len(samples))])
    return [s for i, s in enumerate(samples) if i not in val], [s for i, s in enumerate(samples) if i in val]


def pad(items: list[tuple[list[int], list[int]]], pad_id: int, device: str) -> dict[str, Any]:
    """input_ids, attention_mask and labels of a batch, right-padded to its longest sample."""
    import torch

    width = max(len(i) for i, _ in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for r, (ids, lab) in enumerate(items):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        labels[r, : len(lab)] = torch.tensor(lab)
        mask[r, : len(ids)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def check_tokenizer(tok: Any, model_dir: str) -> None:
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if tok.eos_token_id is None:
        raise JobFailure("MODEL_DOWNLOAD_FAILED", "the base model's tokenizer has no EOS token", {"path": model_dir})


# --- the causal-lm task ---------------------------------------------------------------------------


def load_processor(model_dir: str) -> Any:
    """The tokenizer: what a full model's checkpoint saves beside it."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - a folder without a usable tokenizer
        raise JobFailure("MODEL_DOWNLOAD_FAILED", f"the base model folder has no tokenizer that loads: {type(e).__name__}: {e}",
                         {"path": model_dir}) from e
    check_tokenizer(tok, model_dir)
    return tok


def encode(sample: dict[str, Any], tok: Any, max_length: int) -> tuple[list[int], list[int], bool]:
    """Token ids and labels (IGNORE where no loss falls), cut to max_length; and whether it was cut."""
    def ids(text: str) -> list[int]:
        return list(tok(text, add_special_tokens=False)["input_ids"])

    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    if "messages" in sample and "prompt" not in sample:
        input_ids, labels = list(bos), [IGNORE] * len(bos)
        for m in sample["messages"]:
            head, body = ids(f"<|{m['role']}|>\n"), ids(m["content"] + "\n")
            input_ids += head + body
            labels += [IGNORE] * len(head) + (body if m["role"] == "assistant" else [IGNORE] * len(body))
        input_ids += eos
        labels += eos
    else:
        prompt, completion = ids(sample["prompt"]), ids(sample["completion"]) + eos
        input_ids = bos + prompt + completion
        labels = [IGNORE] * (len(bos) + len(prompt)) + completion
    cut = len(input_ids) > max_length
    return input_ids[:max_length], labels[:max_length], cut


def build_data(splits: tuple[list[dict[str, Any]], list[dict[str, Any]]], tok: Any, data_dir: str, max_length: int,
               rt: Any) -> tuple[list[Any], list[Any]]:
    """The encoded train and val samples (token ids, labels)."""
    cut = 0
    out: tuple[list[Any], list[Any]] = ([], [])
    for samples, data in zip(splits, out):
        for s in samples:
            ids, labels, was_cut = encode(s, tok, max_length)
            cut += was_cut
            data.append((ids, labels))
    if cut:
        rt.emit("warning", message=f"{cut} samples are longer than max_length={max_length} tokens and were cut")
    if not any(any(x != IGNORE for x in lab[1:]) for _, lab in out[0]):
        raise JobFailure("DATASET_INVALID", f"no training sample keeps a target token within max_length={max_length}")
    return out


def load_model(model_dir: str, **quantized: Any) -> Any:
    """The base model in float32, or (method qlora) with the quantization_config and device_map given."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32, **quantized)
    except Exception as e:  # noqa: BLE001
        raise JobFailure("MODEL_DOWNLOAD_FAILED", f"the base model does not load as a causal LM: {type(e).__name__}: {e}",
                         {"path": model_dir}) from e


def lora_targets(names: list[str] | None) -> Any:
    """peft's target_modules: the names given, else peft's default for the architecture."""
    return names


def freeze(model: Any) -> None:
    """Method full trains every weight."""


def collate(items: list[tuple[list[int], list[int]]], tok: Any, device: str) -> dict[str, Any]:
    return pad(items, tok.pad_token_id, device)
