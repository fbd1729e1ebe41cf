"""Find a data set's layout and list (file, label), and FracAtlas's fracture boxes: shared by training and the
app's sample demo.

Layouts recognised without being told:
  FracAtlas   images/Fractured, images/Non_fractured (+ dataset.csv)              → binary
  Bone Break  <class>/Train, <class>/Test                                        → classes, given split
  folders     [train|val|valid|validation|test/]<class>/                         → classes, given split
"""

import csv
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from fracture_app import config

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
SPLITS = ("train", "val", "test")
NEGATIVE_WORDS = re.compile(r"\b(normal|not|non|no|negative|healthy)\b")


EXIF_ORIENTATION = 0x0112
FRACATLAS_TABLE = "dataset.csv"  # FracAtlas's one row per image: region, view, hardware, …
# FracAtlas's one YOLO label file per image, beside images/: in this project's copy, and as FracAtlas publishes it.
BOX_FOLDERS = ("annotations_yolo", "Annotations/YOLO")


def box_folder(data_dir: Path) -> Path | None:
    """The data set's folder of YOLO box files, the first of BOX_FOLDERS found; None without one."""
    return next((Path(data_dir) / name for name in BOX_FOLDERS if (Path(data_dir) / name).is_dir()), None)


def has_fracture_boxes(data_dir: Path) -> bool:
    return box_folder(data_dir) is not None


def fracture_boxes(data_dir: Path, image_path: Path, cut_short: bool = False) -> list[tuple[float, float, float, float]]:
    """FracAtlas fracture boxes as (x_centre, y_centre, width, height), relative to the image.

    An empty list for a truncated file whose missing rows the reader cut off (`cut_short`): its boxes are relative to
    the picture as stored and would land lower than drawn. No FracAtlas box is on such a file
    (tests/test_localisation.py checks); a user's data set may have some. Empty too for a file whose EXIF
    orientation the reader applies (2 boxed FracAtlas images, both train or validation): the boxes are drawn on
    the pixels as stored, which the reader turns.
    """
    folder = box_folder(data_dir)
    label_file = folder / f"{Path(image_path).stem}.txt" if folder else None
    if cut_short or label_file is None or not label_file.is_file():
        return []
    rows = [line.split() for line in label_file.read_text().splitlines() if line.strip()]
    boxes = [tuple(float(v) for v in row[1:5]) for row in rows if len(row) >= 5]
    return [] if boxes and exif_turned(image_path) else boxes  # the file opened only where there is a box


def exif_turned(image_path: Path) -> bool:
    """Whether the file asks to be shown turned or mirrored (an EXIF orientation other than 1), as the reader does."""
    from PIL import Image

    try:
        with Image.open(image_path) as image:
            return image.getexif().get(EXIF_ORIENTATION) not in (None, 1)
    except Exception:  # not for this check to refuse a file: the reader says what is wrong with it
        return False


def hardware_flagged(data_dir: Path) -> set[str]:
    """The FracAtlas image names its dataset.csv marks with orthopaedic hardware; none where there is no table."""
    try:
        with open(Path(data_dir) / FRACATLAS_TABLE, newline="", encoding="utf-8") as handle:
            return {row["image_id"] for row in csv.DictReader(handle) if row.get("hardware") == "1"}
    except (OSError, KeyError, csv.Error):
        return set()


class DatasetError(ValueError):
    """The data folder is empty or laid out in a way we do not recognise."""


@dataclass
class Sample:
    path: Path
    label: int
    given_split: str | None = None
    split: str | None = None
    group: int = -1


@dataclass
class Dataset:
    root: Path
    layout: str
    classes: tuple[str, ...]
    samples: list[Sample]
    source: str  # key into config.DATA_ATTRIBUTION, or "custom"


def normalise(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in config.IMAGE_SUFFIXES)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def discover(root: Path, task: str) -> Dataset:
    """Recognise the layout under `root` and list every image with its label."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data folder not found: {root}")
    by_name = {normalise(d.name): d for d in _subdirs(root)}
    if "images" in by_name:
        inner = {normalise(d.name): d for d in _subdirs(by_name["images"])}
        if "fractured" in inner and ("non fractured" in inner or "not fractured" in inner):
            folders = {"fractured": inner["fractured"], "not fractured": inner.get("non fractured") or inner["not fractured"]}
            return _from_class_folders(root, "fracatlas", {k: [(v, None)] for k, v in folders.items()}, task, "fracatlas")
    split_dirs = {SPLIT_NAMES[n]: d for n, d in by_name.items() if n in SPLIT_NAMES}
    if split_dirs:
        class_dirs = defaultdict(list)
        for split, folder in split_dirs.items():
            for class_dir in _subdirs(folder):
                class_dirs[normalise(class_dir.name)].append((class_dir, split))
        return _from_class_folders(root, "split folders", class_dirs, task, "custom")
    class_dirs = {}
    for name, folder in by_name.items():
        inner = {normalise(d.name): d for d in _subdirs(folder) if normalise(d.name) in SPLIT_NAMES}
        class_dirs[name] = [(d, SPLIT_NAMES[n]) for n, d in inner.items()] or [(folder, None)]
    layout = "class folders with Train/Test" if any(s for v in class_dirs.values() for _, s in v) else "class folders"
    source = "bone_break" if _matches_fracture_types(class_dirs) else "custom"
    return _from_class_folders(root, layout, class_dirs, task, source)


def _matches_fracture_types(class_dirs: dict) -> bool:
    return set(class_dirs) == {normalise(name) for name in config.FRACTURE_TYPES}


def _from_class_folders(root, layout, class_dirs: dict, task: str, source: str) -> Dataset:
    class_dirs = {name: entries for name, entries in class_dirs.items() if any(image_files(d) for d, _ in entries)}
    if len(class_dirs) < 2:
        raise DatasetError(
            f"no usable layout in {root}: expected at least two class folders with images, e.g. "
            "`fractured/` and `not fractured/` (optionally inside train/val/test), `<class>/Train` and "
            "`<class>/Test` (Bone Break), or FracAtlas's `images/Fractured` and `images/Non_fractured`; "
            f"found {sorted(class_dirs) or 'nothing'}"
        )
    names = _class_order(list(class_dirs), task)
    samples = [
        Sample(path, names.index(name), split)
        for name, entries in class_dirs.items()
        for folder, split in entries
        for path in image_files(folder)
    ]
    display = tuple(_display_name(name, task) for name in names)
    return Dataset(Path(root), layout, display, samples, source)


def _class_order(names: list[str], task: str) -> list[str]:
    if task == config.BINARY_TASK:
        negatives = [name for name in names if NEGATIVE_WORDS.search(name)]
        if len(names) != 2 or len(negatives) != 1:
            raise DatasetError(
                f"the binary task needs exactly two class folders, one named normal/not/non (the negative); "
                f"found {sorted(names)}"
            )
        return [negatives[0], next(name for name in names if name != negatives[0])]
    return sorted(names)


def _display_name(name: str, task: str) -> str:
    if task == config.BINARY_TASK:
        return config.BINARY_CLASSES[0] if NEGATIVE_WORDS.search(name) else config.BINARY_CLASSES[1]
    known = {normalise(display): display for display in config.FRACTURE_TYPES}
    return known.get(name, name.capitalize())
