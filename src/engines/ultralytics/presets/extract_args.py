#!/usr/bin/env python3
"""Writes args-<version>.json: every argument of Ultralytics' cfg/default.yaml, as data.

trainhook validates configs against this file at request time (src/engines/ultralytics/catalog.ts), so the
server never imports Python to check a key. Run it with the worker's venv after changing the
pinned Ultralytics version in worker/engines/ultralytics/requirements.txt:

    $(node scripts/setup-python.mjs | tail -1) src/engines/ultralytics/presets/extract_args.py

For each key: the section of default.yaml it sits in, its default, the type and description
from its comment, and the type check Ultralytics' own check_cfg applies (CFG_FLOAT_KEYS,
CFG_FRACTION_KEYS, CFG_INT_KEYS, CFG_BOOL_KEYS). test/configs.test.ts compares the file with
the installed version.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def extract() -> dict:
    import yaml
    import ultralytics
    from ultralytics import cfg as ucfg

    path = Path(ucfg.DEFAULT_CFG_PATH)
    text = path.read_text(encoding="utf-8")
    values = yaml.safe_load(text)
    checks = {}
    for name, keys in (("float", ucfg.CFG_FLOAT_KEYS), ("fraction", ucfg.CFG_FRACTION_KEYS),
                       ("int", ucfg.CFG_INT_KEYS), ("bool", ucfg.CFG_BOOL_KEYS)):
        for k in keys:
            checks.setdefault(k, name)  # check_cfg tests float, fraction, int, bool in this order
    section = "General"
    args = []
    for line in text.splitlines():
        header = re.match(r"^# (.+?) -{5,}", line)
        if header:
            section = header.group(1).strip()
            continue
        m = re.match(r"^([a-z_0-9]+):\s*(.*?)\s*(?:#\s*(.*))?$", line)
        if not m:
            continue
        key, comment = m.group(1), (m.group(3) or "").strip()
        hint = re.match(r"^\(([^)]*)\)\s*(.*)$", comment)
        args.append({
            "key": key,
            "section": section,
            "default": values[key],
            "type": hint.group(1) if hint else None,
            "description": (hint.group(2) if hint else comment) or None,
            "check": checks.get(key),
        })
    missing = set(values) - {a["key"] for a in args}
    if missing:
        raise SystemExit(f"keys of default.yaml not parsed: {sorted(missing)}")
    return {"ultralytics_version": ultralytics.__version__, "source": "ultralytics/cfg/default.yaml", "args": args}


if __name__ == "__main__":
    data = extract()
    if "--stdout" in sys.argv:
        print(json.dumps(data))  # one line: the last line of stdout (Ultralytics may print before it)
    else:
        out = Path(__file__).resolve().parent / f"args-{data['ultralytics_version']}.json"
        out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        print(out)
