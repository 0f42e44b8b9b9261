"""Keeps RF-DETR and the libraries under it offline and out of the home folder.

Must run before rfdetr, transformers or huggingface_hub is imported: they read these variables
at import time.

What could reach the network, checked in the pinned versions:
- rfdetr downloads published weights when `pretrain_weights` names a file it knows (by base
  name, e.g. rf-detr-nano.pth) that does not exist yet. The engines pass only existing local
  paths, or None, so nothing is fetched.
- The Base size built without weights asks the Hugging Face hub for DINOv2; variants.py builds it
  from its config instead, and HF_HUB_OFFLINE makes any other hub call fail at once, not hang.
- huggingface_hub sends telemetry on downloads; disabled (and no download happens offline).
- Lightning only prints a tip about its cloud logger; wandb/mlflow/tensorboard loggers are off.
- The roboflow package comes with rfdetr[train] but is only imported by upload helpers that the
  engine never calls.
"""

from __future__ import annotations

import os
from pathlib import Path

from runtime import is_out_of_memory  # noqa: F401  (one test for every engine; imported from here by this engine's modules)


def go_offline(cache_dir: str | None) -> None:
    base = Path(cache_dir) if cache_dir else None
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    os.environ["DO_NOT_TRACK"] = "1"
    for secret in ("ROBOFLOW_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY"):
        os.environ.pop(secret, None)
    os.environ["WANDB_MODE"] = "disabled"
    os.environ.setdefault("MPLBACKEND", "Agg")
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
        os.environ["HF_HOME"] = str(base / "huggingface")
        # Where rfdetr would put (and look for) weights named without a folder; never ~/.roboflow.
        os.environ["RF_HOME"] = str(base / "rfdetr-weights")
        os.environ.setdefault("MPLCONFIGDIR", str(base / "matplotlib"))
        os.environ.setdefault("TORCH_HOME", str(base / "torch"))


def versions() -> dict[str, str]:
    import platform
    from importlib import metadata

    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": str(torch.version.cuda or "none")}
    for dist in ("rfdetr", "torchvision", "pytorch-lightning", "onnx", "onnxruntime"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def resolve_device(device: str | None) -> str:
    """'cpu', 'cuda', 'cuda:N' (a bare 'cuda' or 'auto' picks cuda:0 when there is a GPU)."""
    import torch

    d = str(device or "").strip().lower()
    if d in {"", "auto", "none"}:
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if d == "cuda":
        return "cuda:0"
    if d.isdigit():
        return f"cuda:{d}"
    return d


