"""Checks a base model file before any job trains from it: it must load as an Ultralytics
checkpoint. Answers `done {task, classes}` (the task its head was built for), or an error
MODEL_DOWNLOAD_FAILED (not a checkpoint: an HTML error page, a truncated download...).

Spec: {"model": abs path, "cache_dir": abs path}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import offline
from runtime import JobFailure, Runtime


def run(spec: dict[str, Any], rt: Runtime) -> None:
    path = Path(str(spec.get("model", "")))
    if not path.is_file():
        raise JobFailure("MODEL_DOWNLOAD_FAILED", f"base model {path.name} is missing", {"path": str(path)})
    offline.prepare_environment(str(spec["cache_dir"]))
    import os

    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    from ultralytics import YOLO

    try:
        model = YOLO(str(path))
    except Exception as e:  # noqa: BLE001 - any failure to load means: not a usable checkpoint
        raise JobFailure(
            "MODEL_DOWNLOAD_FAILED",
            f"{path.name} is not an Ultralytics checkpoint: {type(e).__name__}: {str(e)[:300]}",
            {"path": str(path), "size": path.stat().st_size},
        ) from e
    names = model.names or {}
    rt.emit("done", task=str(model.task), classes=len(names))
