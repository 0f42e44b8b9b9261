"""RF-DETR model sizes of the pinned release, and how to build one without touching the network.

Detection: nano, small, medium, base and large. Segmentation: nano, small, medium, large, xlarge and
2xlarge (the RFDETRSeg* classes). Detection xlarge/2xlarge live in the separate rfdetr_plus package
under another license and are not offered.

A size's resolution must be a multiple of patch_size * num_windows ("block" below), which the
library checks itself with a ValueError; `check_resolution` says the same thing before the slow
imports, with a message naming the accepted values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Variant:
    task: str
    size: str
    class_name: str
    patch_size: int
    num_windows: int
    default_resolution: int
    # Base keeps DINOv2's own position grid (37 x 14 = 518 px) for its published weights; built from
    # random initialisation with that grid, the library fetches DINOv2 from the Hugging Face hub.
    hub_backbone_without_weights: bool = False

    @property
    def block(self) -> int:
        return self.patch_size * self.num_windows


# One table for the service (which checks requests) and the worker: variants.json beside this file.
VARIANTS: dict[tuple[str, str], Variant] = {
    (v.task, v.size): v
    for v in (
        Variant(row["task"], row["size"], row["class"], row["patch_size"], row["num_windows"], row["default_resolution"],
                bool(row.get("hub_backbone_without_weights", False)))
        for row in json.loads((Path(__file__).with_name("variants.json")).read_text(encoding="utf-8"))["variants"]
    )
}


def variant_for(task: str, size: str) -> Variant:
    task = "segment" if task in {"segment", "seg", "segmentation"} else task
    v = VARIANTS.get((task, str(size).lower()))
    if v is None:
        sizes = sorted(s for (t, s) in VARIANTS if t == task)
        raise ValueError(f"RF-DETR has no {task} model of size {size!r}; sizes: {', '.join(sizes) or 'none'}")
    return v


def check_resolution(v: Variant, resolution: int) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution <= 0 or resolution % v.block:
        raise ValueError(
            f"resolution {resolution!r} does not fit RF-DETR {v.size} ({v.task}): it must be a positive multiple of "
            f"{v.block} (patch size {v.patch_size} x {v.num_windows} windows), e.g. "
            f"{v.block * max(2, v.default_resolution // v.block // 2)} or {v.default_resolution}"
        )


def model_class(v: Variant) -> Any:
    import rfdetr.variants

    return getattr(rfdetr.variants, v.class_name)


def build_model(v: Variant, *, weights: str | None, num_classes: int | None, resolution: int, device: str,
                random_init_layout: bool, num_queries: int | None = None, group_detr: int | None = None) -> Any:
    """An RF-DETR instance of this size.

    weights: a local checkpoint path or None (random initialisation). random_init_layout: the run
    was started without weights; a resumed run passes weights=None but keeps the layout it started
    with, so its checkpoint still fits.
    """
    import warnings

    kwargs: dict[str, Any] = {"pretrain_weights": weights, "resolution": resolution, "device": device}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if num_queries:
        kwargs["num_queries"] = kwargs["num_select"] = int(num_queries)
    if group_detr:
        kwargs["group_detr"] = int(group_detr)
    if v.hub_backbone_without_weights and random_init_layout:
        # A position grid sized to the training resolution (never 37, as 518 is no multiple of 56)
        # makes the backbone build from its config instead of asking the hub for DINOv2.
        kwargs["positional_encoding_size"] = resolution // v.patch_size
    cls = model_class(v)
    with warnings.catch_warnings():
        # "initialised from scratch" and the deprecation of Base: the job asked for exactly that.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=r".*pretrain_weights=None.*")
        return cls(**kwargs)
