"""RF-DETR training engine: `run(spec, rt)` for the shared worker runtime.

The run calls rfdetr's own `model.train(...)` (so it does exactly what the library does), with one
Lightning callback appended to the trainer rfdetr builds (events.py). Everything lands in
spec.run_dir, which is rfdetr's output_dir:

- last.ckpt: the Lightning checkpoint of the last finished epoch (weights, optimizer, EMA, loop
  and callback state): what resume continues from, and what `stopped` and the `last` checkpoint
  events name. RF-DETR can also predict and export from it.
- checkpoint_best_ema.pth (checkpoint_best_regular.pth without EMA): rewritten whenever the
  validated score beats the best so far (the `best` checkpoint events).
- checkpoint_best_total.pth: written when training ends, a copy of the better of the two above,
  optimizer state stripped: what `done.best` names. With EMA on (the default), validation scores
  only the EMA weights, so this is the best EMA checkpoint and the epoch metrics are the EMA
  model's. If the score never rose above 0, rfdetr saves the final EMA weights there instead.
- last_ema.pth, metrics.csv, training_config.json; results.png (trainhook's plot of metrics.csv).

spec.args (the engine's arguments) → `RFDETR<Size>(...)` / `model.train(...)`:
  model_size → the class (variants.py); resolution → resolution (a multiple of the size's block);
  epochs, batch_size, lr, lr_encoder, grad_accum_steps, use_ema, weight_decay, num_workers, seed,
  warmup_epochs, multi_scale → the same names; early_stopping → early_stopping, patience →
  early_stopping_patience, min_delta → early_stopping_min_delta; amp=false → amp_dtype=None;
  plots=false skips results.png; num_queries, group_detr → the model's num_queries (and num_select)
  and group_detr (fewer queries train much faster on CPU: the matcher and the losses run over
  num_queries x group_detr = 3,900 queries per image by default); threads → torch.set_num_threads. Set by the engine: dataset_dir, dataset_file, output_dir, device,
  resume, tensorboard=False, and checkpoint_interval (no periodic full checkpoints).
"""

from __future__ import annotations

import csv
import gc
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from runtime import JobFailure, StopRequested

# rfdetr keeps a full Lightning checkpoint (weights + optimizer, ~0.5 GB for nano) every
# `checkpoint_interval` epochs, for good. last.ckpt already covers resume, so the periodic ones are
# switched off by an interval no run reaches. (An interval of 1 would drop last.ckpt instead.)
NO_PERIODIC_CHECKPOINTS = 1_000_000_000

# spec.args key → model.train() keyword, passed through when present.
TRAIN_ARGS = {
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "lr_encoder": "lr_encoder",
    "grad_accum_steps": "grad_accum_steps",
    "use_ema": "use_ema",
    "weight_decay": "weight_decay",
    "num_workers": "num_workers",
    "seed": "seed",
    "warmup_epochs": "warmup_epochs",
    "multi_scale": "multi_scale",
    "early_stopping": "early_stopping",
    "patience": "early_stopping_patience",
    "min_delta": "early_stopping_min_delta",
}
ENGINE_ARGS = {"model_size", "resolution", "amp", "plots", "num_queries", "group_detr", "threads"}

# Files of a run that a fresh start removes (a resume keeps them).
RUN_OUTPUTS = (
    "last.ckpt", "last_ema.pth", "checkpoint_best_total.pth", "checkpoint_best_ema.pth",
    "checkpoint_best_regular.pth", "metrics.csv", "hparams.yaml", "training_config.json",
    "results.png", "trainhook-rfdetr.json",
)
ARTIFACTS = ("metrics.csv", "training_config.json", "results.png", "hparams.yaml")


def classify(exc: BaseException) -> tuple[str, str] | None:
    from engines.rfdetr.environment import is_out_of_memory

    if is_out_of_memory(exc):
        return "INSUFFICIENT_MEMORY", f"out of memory: {exc}"
    return None


def run(spec: dict[str, Any], rt: Any) -> None:
    from engines.rfdetr import datasets
    from engines.rfdetr.environment import go_offline, is_out_of_memory, resolve_device, versions
    from engines.rfdetr.state import read_state, write_state
    from engines.rfdetr.variants import check_resolution, variant_for

    run_dir = Path(spec["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    rt.emit("phase", phase="preparing")
    go_offline(spec.get("cache_dir"))

    args = dict(spec.get("args") or {})
    unknown = sorted(set(args) - set(TRAIN_ARGS) - ENGINE_ARGS)
    if unknown:
        rt.emit("warning", message=f"RF-DETR ignores unknown arguments: {', '.join(unknown)}")
    try:
        variant = variant_for(spec.get("task", "detect"), args.get("model_size", "nano"))
        resolution = args.get("resolution", variant.default_resolution)
        check_resolution(variant, resolution)
    except ValueError as e:
        raise JobFailure("UNKNOWN_ERROR", str(e), {"argument": "model_size/resolution"}) from e

    weights = spec.get("model")
    if weights is not None:
        if not isinstance(weights, str) or not os.path.isabs(weights) or not Path(weights).is_file():
            raise JobFailure(
                "MODEL_DOWNLOAD_FAILED",
                f"base weights {weights!r} not found: the engine takes a local file and never downloads",
                {"path": weights},
            )

    import torch

    if args.get("threads"):
        torch.set_num_threads(int(args["threads"]))
    device = resolve_device(spec.get("device"))
    state = read_state(run_dir)
    last = run_dir / "last.ckpt"
    if spec.get("resume") and state.get("finished") and (run_dir / "checkpoint_best_total.pth").is_file():
        # A finished run found again (the service restarted before it read `done`): report it
        # from its files, without the dataset, which may be gone by now.
        rt.emit("started", pid=os.getpid(), device=device, versions=versions(),
                resumed_from_epoch=state.get("epochs_completed"))
        _finish(rt, run_dir, state, plots=False)
        return
    try:
        data = datasets.prepare(spec["data"], spec.get("data_format", "yolo"), run_dir)
    except datasets.DatasetProblem as e:
        raise JobFailure("DATASET_INVALID", str(e), e.details) from e
    rt.check_stop()
    done_epochs = 0
    resume_from: Path | None = None
    if spec.get("resume") and last.is_file():
        done_epochs = checkpoint_epochs(last)
        resume_from = last
        trim_metrics_csv(run_dir / "metrics.csv", done_epochs)
        rt.log(f"resuming from {last} after epoch {done_epochs}")
    else:
        if spec.get("resume"):
            rt.log("resume asked, but the run dir holds no last.ckpt: starting over")
        for name in RUN_OUTPUTS:
            (run_dir / name).unlink(missing_ok=True)
    rt.stopped_state = {"epochs_completed": done_epochs, "last": str(last) if resume_from else None}
    rt.emit("started", pid=os.getpid(), device=device, versions=versions(),
            resumed_from_epoch=done_epochs if resume_from else None)

    epochs = int(args.get("epochs", 100))
    batch_size = int(args.get("batch_size", 4))
    grad_accum = int(args.get("grad_accum_steps", 1))
    use_ema = bool(args.get("use_ema", True))
    attempt = 0
    while True:
        attempt += 1
        try:
            events = _train_once(spec, rt, variant, data, run_dir, device=device, resolution=resolution,
                                 weights=weights, resume_from=resume_from, epochs=epochs, batch_size=batch_size,
                                 grad_accum=grad_accum, use_ema=use_ema, args=args, first_attempt=attempt == 1)
            break
        except (StopRequested, JobFailure):
            raise
        except BaseException as e:  # noqa: BLE001 - out of memory is retried, the rest re-raised
            if not is_out_of_memory(e):
                raise
            rt.log(f"out of memory at batch_size={batch_size}: {type(e).__name__}: {str(e)[:500]}")
            if batch_size <= 1:
                raise JobFailure("INSUFFICIENT_MEMORY", f"out of memory even with batch_size=1: {e}",
                                 {"exception": type(e).__name__, "message": str(e)[:2000], "device": device}) from e
            effective = batch_size * grad_accum
            batch_size = max(1, batch_size // 2)
            # Same effective batch (what lr is tuned for), by accumulating more smaller batches.
            grad_accum = max(1, math.ceil(effective / batch_size))
            rt.emit("batch_size_reduced", batch=batch_size, reason=f"{type(e).__name__}: {str(e)[:300]}")
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            saved = read_state(run_dir).get("epochs_completed", 0)
            if last.is_file() and saved > 0:
                resume_from = last
                trim_metrics_csv(run_dir / "metrics.csv", checkpoint_epochs(last))
            else:
                resume_from = None
                for name in RUN_OUTPUTS:
                    (run_dir / name).unlink(missing_ok=True)

    rt.emit("phase", phase="finalizing")
    best_epoch = events.best_epoch
    if best_epoch is None and use_ema and events.epochs_completed:
        best_epoch = events.epochs_completed  # rfdetr then keeps the final EMA weights as the best
    state = {"epochs_completed": events.epochs_completed, "epochs": epochs, "best_epoch": best_epoch,
             "best_fitness": events.best_fitness, "last_metrics": events.last_metrics,
             "final_metrics": events.last_metrics, "finished": True}
    write_state(run_dir, state)
    _finish(rt, run_dir, state, plots=bool(args.get("plots", True)))


def _train_once(spec: dict[str, Any], rt: Any, variant: Any, data: Any, run_dir: Path, *, device: str,
                resolution: int, weights: str | None, resume_from: Path | None, epochs: int, batch_size: int,
                grad_accum: int, use_ema: bool, args: dict[str, Any], first_attempt: bool) -> Any:
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from engines.rfdetr.events import TrainhookEvents
    from engines.rfdetr.variants import build_model

    if args.get("seed") is not None and resume_from is None:
        # rfdetr seeds only when fit starts, after both of its model builds have drawn their
        # random initial weights; seeding here makes those weights, too, the seed's.
        from lightning_fabric.utilities.seed import seed_everything

        seed_everything(int(args["seed"]), verbose=False)
    # A resumed run takes its weights from last.ckpt; the base file may be gone by now.
    model = build_model(variant, weights=None if resume_from else weights, num_classes=len(data.class_names),
                        resolution=resolution, device=device, random_init_layout=weights is None,
                        num_queries=args.get("num_queries"), group_detr=args.get("group_detr"))
    rt.check_stop()
    events = TrainhookEvents(rt, run_dir, epochs=epochs, batch_size=batch_size,
                             segmentation=variant.task == "segment", use_ema=use_ema,
                             every_pct=float(spec.get("progress_every_pct") or 5), announce_training=first_attempt)
    kwargs: dict[str, Any] = {rfdetr_key: args[key] for key, rfdetr_key in TRAIN_ARGS.items() if key in args}
    kwargs.update(
        dataset_dir=data.dataset_dir, dataset_file=data.dataset_file, output_dir=str(run_dir), device=device,
        resolution=resolution, epochs=epochs, batch_size=batch_size, grad_accum_steps=grad_accum, use_ema=use_ema,
        tensorboard=False, checkpoint_interval=NO_PERIODIC_CHECKPOINTS,
    )
    if args.get("amp") is False:
        kwargs["amp_dtype"] = None
    if resume_from is not None:
        kwargs["resume"] = str(resume_from)
    try:
        with callbacks_appended(events):
            model.train(**kwargs)
    except SIGTERMException:
        # Lightning's own SIGTERM handling ends an epoch or a validation early; the runtime's
        # handler (which Lightning calls as well) has marked the stop.
        rt.check_stop()
        raise StopRequested("SIGTERM") from None
    return events


@contextmanager
def callbacks_appended(*callbacks: Any) -> Iterator[None]:
    """model.train() builds its trainer with rfdetr.training.build_trainer; add ours to it."""
    import rfdetr.training as training

    original = training.build_trainer

    def build_trainer(*a: Any, **k: Any) -> Any:
        trainer = original(*a, **k)
        trainer.callbacks.extend(callbacks)
        return trainer

    training.build_trainer = build_trainer
    try:
        yield
    finally:
        training.build_trainer = original


def checkpoint_epochs(path: Path) -> int:
    """Epochs finished in a Lightning checkpoint saved at an epoch's end (its 0-based epoch + 1)."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # noqa: BLE001 - our own file in the run dir: read it fully
        ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    return int(ckpt["epoch"]) + 1


def trim_metrics_csv(path: Path, epochs_done: int) -> None:
    """Drop rows of epochs after the checkpoint (a stop between validation and the save leaves one)."""
    if not path.is_file():
        return
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    kept = [r for r in rows if _int(r.get("epoch")) < epochs_done]
    if len(kept) == len(rows):
        return
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    os.replace(tmp, path)


def _int(v: Any) -> int:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return 1 << 30


def _finish(rt: Any, run_dir: Path, state: dict[str, Any], *, plots: bool) -> None:
    best = run_dir / "checkpoint_best_total.pth"
    last = run_dir / "last.ckpt"
    for candidate in (best, run_dir / "checkpoint_best_ema.pth", run_dir / "checkpoint_best_regular.pth", last):
        if candidate.is_file():
            best = candidate
            break
    else:
        raise JobFailure("UNKNOWN_ERROR", f"training ended without a checkpoint in {run_dir}")
    if plots:
        try:
            plot_metrics(run_dir / "metrics.csv", run_dir / "results.png")
        except Exception as e:  # noqa: BLE001 - a plot never fails a finished run
            rt.log(f"no results.png: {type(e).__name__}: {e}")
    items = [{"name": n, "path": str(run_dir / n), "size": (run_dir / n).stat().st_size}
             for n in ARTIFACTS if (run_dir / n).is_file()]
    rt.emit("artifacts", items=items)
    rt.emit("done", best=str(best), last=str(last if last.is_file() else best),
            epochs_completed=int(state.get("epochs_completed") or 0),
            final_metrics=state.get("final_metrics") or state.get("last_metrics") or {},
            best_epoch=state.get("best_epoch"))


def plot_metrics(metrics_csv: Path, out: Path) -> None:
    """mAP and the train losses per epoch from metrics.csv (rfdetr's own plots need pandas)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from engines.rfdetr.metrics import portable

    per_epoch: dict[int, dict[str, float | None]] = {}
    with metrics_csv.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            e = _int(row.get("epoch"))
            per_epoch.setdefault(e, {}).update({k: v for k, v in portable({k: v for k, v in row.items() if v}).items() if v is not None})
    epochs = sorted(per_epoch)
    if not epochs:
        return
    fig, (ax_map, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, names in ((ax_map, ("mAP50", "mAP50-95", "mAP50(M)", "mAP50-95(M)")),
                      (ax_loss, ("total_loss", "cls_loss", "box_loss", "giou_loss", "mask_ce_loss", "mask_dice_loss"))):
        for name in names:
            xs = [e + 1 for e in epochs if per_epoch[e].get(name) is not None]
            if xs:
                ax.plot(xs, [per_epoch[e - 1][name] for e in xs], marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    ax_map.set_title("validation")
    ax_loss.set_title("train losses")
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)

