"""The dataset a job hands over, laid out as RF-DETR reads it.

YOLO ("yolo"): spec.data is a data.yaml with absolute `train`/`val` image folders (one folder or a
list), `names` and `nc`; labels lie beside the images the Ultralytics way (the last `images`
folder of the path replaced by `labels`, `.txt` instead of the image suffix). RF-DETR reads a
data.yaml whose split folders lie *inside* the folder holding it (it refuses paths that resolve
outside, symlinked folders included) and pairs a label with an image by file stem. So the engine
builds <run_dir>/rfdetr-dataset/ with real folders train/{images,labels} and valid/{images,labels}
holding one symbolic link per file, and a data.yaml naming them. File links are allowed; with
several source folders, each folder's files get a prefix so names cannot collide. An image with
no label file gets an empty one (a background image), as Ultralytics reads it.

COCO ("coco"): spec.data is a folder in Roboflow's COCO export layout: train/ and valid/ (or val/),
each holding `_annotations.coco.json` and the images it names (file_name relative to the split
folder); test/ is optional and unused. A folder with valid/ is read in place; one with val/ gets
<run_dir>/rfdetr-dataset/{train,valid} links to its splits.

Segmentation reads YOLO polygon lines and COCO `segmentation` polygons or RLE.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
COCO_ANNOTATIONS = "_annotations.coco.json"


class DatasetProblem(Exception):
    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


@dataclass
class PreparedDataset:
    dataset_dir: str
    dataset_file: str  # rfdetr's dataset_file argument
    class_names: list[str]
    train_images: int
    val_images: int


# The engine's link folder inside the run folder. Not "dataset": the service extracts the job's
# archive there, and this folder is removed and rebuilt on every start.
LINKS = "rfdetr-dataset"


def prepare(data: str, data_format: str, run_dir: Path) -> PreparedDataset:
    if data_format == "yolo":
        return _prepare_yolo(Path(data), run_dir / LINKS)
    if data_format == "coco":
        return _prepare_coco(Path(data), run_dir / LINKS)
    raise DatasetProblem(f"RF-DETR reads YOLO or COCO datasets, not {data_format!r}", {"data_format": data_format})


# --- YOLO -----------------------------------------------------------------------------------------


def _label_for(image: Path) -> Path:
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise DatasetProblem(f"cannot read {path.name}: {e}", {"path": str(path)}) from e
    if not isinstance(doc, dict):
        raise DatasetProblem(f"{path.name} is not a YAML mapping", {"path": str(path)})
    return doc


def _names_of(doc: dict[str, Any], path: Path) -> list[str]:
    names = doc.get("names")
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError) as e:
            raise DatasetProblem(f"{path.name}: names keys must be class indices", {"path": str(path)}) from e
        if keys != list(range(len(keys))):
            raise DatasetProblem(f"{path.name}: names keys must be 0..n-1", {"path": str(path)})
        names = [names[k] if k in names else names[str(k)] for k in keys]
    if not isinstance(names, list) or not names:
        raise DatasetProblem(f"{path.name} has no class names", {"path": str(path)})
    return [str(n) for n in names]


def _split_dirs(doc: dict[str, Any], key: str, path: Path) -> list[Path]:
    raw = doc.get(key)
    if raw is None and key == "val":
        raw = doc.get("valid")
    items = raw if isinstance(raw, list) else [raw]
    if not items or any(not isinstance(x, str) or not x for x in items):
        raise DatasetProblem(f"{path.name} names no {key} image folder", {"path": str(path), "split": key})
    base = Path(doc["path"]) if isinstance(doc.get("path"), str) else path.parent
    dirs = [Path(x) if os.path.isabs(x) else base / x for x in items]
    for d in dirs:
        if not d.is_dir():
            raise DatasetProblem(f"{key} image folder {d} does not exist", {"path": str(d), "split": key})
    return dirs


def _link_split(sources: list[Path], out: Path) -> int:
    images_out, labels_out = out / "images", out / "labels"
    images_out.mkdir(parents=True)
    labels_out.mkdir(parents=True)
    count = 0
    for i, src in enumerate(sources):
        prefix = f"s{i}_" if len(sources) > 1 else ""
        for image in sorted(src.iterdir()):
            if image.suffix.lower() not in IMAGE_SUFFIXES or not image.is_file():
                continue
            name = prefix + image.name
            os.symlink(image.resolve(), images_out / name)
            label = _label_for(image)
            label_link = labels_out / (Path(name).stem + ".txt")
            if label.is_file():
                if not label_link.exists():
                    os.symlink(label.resolve(), label_link)
            else:
                label_link.touch()
            count += 1
    return count


def _prepare_yolo(data_yaml: Path, out: Path) -> PreparedDataset:
    if not data_yaml.is_file():
        raise DatasetProblem(f"data.yaml {data_yaml} does not exist", {"path": str(data_yaml)})
    doc = _read_yaml(data_yaml)
    names = _names_of(doc, data_yaml)
    train, val = _split_dirs(doc, "train", data_yaml), _split_dirs(doc, "val", data_yaml)
    # Built anew on every start (resume included): the source may have moved since.
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    n_train = _link_split(train, out / "train")
    n_val = _link_split(val, out / "valid")
    if n_train == 0 or n_val == 0:
        raise DatasetProblem(
            f"no images in the {'train' if n_train == 0 else 'val'} folders",
            {"train": [str(d) for d in train], "val": [str(d) for d in val]},
        )
    import yaml

    (out / "data.yaml").write_text(
        yaml.safe_dump({"train": "train/images", "val": "valid/images", "nc": len(names), "names": names}, sort_keys=False),
        encoding="utf-8",
    )
    return PreparedDataset(str(out), "yolo", names, n_train, n_val)


# --- COCO -----------------------------------------------------------------------------------------


def _coco_split(root: Path, split: str) -> tuple[Path, dict[str, Any]] | None:
    folder = root / split
    ann = folder / COCO_ANNOTATIONS
    if not ann.is_file():
        return None
    try:
        doc = json.loads(ann.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetProblem(f"{split}/{COCO_ANNOTATIONS} is not valid JSON: {e}", {"path": str(ann)}) from e
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations", "categories")):
        raise DatasetProblem(f"{split}/{COCO_ANNOTATIONS} needs images, annotations and categories lists", {"path": str(ann)})
    if not doc["images"]:
        raise DatasetProblem(f"{split}/{COCO_ANNOTATIONS} lists no images", {"path": str(ann)})
    return folder, doc


def coco_class_names(doc: dict[str, Any]) -> list[str]:
    """Category names in id order, without the unannotated parent category Roboflow exports add."""
    used = {str(a.get("category_id")) for a in doc["annotations"]}
    cats = sorted(doc["categories"], key=lambda c: int(c.get("id", 0)))

    def is_parent(c: dict[str, Any]) -> bool:
        return any(o is not c and o.get("supercategory") == c.get("name") and o.get("name") != c.get("name") for o in cats)

    kept = [c for c in cats if str(c.get("id")) in used or not is_parent(c)] or cats
    return [str(c.get("name")) for c in kept]


def _prepare_coco(root: Path, out: Path) -> PreparedDataset:
    if not root.is_dir():
        raise DatasetProblem(f"COCO dataset folder {root} does not exist", {"path": str(root)})
    train = _coco_split(root, "train")
    if train is None:
        raise DatasetProblem(f"no train/{COCO_ANNOTATIONS} in the COCO dataset", {"path": str(root)})
    val_name = "valid" if (root / "valid" / COCO_ANNOTATIONS).is_file() else "val"
    val = _coco_split(root, val_name)
    if val is None:
        raise DatasetProblem(f"no valid/{COCO_ANNOTATIONS} (or val/) in the COCO dataset", {"path": str(root)})
    names = coco_class_names(train[1])
    if not names:
        raise DatasetProblem("the COCO train split has no categories", {"path": str(train[0])})
    dataset_dir = root
    shutil.rmtree(out, ignore_errors=True)
    if val_name != "valid":
        out.mkdir(parents=True)
        os.symlink(train[0].resolve(), out / "train")
        os.symlink(val[0].resolve(), out / "valid")
        dataset_dir = out
    return PreparedDataset(str(dataset_dir), "roboflow", names, len(train[1]["images"]), len(val[1]["images"]))
