"""Ultralytics' metric keys → the names trainhook's events carry (the service's declaration of
this engine's metrics, src/engines/ultralytics/metrics.ts, lists them).
"""

from __future__ import annotations

from typing import Any

from runtime import number

# --- metric names ------------------------------------------------------------------------------

_METRIC_NAMES = {
    "metrics/precision": "precision",
    "metrics/recall": "recall",
    "metrics/mAP50": "mAP50",
    "metrics/mAP50-95": "mAP50-95",
}


def portable_metrics(raw: dict[str, Any] | None) -> dict[str, float | None]:
    """Ultralytics keys → protocol keys.

    train/box_loss → box_loss, val/box_loss → val_box_loss, metrics/mAP50(B) → mAP50,
    metrics/mAP50(M) → mAP50(M) (segment masks), lr/pg0 → lr. Unknown keys keep a cleaned name.
    """
    out: dict[str, float | None] = {}
    for key, value in (raw or {}).items():
        key = str(key)
        if key == "fitness":
            continue
        if key.startswith("train/"):
            name = key[len("train/") :]
        elif key.startswith("val/"):
            name = "val_" + key[len("val/") :]
        elif key.startswith("lr/pg"):
            name = "lr" if key == "lr/pg0" else "lr_" + key[len("lr/") :]
        elif key.startswith("metrics/"):
            base, suffix = key, ""
            if key.endswith(")") and "(" in key:
                base, suffix = key[: key.rindex("(")], key[key.rindex("(") :]
            name = _METRIC_NAMES.get(base, base[len("metrics/") :])
            if suffix and suffix != "(B)":
                name += suffix
        else:
            name = key
        out[name] = number(value)
    return out
