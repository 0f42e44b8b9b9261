"""RF-DETR prediction: `run(spec, rt)` for one request, `handle(request)` for the long-lived mode.

Request: {model: abs path (.pth, .ckpt or .onnx), model_size, task, class_names, resolution, images:
[{path, name}], conf, max_det, device}. Answer (`done`): {task, names, results: [{name, width,
height, seconds, detections: [{class_id, class_name, confidence, box: [x1, y1, x2, y2] pixels,
polygon?: [[x, y], ...]}]}]} — the Ultralytics predictor's record shape, so the service's JSON,
CSV and COCO formatters take it unchanged. One unreadable image gets {name, error} and does not
hide the others.

An .onnx model runs through onnxruntime directly (inference.OnnxModel); it takes the resolution
it was exported at. A checkpoint runs through rfdetr at the resolution it was trained at.

In the long-lived mode the runtime reads one JSON request per stdin line and writes
{"type": "done", "id": ..., **handle(request)} (or the error of a JobFailure); loaded models stay
cached by path, file time and device, so only the first request pays for loading.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

from runtime import JobFailure

MODEL_CACHE_SIZE = 3
_cache: dict[tuple[str, float, str, str], Any] = {}


def run(spec: dict[str, Any], rt: Any) -> None:
    rt.emit("done", **handle(spec))


def serve_request(request: dict[str, Any], _state: dict[str, Any]) -> dict[str, Any]:
    """One request of the long-lived worker (its models stay in this module's cache)."""
    return handle(request)


def handle(request: dict[str, Any]) -> dict[str, Any]:
    from engines.rfdetr.environment import go_offline

    go_offline(request.get("cache_dir"))
    for key, kind in (("model", str), ("images", list)):
        if not isinstance(request.get(key), kind):
            raise JobFailure("UNKNOWN_ERROR", f"request.{key} missing or not a {kind.__name__}")
    model = _model_for(request)
    conf = float(request.get("conf", 0.25))
    max_det = int(request.get("max_det", 300))
    results = []
    for image in request["images"]:
        name = str(image.get("name") or Path(str(image.get("path"))).name)
        try:
            results.append({"name": name, **model.predict(str(image["path"]), conf, max_det)})
        except Exception as e:  # noqa: BLE001 - one unreadable image does not hide the others
            traceback.print_exc()
            results.append({"name": name, "error": f"{type(e).__name__}: {e}"[:500]})
    task = "segment" if model.segmentation else "detect"
    return {"task": task, "names": model.names, "results": results}


def _model_for(request: dict[str, Any]) -> Any:
    from engines.rfdetr import inference
    from engines.rfdetr.environment import resolve_device

    path = request["model"]
    if not os.path.isabs(path) or not Path(path).is_file():
        raise JobFailure("MODEL_DOWNLOAD_FAILED", f"model file {path!r} not found", {"path": path})
    device = resolve_device(request.get("device") or "cpu")
    task = str(request.get("task") or "detect")
    names = request.get("class_names")
    key = (path, Path(path).stat().st_mtime, device, "|".join(map(str, names or [])))
    model = _cache.pop(key, None)
    if model is None:
        # The registry sends what the model trained with; its size is one of those arguments.
        model_size = request.get("model_size") or (request.get("train_args") or {}).get("model_size")
        model = inference.load(path, task=task, model_size=model_size, device=device,
                               class_names=[str(n) for n in names] if names else None)
    _cache[key] = model  # most recently used last
    while len(_cache) > MODEL_CACHE_SIZE:
        _cache.pop(next(iter(_cache)))
    return model
