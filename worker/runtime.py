"""The runtime every engine's Python code runs in (the service's side is src/worker/).

`python worker/main.py --entry <engine module> --spec <spec.json>` loads the engine's module and
calls its `run(spec, rt)`; `--serve` keeps a child for requests instead (its `serve_request`).
What the runtime guarantees, whatever the engine:

- stdout carries only NDJSON events; fd 1 is pointed at stderr before the engine is imported,
  so every print, log line and progress bar of a library lands in the job log instead;
- SIGTERM, SIGINT and EOF on stdin (the server died) ask the run to stop. While
  `rt.interruptible` is true (imports, model build, dataset load: nothing is being saved) the
  stop raises StopRequested at once; once the engine's loop runs, the engine calls
  `rt.check_stop()` at safe points (a batch boundary), so a stop never corrupts a checkpoint;
- exactly one terminal event per run: `done` (the engine's), `error` (JobFailure, or any other
  exception classified by the engine's optional `classify(exc)`), or `stopped` (StopRequested,
  with the engine's `rt.stopped_state`).
"""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import sys
import threading
import traceback
from typing import Any

TERMINAL = frozenset({"done", "error", "stopped"})


class StopRequested(BaseException):
    """A stop was asked. A BaseException, so libraries' `except Exception` blocks let it through."""


class JobFailure(Exception):
    """Ends a run with an `error` event carrying this code (a job error code, or a tool's own)."""

    def __init__(self, code: str, message: str, details: Any = None, epoch: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details
        self.epoch = epoch


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


def clean(v: Any) -> Any:
    """JSON-safe values: NaN and Inf become null, tensors and numpy scalars plain numbers."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float) or hasattr(v, "item"):
        return number(v)
    if isinstance(v, dict):
        return {str(k): clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    return str(v)


def log(msg: str) -> None:
    print(f"[trainhook] {msg}", file=sys.stderr, flush=True)


class Runtime:
    """What an engine's `run(spec, rt)` is handed."""

    def __init__(self, spec: dict[str, Any], out) -> None:  # noqa: ANN001
        self.spec = spec
        self._out = out
        self._lock = threading.Lock()
        self.terminal: str | None = None
        self.stop_requested = False
        self.stop_reason: str | None = None
        self.interruptible = True
        self.stopped_state: dict[str, Any] = {"epochs_completed": 0, "last": None}
        # The epoch in progress (1-based), for the error event of a failure.
        self.current_epoch: int | None = None

    # --- events ----------------------------------------------------------------------------------

    def emit(self, type_: str, **fields: Any) -> bool:
        with self._lock:
            if self.terminal is not None:
                return False
            if type_ in TERMINAL:
                self.terminal = type_
            line = json.dumps({"type": type_, **clean(fields)}, allow_nan=False, separators=(",", ":"))
            try:
                self._out.write(line + "\n")
                self._out.flush()
            except (BrokenPipeError, OSError):
                pass  # the server is gone; the lifeline stops us
            return True

    def error(self, code: str, message: str, details: Any = None, epoch: int | None = None) -> bool:
        fields: dict[str, Any] = {"code": code, "message": message, "epoch": epoch}
        if details is not None:
            fields["details"] = details
        return self.emit("error", **fields)

    def emit_stopped(self) -> bool:
        return self.emit("stopped", epochs_completed=int(self.stopped_state.get("epochs_completed") or 0),
                         last=self.stopped_state.get("last"))

    @staticmethod
    def log(msg: str) -> None:
        log(msg)

    # --- stop ------------------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        self.stop_requested = True
        self.stop_reason = self.stop_reason or reason
        log(f"stop requested ({self.stop_reason})")

    def check_stop(self) -> None:
        if self.stop_requested:
            raise StopRequested(self.stop_reason)


def install_stop_handlers(rt: Runtime, lifeline: bool) -> None:
    def on_signal(signum: int, _frame: Any) -> None:
        rt.request_stop(signal.Signals(signum).name)
        if rt.interruptible and rt.terminal is None:
            raise StopRequested(rt.stop_reason)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if not lifeline:
        return

    def watch() -> None:
        try:
            while os.read(0, 65536):
                pass
        except OSError:
            pass
        rt.stop_reason = rt.stop_reason or "stdin closed (server gone)"
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def is_out_of_memory(e: BaseException) -> bool:
    """Host or GPU memory ran out, however the library says it (every engine's worker asks)."""
    if isinstance(e, MemoryError):
        return True
    msg = str(e).lower()
    return (
        type(e).__name__ == "OutOfMemoryError"
        or "out of memory" in msg
        or "can't allocate memory" in msg
        or "cannot allocate memory" in msg
        or ("dataloader worker" in msg and "killed" in msg)
    )


def disk_full(e: BaseException) -> tuple[str, str] | None:
    """A full disk or quota, whatever the engine: the host's state, reported with its own code."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "INSUFFICIENT_DISK", f"the disk is full: {e}"
    # Libraries that wrap the OSError (PyTorch's checkpoint writer) keep only its text.
    if "No space left on device" in str(e):
        return "INSUFFICIENT_DISK", f"the disk is full: {e}"
    return None


def run_once(module: Any, spec: dict[str, Any], out, lifeline: bool = True) -> int:  # noqa: ANN001
    rt = Runtime(spec, out)
    install_stop_handlers(rt, lifeline)
    code = 0
    try:
        module.run(spec, rt)
        if rt.terminal == "error":
            code = 1
    except BaseException as e:  # noqa: BLE001 - every failure becomes one terminal event
        rt.interruptible = False  # a late signal must not raise in here
        if isinstance(e, StopRequested):
            rt.emit_stopped()
        elif isinstance(e, JobFailure):
            rt.error(e.code, str(e), e.details, e.epoch)
            code = 1
        else:
            traceback.print_exc()
            classified = disk_full(e) or getattr(module, "classify", lambda _e: None)(e)
            code_name, message = classified or ("UNKNOWN_ERROR", f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
            rt.error(code_name, message, {"exception": type(e).__name__, "message": str(e)[:2000]},
                     rt.current_epoch)
            code = 1
    finally:
        rt.interruptible = False
        if rt.terminal is None:
            rt.error("UNKNOWN_ERROR", "the worker ended without a result")
            code = 1
    return code


def serve(module: Any, out) -> int:  # noqa: ANN001
    """Requests on stdin until EOF, answers on stdout: {"type": "done"|"error", "id", ...}."""
    state: dict[str, Any] = {}

    def answer(obj: dict[str, Any]) -> None:
        out.write(json.dumps(clean(obj), allow_nan=False, separators=(",", ":")) + "\n")
        out.flush()

    answer({"type": "ready", "pid": os.getpid()})
    for line in sys.stdin:
        if not line.strip():
            continue
        request_id = None
        try:
            request = json.loads(line)
            request_id = request.get("id") if isinstance(request, dict) else None
            if not isinstance(request, dict):
                raise JobFailure("INVALID_SPEC", "a request must be a JSON object")
            answer({"type": "done", "id": request_id, **module.serve_request(request, state)})
        except JobFailure as e:
            answer({"type": "error", "id": request_id, "code": e.code, "message": str(e), "details": e.details})
        except Exception as e:  # noqa: BLE001 - one failed request does not end the worker
            traceback.print_exc()
            answer({"type": "error", "id": request_id, "code": "UNKNOWN_ERROR", "message": f"{type(e).__name__}: {e}"[:2000]})
    return 0
