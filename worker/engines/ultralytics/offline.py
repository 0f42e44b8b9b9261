"""Keeps Ultralytics offline: environment before import, settings, fonts, the CUDA AMP check.

Ultralytics reads switches at import, fetches fonts and weights on its own, and phones home
unless told not to. `prepare_environment` must run BEFORE
`import ultralytics`; `configure_settings` and `patch_amp_check` right after it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# Integrations that phone home or write elsewhere; filtered to the keys this version has.
_INTEGRATIONS_OFF = (
    "sync",
    "hub",
    "clearml",
    "comet",
    "dvc",
    "mlflow",
    "neptune",
    "raytune",
    "tensorboard",
    "wandb",
    "vscode_msg",
    "openvino_msg",
)


def prepare_environment(config_dir: str) -> Path:
    """Sets the env switches Ultralytics reads at import time and places fonts; returns the settings dir."""
    os.environ["YOLO_OFFLINE"] = "true"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ["YOLO_CONFIG_DIR"] = config_dir
    os.environ.pop("ULTRALYTICS_API_KEY", None)
    # Ultralytics sets this at import, but torch is imported first and would already have spread
    # its OpenMP pool over every core: the model build then took 1-6 s instead of 0.1-0.4 s under
    # load (bench/overhead.ts). Training sets its own thread count either way.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # matplotlib must not try a GUI backend on a headless machine, and keeps its cache with ours.
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("MPLCONFIGDIR", str(Path(config_dir) / "matplotlib"))
    settings_dir = Path(config_dir) / "Ultralytics"
    settings_dir.mkdir(parents=True, exist_ok=True)
    install_fonts(settings_dir)
    return settings_dir


def install_fonts(settings_dir: Path) -> None:
    """check_font() does an HTTP HEAD for Arial.ttf unless it is in the settings dir: put any TTF there."""
    wanted = [settings_dir / "Arial.ttf", settings_dir / "Arial.Unicode.ttf"]
    if all(p.exists() for p in wanted):
        return
    try:
        import matplotlib

        source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    except Exception as e:  # pragma: no cover - matplotlib is an ultralytics dependency
        print(f"[trainhook] no matplotlib font to copy ({e}); plots may try a font download", file=sys.stderr)
        return
    for target in wanted:
        if target.exists():
            continue
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)


def configure_settings(config_dir: str, weights_dir: str | None = None) -> None:
    """Integrations off; datasets/runs/weights dirs under config_dir (never the cwd or a git root)."""
    from ultralytics.utils import SETTINGS

    base = Path(config_dir)
    wanted: dict[str, object] = {k: False for k in _INTEGRATIONS_OFF}
    wanted["datasets_dir"] = str(base / "datasets")
    wanted["runs_dir"] = str(base / "runs")
    wanted["weights_dir"] = str(weights_dir or (base / "weights"))
    defaults = getattr(SETTINGS, "defaults", {})
    update = {k: v for k, v in wanted.items() if k in defaults and SETTINGS.get(k) != v}
    if update:
        SETTINGS.update(update)


def patch_amp_check(weights_dir: str | None) -> None:
    """On CUDA, Ultralytics' AMP check loads yolo26n.pt and downloads it when absent.

    With the file in weights_dir the real check runs; without it the check is skipped offline
    and AMP stays on (what Ultralytics itself does when the download fails), except on the GPUs
    Ultralytics knows to be broken with AMP.
    """
    import re

    import ultralytics.engine.trainer as trainer_mod
    from ultralytics.utils import checks

    original = checks.check_amp
    probe = Path(weights_dir) / "yolo26n.pt" if weights_dir else None

    def offline_check_amp(model):  # noqa: ANN001
        if probe is not None and probe.exists():
            return original(model)
        import torch

        try:
            device = next(model.parameters()).device
        except Exception:
            return False
        if device.type in {"cpu", "mps"}:
            return False
        name = torch.cuda.get_device_name(device)
        if re.search(r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|t2000|k40m)", name, re.I):
            print(f"[trainhook] AMP disabled on {name} (known AMP issues)", file=sys.stderr)
            return False
        print("[trainhook] AMP check skipped (offline, no yolo26n.pt in weights_dir): amp=True", file=sys.stderr)
        return True

    trainer_mod.check_amp = offline_check_amp
