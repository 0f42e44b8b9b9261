#!/usr/bin/env python3
"""Hand-run smoke test of the RF-DETR engine, with the engine venv's python:

    <rfdetr venv>/bin/python worker/engines/rfdetr/selftest.py [--keep DIR] [--segment] [--coco]

It generates a tiny dataset (16 train / 8 val 64-px images, three shape classes), then through the
engine's `run()` in child processes, as the service runs them:
  1. trains nano from random initialisation for 3 epochs, SIGTERM after the first `epoch` event
     → `stopped` {epochs_completed: 1, last: .../last.ckpt};
  2. resumes → `started` {resumed_from_epoch: 1}, epoch events 2 and 3 only, `done`;
  3. resumes the finished run → `done` again from its files, no training;
  4. exports the best checkpoint to ONNX (parity check must pass);
  5. predicts one validation image with the .pth and the .onnx, in one request each.
--segment adds a 1-epoch segmentation run (seg nano) with export and predict; --coco adds a 1-epoch
detection run from the same images in Roboflow COCO layout (with val/, not valid/). Training uses
20 queries in one group and one thread unless --default-queries.

Children start through worker/main.py when it exists, else through a minimal stand-in of the
shared runtime below (same contract: NDJSON events on the real stdout, SIGTERM → stop at a batch
boundary, one terminal event). Prints each event line and ends with "N passed, N failed".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

ENGINE_DIR = Path(__file__).resolve().parent
WORKER_DIR = ENGINE_DIR.parent.parent

# --- synthetic data (the drawing of test/helpers/synthetic-dataset.ts, in numpy) ----------------

PALETTE = [(230, 25, 25), (25, 200, 40), (30, 60, 235), (245, 220, 20), (220, 30, 220), (20, 220, 220)]
SHAPES = ("rect", "circle", "triangle")


def _polygon(shape: str, x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    if shape == "rect":
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    if shape == "triangle":
        return [((x0 + x1) / 2, y0), (x1, y1), (x0, y1)]
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    return [(cx + r * math.cos(2 * math.pi * i / 16), cy + r * math.sin(2 * math.pi * i / 16)) for i in range(16)]


def _sample(rng: Any, imgsz: int, nc: int) -> tuple[Any, list[tuple[int, list[tuple[float, float]]]]]:
    import numpy as np
    from PIL import Image, ImageDraw

    img = Image.fromarray((70 + rng.integers(0, 110, size=(imgsz, imgsz, 3))).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    want, objs = 1 + int(rng.random() * 3), []
    for _ in range(30):
        if len(objs) >= want:
            break
        cls = int(rng.random() * nc)
        side = round(imgsz * (0.25 + rng.random() * 0.2))
        x0, y0 = int(rng.random() * (imgsz - side)), int(rng.random() * (imgsz - side))
        box = (x0, y0, x0 + side, y0 + side)

        def overlap(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
            ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
            iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
            return ix * iy > 0.1 * min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))

        if any(overlap(o[1], box) for o in objs):
            continue
        objs.append((cls, box))
    out = []
    for cls, (x0, y0, x1, y1) in objs:
        poly = _polygon(SHAPES[cls % 3], x0, y0, x1, y1)
        draw.polygon(poly, fill=PALETTE[cls % len(PALETTE)])
        out.append((cls, poly))
    return img, out


def write_yolo(root: Path, *, train: int, val: int, imgsz: int, names: list[str], seed: int, segment: bool) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img, objs = _sample(rng, imgsz, len(names))
            stem = f"{split}_{i:05d}"
            img.save(root / "images" / split / f"{stem}.png")
            lines = []
            for cls, poly in objs:
                f = lambda v: f"{min(1.0, max(0.0, v / imgsz)):.6f}"  # noqa: E731
                xs, ys = [p[0] for p in poly], [p[1] for p in poly]
                if segment:
                    lines.append(f"{cls} " + " ".join(f"{f(x)} {f(y)}" for x, y in poly))
                else:
                    lines.append(f"{cls} {f((min(xs) + max(xs)) / 2)} {f((min(ys) + max(ys)) / 2)} {f(max(xs) - min(xs))} {f(max(ys) - min(ys))}")
            (root / "labels" / split / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
    data = root / "data.yaml"
    data.write_text(
        f"path: {json.dumps(str(root))}\ntrain: {json.dumps(str(root / 'images/train'))}\n"
        f"val: {json.dumps(str(root / 'images/val'))}\nnc: {len(names)}\nnames:\n"
        + "".join(f"  - {json.dumps(n)}\n" for n in names)
    )
    return data


def yolo_to_coco(yolo_root: Path, out: Path, names: list[str], val_dir: str = "val") -> Path:
    """Roboflow's COCO export: a parent category 0 over the real ones, images beside the JSON."""
    import shutil

    from PIL import Image

    for split, target in (("train", "train"), ("val", val_dir)):
        folder = out / target
        folder.mkdir(parents=True, exist_ok=True)
        doc: dict[str, Any] = {
            "images": [], "annotations": [],
            "categories": [{"id": 0, "name": "shapes", "supercategory": "none"}]
            + [{"id": i + 1, "name": n, "supercategory": "shapes"} for i, n in enumerate(names)],
        }
        for i, img_path in enumerate(sorted((yolo_root / "images" / split).iterdir())):
            shutil.copy(img_path, folder / img_path.name)
            with Image.open(img_path) as im:
                w, h = im.size
            doc["images"].append({"id": i, "file_name": img_path.name, "width": w, "height": h})
            for line in (yolo_root / "labels" / split / f"{img_path.stem}.txt").read_text().split("\n"):
                if not line.strip():
                    continue
                c, cx, cy, bw, bh = line.split()[:5]
                x, y, bw_, bh_ = (float(cx) - float(bw) / 2) * w, (float(cy) - float(bh) / 2) * h, float(bw) * w, float(bh) * h
                doc["annotations"].append({"id": len(doc["annotations"]), "image_id": i, "category_id": int(c) + 1,
                                           "bbox": [x, y, bw_, bh_], "area": bw_ * bh_, "iscrowd": 0, "segmentation": []})
        (folder / "_annotations.coco.json").write_text(json.dumps(doc))
    return out


# --- a stand-in of the shared runtime (used only while worker/runtime.py does not exist) ----------


def _standin_runtime_module() -> types.ModuleType:
    mod = types.ModuleType("runtime")

    class StopRequested(BaseException):
        pass

    class JobFailure(Exception):
        def __init__(self, code: str, message: str, details: Any = None, epoch: int | None = None) -> None:
            super().__init__(message)
            self.code, self.message, self.details, self.epoch = code, message, details, epoch

    class Runtime:
        def __init__(self, spec: dict[str, Any], out: Any) -> None:
            self.spec, self._out = spec, out
            self.stop_requested, self.stop_reason = False, None
            self.interruptible = True
            self.stopped_state: dict[str, Any] = {"epochs_completed": 0, "last": None}
            self.terminal: str | None = None

        def emit(self, type_: str, **fields: Any) -> None:
            if self.terminal is not None:
                return
            if type_ in {"done", "error", "stopped"}:
                self.terminal = type_

            def clean(v: Any) -> Any:
                if isinstance(v, float):
                    return v if math.isfinite(v) else None
                if isinstance(v, dict):
                    return {str(k): clean(x) for k, x in v.items()}
                if isinstance(v, (list, tuple)):
                    return [clean(x) for x in v]
                return v

            self._out.write(json.dumps({"type": type_, **clean(fields)}, default=str) + "\n")
            self._out.flush()

        def log(self, msg: str) -> None:
            print(f"[trainhook] {msg}", file=sys.stderr, flush=True)

        def request_stop(self, reason: str) -> None:
            self.stop_requested, self.stop_reason = True, self.stop_reason or reason
            if self.interruptible:
                raise StopRequested(reason)

        def check_stop(self) -> None:
            if self.stop_requested:
                raise StopRequested(self.stop_reason)

    mod.StopRequested, mod.JobFailure, mod.Runtime = StopRequested, JobFailure, Runtime
    return mod


def child_main(entry: str, spec_path: str) -> int:
    """What worker/main.py does, in a few lines: the stand-in for these tests."""
    out = os.fdopen(os.dup(1), "w", 1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.path.insert(0, str(WORKER_DIR))
    runtime = sys.modules.setdefault("runtime", _standin_runtime_module())
    spec = json.loads(Path(spec_path).read_text())
    rt = runtime.Runtime(spec, out)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: rt.request_stop(signal.Signals(s).name))
    import importlib.util

    module_spec = importlib.util.spec_from_file_location("trainhook_engine_entry", entry)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    try:
        module.run(spec, rt)
    except runtime.StopRequested:
        rt.emit("stopped", **rt.stopped_state)
    except runtime.JobFailure as e:
        rt.emit("error", code=e.code, message=e.message, details=e.details, epoch=e.epoch)
    except BaseException as e:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        classified = getattr(module, "classify", lambda _e: None)(e)
        code, message = classified or ("UNKNOWN_ERROR", f"{type(e).__name__}: {e}")
        rt.emit("error", code=code, message=message)
    return 0


# --- the parent: run the engine and check what it says ----------------------------------------------


class Checks:
    def __init__(self) -> None:
        self.passed = self.failed = 0

    def ok(self, cond: bool, what: str) -> None:
        if cond:
            self.passed += 1
            print(f"ok   {what}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {what}", flush=True)


def run_entry(entry: str, spec: dict[str, Any], work: Path, name: str, stop_after: str | None = None,
              log: Any = None) -> list[dict[str, Any]]:
    spec_path = work / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    main = WORKER_DIR / "main.py"
    if main.exists() and (WORKER_DIR / "runtime.py").exists():
        cmd = [sys.executable, "-u", str(main), "--entry", str(ENGINE_DIR / entry), "--spec", str(spec_path)]
    else:
        cmd = [sys.executable, "-u", __file__, "--child", str(ENGINE_DIR / entry), str(spec_path)]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log or subprocess.DEVNULL, text=True)
    events = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.strip()
        if not line:
            continue
        ev = json.loads(line)
        events.append(ev)
        short = json.dumps(ev)[:400]
        print(f"  [{name} +{time.monotonic() - started:6.1f}s] {short}", flush=True)
        if stop_after and ev.get("type") == stop_after:
            stop_after = None
            proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=600)
    if proc.stdin:
        proc.stdin.close()
    return events


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("type") == kind]


def main() -> int:
    if len(sys.argv) >= 4 and sys.argv[1] == "--child":
        return child_main(sys.argv[2], sys.argv[3])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", help="work in this folder and keep it")
    ap.add_argument("--segment", action="store_true")
    ap.add_argument("--coco", action="store_true")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--default-queries", action="store_true", help="train with rfdetr's 300 queries x 13 groups")
    opts = ap.parse_args()
    work = Path(opts.keep or tempfile.mkdtemp(prefix="rfdetr-selftest-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = open(work / "children.log", "a")
    print(f"work folder: {work} (children's logs in children.log)", flush=True)
    names = ["red", "green", "blue"]
    c = Checks()
    common_args = {"model_size": "nano", "resolution": opts.resolution, "batch_size": 4, "num_workers": 0,
                   "seed": 0, "multi_scale": False, "lr": 1e-4}
    if not opts.default_queries:
        # 20 queries in one group instead of 300 x 13: about 6x less CPU per batch.
        common_args.update(num_queries=20, group_detr=1, threads=1)

    data = write_yolo(work / "data-detect", train=16, val=8, imgsz=64, names=names, seed=1, segment=False)
    run_dir = work / "run-detect"
    spec = {"job_id": "selftest", "engine": "rfdetr", "task": "detect", "model": None, "data": str(data),
            "data_format": "yolo", "run_dir": str(run_dir), "resume": False, "cache_dir": str(work / "cache"),
            "device": "cpu", "args": {**common_args, "epochs": 3}, "progress_every_pct": 25}

    ev = run_entry("train.py", spec, work, "train", stop_after="epoch", log=log)
    stopped = of(ev, "stopped")
    c.ok(len(of(ev, "started")) == 1 and of(ev, "started")[0]["resumed_from_epoch"] is None, "fresh run: started, not resumed")
    c.ok(len(of(ev, "batch")) >= 1 and all(e["batches"] >= e["batch"] >= 1 for e in of(ev, "batch")), "batch events")
    c.ok(len(of(ev, "epoch")) == 1 and of(ev, "epoch")[0]["epoch"] == 1, "one epoch before the stop")
    m = of(ev, "epoch")[0]["metrics"] if of(ev, "epoch") else {}
    c.ok(all(k in m for k in ("mAP50", "mAP50-95", "precision", "recall", "total_loss", "cls_loss", "box_loss", "giou_loss")),
         f"epoch metrics named as the service expects: {sorted(m)}")
    c.ok(any(e["kind"] == "last" and e["epoch"] == 1 for e in of(ev, "checkpoint")), "checkpoint last after epoch 1")
    c.ok(len(stopped) == 1 and stopped[0]["epochs_completed"] == 1 and str(stopped[0].get("last", "")).endswith("last.ckpt"),
         f"SIGTERM → stopped after epoch 1: {stopped}")
    c.ok(ev[-1]["type"] == "stopped", "stopped is the last event")

    ev = run_entry("train.py", {**spec, "resume": True}, work, "resume", log=log)
    epochs = [e["epoch"] for e in of(ev, "epoch")]
    done = of(ev, "done")
    c.ok(of(ev, "started")[0]["resumed_from_epoch"] == 1 if of(ev, "started") else False, "resume: resumed_from_epoch 1")
    c.ok(epochs == [2, 3], f"resume: epochs 2 and 3 only ({epochs})")
    c.ok(len(done) == 1 and done[0]["best"].endswith("checkpoint_best_total.pth") and Path(done[0]["best"]).is_file(),
         f"done names checkpoint_best_total.pth: {done}")
    c.ok(bool(done) and done[0]["epochs_completed"] == 3 and done[0]["final_metrics"].get("mAP50-95") is not None,
         "done: 3 epochs, final metrics")
    artifacts = {a["name"] for a in of(ev, "artifacts")[0]["items"]} if of(ev, "artifacts") else set()
    c.ok({"metrics.csv", "training_config.json", "results.png"} <= artifacts, f"artifacts {sorted(artifacts)}")
    rows = (run_dir / "metrics.csv").read_text().splitlines()[1:] if (run_dir / "metrics.csv").exists() else []
    c.ok(sorted({int(r.split(',')[0]) for r in rows}) == [0, 1, 2], "metrics.csv has each epoch once")

    ev = run_entry("train.py", {**spec, "resume": True}, work, "finished", log=log)
    c.ok(not of(ev, "epoch") and len(of(ev, "done")) == 1 and of(ev, "done")[0]["best"] == (done[0]["best"] if done else None),
         "a finished run found again reports done from its files")

    best = done[0]["best"] if done else str(run_dir / "checkpoint_best_total.pth")
    val_image = str(sorted((data.parent / "images" / "val").iterdir())[0])
    export_run(c, work, log, best, "detect", names, opts.resolution, val_image, data)

    if opts.segment:
        seg_data = write_yolo(work / "data-segment", train=16, val=8, imgsz=64, names=names, seed=2, segment=True)
        seg_spec = {**spec, "task": "segment", "data": str(seg_data), "run_dir": str(work / "run-segment"),
                    "args": {**common_args, "resolution": 72 if opts.resolution % 12 else opts.resolution, "epochs": 1}}
        ev = run_entry("train.py", seg_spec, work, "segment", log=log)
        m = of(ev, "epoch")[0]["metrics"] if of(ev, "epoch") else {}
        c.ok(len(of(ev, "done")) == 1 and "mAP50-95(M)" in m and "mask_dice_loss" in m, f"segmentation trains: {sorted(m)}")
        if of(ev, "done"):
            export_run(c, work, log, of(ev, "done")[0]["best"], "segment", names, seg_spec["args"]["resolution"],
                       str(sorted((seg_data.parent / "images" / "val").iterdir())[0]), seg_data)

    if opts.coco:
        coco = yolo_to_coco(data.parent, work / "data-coco", names, val_dir="val")
        coco_spec = {**spec, "data": str(coco), "data_format": "coco", "run_dir": str(work / "run-coco"),
                     "args": {**common_args, "epochs": 1}}
        ev = run_entry("train.py", coco_spec, work, "coco", log=log)
        c.ok(len(of(ev, "done")) == 1 and len(of(ev, "epoch")) == 1, "COCO layout (val/) trains")
        if of(ev, "done"):
            p = run_entry("predict.py", {"model": of(ev, "done")[0]["best"], "model_size": "nano", "task": "detect",
                                         "images": [{"path": val_image, "name": "v.png"}], "conf": 0.0, "max_det": 5,
                                         "device": "cpu"}, work, "predict-coco", log=log)
            names_back = of(p, "done")[0]["names"] if of(p, "done") else None
            c.ok(names_back == names, f"COCO class names without the parent category: {names_back}")

    print(f"{c.passed} passed, {c.failed} failed", flush=True)
    return 0 if c.failed == 0 else 1


def export_run(c: Checks, work: Path, log: Any, best: str, task: str, names: list[str], resolution: int,
               image: str, data: Path) -> None:
    out = work / f"export-{task}"
    ev = run_entry("export.py", {"model": best, "model_size": "nano", "task": task, "num_classes": len(names),
                                 "class_names": names, "resolution": resolution, "out_dir": str(out),
                                 "check_image": None, "data": str(data)}, work, f"export-{task}", log=log)
    done = of(ev, "done")
    c.ok(len(done) == 1 and done[0]["format"] == "onnx" and Path(done[0]["file"]).is_file(), f"{task}: ONNX file written")
    c.ok(bool(done) and done[0]["check"]["passed"] is True, f"{task}: parity check passed: {done[0]['check'] if done else None}")
    if not done:
        return
    for model, label in ((best, "pth"), (done[0]["file"], "onnx")):
        ev = run_entry("predict.py", {"model": model, "model_size": "nano", "task": task, "class_names": names,
                                      "resolution": resolution, "images": [{"path": image, "name": "val.png"},
                                                                           {"path": str(work / "missing.png"), "name": "missing.png"}],
                                      "conf": 0.0, "max_det": 5, "device": "cpu"}, work, f"predict-{task}-{label}", log=log)
        d = of(ev, "done")
        r = d[0]["results"] if d else []
        ok = (len(r) == 2 and r[0]["width"] == 64 and len(r[0]["detections"]) == 5 and "error" in r[1]
              and all(set(x) >= {"class_id", "class_name", "confidence", "box"} for x in r[0]["detections"])
              and (task != "segment" or all("polygon" in x for x in r[0]["detections"])))
        c.ok(ok, f"{task}: predict with the .{label}: records in the Ultralytics shape")


if __name__ == "__main__":
    sys.exit(main())
