"""RF-DETR export to ONNX, checked by prediction parity: `run(spec, rt)`.

Spec: {model: abs path (.pth or .ckpt), model_size, task, num_classes, class_names, resolution,
out_dir, check_image: abs path | null, data: dataset path | null, device?}.

rfdetr's exporter writes the graph with torch's TorchScript-based ONNX exporter (opset 17, fixed
1x3xRxR input, outputs `dets` (cxcywh boxes) and `labels` (class logits), plus masks for
segmentation); only the `onnx` package is needed, no simplifier. The engine adds the class names,
task and resolution to the file's metadata, so a predictor can read them back.

The check runs one image through the PyTorch model and through onnxruntime, decodes the ten
highest-scoring query/class pairs of each, and matches every PyTorch pair to an ONNX pair of the
same class by box IoU: it passes when every match has IoU >= 0.9 and a confidence within 0.02.
The image is check_image, else the first validation image of `data`, else a generated one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from runtime import JobFailure

TOP_PAIRS = 10
MIN_IOU = 0.9
MAX_CONF_DIFF = 0.02


def run(spec: dict[str, Any], rt: Any) -> None:
    from engines.rfdetr.environment import go_offline

    go_offline(spec.get("cache_dir"))
    path = spec.get("model")
    if not isinstance(path, str) or not os.path.isabs(path) or not Path(path).is_file():
        raise JobFailure("MODEL_DOWNLOAD_FAILED", f"checkpoint {path!r} not found", {"path": path})
    out_dir = Path(spec["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)

    from engines.rfdetr import inference

    names = [str(n) for n in spec.get("class_names") or []] or None
    # The registry sends what the model trained with: its size and resolution are among them.
    trained = spec.get("train_args") or {}
    torch_model = inference.TorchModel(path, task=str(spec.get("task") or "detect"),
                                       model_size=spec.get("model_size") or trained.get("model_size"),
                                       device="cpu", class_names=names)
    resolution = int(spec.get("resolution") or trained.get("resolution") or torch_model.resolution)
    started = time.perf_counter()
    exported = Path(torch_model.model.export(output_dir=str(out_dir), format="onnx", verbose=False,
                                             shape=(resolution, resolution), output_name="model"))
    export_seconds = time.perf_counter() - started
    add_metadata(exported, {
        "trainhook_class_names": torch_model.names,
        "trainhook_task": "segment" if torch_model.segmentation else "detect",
        "trainhook_resolution": resolution,
    })
    image_path = check_image_for(spec, out_dir)
    check = parity(torch_model, inference.OnnxModel(str(exported), device="cpu", class_names=torch_model.names), image_path)
    check["export_seconds"] = round(export_seconds, 3)
    rt.emit("done", file=str(exported), format="onnx", size=exported.stat().st_size, check=check)


def add_metadata(path: Path, values: dict[str, Any]) -> None:
    import json

    import onnx

    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        text = value if isinstance(value, str) else json.dumps(value)
        if key in existing:
            existing[key].value = text
        else:
            model.metadata_props.add(key=key, value=text)
    tmp = path.with_name(f".{path.name}.tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)


def check_image_for(spec: dict[str, Any], out_dir: Path) -> str:
    image = spec.get("check_image")
    if isinstance(image, str) and Path(image).is_file():
        return image
    found = first_validation_image(spec.get("data"))
    if found:
        return found
    import numpy as np
    from PIL import Image

    # No image at hand: a fixed noise picture with two flat shapes still exercises every output.
    rng = np.random.default_rng(0)
    pixels = rng.integers(70, 180, size=(256, 256, 3), dtype=np.uint8)
    pixels[40:120, 50:140] = (230, 25, 25)
    pixels[150:230, 160:240] = (30, 60, 235)
    target = out_dir / "parity-check.png"
    Image.fromarray(pixels).save(target)
    return str(target)


def first_validation_image(data: Any) -> str | None:
    from engines.rfdetr.datasets import COCO_ANNOTATIONS, IMAGE_SUFFIXES

    if not isinstance(data, str) or not data:
        return None
    p = Path(data)
    folders: list[Path] = []
    if p.is_file():
        import yaml

        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            return None
        val = doc.get("val") or doc.get("valid") if isinstance(doc, dict) else None
        folders = [Path(v) for v in (val if isinstance(val, list) else [val]) if isinstance(v, str)]
    elif p.is_dir():
        folders = [p / s for s in ("valid", "val", "train") if (p / s / COCO_ANNOTATIONS).is_file()]
    for folder in folders:
        if folder.is_dir():
            for f in sorted(folder.iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                    return str(f)
    return None


def _top_pairs(boxes: Any, logits: Any, wh: tuple[int, int], k: int) -> list[tuple[int, float, Any]]:
    from engines.rfdetr.inference import decode

    xyxy, scores, cls, _ = decode(boxes, logits, wh, threshold=-1.0, num_select=k)
    return [(int(c), float(s), b) for b, s, c in zip(xyxy, scores, cls)]


def _iou(a: Any, b: Any) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else (1.0 if inter == 0 and list(a) == list(b) else 0.0)


def parity(torch_model: Any, onnx_model: Any, image_path: str) -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    with Image.open(image_path) as im:
        image = im.convert("RGB")
    wh = (image.width, image.height)
    t_boxes, t_logits, t_masks = torch_model.raw(image)
    o_boxes, o_logits, o_masks = onnx_model.raw(image)
    reference = _top_pairs(t_boxes, t_logits, wh, TOP_PAIRS)
    candidates = _top_pairs(o_boxes, o_logits, wh, TOP_PAIRS * 3)
    used: set[int] = set()
    ious: list[float] = []
    conf_diffs: list[float] = []
    for cls, score, box in reference:
        best, best_iou = None, -1.0
        for j, (c2, _s2, b2) in enumerate(candidates):
            if j in used or c2 != cls:
                continue
            iou = _iou(box, b2)
            if iou > best_iou:
                best, best_iou = j, iou
        if best is None:
            ious.append(0.0)
            conf_diffs.append(1.0)
            continue
        used.add(best)
        ious.append(best_iou)
        conf_diffs.append(abs(score - candidates[best][1]))
    check: dict[str, Any] = {
        "image": image_path,
        "compared": len(reference),
        "min_iou": round(min(ious), 6) if ious else None,
        "max_conf_diff": round(max(conf_diffs), 6) if conf_diffs else None,
        "top_confidence": round(reference[0][1], 6) if reference else None,
        "max_abs_logit_diff": float(np.max(np.abs(t_logits - o_logits))) if t_logits.shape == o_logits.shape else None,
        "thresholds": {"min_iou": MIN_IOU, "max_conf_diff": MAX_CONF_DIFF, "pairs": TOP_PAIRS},
    }
    if t_masks is not None and o_masks is not None and t_masks.shape == o_masks.shape:
        check["max_abs_mask_logit_diff"] = float(np.max(np.abs(t_masks - o_masks)))
    check["passed"] = bool(ious) and min(ious) >= MIN_IOU and max(conf_diffs) <= MAX_CONF_DIFF
    return check
