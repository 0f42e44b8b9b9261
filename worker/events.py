"""NDJSON events on the real stdout (src/training/protocol.ts, WorkerEventSchema) and metric names.

`claim_stdout()` must run before anything prints: it keeps a private duplicate of fd 1 for the
events and points fd 1 (and sys.stdout) at stderr, so every print, log line and progress bar of
Ultralytics, torch or C extensions lands in the job log instead of the event stream.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from typing import Any

TERMINAL = frozenset({"done", "error", "stopped"})


def claim_stdout():
    """Returns a line-buffered text stream on the original stdout; fd 1 now writes to stderr."""
    out = os.fdopen(os.dup(1), "w", 1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def number(v: Any) -> float | None:
    """A finite float, or None (NaN, Inf, None, not a number)."""
    try:
        if hasattr(v, "item"):
            v = v.item()
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _clean(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float) or hasattr(v, "item"):
        return number(v)
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return str(v)


class Emitter:
    """Writes one JSON object per line; at most one terminal event (done, error or stopped)."""

    def __init__(self, stream) -> None:  # noqa: ANN001
        self._out = stream
        self._lock = threading.Lock()
        self.terminal: str | None = None

    def emit(self, type_: str, **fields: Any) -> bool:
        with self._lock:
            if self.terminal is not None:
                return False
            if type_ in TERMINAL:
                self.terminal = type_
            line = json.dumps({"type": type_, **_clean(fields)}, allow_nan=False, separators=(",", ":"))
            try:
                self._out.write(line + "\n")
                self._out.flush()
            except (BrokenPipeError, OSError):
                pass  # the server is gone; the lifeline thread stops us
            return True

    def error(self, code: str, message: str, details: Any = None, epoch: int | None = None) -> bool:
        fields: dict[str, Any] = {"code": code, "message": message, "epoch": epoch}
        if details is not None:
            fields["details"] = details
        return self.emit("error", **fields)


# --- metric names ------------------------------------------------------------------------------

_METRIC_NAMES = {
    "metrics/precision": "precision",
    "metrics/recall": "recall",
    "metrics/mAP50": "mAP50",
    "metrics/mAP50-95": "mAP50-95",
}


def portable_metrics(raw: dict[str, Any] | None) -> dict[str, float | None]:
    """Ultralytics keys → protocol keys.

    train/box_loss → box_loss, val/box_loss → val_box_loss, metrics/mAP50(B) → mAP50,
    metrics/mAP50(M) → mAP50(M) (segment masks), lr/pg0 → lr. Unknown keys keep a cleaned name.
    """
    out: dict[str, float | None] = {}
    for key, value in (raw or {}).items():
        key = str(key)
        if key == "fitness":
            continue
        if key.startswith("train/"):
            name = key[len("train/") :]
        elif key.startswith("val/"):
            name = "val_" + key[len("val/") :]
        elif key.startswith("lr/pg"):
            name = "lr" if key == "lr/pg0" else "lr_" + key[len("lr/") :]
        elif key.startswith("metrics/"):
            base, suffix = key, ""
            if key.endswith(")") and "(" in key:
                base, suffix = key[: key.rindex("(")], key[key.rindex("(") :]
            name = _METRIC_NAMES.get(base, base[len("metrics/") :])
            if suffix and suffix != "(B)":
                name += suffix
        else:
            name = key
        out[name] = number(value)
    return out
