"""The toy engine's training: a two-layer net on downscaled pixels, one batch per class folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

from runtime import JobFailure, Runtime


def load(split_dir: Path, classes: list[str], size: int):
    import torch
    from PIL import Image

    xs, ys = [], []
    for k, name in enumerate(classes):
        for f in sorted((split_dir / name).iterdir()):
            img = Image.open(f).convert("RGB").resize((size, size))
            xs.append(torch.tensor(list(img.getdata()), dtype=torch.float32).view(size, size, 3).permute(2, 0, 1) / 255)
            ys.append(k)
    return torch.stack(xs), torch.tensor(ys)


def run(spec: dict, rt: Runtime) -> None:
    import torch

    torch.manual_seed(0)
    args, root, out = spec["args"], Path(spec["data"]), Path(spec["run_dir"])
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if len(classes) < 2:
        raise JobFailure("DATASET_INVALID", "the toy engine needs two classes or more")
    rt.emit("started", pid=os.getpid(), device="cpu", versions={"torch": torch.__version__}, resumed_from_epoch=None)
    rt.emit("phase", phase="preparing")
    x, y = load(root / "train", classes, args["imgsz"])
    vx, vy = load(root / "val", classes, args["imgsz"])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(x[0].numel(), 16), torch.nn.ReLU(), torch.nn.Linear(16, len(classes)))
    opt = torch.optim.SGD(model.parameters(), lr=args["lr"])
    rt.emit("phase", phase="training")
    rt.interruptible = False
    epochs, best, best_epoch = int(args["epochs"]), -1.0, None
    (out / "metrics.csv").write_text("epoch,loss,accuracy\n")
    for epoch in range(1, epochs + 1):
        rt.current_epoch = epoch
        started = time.time()
        for b, k in enumerate(range(len(classes)), start=1):
            rt.check_stop()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rt.emit("batch", epoch=epoch, epochs=epochs, batch=b, batches=len(classes))
        with torch.no_grad():
            accuracy = float((model(vx).argmax(1) == vy).float().mean())
        torch.save(model.state_dict(), out / "last.pt")
        rt.stopped_state = {"epochs_completed": epoch, "last": str(out / "last.pt")}
        if accuracy > best:
            best, best_epoch = accuracy, epoch
            torch.save(model.state_dict(), out / "best.pt")
        with (out / "metrics.csv").open("a") as f:
            f.write(f"{epoch},{float(loss)},{accuracy}\n")
        rt.emit("epoch", epoch=epoch, epochs=epochs, metrics={"loss": float(loss), "accuracy": accuracy},
                epoch_seconds=time.time() - started, fitness=accuracy, best_fitness=best, best_epoch=best_epoch)
        if args.get("hang_after_epoch") == epoch and not spec["resume"]:
            while True:  # a hung worker: silent, and deaf to a polite stop
                time.sleep(1)
    rt.emit("artifacts", items=[{"name": "metrics.csv", "path": str(out / "metrics.csv"), "size": (out / "metrics.csv").stat().st_size}])
    rt.emit("done", best=str(out / "best.pt"), last=str(out / "last.pt"), epochs_completed=epochs,
            final_metrics={"accuracy": best}, best_epoch=best_epoch)
