"""A Lightning callback that turns RF-DETR's training loop into trainhook events.

It is appended last to the trainer rfdetr builds, and it is a `Checkpoint` subclass on purpose:
Lightning calls the epoch-end hooks of Checkpoint callbacks after the others and in list order,
so by the time `on_train_epoch_end` runs here, rfdetr's ModelCheckpoint has written last.ckpt for
the epoch and the `checkpoint` event names a file that exists. It writes no file itself.

Stops: `rt.check_stop()` at every training and validation batch boundary raises out of
Lightning, which tears down without saving, so last.ckpt stays the one of the last finished
epoch. The best-so-far bookkeeping is part of this callback's state in last.ckpt, so a resumed
run continues it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pytorch_lightning.callbacks import Checkpoint

from engines.rfdetr.metrics import fitness_key, number, portable
from engines.rfdetr.state import write_state
from runtime import JobFailure

# Tests only: fail every batch with MemoryError while the batch size is above this.
FAULT_OOM_ABOVE_BATCH = "TRAINHOOK_TEST_OOM_ABOVE_BATCH"
NONFINITE_BATCHES_LIMIT = 3


class TrainhookEvents(Checkpoint):
    def __init__(self, rt: Any, run_dir: Path, *, epochs: int, batch_size: int, segmentation: bool,
                 use_ema: bool, every_pct: float, announce_training: bool = True) -> None:
        self.rt = rt
        self.announce_training = announce_training  # phases only move forward: once per job
        self.run_dir = run_dir
        self.epochs = epochs
        self.batch_size = batch_size
        self.fitness_name = fitness_key(segmentation)
        self.use_ema = use_ema
        self.every_pct = every_pct
        oom = os.environ.get(FAULT_OOM_ABOVE_BATCH)
        self.fault_oom_above = int(oom) if oom else None
        # Persisted in last.ckpt (state_dict below).
        self.best_fitness: float | None = None
        self.best_epoch: int | None = None
        # This process only.
        self.epochs_completed = 0
        self.last_metrics: dict[str, float | None] = {}
        self._epoch_started = 0.0
        self._batches_done = 0
        self._last_bucket = -1
        self._nonfinite_run = 0
        self._nonfinite_in_epoch = 0
        self._improved = False

    # --- resume state ---------------------------------------------------------------------------

    @property
    def state_key(self) -> str:
        return "TrainhookEvents"

    def state_dict(self) -> dict[str, Any]:
        return {"best_fitness": self.best_fitness, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_fitness = state_dict.get("best_fitness")
        self.best_epoch = state_dict.get("best_epoch")

    # --- training -------------------------------------------------------------------------------

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # From here a stop waits for a batch boundary, so no checkpoint is written half-way.
        self.rt.interruptible = False
        self.epochs_completed = int(trainer.current_epoch)
        if self.announce_training:
            self.rt.emit("phase", phase="training")
        self.rt.check_stop()

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._epoch_started = time.monotonic()
        self._batches_done = 0
        self._last_bucket = -1
        self._nonfinite_run = 0
        self._nonfinite_in_epoch = 0
        self._improved = False
        self.rt.check_stop()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.rt.check_stop()
        if self.fault_oom_above is not None and self.batch_size > self.fault_oom_above:
            raise MemoryError(f"simulated out of memory at batch_size={self.batch_size} ({FAULT_OOM_ABOVE_BATCH})")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._batches_done += 1
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and number(loss) is None:
            self._nonfinite_run += 1
            self._nonfinite_in_epoch += 1
            # One inf batch can be a mixed-precision overflow the scaler skips; several in a row is divergence.
            if self._nonfinite_run >= NONFINITE_BATCHES_LIMIT:
                raise JobFailure(
                    "TRAINING_DIVERGED",
                    f"training diverged: loss is NaN/Inf for {self._nonfinite_run} batches in a row "
                    f"(epoch {trainer.current_epoch + 1}, batch {self._batches_done})",
                    epoch=trainer.current_epoch + 1,
                )
        else:
            self._nonfinite_run = 0
        batches = max(1, int(trainer.num_training_batches))
        bucket = int((self._batches_done * 100 / batches) // self.every_pct)
        if bucket > self._last_bucket or self._batches_done == batches:
            self._last_bucket = bucket
            self.rt.emit("batch", epoch=trainer.current_epoch + 1, epochs=self.epochs, batch=self._batches_done, batches=batches)
        self.rt.check_stop()

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            self.rt.check_stop()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Best-so-far, with the rule rfdetr's BestModelCallback saves by, before last.ckpt stores it."""
        if trainer.sanity_checking:
            return
        fitness = portable(trainer.callback_metrics).get(self.fitness_name)
        if fitness is None:
            return
        # With EMA, rfdetr's best EMA file starts at 0 and needs a strictly higher score; without,
        # the first epoch always counts and later ones must beat it.
        floor = self.best_fitness if self.best_fitness is not None else (0.0 if self.use_ema else None)
        if floor is None or fitness > floor:
            self.best_fitness = fitness
            self.best_epoch = trainer.current_epoch + 1
            self._improved = True

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        epoch = trainer.current_epoch + 1
        if self._batches_done and self._nonfinite_in_epoch == self._batches_done:
            raise JobFailure("TRAINING_DIVERGED", f"training diverged: loss is NaN/Inf in every batch of epoch {epoch}", epoch=epoch)
        metrics = portable(trainer.callback_metrics)
        if "total_loss" in metrics and metrics["total_loss"] is None:
            raise JobFailure("TRAINING_DIVERGED", f"training diverged: the mean loss of epoch {epoch} is NaN/Inf", epoch=epoch)
        self.last_metrics = metrics
        self.epochs_completed = epoch
        self.rt.emit(
            "epoch",
            epoch=epoch,
            epochs=self.epochs,
            metrics=metrics,
            epoch_seconds=round(time.monotonic() - self._epoch_started, 3),
            fitness=metrics.get(self.fitness_name),
            best_fitness=self.best_fitness,
            best_epoch=self.best_epoch,
        )
        last = self.run_dir / "last.ckpt"
        if last.is_file():
            self.rt.emit("checkpoint", kind="last", path=str(last), epoch=epoch)
            self.rt.stopped_state = {"epochs_completed": epoch, "last": str(last)}
        if self._improved:
            best = self.run_dir / ("checkpoint_best_ema.pth" if self.use_ema else "checkpoint_best_regular.pth")
            if best.is_file():
                self.rt.emit("checkpoint", kind="best", path=str(best), epoch=epoch)
        write_state(self.run_dir, {
            "epochs_completed": epoch, "epochs": self.epochs, "best_epoch": self.best_epoch,
            "best_fitness": self.best_fitness, "last_metrics": metrics, "finished": False,
        })
        if not trainer.should_stop and epoch < self.epochs:
            self.rt.check_stop()
