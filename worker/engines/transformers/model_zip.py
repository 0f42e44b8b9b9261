"""A registered model ZIP (adapter.zip or model.zip) opened into a folder, for export.py and
predict.py: every member must land inside the folder (no `..`, no absolute path)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from runtime import JobFailure


def extract_into(zip_path: str | Path, dest: Path) -> Path:
    """Extract into dest (an existing folder), refusing the whole ZIP if one member would escape it."""
    inside = str(dest.resolve()) + os.sep
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            if not str((dest / info.filename).resolve()).startswith(inside):
                raise JobFailure("UNKNOWN_ERROR", f"unsafe path {info.filename!r} in the model ZIP")
        z.extractall(dest)
    return dest
