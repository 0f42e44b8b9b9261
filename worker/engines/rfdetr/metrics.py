"""RF-DETR's logged metric keys → the names trainhook's events use.

Keys are read from Lightning's `trainer.callback_metrics` (what rfdetr also writes to metrics.csv),
never from the tables it prints.

- val/mAP_50_95 → mAP50-95, val/mAP_50 → mAP50, val/mAP_75 → mAP75, val/mAR → mAR, val/precision,
  val/recall, val/F1 → precision, recall, F1. Validation scores one model: the EMA weights when EMA
  is on (rfdetr mirrors them onto these keys), else the trained weights. The val/ema_* duplicates
  are dropped.
- Segmentation masks: val/segm_mAP_50_95 → mAP50-95(M), val/segm_mAP_50 → mAP50(M) (the suffix
  the Ultralytics engine uses for mask metrics).
- Train losses (epoch means): train/loss → total_loss (the weighted sum that is optimised),
  train/loss_ce → cls_loss, train/loss_bbox → box_loss (L1), train/loss_giou → giou_loss, the
  auxiliary-decoder parts → cls_aux_loss, box_aux_loss, giou_aux_loss, masks → mask_ce_loss,
  mask_dice_loss; train/lr → lr.
- Validation loss, when rfdetr computes it (compute_val_loss): val/loss → val/total_loss, and
  val/loss_<part> → val/<part>_loss.
"""

from __future__ import annotations

from typing import Any

from runtime import number  # noqa: F401  (events.py imports it from here)

_VAL_NAMES = {
    "mAP_50_95": "mAP50-95",
    "mAP_50": "mAP50",
    "mAP_75": "mAP75",
    "mAR": "mAR",
    "precision": "precision",
    "recall": "recall",
    "F1": "F1",
    "segm_mAP_50_95": "mAP50-95(M)",
    "segm_mAP_50": "mAP50(M)",
}
_LOSS_PARTS = {"ce": "cls", "bbox": "box"}




def _loss_name(rest: str) -> str:
    """'ce_aux' → 'cls_aux_loss', 'mask_dice' → 'mask_dice_loss', '' → 'total_loss'."""
    if not rest:
        return "total_loss"
    for raw, nice in _LOSS_PARTS.items():
        if rest == raw or rest.startswith(raw + "_"):
            rest = nice + rest[len(raw):]
            break
    return rest + "_loss"


def portable(callback_metrics: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key, value in callback_metrics.items():
        if key.startswith("val/"):
            name = key[4:]
            if name in _VAL_NAMES:
                out[_VAL_NAMES[name]] = number(value)
            elif name == "loss" or name.startswith("loss_"):
                out["val/" + _loss_name(name[5:])] = number(value)
        elif key.startswith("train/"):
            name = key[6:]
            if name == "lr":
                out["lr"] = number(value)
            elif name == "loss" or name.startswith("loss_"):
                out[_loss_name(name[5:])] = number(value)
    return out


def fitness_key(segmentation: bool) -> str:
    """The metric best-checkpoint selection ranks by (rfdetr's best_model_metric="map")."""
    return "mAP50-95(M)" if segmentation else "mAP50-95"
