#!/usr/bin/env python3
"""trainhook prediction worker, offline, in a child process of the server (never in its
event loop). Two ways to run it:

- `python worker/predict.py --serve --config-dir <dir>`: a long-lived worker (what the server
  uses, src/registry/predict-worker.ts): one request per line on stdin, one answer per line on
  stdout, each carrying the request's "id". Loaded models stay in memory (a few, by path and
  mtime), so only the first request pays for importing torch and Ultralytics. EOF on stdin (the
  server closed it, or died) ends the process.
- `python worker/predict.py --spec <spec.json>`: one request, one answer (manual runs).

A request (spec):

    {"model": abs path (.pt, .onnx, .torchscript), "task": "detect" | "segment",
     "images": [{"path": abs path, "name": upload name}], "conf": 0.25, "iou": 0.7,
     "imgsz": 640, "max_det": 300, "device": "cpu", "config_dir": abs path}

An answer: `done` with {task, names, results: [{name, width, height, seconds, speed_ms,
detections: [{class_id, class_name, confidence, box: [x1, y1, x2, y2], polygon?}], error?}]}
or `error` {code, message, details}. Boxes and polygons are in pixels of the original
image; polygons (segment) are Ultralytics' masks.xy. Everything else goes to stderr.

Also the shared helpers of export.py: spec loading, the stdin lifeline, model loading and the
detection records.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import offline  # noqa: E402
from events import Emitter, _clean, claim_stdout  # noqa: E402


class ToolError(Exception):
    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


def load_spec(path: str, required: dict[str, type]) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    if not isinstance(spec, dict):
        raise ToolError("INVALID_SPEC", "spec is not a JSON object")
    for key, kind in required.items():
        if not isinstance(spec.get(key), kind):
            raise ToolError("INVALID_SPEC", f"spec.{key} missing or not a {kind.__name__}")
    return spec


def start_lifeline() -> None:
    """The server keeps stdin open; EOF means it is gone: stop at once (nothing to save)."""

    def watch() -> None:
        try:
            while os.read(0, 65536):
                pass
        except OSError:
            pass
        os._exit(3)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def prepare(spec: dict[str, Any]) -> None:
    """Offline environment before importing Ultralytics; the CPU unless a CUDA device is asked for."""
    device = str(spec.get("device") or "cpu")
    if device == "cpu":
        # Also keeps Ultralytics from asking for onnxruntime-gpu on a GPU machine.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    offline.prepare_environment(spec["config_dir"])
    import ultralytics  # noqa: F401

    from ultralytics.utils import SETTINGS

    # Integrations off and our folders, as the training worker sets them; weights_dir stays as it
    # is (nothing is downloaded here), so this never rewrites the settings file a job may be reading.
    offline.configure_settings(spec["config_dir"], SETTINGS.get("weights_dir"))


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
    """One Ultralytics Results → detection records, in Ultralytics' order (confidence, descending)."""
    out: list[dict[str, Any]] = []
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return out
    xyxy = boxes.xyxy.cpu().numpy().tolist()
    conf = boxes.conf.cpu().numpy().tolist()
    cls = boxes.cls.cpu().numpy().astype(int).tolist()
    polygons = result.masks.xy if getattr(result, "masks", None) is not None else None
    for i, (box, c, k) in enumerate(zip(xyxy, conf, cls)):
        det: dict[str, Any] = {
            "class_id": int(k),
            "class_name": names[k] if 0 <= k < len(names) else f"class_{k}",
            "confidence": float(c),
            "box": [float(v) for v in box],
        }
        if polygons is not None:
            det["polygon"] = [[float(x), float(y)] for x, y in polygons[i].tolist()]
        out.append(det)
    return out


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
                imgsz=int(spec.get("imgsz", 640)),
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
            })
        except Exception as e:  # one unreadable image does not hide the others' results
            traceback.print_exc()
            results.append({"name": name, "error": f"{type(e).__name__}: {e}"[:500]})
    return {"task": model.task, "names": names, "results": results}


def run(spec: dict[str, Any], em: Emitter) -> None:
    prepare(spec)
    em.emit("done", **predict(spec, load_model(spec["model"], spec["task"])))


MODEL_CACHE_SIZE = 3


def serve(config_dir: str) -> int:
    """The long-lived worker: requests on stdin until EOF, answers on stdout (see the top)."""
    out = claim_stdout()
    cache: dict[tuple[str, str], tuple[float, Any]] = {}

    def answer(obj: dict[str, Any]) -> None:
        out.write(json.dumps(_clean(obj), allow_nan=False, separators=(",", ":")) + "\n")
        out.flush()

    def model_for(spec: dict[str, Any]) -> Any:
        key = (spec["model"], spec["task"])
        mtime = Path(spec["model"]).stat().st_mtime if Path(spec["model"]).exists() else -1.0
        hit = cache.pop(key, None)
        if hit is not None and hit[0] == mtime:
            cache[key] = hit  # most recently used last
            return hit[1]
        model = load_model(spec["model"], spec["task"])
        cache[key] = (mtime, model)
        while len(cache) > MODEL_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        return model

    prepare({"config_dir": config_dir, "device": "cpu"})
    answer({"type": "ready", "pid": os.getpid()})
    for line in sys.stdin:
        if not line.strip():
            continue
        request_id = None
        try:
            spec = json.loads(line)
            request_id = spec.get("id")
            for key, kind in (("model", str), ("task", str), ("images", list)):
                if not isinstance(spec.get(key), kind):
                    raise ToolError("INVALID_SPEC", f"request.{key} missing or not a {kind.__name__}")
            answer({"type": "done", "id": request_id, **predict(spec, model_for(spec))})
        except ToolError as e:
            answer({"type": "error", "id": request_id, "code": e.code, "message": str(e), "details": e.details})
        except Exception as e:  # noqa: BLE001 - one failed request does not end the worker
            traceback.print_exc()
            answer({"type": "error", "id": request_id, "code": "UNKNOWN_ERROR", "message": f"{type(e).__name__}: {e}"[:2000]})
    return 0


def main(run_fn, required: dict[str, type], description: str) -> int:  # noqa: ANN001
    out = claim_stdout()
    em = Emitter(out)
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--no-lifeline", action="store_true")
    opts = parser.parse_args()
    if not opts.no_lifeline:
        start_lifeline()
    code = 0
    try:
        run_fn(load_spec(opts.spec, required), em)
    except ToolError as e:
        em.error(e.code, str(e), e.details)
        code = 1
    except BaseException as e:  # noqa: BLE001 - every failure is one error event
        traceback.print_exc()
        em.error("UNKNOWN_ERROR", f"{type(e).__name__}: {e}"[:2000], {"exception": type(e).__name__})
        code = 1
    finally:
        if em.terminal is None:
            em.error("UNKNOWN_ERROR", "tool ended without a result")
            code = 1
    return code


if __name__ == "__main__":
    if "--serve" in sys.argv:
        serve_args = argparse.ArgumentParser(description="trainhook prediction worker (long-lived)")
        serve_args.add_argument("--serve", action="store_true")
        serve_args.add_argument("--config-dir", required=True)
        rc = serve(serve_args.parse_args().config_dir)
    else:
        rc = main(run, {"model": str, "task": str, "images": list, "config_dir": str}, "trainhook prediction worker")
    sys.stderr.flush()
    os._exit(rc)
