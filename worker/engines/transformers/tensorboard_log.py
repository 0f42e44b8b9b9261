"""The run's TensorBoard events (tensorboardX, MIT: the event records, needing only protobuf, not
the tensorboard package): train/loss and train/learning_rate per logging interval of optimizer
steps, val/loss, val/token_accuracy, train/epoch_loss and train/epoch_learning_rate per epoch, by
global step. Written to run_dir/tensorboard/ and zipped as tensorboard.zip when the run ends (the
job's artifact).

Resume: each worker process writes a new events file in the same folder, opened with purge_step
at the checkpoint's step, so TensorBoard drops what an earlier process logged past it (steps that
a stop or crash did not keep): every step reads once.

The file is written here, on the training thread, not through tensorboardX's SummaryWriter: its
writer hands each event to a queue drained by a thread, and its flush() does not wait for that
queue, so a worker killed just after a "flush" and a save of last.pt could lose the events of steps
last.pt holds, and the resumed worker would not log them again. Here flush() means the events are
in the file (the kernel's page cache: a killed process loses nothing); tensorboardX still builds
the records (Event and Summary protos, the TFRecord CRCs).
"""

from __future__ import annotations

import os
import socket
import struct
import time
import zipfile
from pathlib import Path
from typing import Any

TB_DIR = "tensorboard"
TB_ZIP = "tensorboard.zip"


class TrainingLog:
    def __init__(self, run_dir: Path, purge_step: int | None, every: int) -> None:
        from tensorboardX.proto.event_pb2 import Event, SessionLog
        from tensorboardX.record_writer import masked_crc32c
        from tensorboardX.summary import scalar

        self._event, self._scalar, self._crc = Event, scalar, masked_crc32c
        self.dir = run_dir / TB_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.every = max(1, every)
        # TensorBoard's name pattern; the pid keeps two workers started in the same second apart.
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self._file: Any = (self.dir / name).open("wb")
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_step is not None:
            # As SummaryWriter(purge_step=…) writes it: readers drop earlier files' events from this step on.
            self._write(Event(step=purge_step, file_version="brain.Event:2"))
            self._write(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))
        self._loss_sum = 0.0
        self._tokens = 0

    def _write(self, event: Any) -> None:
        data = event.SerializeToString()
        header = struct.pack("Q", len(data))
        self._file.write(header + struct.pack("I", self._crc(header)) + data + struct.pack("I", self._crc(data)))

    def _add_scalar(self, tag: str, value: float, step: int) -> None:
        self._write(self._event(wall_time=time.time(), step=step, summary=self._scalar(tag, value)))

    def step(self, global_step: int, loss_sum: float, tokens: int, learning_rate: float) -> None:
        """One optimizer step's summed loss and target tokens: the mean is logged every `every` steps."""
        self._loss_sum += loss_sum
        self._tokens += tokens
        if global_step % self.every == 0:
            self._flush_interval(global_step, learning_rate)

    def _flush_interval(self, global_step: int, learning_rate: float) -> None:
        if self._tokens:
            self._add_scalar("train/loss", self._loss_sum / self._tokens, global_step)
            self._add_scalar("train/learning_rate", learning_rate, global_step)
        self._loss_sum, self._tokens = 0.0, 0

    def epoch(self, global_step: int, epoch: int, metrics: dict[str, float]) -> None:
        self._add_scalar("val/loss", metrics["val_loss"], global_step)
        self._add_scalar("val/token_accuracy", metrics["val_token_accuracy"], global_step)
        self._add_scalar("train/epoch_loss", metrics["train_loss"], global_step)
        self._add_scalar("train/epoch_learning_rate", metrics["learning_rate"], global_step)
        self._add_scalar("epoch", epoch, global_step)
        self.flush()

    def flush(self) -> None:
        """Every event so far is in the file when this returns."""
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


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
