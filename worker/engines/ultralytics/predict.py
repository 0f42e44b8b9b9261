"""The Ultralytics engine's prediction, offline, in a child process of the server (never in its
event loop), loaded by worker/main.py. Two ways to run it:

- `--serve` (what the server uses, src/worker/serve.ts): `serve_request` answers one request
  per stdin line. Loaded models stay in memory (a few, by path and mtime), so only the first
  request pays for importing torch and Ultralytics.
- `--spec <spec.json>`: `run(spec, rt)`, one request, one answer (manual runs).

A request (spec):

    {"model": abs path (.pt, .onnx, .torchscript), "task": "detect" | "segment" | ...,
     "images": [{"path": abs path, "name": upload name}], "conf": 0.25, "iou": 0.7,
     "imgsz": 640, "max_det": 300, "device": "cpu", "cache_dir": abs path}

An answer: `done` with {task, names, results: [{name, width, height, seconds, speed_ms,
detections: [{class_id, class_name, confidence, box: [x1, y1, x2, y2], polygon?}], error?}]}
or `error` {code, message, details}. Boxes and polygons are in pixels of the original
image; polygons (segment) are Ultralytics' masks.xy. Everything else goes to stderr.

Also the shared helpers of export.py: model loading and the detection records.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path
from typing import Any

import offline
from runtime import JobFailure as ToolError
from runtime import Runtime


def check_request(spec: dict[str, Any]) -> None:
    for key, kind in (("model", str), ("task", str), ("images", list), ("cache_dir", str)):
        if not isinstance(spec.get(key), kind):
            raise ToolError("INVALID_SPEC", f"request.{key} missing or not a {kind.__name__}")


def prepare(spec: dict[str, Any]) -> None:
    """Offline environment before importing Ultralytics; the CPU unless a CUDA device is asked for."""
    device = str(spec.get("device") or "cpu")
    if device == "cpu":
        # Also keeps Ultralytics from asking for onnxruntime-gpu on a GPU machine.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    offline.prepare_environment(spec["cache_dir"])
    import ultralytics  # noqa: F401

    from ultralytics.utils import SETTINGS

    # Integrations off and our folders, as the training worker sets them; weights_dir stays as it
    # is (nothing is downloaded here), so this never rewrites the settings file a job may be reading.
    offline.configure_settings(spec["cache_dir"], SETTINGS.get("weights_dir"))


def load_model(path: str, task: str):  # noqa: ANN201
    from ultralytics import YOLO

    p = Path(path)
    if not p.is_file():
        raise ToolError("MODEL_NOT_FOUND", f"model file {p.name} is missing", {"path": str(p)})
    try:
        return YOLO(str(p), task=task)
    except Exception as e:
        raise ToolError("MODEL_LOAD_FAILED", f"could not load {p.name}: {type(e).__name__}: {e}") from e


def class_names(model: Any) -> list[str]:
    names = model.names
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    return [str(n) for n in names]


def detections_of(result: Any, names: list[str]) -> list[dict[str, Any]]:
    """One Ultralytics Results → detection records, in Ultralytics' order (confidence, descending).

    Every record has the axis-aligned box; segment adds the polygon, pose the keypoints
    ([x, y, confidence] per keypoint, or [x, y] without a visibility channel), obb the four
    corners of the rotated box and its angle (radians). A classify result has no detections
    (see classifications_of).
    """
    out: list[dict[str, Any]] = []
    obb = getattr(result, "obb", None)
    boxes = obb if obb is not None else result.boxes
    if boxes is None or len(boxes) == 0:
        return out
    xyxy = boxes.xyxy.cpu().numpy().tolist()
    conf = boxes.conf.cpu().numpy().tolist()
    cls = boxes.cls.cpu().numpy().astype(int).tolist()
    polygons = result.masks.xy if getattr(result, "masks", None) is not None else None
    keypoints = getattr(result, "keypoints", None)
    kxy = keypoints.xy.cpu().numpy().tolist() if keypoints is not None else None
    kconf = keypoints.conf.cpu().numpy().tolist() if keypoints is not None and keypoints.conf is not None else None
    corners = obb.xyxyxyxy.cpu().numpy().tolist() if obb is not None else None
    angles = obb.xywhr[:, 4].cpu().numpy().tolist() if obb is not None else None
    for i, (box, c, k) in enumerate(zip(xyxy, conf, cls)):
        det: dict[str, Any] = {
            "class_id": int(k),
            "class_name": names[k] if 0 <= k < len(names) else f"class_{k}",
            "confidence": float(c),
            "box": [float(v) for v in box],
        }
        if polygons is not None:
            det["polygon"] = [[float(x), float(y)] for x, y in polygons[i].tolist()]
        if kxy is not None:
            det["keypoints"] = [
                [float(x), float(y), float(kconf[i][j])] if kconf is not None else [float(x), float(y)]
                for j, (x, y) in enumerate(kxy[i])
            ]
        if corners is not None:
            det["corners"] = [[float(x), float(y)] for x, y in corners[i]]
            det["angle"] = float(angles[i])
        out.append(det)
    return out


def classifications_of(result: Any, names: list[str]) -> list[dict[str, Any]]:
    """A classify result's top 5 classes, most confident first."""
    probs = getattr(result, "probs", None)
    if probs is None:
        return []
    return [
        {"class_id": int(k), "class_name": names[k] if 0 <= k < len(names) else f"class_{k}", "confidence": float(probs.data[k])}
        for k in probs.top5
    ]


def predict(spec: dict[str, Any], model: Any) -> dict[str, Any]:
    names = class_names(model)
    results = []
    for image in spec["images"]:
        name = str(image.get("name") or Path(image["path"]).name)
        try:
            started = time.perf_counter()
            r = model.predict(
                image["path"],
                conf=float(spec.get("conf", 0.25)),
                iou=float(spec.get("iou", 0.7)),
                imgsz=int(spec.get("imgsz") or 640),
                max_det=int(spec.get("max_det", 300)),
                device=str(spec.get("device") or "cpu"),
                verbose=False,
            )[0]
            h, w = r.orig_shape[:2]
            results.append({
                "name": name,
                "width": int(w),
                "height": int(h),
                "seconds": time.perf_counter() - started,
                "speed_ms": {k: float(v) for k, v in (r.speed or {}).items() if v is not None},
                "detections": detections_of(r, names),
                **({"classifications": classifications_of(r, names)} if getattr(r, "probs", None) is not None else {}),
            })
        except Exception as e:  # one unreadable image does not hide the others' results
            traceback.print_exc()
            results.append({"name": name, "error": f"{type(e).__name__}: {e}"[:500]})
    return {"task": model.task, "names": names, "results": results}


def run(spec: dict[str, Any], rt: Runtime) -> None:
    check_request(spec)
    prepare(spec)
    rt.emit("done", **predict(spec, load_model(spec["model"], spec["task"])))


MODEL_CACHE_SIZE = 3


def serve_request(spec: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """One request of the long-lived worker; `state` keeps the loaded models between requests."""
    check_request(spec)
    if not state.get("prepared"):
        prepare({"cache_dir": spec["cache_dir"], "device": "cpu"})
        state["prepared"] = True
    cache: dict[tuple[str, str], tuple[float, Any]] = state.setdefault("models", {})
    key = (spec["model"], spec["task"])
    mtime = Path(spec["model"]).stat().st_mtime if Path(spec["model"]).exists() else -1.0
    hit = cache.pop(key, None)
    if hit is not None and hit[0] == mtime:
        model = hit[1]
    else:
        model = load_model(spec["model"], spec["task"])
        hit = (mtime, model)
    cache[key] = hit  # most recently used last
    while len(cache) > MODEL_CACHE_SIZE:
        cache.pop(next(iter(cache)))
    return predict(spec, model)
