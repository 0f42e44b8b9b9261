"""transformers engine, task vision-lm: a vision-language model (image + text → text) fine-tuned
with LoRA (peft) or in full, `run(spec, rt)` as train.py hands it over.

The same contract as the causal-LM loop of train.py (its helpers are reused): one `epoch` event per
epoch with train_loss, val_loss, val_token_accuracy and learning_rate, a stop check at every
optimizer step, last.pt to resume from, adapter.zip (lora) or model.zip (full) of the epoch with the
lowest val_loss, checkpoint-<epoch>.zip, metrics.csv and training_config.json in spec.run_dir.

What differs:
- the base model folder must hold a vision-language model (vlm_inference.is_vlm_folder: a
  vision_config in its config, or a processor with an image processor); a causal LM folder fails
  with MODEL_DOWNLOAD_FAILED (details.reason BASE_MODEL_TASK_MISMATCH), and train.py refuses a
  vision-language folder for causal-lm the same way;
- the model is AutoModelForImageTextToText and the inputs come from its AutoProcessor: BOS, then the
  processor's expansion of "<image>\\n" + prompt (the image token once per image feature), then the
  completion's tokens and EOS; the loss falls on the completion and EOS only (the prompt and the
  image tokens are labelled -100);
- a sample is {"image": "images/…", "prompt", "completion"} (datasets/jsonl.ts checked every line
  and every image): the image path is relative to the folder holding the JSONL files, read with
  PIL as RGB when its batch is built (pixel values are not kept for the whole set);
- LoRA adapts the language model's attention projections (q, k, v, o) by default; target_modules
  names apply outside the vision tower only. The vision tower stays frozen with method full too.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

from runtime import JobFailure, StopRequested

from engines.transformers import train as lm
from engines.transformers import vlm_inference as inf

IGNORE = lm.IGNORE
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
VISION_TOWER = "vision_tower"


def mismatch(model_dir: str, task: str) -> JobFailure:
    found = "vision-language" if task == "causal-lm" else "causal language"
    want = "vision-lm" if task == "causal-lm" else "causal-lm"
    return JobFailure("MODEL_DOWNLOAD_FAILED",
                      f"the base model folder {model_dir} holds a {found} model, and task {task} needs "
                      f"{'a causal language model' if task == 'causal-lm' else 'a vision-language model (a config with vision_config, and a processor)'}: "
                      f"use task {want} with this folder, or name another base_model",
                      {"path": model_dir, "reason": "BASE_MODEL_TASK_MISMATCH", "task": task})


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

    batch = lm.collate([(ids, labels) for ids, labels, _ in items], processor.tokenizer.pad_token_id, device)
    pixels = processor.image_processor([inf.read_image(p) for _, _, p in items], return_tensors="pt")
    batch["pixel_values"] = pixels["pixel_values"].to(device)
    for key, value in pixels.items():
        if key != "pixel_values" and isinstance(value, torch.Tensor):
            batch[key] = value.to(device)
    return batch


def forward(model: Any, batch: dict[str, Any]) -> Any:
    return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def run(spec: dict[str, Any], rt: Any, args: dict[str, Any], model_dir: str) -> None:
    """The vision-lm training (train.py checked spec, args and the folder's config.json)."""
    run_dir = Path(spec["run_dir"])
    method = args["method"]
    if not inf.is_vlm_folder(model_dir):
        raise mismatch(model_dir, "vision-lm")

    import torch

    device = spec.get("device") or "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise JobFailure("UNKNOWN_ERROR", f"device {device} asked, but torch sees no CUDA device")
    precision = args["mixed_precision"]
    if precision == "fp16" and not device.startswith("cuda"):
        raise JobFailure("UNKNOWN_ERROR", "mixed_precision fp16 needs a CUDA device")

    last = run_dir / "last.pt"
    state: dict[str, Any] | None = None
    if spec.get("resume") and last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=False)
        rt.log(f"resuming from {last}: epoch {state['epoch']}, step {state['global_step']}")
        rt.stopped_state = {"epochs_completed": state["epochs_completed"], "last": str(last)}
        if state.get("finished"):
            rt.emit("started", pid=os.getpid(), device=device, versions=lm.versions(), resumed_from_epoch=state["epochs_completed"])
            lm.resend_epochs(rt, state, spec)
            lm.finish(rt, run_dir, state)
            return
    else:
        if spec.get("resume"):
            rt.log("resume asked, but the run dir holds no last.pt: starting over")
        for name in lm.RUN_OUTPUTS:
            (run_dir / name).unlink(missing_ok=True)
        for old in run_dir.glob("checkpoint-*.zip"):
            old.unlink()
        lm.drop_save_dir(run_dir)

    from transformers import get_linear_schedule_with_warmup

    seed = int(args["seed"])
    torch.manual_seed(seed)
    random.seed(seed)
    try:
        processor = inf.load_processor(model_dir)
    except Exception as e:  # noqa: BLE001 - a folder without a usable processor
        raise JobFailure("MODEL_DOWNLOAD_FAILED", f"the base model folder has no processor that loads (AutoProcessor): {type(e).__name__}: {e}",
                         {"path": model_dir}) from e
    tok = getattr(processor, "tokenizer", None)
    if tok is None or getattr(processor, "image_processor", None) is None:
        raise JobFailure("MODEL_DOWNLOAD_FAILED", "the base model's processor has no tokenizer or no image processor", {"path": model_dir})
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if tok.eos_token_id is None:
        raise JobFailure("MODEL_DOWNLOAD_FAILED", "the base model's tokenizer has no EOS token", {"path": model_dir})
    try:
        train_samples, val_samples = lm.load_splits(spec["data"])
    except (OSError, ValueError) as e:
        raise JobFailure("DATASET_INVALID", f"cannot read the dataset: {e}") from e
    root = Path(spec["data"])
    max_length = int(args["max_length"])
    cut = 0
    train_data: list[Sample] = []
    val_data: list[Sample] = []
    for samples, out in ((train_samples, train_data), (val_samples, val_data)):
        for s in samples:
            if not isinstance(s.get("image"), str):
                raise JobFailure("DATASET_INVALID", "a vision-lm sample has no \"image\"")
            try:
                item, was_cut = encode(s, processor, root, max_length)
            except OSError as e:
                raise JobFailure("DATASET_INVALID", f"cannot read image {s['image']}: {e}") from e
            cut += was_cut
            out.append(item)
    if cut:
        rt.emit("warning", message=f"{cut} samples are longer than max_length={max_length} tokens: their answers were cut")
    if not any(any(x != IGNORE for x in lab[1:]) for _, lab, _ in train_data):
        raise JobFailure("DATASET_INVALID", f"no training sample keeps an answer token within max_length={max_length}")
    rt.check_stop()

    try:
        model = inf.load_model(model_dir)
    except Exception as e:  # noqa: BLE001
        raise JobFailure("MODEL_DOWNLOAD_FAILED", f"the base model does not load as a vision-language model: {type(e).__name__}: {e}",
                         {"path": model_dir}) from e
    model.config.use_cache = False
    if args["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if method == "lora":
            model.enable_input_require_grads()
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        try:
            model = get_peft_model(model, LoraConfig(
                r=int(args["lora_r"]), lora_alpha=float(args["lora_alpha"]), lora_dropout=float(args["lora_dropout"]),
                target_modules=target_pattern(args["target_modules"]), task_type="CAUSAL_LM"))
        except ValueError as e:
            raise JobFailure("UNKNOWN_ERROR", f"LoRA cannot wrap this model: {e}", {"argument": "target_modules"}) from e
    else:
        for name, p in model.named_parameters():
            if VISION_TOWER in name.split("."):
                p.requires_grad_(False)
    model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    total = sum(p.numel() for p in model.parameters())
    rt.log(f"{method}: {trainable:,} trainable parameters of {total:,} ({100 * trainable / max(1, total):.2f} %), the vision tower frozen")

    epochs, batch_size, accum = int(args["epochs"]), int(args["batch_size"]), int(args["grad_accum_steps"])
    steps_per_epoch = math.ceil(math.ceil(len(train_data) / batch_size) / accum)
    total_steps = steps_per_epoch * epochs
    optimizer = torch.optim.AdamW(params, lr=float(args["learning_rate"]), weight_decay=float(args["weight_decay"]))
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(total_steps * float(args["warmup_ratio"])), total_steps)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    device_type = "cuda" if device.startswith("cuda") else "cpu"

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if state is None:
        state = {"epoch": 1, "group": 0, "global_step": 0, "loss_sum": 0.0, "tokens": 0, "best_val_loss": None,
                 "best_epoch": None, "best_metrics": None, "history": [], "epochs_completed": 0, "method": method}
    else:
        missing = set(names) - set(state["trainable"])
        if missing:
            raise JobFailure("UNKNOWN_ERROR", f"last.pt does not match this model ({len(missing)} trainable weights missing)")
        own = dict(model.named_parameters())
        with torch.no_grad():
            for n in names:
                own[n].copy_(state["trainable"][n])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if state.get("rng") is not None:
            torch.set_rng_state(state["rng"])
    rt.stopped_state = {"epochs_completed": state["epochs_completed"], "last": str(last) if last.is_file() else None}
    resumed = state["epochs_completed"] if last.is_file() and spec.get("resume") else None
    rt.emit("started", pid=os.getpid(), device=device, versions=lm.versions(), resumed_from_epoch=resumed)
    if resumed is not None:
        lm.resend_epochs(rt, state, spec)
    lm.write_config(run_dir, spec, args, len(train_data), len(val_data), trainable, total)

    def save_last() -> None:
        state["trainable"] = {n: p.detach().to("cpu").clone() for n, p in model.named_parameters() if p.requires_grad}
        state["optimizer"] = optimizer.state_dict()
        state["scheduler"] = scheduler.state_dict()
        state["scaler"] = scaler.state_dict() if scaler is not None else None
        state["rng"] = torch.get_rng_state()
        tmp = last.with_name(".last.pt.tmp")
        torch.save(state, tmp)
        os.replace(tmp, last)
        for key in ("trainable", "optimizer", "scheduler"):
            state.pop(key, None)

    rt.emit("phase", phase="training")
    rt.interruptible = False
    every = max(1.0, float(spec.get("progress_every_pct") or 5))
    while state["epoch"] <= epochs:
        epoch = state["epoch"]
        rt.current_epoch = epoch
        started = time.time()
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(len(train_data), generator=gen).tolist()
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        groups = [batches[i:i + accum] for i in range(0, len(batches), accum)]
        shown = -every
        while state["group"] < len(groups):
            g = state["group"]
            try:
                rt.check_stop()
            except StopRequested:
                save_last()
                lm.drop_save_dir(run_dir)
                rt.stopped_state = {"epochs_completed": state["epochs_completed"], "last": str(last)}
                raise
            micro = [collate([train_data[i] for i in b], processor, device) for b in groups[g]]
            counts = [int((m["labels"][:, 1:] != IGNORE).sum()) for m in micro]
            group_tokens = max(1, sum(counts))
            for m, n in zip(micro, counts):
                with lm.autocast(device_type, autocast_dtype):
                    logits = forward(model, m)
                loss_sum, _n, _c = lm.token_loss(logits, m["labels"])
                loss = loss_sum / group_tokens
                (scaler.scale(loss) if scaler is not None else loss).backward()
                state["loss_sum"] += float(loss_sum.detach())
                state["tokens"] += n
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["group"] = g + 1
            state["global_step"] += 1
            pct = 100 * (g + 1) / len(groups)
            if pct - shown >= every or g + 1 == len(groups):
                shown = pct
                rt.emit("batch", epoch=epoch, epochs=epochs, batch=g + 1, batches=len(groups))

        val_loss, accuracy = validate(model, val_data, processor, device, batch_size, device_type, autocast_dtype)
        train_loss = state["loss_sum"] / max(1, state["tokens"])
        metrics = {"train_loss": train_loss, "val_loss": val_loss, "val_token_accuracy": accuracy,
                   "learning_rate": scheduler.get_last_lr()[0]}
        improved = state["best_val_loss"] is None or val_loss < state["best_val_loss"]
        # processor.save_pretrained writes the tokenizer and the image processor beside a full model.
        lm.save_model(model, processor, method, run_dir / f"checkpoint-{epoch}.zip", run_dir)
        if improved:
            state["best_val_loss"], state["best_epoch"], state["best_metrics"] = val_loss, epoch, metrics
            shutil.copyfile(run_dir / f"checkpoint-{epoch}.zip", run_dir / ".best.zip.tmp")
            os.replace(run_dir / ".best.zip.tmp", run_dir / lm.best_name(method))
        lm.prune_checkpoints(run_dir, int(args["save_total_limit"]))
        seconds = time.time() - started
        payload = {"epoch": epoch, "epochs": epochs, "metrics": metrics, "epoch_seconds": seconds,
                   "fitness": -val_loss, "best_fitness": -state["best_val_loss"], "best_epoch": state["best_epoch"]}
        state["history"].append(payload)
        lm.append_csv(run_dir / "metrics.csv", epoch, metrics, seconds)
        state.update(epoch=epoch + 1, group=0, loss_sum=0.0, tokens=0, epochs_completed=epoch)
        save_last()
        rt.stopped_state = {"epochs_completed": epoch, "last": str(last)}
        if improved:
            rt.emit("checkpoint", kind="best", path=str(run_dir / lm.best_name(method)), epoch=epoch)
        rt.emit("checkpoint", kind="last", path=str(last), epoch=epoch)
        rt.emit("epoch", **payload)

    rt.emit("phase", phase="finalizing")
    state["finished"] = True
    save_last()
    lm.finish(rt, run_dir, state)


def validate(model: Any, data: list[Sample], processor: Any, device: str, batch_size: int, device_type: str,
             autocast_dtype: Any) -> tuple[float, float]:
    import torch

    model.eval()
    loss_sum, tokens, correct = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            m = collate(data[i:i + batch_size], processor, device)
            with lm.autocast(device_type, autocast_dtype):
                logits = forward(model, m)
            s, n, c = lm.token_loss(logits, m["labels"])
            loss_sum, tokens, correct = loss_sum + float(s), tokens + int(n), correct + int(c)
    model.train()
    return loss_sum / max(1, tokens), correct / max(1, tokens)
