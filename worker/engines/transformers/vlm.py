"""transformers engine, task vision-lm: what train.py's training loop needs to know about a
vision-language model (image + text → text), as text.py does for causal-lm. The loop, and so the
contract (one `epoch` event per epoch with train_loss, val_loss, val_token_accuracy and
learning_rate, a stop check at every optimizer step, last.pt with save_steps and mid-epoch resume,
adapter.zip / model.zip, checkpoint-<epoch>.zip, metrics.csv, training_config.json, the TensorBoard
events), is train.py's for both tasks.

What differs:
- the base model folder must hold a vision-language model (vlm_inference.is_vlm_folder: a
  vision_config in its config, or a processor with an image processor); a causal LM folder fails
  with MODEL_DOWNLOAD_FAILED (details.reason BASE_MODEL_TASK_MISMATCH), and causal-lm refuses a
  vision-language folder the same way (train.py checks both);
- the model is AutoModelForImageTextToText and the inputs come from its AutoProcessor: BOS, then the
  processor's expansion of "<image>\\n" + prompt (the image token once per image feature), then the
  completion's tokens and EOS; the loss falls on the completion and EOS only (the prompt and the
  image tokens are labelled -100);
- a sample is {"image": "images/…", "prompt", "completion"} (datasets/jsonl.ts checked every line
  and every image): the image path is relative to the folder holding the JSONL files, read with
  PIL as RGB when its batch is built (pixel values are not kept for the whole set);
- LoRA adapts the language model's attention projections (q, k, v, o) by default; target_modules
  names apply outside the vision tower only. The vision tower stays frozen with method full too;
- a full model's checkpoint holds the processor (tokenizer + image processor) beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime import JobFailure

from engines.transformers import text
from engines.transformers import vlm_inference as inf

TASK = "vision-lm"
VISION = True
FROZEN_NOTE = ", the vision tower frozen"
IGNORE = text.IGNORE
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
VISION_TOWER = "vision_tower"
# Method qlora keeps these in full precision (bitsandbytes' skip list, patterns matched against
# module names): the vision tower (frozen, small next to the language model, and its image
# features are what every answer rests on), the projector into the language model, and the
# output layer (what transformers leaves unquantized by default, which naming a list replaces).
QLORA_KEEP = [rf".*\b{VISION_TOWER}", r".*\bmulti_modal_projector", "lm_head"]


def target_pattern(names: list[str] | None) -> str:
    """A peft target_modules regex (full match on module names): the given names, or the attention
    projections, anywhere but in the vision tower."""
    chosen = names or list(DEFAULT_TARGETS)
    alternatives = "|".join(n.replace(".", r"\.") for n in chosen)
    return rf"^(?!.*\b{VISION_TOWER}\b)(?:.*\.)?(?:{alternatives})$"


Sample = tuple[list[int], list[int], Path]


def encode(sample: dict[str, Any], processor: Any, root: Path, max_length: int) -> tuple[Sample, bool]:
    """Token ids and labels of one sample, the image's path; and whether the completion was cut.

    The prompt and its image tokens are never cut (the model needs one token per image feature):
    max_length bounds the completion."""
    tok = processor.tokenizer
    image_path = root / sample["image"]
    prompt_ids = inf.prompt_inputs(processor, inf.read_image(image_path), sample["prompt"])["input_ids"][0].tolist()
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    completion = list(tok(sample["completion"], add_special_tokens=False)["input_ids"]) + eos
    room = max(0, max_length - len(prompt_ids))
    cut = len(completion) > room
    completion = completion[:room]
    return (prompt_ids + completion, [IGNORE] * len(prompt_ids) + completion, image_path), cut


def collate(items: list[Sample], processor: Any, device: str) -> dict[str, Any]:
    import torch

    batch = text.pad([(ids, labels) for ids, labels, _ in items], processor.tokenizer.pad_token_id, device)
    pixels = processor.image_processor([inf.read_image(p) for _, _, p in items], return_tensors="pt")
    batch["pixel_values"] = pixels["pixel_values"].to(device)
    for key, value in pixels.items():
        if key != "pixel_values" and isinstance(value, torch.Tensor):
            batch[key] = value.to(device)
    return batch


def load_processor(model_dir: str) -> Any:
    """The processor (tokenizer + image processor): what a full model's checkpoint saves beside it."""
    try:
        processor = inf.load_processor(model_dir)
    except Exception as e:  # noqa: BLE001 - a folder without a usable processor
        raise JobFailure("MODEL_DOWNLOAD_FAILED", f"the base model folder has no processor that loads (AutoProcessor): {type(e).__name__}: {e}",
                         {"path": model_dir}) from e
    tok = getattr(processor, "tokenizer", None)
    if tok is None or getattr(processor, "image_processor", None) is None:
        raise JobFailure("MODEL_DOWNLOAD_FAILED", "the base model's processor has no tokenizer or no image processor", {"path": model_dir})
    text.check_tokenizer(tok, model_dir)
    return processor


def build_data(splits: tuple[list[dict[str, Any]], list[dict[str, Any]]], processor: Any, data_dir: str, max_length: int,
               rt: Any) -> tuple[list[Sample], list[Sample]]:
    """The encoded train and val samples (token ids, labels, the image's path)."""
    root = Path(data_dir)
    cut = 0
    out: tuple[list[Sample], list[Sample]] = ([], [])
    for samples, data in zip(splits, out):
        for s in samples:
            if not isinstance(s.get("image"), str):
                raise JobFailure("DATASET_INVALID", "a vision-lm sample has no \"image\"")
            try:
                item, was_cut = encode(s, processor, root, max_length)
            except OSError as e:
                raise JobFailure("DATASET_INVALID", f"cannot read image {s['image']}: {e}") from e
            cut += was_cut
            data.append(item)
    if cut:
        rt.emit("warning", message=f"{cut} samples are longer than max_length={max_length} tokens: their answers were cut")
    if not any(any(x != IGNORE for x in lab[1:]) for _, lab, _ in out[0]):
        raise JobFailure("DATASET_INVALID", f"no training sample keeps an answer token within max_length={max_length}")
    return out


def load_model(model_dir: str, **quantized: Any) -> Any:
    """As text.load_model: float32, or the quantization_config and device_map of method qlora."""
    try:
        return inf.load_model(model_dir, **quantized)
    except Exception as e:  # noqa: BLE001
        raise JobFailure("MODEL_DOWNLOAD_FAILED", f"the base model does not load as a vision-language model: {type(e).__name__}: {e}",
                         {"path": model_dir}) from e


def lora_targets(names: list[str] | None) -> Any:
    return target_pattern(names)


def freeze(model: Any) -> None:
    """Method full: the vision tower stays as it is."""
    for name, p in model.named_parameters():
        if VISION_TOWER in name.split("."):
            p.requires_grad_(False)
