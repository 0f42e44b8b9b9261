"""transformers engine: fine-tuning (LoRA with peft, QLoRA, or full), `run(spec, rt)` for the shared
worker runtime. One training loop for every task of the engine; what a task does differently (loading its
model and its tokenizer or processor, encoding its samples and building batches, which modules LoRA
adapts, what method full freezes) is the task's module: text.py (causal-lm), vlm.py (vision-lm).

A plain PyTorch loop, not HF Trainer: the runtime's contract (a stop check at every optimizer step,
one `epoch` event per epoch with trainhook's metric names, resume from trainhook's own checkpoint,
resent epochs the service missed) is a few lines here and would be callbacks, a TrainerState
mapping and Trainer's checkpoint-folder layout there; the loop is also what a bare
transformers/peft script does, so trainhook's overhead over one stays small.

Everything lands in spec.run_dir:
- last.pt: the training state after the last optimizer step saved (at an epoch's end, paced so
  that saving takes at most 2 % of the time (SavePacer); every save_steps optimizer steps when set;
  and when a stop arrives mid-epoch): the trainable weights
  (the LoRA adapter, or every weight with method full), the optimizer, the scheduler, the step,
  the epoch and its position in it, the running sums, the best so far and every epoch's metrics.
  Resume continues from it.
- adapter.zip (method lora or qlora) / model.zip (method full): the save_pretrained folder of the epoch with
  the lowest val_loss (adapter_model.safetensors + adapter_config.json; or the model and its
  tokenizer): what `done.best` names and the registry keeps.
- checkpoint-<epoch>.zip: the same for each epoch that saved, the newest save_total_limit kept.
- metrics.csv, training_config.json.
- tensorboard/ and, at the end, tensorboard.zip: the TensorBoard events (tensorboard_log.py).

An epoch event is sent after the epoch's save, when it saves; an epoch paced out is in the next
last.pt, and a crash before then repeats it (recorded once by the service). A mid-epoch
save (save_steps, or a stop) records the epoch, the batch group reached in it and the global
step; a resumed worker skips the groups already done (each epoch's order is fixed by the seed
and the epoch) and sends no epoch twice.

The loss is the next-token cross-entropy over each sample's target tokens (the task's encoding
labels them); val_token_accuracy: the share of those same target tokens that the model's argmax
predicts, on the validation split.

Method qlora (qlora_config below): the base model is loaded quantized to 4-bit NF4 by bitsandbytes
(double quantization, compute in bf16 where the device supports it, else fp16), prepared with
peft's prepare_model_for_kbit_training, and LoRA trains on top of it exactly as with method lora:
the same trainable weights in last.pt, the same adapter.zip (a plain LoRA adapter: it loads on the
base model in full precision, which is how export merges it). The service sends qlora only to a
CUDA node; the worker itself also runs it on the CPU (bitsandbytes' CPU backend), which is how
it is tested here.

The worker never reaches the network: the Hugging Face offline switches are set before
transformers is imported, and the base model is a local folder (spec.model).
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

from runtime import JobFailure, StopRequested, is_out_of_memory
from tensorboard_log import TB_DIR, TB_ZIP, TrainingLog, zip_events

from engines.transformers import text, vlm
from engines.transformers.text import IGNORE
from engines.transformers.vlm_inference import is_vlm_folder

# Set at import, before anything imports huggingface_hub or transformers (they read them once).
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
os.environ.update(OFFLINE_ENV)

DEFAULTS: dict[str, Any] = {
    "method": "lora", "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": None,
    "learning_rate": 2e-4, "weight_decay": 0.0, "batch_size": 4, "grad_accum_steps": 1, "epochs": 3,
    "warmup_ratio": 0.03, "mixed_precision": "no", "gradient_checkpointing": False, "max_length": 512,
    "seed": 0, "save_total_limit": 2, "save_steps": None,
}
RUN_OUTPUTS = ("last.pt", "adapter.zip", "model.zip", "metrics.csv", "training_config.json", TB_ZIP)
METRIC_KEYS = ("train_loss", "val_loss", "val_token_accuracy", "learning_rate")


def classify(exc: BaseException) -> tuple[str, str] | None:
    if is_out_of_memory(exc):
        return "INSUFFICIENT_MEMORY", f"out of memory: {exc}"
    return None


# --- training ----------------------------------------------------------------------------------


def token_loss(logits: Any, labels: Any) -> tuple[Any, Any, Any]:
    """Summed next-token cross-entropy over target tokens, their count, and how many argmax gets right."""
    import torch

    logits, labels = logits[:, :-1, :].float(), labels[:, 1:]
    keep = labels != IGNORE
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                                             ignore_index=IGNORE, reduction="sum")
    correct = ((logits.argmax(-1) == labels) & keep).sum()
    return loss, keep.sum(), correct


# --- run ----------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    import importlib.metadata as md

    import peft
    import torch
    import transformers

    out = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    try:
        out["bitsandbytes"] = md.version("bitsandbytes")
    except md.PackageNotFoundError:
        pass
    return out


# --- qlora --------------------------------------------------------------------------------------


def qlora_config(device: str, keep: list[str] | None) -> Any:
    """The 4-bit quantization of method qlora: NF4 weights, their scales quantized again (double
    quantization), matmuls in bf16 where the device supports it, else fp16 (an older GPU); the
    modules named by `keep` (the task's QLORA_KEEP) stay in full precision.

    bitsandbytes is imported here, not at the worker's start (nor on the venv's check line): a
    CPU-only node trains lora and full without it, and on a machine without CUDA its import prints
    an error about an optional CPU kernel package and takes about 3 s.
    """
    import torch
    from transformers import BitsAndBytesConfig

    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise JobFailure("UNKNOWN_ERROR", f"method qlora needs bitsandbytes, which does not import here: {e}") from e
    bf16 = torch.cuda.is_bf16_supported() if device.startswith("cuda") else True
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16 if bf16 else torch.float16,
                              llm_int8_skip_modules=keep)


def quantization_summary(model: Any, config: Any) -> dict[str, Any]:
    """What training_config.json says of the quantized base: how many Linear4bit layers it holds."""
    import bitsandbytes as bnb

    layers = sum(1 for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))
    return {"bits": 4, "quant_type": config.bnb_4bit_quant_type, "double_quant": bool(config.bnb_4bit_use_double_quant),
            "compute_dtype": str(config.bnb_4bit_compute_dtype).removeprefix("torch."), "linear4bit_layers": layers}


def run(spec: dict[str, Any], rt: Any) -> None:
    run_dir = Path(spec["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    if spec.get("cache_dir"):
        os.environ["HF_HOME"] = str(Path(spec["cache_dir"]) / "hf-home")
    rt.emit("phase", phase="preparing")
    args = {**DEFAULTS, **(spec.get("args") or {})}
    unknown = sorted(set(args) - set(DEFAULTS))
    if unknown:
        rt.emit("warning", message=f"the transformers engine ignores unknown arguments: {', '.join(unknown)}")
    method = args["method"]
    if method not in ("lora", "qlora", "full"):
        raise JobFailure("UNKNOWN_ERROR", f"method {method} is not available in this worker (lora, qlora, full)")
    model_dir = spec.get("model")
    if not isinstance(model_dir, str) or not os.path.isabs(model_dir) or not (Path(model_dir) / "config.json").is_file():
        raise JobFailure("MODEL_DOWNLOAD_FAILED",
                         f"base model folder {model_dir!r} has no config.json: place a save_pretrained folder there",
                         {"path": model_dir})
    task: Any = vlm if spec.get("task") == "vision-lm" else text
    if is_vlm_folder(model_dir) != task.VISION:
        raise mismatch(model_dir, task.TASK)

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
        # A stop before the loop starts leaves last.pt as it is: say so.
        rt.stopped_state = {"epochs_completed": state["epochs_completed"], "last": str(last)}
        if state.get("finished"):
            # A finished run found again (the service restarted before it read `done`).
            rt.emit("started", pid=os.getpid(), device=device, versions=versions(), resumed_from_epoch=state["epochs_completed"])
            resend_epochs(rt, state, spec)
            finish(rt, run_dir, state)
            return
    else:
        if spec.get("resume"):
            rt.log("resume asked, but the run dir holds no last.pt: starting over")
        for name in RUN_OUTPUTS:
            (run_dir / name).unlink(missing_ok=True)
        for old in run_dir.glob("checkpoint-*.zip"):
            old.unlink()
        shutil.rmtree(run_dir / "best", ignore_errors=True)
        shutil.rmtree(run_dir / TB_DIR, ignore_errors=True)
        drop_save_dir(run_dir)

    from transformers import get_linear_schedule_with_warmup

    seed = int(args["seed"])
    torch.manual_seed(seed)
    random.seed(seed)
    # The tokenizer (causal-lm) or processor (vision-lm): it encodes the samples and builds the
    # batches, and a full model's checkpoints hold it.
    tok = task.load_processor(model_dir)
    try:
        splits = text.load_splits(spec["data"])
    except (OSError, ValueError) as e:
        raise JobFailure("DATASET_INVALID", f"cannot read the dataset: {e}") from e
    train_data, val_data = task.build_data(splits, tok, spec["data"], int(args["max_length"]), rt)
    rt.check_stop()

    quantization = None
    if method == "qlora":
        quantization = qlora_config(device, task.QLORA_KEEP)
        model = task.load_model(model_dir, quantization_config=quantization, device_map={"": device})
        model.config.use_cache = False
        from peft import prepare_model_for_kbit_training

        # Freezes the base, casts its remaining non-quantized weights (norms, embeddings, lm_head) to
        # float32 for stable training, and turns on gradient checkpointing when asked (with the
        # input embeddings' outputs requiring grad, so checkpointed blocks still get gradients).
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(args["gradient_checkpointing"]),
            gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model = task.load_model(model_dir)
        model.config.use_cache = False
        if args["gradient_checkpointing"]:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if method == "lora":
                model.enable_input_require_grads()
    if method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        try:
            model = get_peft_model(model, LoraConfig(
                r=int(args["lora_r"]), lora_alpha=float(args["lora_alpha"]), lora_dropout=float(args["lora_dropout"]),
                target_modules=task.lora_targets(args["target_modules"]), task_type="CAUSAL_LM"))
        except ValueError as e:
            raise JobFailure("UNKNOWN_ERROR", f"LoRA cannot wrap this model: {e}",
                             {"argument": "target_modules"}) from e
    else:
        task.freeze(model)
    if quantization is None:
        # A quantized model was placed on the device as it loaded (device_map): bitsandbytes packs
        # its weights there, and moving it again is refused for 4-bit weights on some versions.
        model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    total = sum(p.numel() for p in model.parameters())
    rt.log(f"{method}: {trainable:,} trainable parameters of {total:,} ({100 * trainable / max(1, total):.2f} %){task.FROZEN_NOTE}")
    quantized = quantization_summary(model, quantization) if quantization is not None else None
    if quantized is not None:
        rt.log(f"qlora: {quantized['linear4bit_layers']} Linear4bit layers ({quantized['quant_type']}, "
               f"double quantization, compute {quantized['compute_dtype']})")

    epochs, batch_size, accum = int(args["epochs"]), int(args["batch_size"]), int(args["grad_accum_steps"])
    batches_per_epoch = math.ceil(len(train_data) / batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / accum)
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
    rt.emit("started", pid=os.getpid(), device=device, versions=versions(), resumed_from_epoch=resumed)
    if resumed is not None:
        resend_epochs(rt, state, spec)
    write_config(run_dir, spec, args, len(train_data), len(val_data), trainable, total, quantized)
    # A resumed run drops what an earlier process logged past the checkpoint's step.
    tb = TrainingLog(run_dir, purge_step=state["global_step"] + 1 if resumed is not None else None, every=1)
    save_steps = int(args["save_steps"]) if args.get("save_steps") else 0

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
            state.pop(key, None)  # what's on disk; the live objects hold it

    rt.emit("phase", phase="training")
    rt.interruptible = False
    every = max(1.0, float(spec.get("progress_every_pct") or 5))
    pacer = SavePacer()
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
                tb.close()  # the events first: see the save_steps save below
                save_last()
                drop_save_dir(run_dir)
                rt.stopped_state = {"epochs_completed": state["epochs_completed"], "last": str(last)}
                raise
            micro = [task.collate([train_data[i] for i in b], tok, device) for b in groups[g]]
            counts = [int((m["labels"][:, 1:] != IGNORE).sum()) for m in micro]
            group_tokens = max(1, sum(counts))
            group_loss = 0.0
            for m, n in zip(micro, counts):
                with autocast(device_type, autocast_dtype):
                    logits = forward(model, m)
                loss_sum, _n, _c = token_loss(logits, m["labels"])
                loss = loss_sum / group_tokens
                (scaler.scale(loss) if scaler is not None else loss).backward()
                group_loss += float(loss_sum.detach())
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
            tb.step(state["global_step"], group_loss, sum(counts), scheduler.get_last_lr()[0])
            if save_steps and state["global_step"] % save_steps == 0 and g + 1 < len(groups):
                # A resume point mid-epoch (the epoch's end saves anyway): a crash loses at most save_steps steps.
                # The events reach the disk before last.pt moves on: killed between the two, the next
                # worker resumes before them and its purge_step drops them; the other way round, it
                # would resume after steps whose events were never written.
                tb.flush()
                save_last()
                rt.stopped_state = {"epochs_completed": state["epochs_completed"], "last": str(last)}
                rt.log(f"saved last.pt at step {state['global_step']} (epoch {epoch}, batch group {g + 1}/{len(groups)})")
            pct = 100 * (g + 1) / len(groups)
            if pct - shown >= every or g + 1 == len(groups):
                shown = pct
                rt.emit("batch", epoch=epoch, epochs=epochs, batch=g + 1, batches=len(groups))

        val_loss, accuracy = validate(model, task, val_data, tok, device, batch_size, device_type, autocast_dtype)
        train_loss = state["loss_sum"] / max(1, state["tokens"])
        metrics = {"train_loss": train_loss, "val_loss": val_loss, "val_token_accuracy": accuracy,
                   "learning_rate": scheduler.get_last_lr()[0]}
        improved = state["best_val_loss"] is None or val_loss < state["best_val_loss"]
        if improved:
            state["best_val_loss"], state["best_epoch"], state["best_metrics"] = val_loss, epoch, metrics
        saving = pacer.due(final=epoch == epochs)
        if saving:
            save_model(model, tok, method, run_dir / f"checkpoint-{epoch}.zip", run_dir)
            if improved:
                shutil.copyfile(run_dir / f"checkpoint-{epoch}.zip", run_dir / ".best.zip.tmp")
                os.replace(run_dir / ".best.zip.tmp", run_dir / best_name(method))
            prune_checkpoints(run_dir, int(args["save_total_limit"]))
        elif improved:
            # The best is what the job delivers: written whenever it improves, paced or not.
            save_model(model, tok, method, run_dir / best_name(method), run_dir)
        seconds = time.time() - started
        payload = {"epoch": epoch, "epochs": epochs, "metrics": metrics, "epoch_seconds": seconds,
                   "fitness": -val_loss, "best_fitness": -state["best_val_loss"], "best_epoch": state["best_epoch"]}
        state["history"].append(payload)
        append_csv(run_dir / "metrics.csv", epoch, metrics, seconds)
        tb.epoch(state["global_step"], epoch, metrics)
        state.update(epoch=epoch + 1, group=0, loss_sum=0.0, tokens=0, epochs_completed=epoch)
        if saving:
            save_last()
            pacer.saved()
            rt.stopped_state = {"epochs_completed": epoch, "last": str(last)}
        if improved:
            rt.emit("checkpoint", kind="best", path=str(run_dir / best_name(method)), epoch=epoch)
        if saving:
            rt.emit("checkpoint", kind="last", path=str(last), epoch=epoch)
        rt.emit("epoch", **payload)

    rt.emit("phase", phase="finalizing")
    tb.close()
    state["finished"] = True
    save_last()
    finish(rt, run_dir, state)


def validate(model: Any, task: Any, data: list[Any], tok: Any, device: str, batch_size: int,
             device_type: str, autocast_dtype: Any) -> tuple[float, float]:
    import torch

    model.eval()
    loss_sum, tokens, correct = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            m = task.collate(data[i:i + batch_size], tok, device)
            with autocast(device_type, autocast_dtype):
                logits = forward(model, m)
            s, n, c = token_loss(logits, m["labels"])
            loss_sum, tokens, correct = loss_sum + float(s), tokens + int(n), correct + int(c)
    model.train()
    return loss_sum / max(1, tokens), correct / max(1, tokens)


def forward(model: Any, batch: dict[str, Any]) -> Any:
    """The logits of a batch: every input the task's collate built (input_ids, attention_mask, and
    pixel_values for vision-lm), the labels aside."""
    return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def mismatch(model_dir: str, task: str) -> JobFailure:
    found = "vision-language" if task == "causal-lm" else "causal language"
    want = "vision-lm" if task == "causal-lm" else "causal-lm"
    return JobFailure("MODEL_DOWNLOAD_FAILED",
                      f"the base model folder {model_dir} holds a {found} model, and task {task} needs "
                      f"{'a causal language model' if task == 'causal-lm' else 'a vision-language model (a config with vision_config, and a processor)'}: "
                      f"use task {want} with this folder, or name another base_model",
                      {"path": model_dir, "reason": "BASE_MODEL_TASK_MISMATCH", "task": task})


def autocast(device_type: str, dtype: Any) -> Any:
    import contextlib

    import torch

    return torch.autocast(device_type=device_type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def best_name(method: str) -> str:
    return "model.zip" if method == "full" else "adapter.zip"


class SavePacer:
    """When an epoch's end saves its checkpoint ZIP and last.pt: each time, unless the last such
    save took more than SAVE_BUDGET of the time since it ended. Epochs of a second or less (a small
    model on a small set) would otherwise spend a tenth of their time writing; at realistic epoch
    lengths every epoch saves. The first and the last epoch always save, as do save_steps saves and
    a stop, and a new best model is written whenever it improves. An epoch not saved is recorded
    all the same; a crash before the next save repeats it from the previous last.pt, and the
    service keeps one row per epoch."""

    def __init__(self) -> None:
        self.cost = 0.0
        self.ended = 0.0
        self.started = 0.0

    def due(self, final: bool) -> bool:
        now = time.monotonic()
        if final or self.ended == 0.0 or self.cost <= SAVE_BUDGET * (now - self.ended):
            self.started = now
            return True
        return False

    def saved(self) -> None:
        self.ended = time.monotonic()
        self.cost = self.ended - self.started


# The share of training time epoch-end saves may take (the same 2 % the service allows its
# uploads of those files).
SAVE_BUDGET = 0.02

SAVE_DIR = ".save"
KEPT_IN_SAVE_DIR = "README.md"


def save_model(model: Any, tok: Any, method: str, dest: Path, run_dir: Path) -> None:
    """A ZIP of save_pretrained: the adapter (lora), or the model with its tokenizer (full).

    The scratch folder keeps its README.md between saves (the rest is removed before and after
    each): in a new folder peft writes its model card from the template, about 10 ms of CPU per
    epoch on a tiny adapter, and in a folder that has one it updates it to the same bytes. The ZIP
    holds the same files either way; drop_save_dir removes the folder when the run stops or ends.
    """
    folder = run_dir / SAVE_DIR
    clear_save_dir(folder)
    # lora: the adapter alone (an adapted lm_head or embedding keeps its frozen base weights in the base model).
    model.save_pretrained(folder, safe_serialization=True, **({} if method == "full" else {"save_embedding_layers": False}))
    if method == "full":
        tok.save_pretrained(folder)
    tmp = dest.with_name(f".{dest.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder).as_posix())
    os.replace(tmp, dest)
    clear_save_dir(folder)


def clear_save_dir(folder: Path) -> None:
    """Everything in the scratch folder but its model card."""
    if not folder.is_dir():
        return
    for f in folder.iterdir():
        if f.is_dir() and not f.is_symlink():
            shutil.rmtree(f, ignore_errors=True)
        elif f.name != KEPT_IN_SAVE_DIR:
            f.unlink(missing_ok=True)


def drop_save_dir(run_dir: Path) -> None:
    shutil.rmtree(run_dir / SAVE_DIR, ignore_errors=True)


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    found = sorted(run_dir.glob("checkpoint-*.zip"), key=lambda p: int(p.stem.split("-")[1]))
    for old in found[:-keep] if keep > 0 else found:
        old.unlink(missing_ok=True)


def append_csv(path: Path, epoch: int, metrics: dict[str, float], seconds: float) -> None:
    new = not path.is_file()
    with path.open("a", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["epoch", *METRIC_KEYS, "epoch_seconds"])
        w.writerow([epoch, *(metrics[k] for k in METRIC_KEYS), round(seconds, 3)])


def write_config(run_dir: Path, spec: dict[str, Any], args: dict[str, Any], n_train: int, n_val: int,
                 trainable: int, total: int, quantized: dict[str, Any] | None = None) -> None:
    config = {"base_model": spec.get("model"), "task": spec.get("task"), "args": args, "device": spec.get("device"),
              "samples": {"train": n_train, "val": n_val}, "parameters": {"trainable": trainable, "total": total},
              "versions": versions(), **({"quantization": quantized} if quantized is not None else {})}
    (run_dir / "training_config.json").write_text(json.dumps(config, indent=2, default=str), encoding="utf-8")


def resend_epochs(rt: Any, state: dict[str, Any], spec: dict[str, Any]) -> None:
    """Epochs the checkpoint holds and the service has not recorded (a crash between the two)."""
    recorded = set(spec.get("recorded_epochs") or [])
    for payload in state.get("history", []):
        if payload["epoch"] not in recorded:
            rt.emit("epoch", **payload)


def finish(rt: Any, run_dir: Path, state: dict[str, Any]) -> None:
    drop_save_dir(run_dir)
    best = run_dir / best_name(state.get("method", "lora"))
    if not best.is_file():
        raise JobFailure("UNKNOWN_ERROR", f"training ended without {best.name} in {run_dir}")
    zip_events(run_dir)
    items = [{"name": n, "path": str(run_dir / n), "size": (run_dir / n).stat().st_size}
             for n in ("metrics.csv", "training_config.json", TB_ZIP) if (run_dir / n).is_file()]
    rt.emit("artifacts", items=items)
    best_metrics = state.get("best_metrics") or {}
    rt.emit("done", best=str(best), last=str(run_dir / "last.pt"), epochs_completed=int(state["epochs_completed"]),
            final_metrics={k: best_metrics.get(k) for k in ("val_loss", "val_token_accuracy")},
            best_epoch=state.get("best_epoch"))
