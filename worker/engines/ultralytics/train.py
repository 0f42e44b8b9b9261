"""The Ultralytics engine's training: `run(spec, rt)`, loaded by worker/main.py.

The contract is src/worker/protocol.ts (WorkerSpec in, WorkerEvent NDJSON out) and
worker/runtime.py (stop, lifeline, one terminal event). For Ultralytics:

- the run folder is spec.run_dir, i.e. Ultralytics' project=dirname(run_dir), name=basename;
- a stop lands at the next batch in a resumable way (StopRequested from a callback): `stopped`;
- resume=true continues from <run_dir>/weights/last.pt when it is resumable;
- NaN/Inf loss → TRAINING_DIVERGED; out of memory → retry with half the batch down to 1, then
  INSUFFICIENT_MEMORY; anything else → UNKNOWN_ERROR with the exception in details.

Modules beside it: metrics.py (metric names), offline.py (no network), progress.py
(callbacks), rundir.py (checkpoints, resume, artifacts).
"""

from __future__ import annotations

import gc
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any

import offline
from metrics import portable_metrics
from progress import Diverged, Progress
from rundir import RunDir, log
from runtime import JobFailure, Runtime, StopRequested, is_out_of_memory

# Arguments Ultralytics lets a resumed run change (engine/trainer.py check_resume).
RESUME_OVERRIDABLE = (
    "imgsz", "batch", "device", "close_mosaic", "save_period", "workers", "cache",
    "patience", "time", "freeze", "val", "plots",
)
# The architecture file of a task beside its detect one: yolo11n.yaml → yolo11n-pose.yaml.
TASK_SUFFIX = {"segment": "-seg", "classify": "-cls", "pose": "-pose", "obb": "-obb"}
# Arguments the worker sets itself.
RESERVED_ARGS = ("data", "project", "name", "resume", "model", "save_dir", "mode", "task")


class ModelError(Exception):
    pass


def check_spec(spec: dict[str, Any]) -> dict[str, Any]:
    for key, kind in (("job_id", str), ("task", str), ("model", str), ("data", str), ("run_dir", str),
                      ("resume", bool), ("cache_dir", str), ("args", dict)):
        if not isinstance(spec.get(key), kind):
            raise JobFailure("UNKNOWN_ERROR", f"invalid worker spec: spec.{key} missing or not a {kind.__name__}")
    pct = spec.get("progress_every_pct", 5)
    if not isinstance(pct, (int, float)) or isinstance(pct, bool) or pct <= 0:
        raise JobFailure("UNKNOWN_ERROR", "invalid worker spec: spec.progress_every_pct must be a positive number")
    spec["progress_every_pct"] = float(pct)
    return spec


def describe_device(device: Any, cuda_available: bool) -> str:
    d = str(device if device is not None else "").strip().lower().replace(" ", "")
    if d in {"cpu", "mps"}:
        return d
    if d in {"", "none", "auto"}:
        return "cuda:0" if cuda_available else "cpu"
    if d.startswith("cuda"):
        return d if ":" in d else "cuda:0"
    if re.fullmatch(r"\d+(,\d+)*", d):
        return ",".join(f"cuda:{x}" for x in d.split(","))
    return d



def classify(e: BaseException) -> tuple[str, str]:
    msg = str(e)
    if isinstance(e, Diverged) or "NaN persisted" in msg or "corrupted with NaN/Inf" in msg:
        return "TRAINING_DIVERGED", f"training diverged: {msg}"
    if isinstance(e, ModelError):
        return "MODEL_DOWNLOAD_FAILED", msg
    if is_out_of_memory(e):
        return "INSUFFICIENT_MEMORY", f"out of memory: {msg}"
    if re.search(r"Dataset '.*' error", msg) or "No valid images found" in msg or "No labels found" in msg:
        return "DATASET_INVALID", msg
    return "UNKNOWN_ERROR", f"{type(e).__name__}: {msg}" if msg else type(e).__name__


class Worker:
    def __init__(self, spec: dict[str, Any], rt: Runtime) -> None:
        self.spec = spec
        self.em = rt
        run_dir = Path(spec["run_dir"])
        # Ultralytics names a run folder project/name.
        self.project, self.name = str(run_dir.parent), run_dir.name
        self.run_dir = RunDir(self.project, self.name)
        self.progress = Progress(rt, self.run_dir, spec["progress_every_pct"])

    def run(self) -> None:
        spec, p = self.spec, self.progress
        model_path = Path(spec["model"])
        suffix = model_path.suffix.lower()
        # Checked before the slow imports: a missing base model fails in a fraction of a second.
        if suffix == ".pt" and not model_path.is_file():
            raise JobFailure(
                "MODEL_DOWNLOAD_FAILED",
                f"base model {model_path.name} not found: put the file at {model_path} (this worker never downloads weights)",
                {"path": str(model_path), "directory": str(model_path.parent), "file": model_path.name},
            )
        if suffix not in {".pt", ".yaml", ".yml"}:
            raise JobFailure("MODEL_DOWNLOAD_FAILED", f"unsupported model file {model_path.name}: expected a .pt checkpoint or a model .yaml",
                             {"path": str(model_path)})

        weights_dir = str(model_path.parent) if suffix == ".pt" else None
        offline.prepare_environment(spec["cache_dir"])
        p.check_stop()
        import torch
        import ultralytics

        offline.configure_settings(spec["cache_dir"], weights_dir)
        offline.patch_amp_check(weights_dir)

        args = dict(spec["args"])
        args.pop("exist_ok", None)  # always True: the run dir is the job's
        for key in RESERVED_ARGS:
            if args.pop(key, None) is not None:
                log(f"ignoring spec.args.{key}: the worker sets it")
        device = describe_device(args.get("device"), torch.cuda.is_available())
        if device in {"cpu", "mps"}:
            args["amp"] = False  # no AMP off CUDA
        args.setdefault("plots", True)
        batch = args.get("batch", 16)
        p.batch = int(batch) if isinstance(batch, (int, float)) and batch >= 1 else None

        versions = {"python": sys.version.split()[0], "torch": torch.__version__,
                    "ultralytics": ultralytics.__version__, "cuda": str(torch.version.cuda or "none")}
        try:
            import torchvision

            versions["torchvision"] = torchvision.__version__
        except Exception:
            pass

        decision, done_epochs, ckpt = self.run_dir.inspect() if spec["resume"] else ("fresh", 0, None)
        if decision == "fresh":
            if spec["resume"]:
                log("resume asked but no resumable last.pt: starting from the base model")
            self.run_dir.clean()
        else:
            state = self.run_dir.load_state()
            p.epochs_completed = p.saved_epoch = done_epochs
            p.best_epoch = state.get("best_epoch")
            p.note_saved()
        if decision == "resume" and ckpt is not None:
            train_args = {"data": spec["data"], "project": self.project, "name": self.name}
            if device in {"cpu", "mps"}:
                train_args["amp"] = False
            self.run_dir.prepare_resume(ckpt, done_epochs, train_args)
            log(f"resuming {self.run_dir.last} after epoch {done_epochs}")
        self.em.emit("started", pid=os.getpid(), device=device, versions=versions,
                     resumed_from_epoch=None if decision == "fresh" else done_epochs)
        if decision != "fresh":
            self.replay_unrecorded_epochs(done_epochs, p.best_epoch)
        if decision == "finished":
            self.finish_from_files()
            return

        resume = decision == "resume"
        while True:
            try:
                p.check_stop()
                model = self.train_once(args, resume)
                break
            except (StopRequested, Diverged):
                raise
            except BaseException as e:
                if not is_out_of_memory(e) or p.stage == "final":
                    raise
                traceback.print_exc()
                current = p.batch or 16
                if current <= 1:
                    raise JobFailure("INSUFFICIENT_MEMORY", f"out of memory even with batch=1: {e}",
                                     {"exception": type(e).__name__, "message": str(e)[:2000], "device": device}, p.current_epoch) from e
                p.batch = args["batch"] = max(1, current // 2)
                self.em.emit("batch_size_reduced", batch=p.batch, reason=f"{type(e).__name__}: {str(e)[:300]}")
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                # Continue from this run's own last.pt when an epoch was saved, else start over.
                resume = p.saved_epoch > 0 and self.run_dir.last.exists()
                if resume:
                    p.epochs_completed = p.saved_epoch
                    self.run_dir.truncate_csv(p.saved_epoch)
                p.stage = "init"
        self.finish(model)

    def replay_unrecorded_epochs(self, done_epochs: int, best_epoch: int | None) -> None:
        """Epochs the checkpoint holds but the service never recorded (it died between the save
        and the record), sent again from results.csv, which Ultralytics writes before the save."""
        recorded = self.spec.get("recorded_epochs")
        if not isinstance(recorded, list):
            return
        have = {int(e) for e in recorded if isinstance(e, (int, float))}
        epochs = int(self.spec["args"].get("epochs") or done_epochs)
        previous_time = 0.0
        for row in sorted(self.run_dir.csv_rows(), key=lambda r: r["epoch"]):
            epoch = int(row["epoch"])
            elapsed = row.get("time", previous_time)
            seconds, previous_time = max(0.0, elapsed - previous_time), elapsed
            if epoch > done_epochs or epoch in have:
                continue
            raw = {k: v for k, v in row.items() if k not in ("epoch", "time")}
            log(f"epoch {epoch} is in the checkpoint but was never recorded: sending it again")
            self.em.emit("epoch", epoch=epoch, epochs=epochs, metrics=portable_metrics(raw), epoch_seconds=seconds,
                         fitness=None, best_fitness=None, best_epoch=best_epoch)

    def train_once(self, args: dict[str, Any], resume: bool) -> Any:
        from ultralytics import YOLO

        spec = self.spec
        if resume:
            model = YOLO(str(self.run_dir.last))
            self.progress.attach(model)
            model.train(resume=True, data=spec["data"], **{k: v for k, v in args.items() if k in RESUME_OVERRIDABLE})
            return model
        model = self.load_base_model()
        self.progress.attach(model)
        model.train(data=spec["data"], project=self.project, name=self.name, exist_ok=True, **args)
        return model

    def load_base_model(self) -> Any:
        from ultralytics import YOLO

        path = Path(self.spec["model"])
        if path.suffix.lower() == ".pt":
            try:
                model = YOLO(str(path))
            except Exception as e:
                raise ModelError(f"base model {path} could not be loaded: {type(e).__name__}: {e}") from e
        else:
            model = YOLO(self.resolve_yaml(path))
        if model.task != self.spec["task"]:
            self.em.emit("warning", message=f"model {path.name} is a {model.task} model, the job asked for {self.spec['task']}: training it as {model.task}")
        return model

    def resolve_yaml(self, path: Path) -> str:
        """A model .yaml: the file when it exists, else a config Ultralytics ships, found by name (offline)."""
        from ultralytics.nn.tasks import guess_model_task, yaml_model_load

        def loadable(name: str) -> dict | None:
            try:
                return yaml_model_load(name)
            except (FileNotFoundError, OSError):
                return None

        if path.is_file():
            return str(path)
        cfg = loadable(path.name)
        if cfg is None:
            raise ModelError(f"model config {path.name} not found: neither {path} nor a config shipped with Ultralytics")
        task = self.spec["task"]
        suffix = TASK_SUFFIX.get(task)
        if suffix and guess_model_task(cfg) == "detect":
            variant = f"{path.stem}{suffix}{path.suffix}"
            if loadable(variant) is not None:
                self.em.emit("warning", message=f"{path.name} is a detect model; using {variant} for the {task} task")
                return variant
        return path.name

    def finish(self, model: Any) -> None:
        p = self.progress
        p.stage = "final"
        p.set_phase("finalizing")
        tr = getattr(model, "trainer", None)
        best = Path(tr.best) if tr is not None else self.run_dir.best
        last = Path(tr.last) if tr is not None else self.run_dir.last
        self.done(best, last)

    def finish_from_files(self) -> None:
        """resume=true on a run whose training loop had finished: report it from its files."""
        p = self.progress
        p.stage = "final"
        p.set_phase("finalizing")
        self.run_dir.strip()
        self.done(self.run_dir.best, self.run_dir.last)

    def done(self, best: Path, last: Path) -> None:
        p = self.progress
        self.run_dir.resume_copy.unlink(missing_ok=True)
        if not best.is_file():
            best = last
        if not best.is_file():
            raise RuntimeError(f"training ended without a checkpoint in {self.run_dir.weights}")
        final = p.final_metrics or portable_metrics(self.run_dir.final_metrics_from(best)) or p.last_epoch_metrics
        self.em.emit("artifacts", items=self.run_dir.artifacts())
        self.em.emit("done", best=str(best), last=str(last), epochs_completed=p.epochs_completed,
                     final_metrics=final, best_epoch=p.best_epoch)


def run(spec: dict[str, Any], rt: Runtime) -> None:
    """The engine's entry: one training run, ended by `done` (or an exception the runtime reports)."""
    Worker(check_spec(spec), rt).run()
