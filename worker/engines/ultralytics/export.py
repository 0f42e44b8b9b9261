"""The Ultralytics engine's export: `run(spec, rt)`, loaded by worker/main.py.

Exports a registered model to ONNX or TorchScript, offline, then checks the exported file by
loading it and predicting one image next to the .pt. Spec (src/registry/service.ts):

    {"model": abs path of the .pt, "task": ..., "format": "onnx" | "torchscript",
     "imgsz": 640, "cache_dir": abs path, "check_image": abs path | null,
     "data": abs path of the source job's data.yaml | null}

The exported file lands beside the .pt. The check image is check_image, else the first
validation image of data (the source job's dataset), else Ultralytics' bundled bus.jpg. Check
rule: every .pt detection with confidence ≥ CHECK_CONF (at most CHECK_TOP of them) must have an
exported detection of the same class with box IoU ≥ MIN_IOU and confidence within MAX_CONF_DIFF.

Answer: one `done` {file, format, check}, or an error {code, message, details}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from predict import class_names, classifications_of, detections_of, load_model, prepare
from runtime import JobFailure as ToolError
from runtime import Runtime

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript"}
CHECK_CONF = 0.001  # Ultralytics validation default: a barely trained model still has detections to compare
CHECK_TOP = 20
MIN_IOU = 0.9
MAX_CONF_DIFF = 0.05
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare(reference: list[dict[str, Any]], exported: list[dict[str, Any]]) -> dict[str, Any]:
    """Matches each confident reference detection to the exported one of its class that overlaps it most."""
    wanted = [d for d in reference if d["confidence"] >= CHECK_CONF][:CHECK_TOP]
    used: set[int] = set()
    matched, min_iou, max_diff, misses = 0, 1.0, 0.0, []
    for d in wanted:
        best, best_iou = None, -1.0
        for j, e in enumerate(exported):
            if j in used or e["class_id"] != d["class_id"]:
                continue
            v = iou(d["box"], e["box"])
            if v > best_iou:
                best, best_iou = j, v
        diff = abs(exported[best]["confidence"] - d["confidence"]) if best is not None else None
        if best is not None and best_iou >= MIN_IOU and diff is not None and diff <= MAX_CONF_DIFF:
            used.add(best)
            matched += 1
            min_iou = min(min_iou, best_iou)
            max_diff = max(max_diff, diff)
        else:
            misses.append({"reference": d, "best_iou": best_iou if best is not None else None, "confidence_diff": diff})
    return {
        "rule": {"min_confidence": CHECK_CONF, "top": CHECK_TOP, "min_iou": MIN_IOU, "max_confidence_diff": MAX_CONF_DIFF},
        "compared": len(wanted),
        "matched": matched,
        "min_iou": min_iou if matched else None,
        "max_confidence_diff": max_diff if matched else None,
        "misses": misses[:5],
        "passed": matched == len(wanted),
    }


def check_image(spec: dict[str, Any]) -> Path:
    if spec.get("check_image"):
        return Path(spec["check_image"])
    data_yaml = spec.get("data")
    if data_yaml and Path(data_yaml).is_dir():
        # A classify dataset: its validation folder, as Ultralytics picks it.
        for split in ("val", "validation", "valid", "test"):
            folder = Path(data_yaml) / split
            images = sorted(x for x in folder.rglob("*") if x.suffix.lower() in IMAGE_SUFFIXES and x.is_file()) if folder.is_dir() else []
            if images:
                return images[0]
    if data_yaml and Path(data_yaml).is_file():
        import yaml

        data = yaml.safe_load(Path(data_yaml).read_text(encoding="utf-8")) or {}
        val = data.get("val")
        for folder in [val] if isinstance(val, str) else (val or []):
            p = Path(folder)
            if p.is_dir():
                images = sorted(x for x in p.rglob("*") if x.suffix.lower() in IMAGE_SUFFIXES and x.is_file())
                if images:
                    return images[0]
    from ultralytics.utils import ASSETS

    return Path(ASSETS) / "bus.jpg"


def run(spec: dict[str, Any], em: Runtime) -> None:
    for key, kind in (("model", str), ("task", str), ("format", str), ("cache_dir", str)):
        if not isinstance(spec.get(key), kind):
            raise ToolError("INVALID_SPEC", f"spec.{key} missing or not a {kind.__name__}")
    fmt = spec["format"]
    if fmt not in FORMATS:
        raise ToolError("INVALID_SPEC", f"unsupported format {fmt}: expected one of {', '.join(FORMATS)}")
    prepare(spec)
    model = load_model(spec["model"], spec["task"])
    imgsz = int(spec.get("imgsz") or 640)
    try:
        out = model.export(format=fmt, imgsz=imgsz, device="cpu", half=False, int8=False, dynamic=False,
                           simplify=fmt == "onnx", verbose=False)
    except Exception as e:
        raise ToolError("EXPORT_FAILED", f"{fmt} export failed: {type(e).__name__}: {e}"[:2000]) from e
    out = Path(str(out))
    expected = Path(spec["model"]).with_suffix(FORMATS[fmt])
    if not out.is_file():
        raise ToolError("EXPORT_FAILED", f"{fmt} export wrote no file", {"expected": str(expected)})

    image = check_image(spec)
    names = class_names(model)
    kwargs = dict(imgsz=imgsz, conf=CHECK_CONF / 2, iou=0.7, device="cpu", verbose=False)
    # A classifier's "detections" are its top-5 classes, compared by class and confidence (no boxes).
    records = (lambda r, n: [{**c, "box": [0.0, 0.0, 1.0, 1.0]} for c in classifications_of(r, n)]) if spec["task"] == "classify" else detections_of
    try:
        reference = records(model.predict(str(image), **kwargs)[0], names)
        exported_model = load_model(str(out), spec["task"])
        exported = records(exported_model.predict(str(image), **kwargs)[0], class_names(exported_model))
    except ToolError:
        raise
    except Exception as e:
        raise ToolError("EXPORT_CHECK_FAILED", f"the exported {fmt} model could not predict: {type(e).__name__}: {e}"[:2000]) from e
    result = compare(reference, exported)
    result.update({
        "image": image.name,
        "reference_detections": len(reference),
        "exported_detections": len(exported),
        "classes_reference": sorted({d["class_id"] for d in reference if d["confidence"] >= CHECK_CONF}),
        "classes_exported": sorted({d["class_id"] for d in exported if d["confidence"] >= CHECK_CONF}),
        "names_match": class_names(exported_model) == names,
    })
    result["passed"] = result["passed"] and result["names_match"]
    em.emit("done", file=str(out), format=fmt, check=result)

