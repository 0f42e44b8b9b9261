"""Ultralytics callbacks → protocol events, plus the stop and divergence checks at batch boundaries.

Callback order: on_pretrain_routine_start → on_pretrain_routine_end →
on_train_start → per epoch [on_train_epoch_start → batches → on_train_epoch_end → on_model_save →
on_fit_epoch_end] → final_eval fires on_fit_epoch_end once more (deduplicated here) → on_train_end.
"""

from __future__ import annotations

import os
from typing import Any

from metrics import portable_metrics
from rundir import RunDir
from runtime import Runtime, StopRequested, number

PHASES = ("preparing", "training", "validating", "finalizing")
# Tests only: fail every batch with MemoryError while the batch size is above this.
_FAULT_OOM_ABOVE_BATCH = int(os.environ["TRAINHOOK_TEST_OOM_ABOVE_BATCH"]) if os.environ.get("TRAINHOOK_TEST_OOM_ABOVE_BATCH") else None
NONFINITE_BATCHES_LIMIT = 3
CALLBACKS = (
    "on_pretrain_routine_start", "on_pretrain_routine_end", "on_train_start", "on_train_epoch_start",
    "on_train_batch_start", "on_train_batch_end", "on_train_epoch_end", "on_model_save",
    "on_fit_epoch_end", "on_train_end", "on_val_batch_end",
)


class Diverged(Exception):
    pass


class Progress:
    """Stops are raised as StopRequested from a callback (not trainer.stop, which makes final_eval
    strip last.pt): last.pt of the last finished epoch stays intact and resumable."""

    def __init__(self, rt: Runtime, run: RunDir, every_pct: float) -> None:
        self.em = rt
        self.rt = rt
        self.run = run
        self.every_pct = every_pct
        self.stage = "init"  # init → preparing → training → final
        self.phase: str | None = None
        self.epochs_completed = 0  # last epoch (1-based) whose metrics were emitted
        self.saved_epoch = 0  # last epoch (1-based) in last.pt
        self.best_epoch: int | None = None
        self.current_epoch: int | None = None
        self.last_epoch_metrics: dict[str, float | None] = {}
        self.final_metrics: dict[str, float | None] | None = None
        self.batch: int | None = None
        self._reset_epoch()

    # --- stop ----------------------------------------------------------------------------------

    def check_stop(self) -> None:
        if self.rt.stop_requested and self.stage in {"init", "preparing", "training"}:
            raise StopRequested(self.rt.stop_reason)

    def note_saved(self) -> None:
        """What a stop now would report: the last epoch in last.pt, and whether it resumes."""
        last = self.run.last
        resumable = self.saved_epoch > 0 and last.exists()
        self.rt.stopped_state = {"epochs_completed": self.saved_epoch, "last": str(last) if resumable else None}

    # --- helpers ---------------------------------------------------------------------------------

    def set_phase(self, phase: str) -> None:
        """Phases only move forward (an OOM retry does not send the job back to preparing)."""
        if PHASES.index(phase) > (PHASES.index(self.phase) if self.phase else -1):
            self.phase = phase
            self.em.emit("phase", phase=phase)

    def _reset_epoch(self) -> None:
        self.batches_done = 0
        self.last_bucket = -1
        self.nonfinite_run = 0
        self.nonfinite_in_epoch = 0

    def attach(self, model: Any) -> None:
        for event in CALLBACKS:
            model.add_callback(event, getattr(self, event))

    # --- callbacks ---------------------------------------------------------------------------

    def on_pretrain_routine_start(self, tr: Any) -> None:
        self.stage = "preparing"
        self.set_phase("preparing")
        self.check_stop()

    def on_pretrain_routine_end(self, tr: Any) -> None:
        self.check_stop()

    def on_train_start(self, tr: Any) -> None:
        self.stage = "training"
        # From here a stop waits for the next batch boundary: checkpoints are being written.
        self.rt.interruptible = False
        self.set_phase("training")
        self.batch = int(tr.batch_size)
        self.check_stop()

    def on_train_epoch_start(self, tr: Any) -> None:
        self.check_stop()
        self.current_epoch = tr.epoch + 1
        self.rt.current_epoch = self.current_epoch
        self._reset_epoch()
        # Ultralytics halves the batch itself on a CUDA OOM in the first epoch and restarts it.
        if self.batch is not None and int(tr.batch_size) < self.batch:
            self.batch = int(tr.batch_size)
            self.em.emit("batch_size_reduced", batch=self.batch, reason="CUDA out of memory (reduced by Ultralytics)")

    def on_train_batch_start(self, tr: Any) -> None:
        self.check_stop()
        if _FAULT_OOM_ABOVE_BATCH is not None and int(tr.batch_size) > _FAULT_OOM_ABOVE_BATCH:
            raise MemoryError(f"simulated out of memory at batch={int(tr.batch_size)} (TRAINHOOK_TEST_OOM_ABOVE_BATCH)")

    def on_train_batch_end(self, tr: Any) -> None:
        self.batches_done += 1
        nb = max(1, len(tr.train_loader))
        items = tr.loss_items
        finite = True
        if items is not None:
            import torch

            finite = bool(torch.isfinite(items.detach()).all())
        if finite:
            self.nonfinite_run = 0
        else:
            self.nonfinite_run += 1
            self.nonfinite_in_epoch += 1
            # One inf batch can be an AMP overflow the scaler skips; several in a row is divergence.
            if self.nonfinite_run >= NONFINITE_BATCHES_LIMIT:
                raise Diverged(
                    f"loss is NaN/Inf for {self.nonfinite_run} batches in a row (epoch {tr.epoch + 1}, batch {self.batches_done})"
                )
        bucket = int((self.batches_done * 100 / nb) // self.every_pct)
        if bucket > self.last_bucket or self.batches_done == nb:
            self.last_bucket = bucket
            self.em.emit("batch", epoch=tr.epoch + 1, epochs=int(tr.epochs), batch=self.batches_done, batches=nb)
        self.check_stop()

    def on_train_epoch_end(self, tr: Any) -> None:
        if self.batches_done and self.nonfinite_in_epoch == self.batches_done:
            raise Diverged(f"loss is NaN/Inf in every batch of epoch {tr.epoch + 1}")
        self.check_stop()

    def on_val_batch_end(self, validator: Any) -> None:
        if self.stage == "training":
            self.check_stop()

    def on_model_save(self, tr: Any) -> None:
        epoch = tr.epoch + 1
        self.run.keep_resume_copy()
        self.saved_epoch = epoch
        self.em.emit("checkpoint", kind="last", path=str(tr.last), epoch=epoch)
        if tr.best.exists() and tr.best_fitness is not None and tr.best_fitness == tr.fitness:
            self.best_epoch = epoch
            self.em.emit("checkpoint", kind="best", path=str(tr.best), epoch=epoch)
        if tr.save_period > 0 and tr.epoch % tr.save_period == 0:
            self.em.emit("checkpoint", kind="epoch", path=str(tr.wdir / f"epoch{tr.epoch}.pt"), epoch=epoch)
        self.run.save_state(best_epoch=self.best_epoch, saved_epoch=self.saved_epoch)
        self.note_saved()

    def on_fit_epoch_end(self, tr: Any) -> None:
        epoch = tr.epoch + 1
        if epoch <= self.epochs_completed:
            # final_eval on best.pt fires on_fit_epoch_end once more for the same epoch.
            self.final_metrics = portable_metrics(tr.metrics)
            return
        raw = {**tr.label_loss_items(tr.tloss, prefix="train"), **(tr.metrics or {}), **(getattr(tr, "lr", None) or {})}
        metrics = portable_metrics(raw)
        self.last_epoch_metrics = metrics
        self.epochs_completed = epoch
        self.em.emit(
            "epoch",
            epoch=epoch,
            epochs=int(tr.epochs),
            metrics=metrics,
            epoch_seconds=number(tr.epoch_time) or 0.0,
            fitness=number(tr.fitness),
            best_fitness=number(tr.best_fitness),
            best_epoch=self.best_epoch,
        )
        if tr.stop:  # last epoch or early stop: final_eval on best.pt follows
            self.stage = "final"
            self.set_phase("validating")
        else:
            self.check_stop()

    def on_train_end(self, tr: Any) -> None:
        self.stage = "final"
        self.set_phase("finalizing")
