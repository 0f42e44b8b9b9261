#!/usr/bin/env python3
"""Writes assets-<version>.json: the official Ultralytics weights a job may name as base_model.

Read from the installed package, so the list is what that version itself would download:
utils/downloads.py's GITHUB_ASSETS_NAMES (the release assets it knows), the release tag
attempt_download_asset uses by default, and the repository. Only the YOLO families the
trainer builds from a checkpoint are kept (not SAM, YOLO-World, YOLOE, NAS or RT-DETR, which
need other model classes), each with the task its file name says. Run it with the Ultralytics
venv after changing the pinned version:

    $(node scripts/setup-python.mjs ultralytics | tail -1) src/engines/ultralytics/presets/extract_assets.py

test/configs.test.ts compares the file with the installed version.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path

FAMILY = re.compile(r"^(yolov8|yolo11|yolo12|yolo26|yolov5|yolov3|yolov9|yolov10)[\w.-]*\.pt$")
EXCLUDED = re.compile(r"(world|grayscale)")
TASK_SUFFIX = {"-cls": "classify", "-seg": "segment", "-pose": "pose", "-obb": "obb"}


def task_of(name: str) -> str:
    stem = name[: -len(".pt")]
    for suffix, task in TASK_SUFFIX.items():
        if stem.endswith(suffix):
            return task
    return "detect"


def extract() -> dict:
    import ultralytics
    from ultralytics.utils import downloads

    release = inspect.signature(downloads.attempt_download_asset).parameters["release"].default
    names = sorted(n for n in downloads.GITHUB_ASSETS_NAMES if FAMILY.match(n) and not EXCLUDED.search(n))
    return {
        "ultralytics_version": ultralytics.__version__,
        "source": "ultralytics/utils/downloads.py GITHUB_ASSETS_NAMES, attempt_download_asset",
        "url_prefix": f"https://github.com/{downloads.GITHUB_ASSETS_REPO}/releases/download/{release}/",
        "assets": [{"name": n, "task": task_of(n)} for n in names],
    }


def main() -> int:
    data = extract()
    if "--stdout" in sys.argv:
        print(json.dumps(data))
        return 0
    text = json.dumps(data, indent=1) + "\n"
    out = Path(__file__).with_name(f"assets-{data['ultralytics_version']}.json")
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({len(data['assets'])} weights)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
