#!/usr/bin/env python3
"""trainhook's Python launcher: `python worker/main.py --entry <engine module> --spec <spec.json>`
(one run: training, an export, a prediction) or `--entry <module> --serve` (a long-lived child
answering one request per stdin line). See runtime.py for what every run gets.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

WORKER_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(WORKER_DIR))

from runtime import claim_stdout, run_once, serve  # noqa: E402


def load_entry(path: str):  # noqa: ANN201
    """The engine's module, imported from its file; its folder goes on sys.path for its own helpers."""
    file = Path(path).resolve()
    sys.path.insert(1, str(file.parent))
    spec = importlib.util.spec_from_file_location(f"trainhook_entry_{file.parent.name}_{file.stem}", file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {file}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    out = claim_stdout()
    parser = argparse.ArgumentParser(description="trainhook worker")
    parser.add_argument("--entry", required=True, help="the engine's Python module (a file)")
    parser.add_argument("--spec", help="path of the spec JSON file (one run)")
    parser.add_argument("--serve", action="store_true", help="answer requests from stdin until EOF")
    parser.add_argument("--no-lifeline", action="store_true", help="do not stop when stdin closes (manual runs)")
    opts = parser.parse_args(argv)

    def fail(message: str) -> int:
        out.write(json.dumps({"type": "error", "code": "UNKNOWN_ERROR", "message": message}) + "\n")
        out.flush()
        return 2

    try:
        module = load_entry(opts.entry)
    except Exception as e:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        return fail(f"cannot load the engine module {opts.entry}: {type(e).__name__}: {e}")
    if opts.serve:
        return serve(module, out)
    if not opts.spec:
        return fail("--spec is required without --serve")
    try:
        with open(opts.spec, encoding="utf-8") as f:
            spec = json.load(f)
        if not isinstance(spec, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        return fail(f"invalid worker spec {opts.spec}: {e}")
    return run_once(module, spec, out, lifeline=not opts.no_lifeline)


if __name__ == "__main__":
    rc = main()
    sys.stderr.flush()
    # os._exit: no waiting on torch/DataLoader threads at interpreter shutdown.
    os._exit(rc)
