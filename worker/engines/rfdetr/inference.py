"""Loading a trained RF-DETR model and turning its output into trainhook's detection records.

Two backends give the same record shape as the Ultralytics predictor
({class_id, class_name, confidence, box: [x1, y1, x2, y2] in pixels, polygon?: [[x, y], ...]}):

- TorchModel: a .pth or .ckpt checkpoint through rfdetr (`RFDETR.from_checkpoint`, `predict`).
- OnnxModel: an exported .onnx straight through onnxruntime, decoded here as rfdetr's PostProcess
  decodes (per-class sigmoid, the top query/class pairs over all classes, cxcywh → xyxy scaled to
  the image). rfdetr's own ONNX decoders are private and its `predict` needs a PyTorch model; this
  keeps the ONNX path free of the training stack's model build.

Both resize the image to the square model resolution (bilinear, no antialias) and normalise with
ImageNet statistics, as rfdetr's predict does. Class slots past the dataset's classes (rfdetr's
head has one spare) are dropped in both.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

MEANS = (0.485, 0.456, 0.406)
STDS = (0.229, 0.224, 0.225)


def mask_polygon(mask: Any) -> list[list[float]]:
    """The largest outer contour of a boolean mask, as [[x, y], ...] pixels (Ultralytics' masks.xy)."""
    import cv2
    import numpy as np

    m = np.ascontiguousarray(mask.astype(np.uint8))
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    c = max(contours, key=cv2.contourArea).reshape(-1, 2)
    return [[float(x), float(y)] for x, y in c]


def records(xyxy: Any, conf: Any, cls: Any, names: list[str], masks: Any = None, max_det: int = 300) -> list[dict[str, Any]]:
    import numpy as np

    order = np.argsort(-np.asarray(conf, dtype=np.float64), kind="stable")
    out: list[dict[str, Any]] = []
    for i in order:
        k = int(cls[i])
        if not 0 <= k < len(names):
            continue
        det: dict[str, Any] = {
            "class_id": k,
            "class_name": names[k],
            "confidence": float(conf[i]),
            "box": [float(v) for v in xyxy[i]],
        }
        if masks is not None:
            det["polygon"] = mask_polygon(masks[i])
        out.append(det)
        if len(out) >= max_det:
            break
    return out


def _rgb(path: str) -> Any:
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def preprocess(image: Any, size: tuple[int, int]) -> Any:
    """PIL RGB → normalised float32 NCHW numpy at (height, width), as rfdetr's predict prepares it."""
    import torch
    from torchvision.transforms.v2 import functional as F

    t = F.to_dtype(F.to_image(image), torch.float32, scale=True)
    t = F.resize(t, list(size), interpolation=F.InterpolationMode.BILINEAR, antialias=False)
    t = F.normalize(t, list(MEANS), list(STDS))
    return t.unsqueeze(0).numpy()


class TorchModel:
    backend = "torch"

    def __init__(self, path: str, *, task: str, model_size: str | None, device: str, class_names: list[str] | None) -> None:
        import warnings

        from rfdetr import RFDETR

        from engines.rfdetr.variants import model_class, variant_for

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            try:
                self.model = RFDETR.from_checkpoint(path, device=device)
            except ValueError:
                # A checkpoint that names no class: build the asked size around it.
                if not model_size:
                    raise
                self.model = model_class(variant_for(task, model_size))(pretrain_weights=path, device=device)
        stored = list(getattr(self.model, "class_names", None) or [])
        self.names = [str(n) for n in (class_names or stored)]
        self.segmentation = bool(getattr(self.model.model_config, "segmentation_head", False))
        self.resolution = int(self.model.model_config.resolution)

    def predict(self, image_path: str, conf: float, max_det: int) -> dict[str, Any]:
        import numpy as np

        image = _rgb(image_path)
        started = time.perf_counter()
        det = self.model.predict(image, threshold=conf, include_source_image=False)
        masks = det.mask if self.segmentation and det.mask is not None else None
        recs = records(det.xyxy, det.confidence, np.asarray(det.class_id), self.names, masks, max_det)
        return {"width": image.width, "height": image.height, "seconds": time.perf_counter() - started, "detections": recs}

    def raw(self, image: Any) -> tuple[Any, Any, Any]:
        """(boxes cxcywh (Q, 4), logits (Q, C), masks or None) of one image, for the export parity check."""
        import torch

        inner = self.model.model
        net = inner.model
        net.eval()
        x = torch.from_numpy(preprocess(image, (self.resolution, self.resolution))).to(next(net.parameters()).device)
        with torch.no_grad():
            out = net(x)
        masks = out.get("pred_masks")
        return (out["pred_boxes"][0].float().cpu().numpy(), out["pred_logits"][0].float().cpu().numpy(),
                None if masks is None else masks[0].float().cpu().numpy())


class OnnxModel:
    backend = "onnx"

    def __init__(self, path: str, *, device: str, class_names: list[str] | None) -> None:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        # Idle pool threads block instead of spinning, so a loaded model costs no CPU between requests.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, sess_options=options, providers=providers)
        meta = self.session.get_modelmeta().custom_metadata_map or {}
        stored: list[str] = []
        if meta.get("trainhook_class_names"):
            import json

            stored = [str(n) for n in json.loads(meta["trainhook_class_names"])]
        self.names = [str(n) for n in (class_names or stored)]
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.size = (int(inp.shape[2]), int(inp.shape[3]))
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.segmentation = any("mask" in n for n in self.output_names)

    def raw(self, image: Any) -> tuple[Any, Any, Any]:
        outs = dict(zip(self.output_names, self.session.run(None, {self.input_name: preprocess(image, self.size)})))
        boxes = next(v for k, v in outs.items() if "dets" in k)[0]
        logits = next(v for k, v in outs.items() if "labels" in k)[0]
        masks = next((v for k, v in outs.items() if "mask" in k), None)
        return boxes, logits, None if masks is None else masks[0]

    def predict(self, image_path: str, conf: float, max_det: int) -> dict[str, Any]:
        image = _rgb(image_path)
        started = time.perf_counter()
        boxes, logits, masks = self.raw(image)
        xyxy, scores, cls, query = decode(boxes, logits, (image.width, image.height), conf, num_select=logits.shape[0])
        full_masks = None
        if masks is not None:
            full_masks = upsample_masks(masks[query], (image.height, image.width))
        recs = records(xyxy, scores, cls, self.names, full_masks, max_det)
        return {"width": image.width, "height": image.height, "seconds": time.perf_counter() - started, "detections": recs}


def decode(boxes_cxcywh: Any, logits: Any, image_wh: tuple[int, int], threshold: float, num_select: int) -> tuple[Any, Any, Any, Any]:
    """rfdetr's PostProcess in numpy: top `num_select` query/class pairs by sigmoid score, then the threshold."""
    import numpy as np

    prob = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -88, 88)))
    flat = prob.reshape(-1)
    order = np.argsort(-flat, kind="stable")[: min(num_select, flat.size)]
    scores = flat[order]
    keep = scores > threshold
    order, scores = order[keep], scores[keep]
    query, cls = order // prob.shape[1], order % prob.shape[1]
    cx, cy, w, h = boxes_cxcywh[query].astype(np.float64).T
    W, H = image_wh
    scale = np.array([W, H, W, H], dtype=np.float64)
    xyxy = np.clip(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1) * scale, 0.0, scale)
    return xyxy, scores, cls, query


def upsample_masks(mask_logits: Any, hw: tuple[int, int]) -> Any:
    import torch
    import torch.nn.functional as F

    if len(mask_logits) == 0:
        import numpy as np

        return np.zeros((0, *hw), dtype=bool)
    t = torch.from_numpy(mask_logits).float().unsqueeze(1)
    return (F.interpolate(t, size=hw, mode="bilinear", align_corners=False)[:, 0] > 0).numpy()


def load(path: str, *, task: str, model_size: str | None, device: str, class_names: list[str] | None) -> Any:
    if Path(path).suffix.lower() == ".onnx":
        return OnnxModel(path, device=device, class_names=class_names)
    return TorchModel(path, task=task, model_size=model_size, device=device, class_names=class_names)
