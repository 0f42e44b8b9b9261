"""The run directory `<project>/<name>/`: checkpoints, resume decisions, results.csv, artifacts.

Ultralytics writes weights/last.pt in place (not atomically); on every save the worker keeps an
atomic copy, weights/resume.ckpt, so a SIGKILL in the middle of a save still leaves a
resumable checkpoint. trainhook-state.json carries what Ultralytics does not keep (best epoch).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

RESUME_COPY = "resume.ckpt"
STATE_FILE = "trainhook-state.json"
ARTIFACT_GLOBS = ("*.png", "*.jpg", "results.csv", "args.yaml")


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def log(msg: str) -> None:
    print(f"[trainhook] {msg}", file=sys.stderr, flush=True)


class RunDir:
    def __init__(self, project: str, name: str) -> None:
        self.path = Path(project) / name
        self.weights = self.path / "weights"
        self.last = self.weights / "last.pt"
        self.best = self.weights / "best.pt"
        self.resume_copy = self.weights / RESUME_COPY

    # --- our state ---------------------------------------------------------------------------

    def load_state(self) -> dict[str, Any]:
        try:
            state = json.loads((self.path / STATE_FILE).read_text(encoding="utf-8"))
            return state if isinstance(state, dict) else {}
        except (OSError, ValueError):
            return {}

    def save_state(self, **state: Any) -> None:
        try:
            write_json_atomic(self.path / STATE_FILE, state)
        except OSError as e:
            log(f"could not write {STATE_FILE}: {e}")

    def keep_resume_copy(self) -> None:
        """Called right after Ultralytics saved last.pt."""
        copy_atomic(self.last, self.resume_copy)

    # --- resume ------------------------------------------------------------------------------

    @staticmethod
    def _load(p: Path) -> dict | None:
        if not p.is_file():
            return None
        import torch

        try:
            ck = torch.load(p, map_location="cpu", weights_only=False)
            return ck if isinstance(ck, dict) else None
        except Exception as e:
            log(f"{p} unreadable ({type(e).__name__}: {e}); ignoring it")
            return None

    def inspect(self) -> tuple[str, int, dict | None]:
        """What a resume=true run finds: ('resume', epochs done, ckpt), ('finished', epochs done, None)
        or ('fresh', 0, None).
        """
        last = self._load(self.last)
        if last is not None and last.get("epoch", -1) < 0:
            # final_eval strips last.pt (epoch -1, no optimizer): the training loop had finished.
            return "finished", int(self.load_state().get("saved_epoch") or self.csv_epochs()), None
        candidates = [
            ck
            for ck in (last, self._load(self.resume_copy))
            if ck is not None and ck.get("epoch", -1) >= 0 and ck.get("optimizer") is not None
        ]
        if not candidates:
            return "fresh", 0, None
        ck = max(candidates, key=lambda c: c["epoch"])
        done = int(ck["epoch"]) + 1
        if done >= int((ck.get("train_args") or {}).get("epochs") or 0):
            return "finished", done, None  # killed between the last save and final_eval
        return "resume", done, ck

    def prepare_resume(self, ck: dict, epochs_done: int, train_args: dict[str, Any]) -> None:
        """Writes `ck` as last.pt with its train args updated, and drops csv rows past it.

        Ultralytics takes every argument from the checkpoint on resume; the run may have moved
        (another workdir path) or its data.yaml been normalized again, so point them at this spec.
        """
        import torch

        ck = dict(ck)
        ck["train_args"] = {**(ck.get("train_args") or {}), **train_args, "save_dir": str(self.path)}
        tmp = self.weights / f".last.pt.{os.getpid()}.tmp"
        torch.save(ck, tmp)
        os.replace(tmp, self.last)
        self.truncate_csv(epochs_done)

    def csv_epochs(self) -> int:
        try:
            lines = (self.path / "results.csv").read_text(encoding="utf-8").splitlines()
        except OSError:
            return 0
        return len([ln for ln in lines[1:] if ln.strip()])

    def csv_rows(self) -> list[dict[str, float]]:
        """results.csv as one dict per epoch row (Ultralytics' column names; unparsable cells dropped)."""
        try:
            lines = (self.path / "results.csv").read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        if not lines:
            return []
        header = [h.strip() for h in lines[0].split(",")]
        rows = []
        for ln in lines[1:]:
            row: dict[str, float] = {}
            for key, cell in zip(header, ln.split(",")):
                try:
                    row[key] = float(cell)
                except ValueError:
                    continue
            if "epoch" in row:
                rows.append(row)
        return rows

    def truncate_csv(self, epochs: int) -> None:
        """Rows written after the checkpoint we resume from would be written again: drop them."""
        csv = self.path / "results.csv"
        try:
            lines = csv.read_text(encoding="utf-8").splitlines()
        except OSError:
            return
        if not lines:
            return
        kept = [lines[0]]
        for ln in lines[1:]:
            try:
                if int(float(ln.split(",")[0])) <= epochs:
                    kept.append(ln)
            except ValueError:
                continue
        if len(kept) != len(lines):
            tmp = csv.with_name(f".{csv.name}.tmp")
            tmp.write_text("\n".join(kept) + "\n", encoding="utf-8")
            os.replace(tmp, csv)

    # --- fresh start, end --------------------------------------------------------------------

    def clean(self) -> None:
        """A fresh start in a used run dir: drop what an earlier attempt left (weights, plots, csv)."""
        if not self.path.is_dir():
            return
        for pattern in ("weights/*.pt", f"weights/{RESUME_COPY}", *ARTIFACT_GLOBS, STATE_FILE):
            for p in self.path.glob(pattern):
                if p.is_file():
                    p.unlink()

    def artifacts(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        for pattern in ARTIFACT_GLOBS:
            for p in sorted(self.path.glob(pattern)):
                if p.is_file() and p.name not in seen:
                    seen.add(p.name)
                    items.append({"name": p.name, "path": str(p), "size": p.stat().st_size})
        return items

    def strip(self) -> None:
        """What final_eval does to last.pt/best.pt (optimizer dropped, fp16), for a run we finish."""
        from ultralytics.utils.torch_utils import strip_optimizer

        for p in (self.last, self.best):
            if p.is_file():
                ck = self._load(p)
                if ck is not None and ck.get("optimizer") is not None:
                    strip_optimizer(p)

    def final_metrics_from(self, p: Path) -> dict[str, Any]:
        ck = self._load(p)
        return (ck or {}).get("train_metrics") or {}
