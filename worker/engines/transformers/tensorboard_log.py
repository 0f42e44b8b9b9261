"""The run's TensorBoard events (tensorboardX, MIT: a small writer that needs only protobuf, not
the tensorboard package): train/loss and train/learning_rate per logging interval of optimizer
steps, val/loss, val/token_accuracy, train/epoch_loss and train/epoch_learning_rate per epoch, by
global step. Written to run_dir/tensorboard/ and zipped as tensorboard.zip when the run ends (the
job's artifact).

Resume: each worker process writes a new events file in the same folder, opened with purge_step
at the checkpoint's step, so TensorBoard drops what an earlier process logged past it (steps that
a stop or crash did not keep): every step reads once.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

TB_DIR = "tensorboard"
TB_ZIP = "tensorboard.zip"


class TrainingLog:
    def __init__(self, run_dir: Path, purge_step: int | None, every: int) -> None:
        from tensorboardX import SummaryWriter

        self.dir = run_dir / TB_DIR
        self.every = max(1, every)
        self._writer: Any = SummaryWriter(logdir=str(self.dir), purge_step=purge_step, flush_secs=30)
        self._loss_sum = 0.0
        self._tokens = 0

    def step(self, global_step: int, loss_sum: float, tokens: int, learning_rate: float) -> None:
        """One optimizer step's summed loss and target tokens: the mean is logged every `every` steps."""
        self._loss_sum += loss_sum
        self._tokens += tokens
        if global_step % self.every == 0:
            self._flush_interval(global_step, learning_rate)

    def _flush_interval(self, global_step: int, learning_rate: float) -> None:
        if self._tokens:
            self._writer.add_scalar("train/loss", self._loss_sum / self._tokens, global_step)
            self._writer.add_scalar("train/learning_rate", learning_rate, global_step)
        self._loss_sum, self._tokens = 0.0, 0

    def epoch(self, global_step: int, epoch: int, metrics: dict[str, float]) -> None:
        self._writer.add_scalar("val/loss", metrics["val_loss"], global_step)
        self._writer.add_scalar("val/token_accuracy", metrics["val_token_accuracy"], global_step)
        self._writer.add_scalar("train/epoch_loss", metrics["train_loss"], global_step)
        self._writer.add_scalar("train/epoch_learning_rate", metrics["learning_rate"], global_step)
        self._writer.add_scalar("epoch", epoch, global_step)
        self._writer.flush()

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def zip_events(run_dir: Path) -> Path | None:
    """tensorboard.zip: every events file of the run (one per worker process), for `tensorboard --logdir`."""
    folder = run_dir / TB_DIR
    found = sorted(folder.glob("events.out.tfevents.*")) if folder.is_dir() else []
    if not found:
        return None
    dest = run_dir / TB_ZIP
    tmp = run_dir / f".{TB_ZIP}.tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f in found:
            z.write(f, f"{TB_DIR}/{f.name}")
    os.replace(tmp, dest)
    return dest
