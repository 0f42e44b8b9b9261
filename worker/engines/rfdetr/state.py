"""trainhook's own record of a run, beside rfdetr's files in the run dir.

Rewritten after every epoch (after last.ckpt) and once more, with `finished`, when training ends:
a finished run found again is reported from it without training or the dataset.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = "trainhook-rfdetr.json"


def write_state(run_dir: Path, state: dict[str, Any]) -> None:
    tmp = run_dir / f".{STATE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=1, allow_nan=False, default=str), encoding="utf-8")
    os.replace(tmp, run_dir / STATE_FILE)


def read_state(run_dir: Path) -> dict[str, Any]:
    try:
        state = json.loads((run_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}
