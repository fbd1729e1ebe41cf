"""Pick the shipped sample X-rays from the models' **test** splits (never from training images).

    python -m training.make_samples --data ../shared/data --models models --out sample_images

Reads the split manifests written beside the models, takes a seeded selection of test images
(fractured and not fractured from FracAtlas, every fracture type from Bone Break), downscales
them, and writes `labels.csv` (with FracAtlas's fracture boxes, which the Samples and Teaching pages draw once
the answer is shown, and its hardware flag, which they mention) and `ATTRIBUTION.md`.

    python -m training.make_samples --data ../shared/data --out sample_images --annotations-only

adds the boxes and hardware flags to a `labels.csv` written before they were, without drawing the samples again.
"""

import argparse
import csv
import random
import sys
from pathlib import Path

from PIL import Image, ImageOps

from fracture_app import config
from fracture_app.data_layout import fracture_boxes, hardware_flagged
from fracture_app.models import artifact_paths
from training.datasets import read_manifest

PER_BINARY_CLASS = 8
PER_TYPE = 2
LONGEST_SIDE = 768
JPEG_QUALITY = 92
SOURCES = {config.BINARY_TASK: "fracatlas", config.TYPE_TASK: "bone_break"}
COLUMNS = ["file", "source", "ground_truth", "original", config.SAMPLE_BOXES_COLUMN, config.SAMPLE_HARDWARE_COLUMN]


def choose(manifest: Path, root: Path, classes, per_class: int, seed: int):
    test = [s for s in read_manifest(manifest, root) if s.split == "test"]
    rng = random.Random(seed)
    chosen = []
    for label, name in enumerate(classes):
        members = sorted((s for s in test if s.label == label), key=lambda s: s.path.name)
        # One image per duplicate group, so two samples are never the same picture.
        unique = list({s.group: s for s in members}.values())
        chosen += [(s, name) for s in rng.sample(unique, min(per_class, len(unique)))]
    return chosen


def boxes_text(data_dir: Path, original: Path) -> str:
    """FracAtlas's fracture boxes for one image, relative to it ("x_centre y_centre width height", ";" between
    boxes), which downscaling keeps."""
    return "; ".join(" ".join(f"{value:.4f}" for value in box) for box in fracture_boxes(data_dir, original))


def annotations(data_dir: Path, original: Path, hardware: set[str]) -> dict[str, str]:
    """A FracAtlas sample's labels.csv columns beyond its label: its boxes, and "yes" where it shows hardware."""
    return {config.SAMPLE_BOXES_COLUMN: boxes_text(data_dir, original),
            config.SAMPLE_HARDWARE_COLUMN: "yes" if original.name in hardware else ""}


def add_annotations(labels: Path, data_dir: Path) -> int:
    """The boxes and hardware columns written into an existing labels.csv, from each row's original, keeping any
    other column; how many rows have boxes."""
    with open(labels, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows, header = list(reader), list(reader.fieldnames or [])
    if not {"source", "original"} <= set(header):
        raise ValueError(f"{labels} has no source and original columns: only a labels.csv this command wrote can "
                         "be annotated")
    fracatlas_dir = data_dir / SOURCES[config.BINARY_TASK]
    hardware = hardware_flagged(fracatlas_dir)
    for row in rows:
        original = data_dir / (row["original"] or "")
        fracatlas = row["source"] == SOURCES[config.BINARY_TASK] and original.is_file()
        row.update(annotations(fracatlas_dir, original, hardware) if fracatlas
                   else dict.fromkeys((config.SAMPLE_BOXES_COLUMN, config.SAMPLE_HARDWARE_COLUMN), ""))
    write_labels(labels, rows, header + [column for column in COLUMNS if column not in header])
    return sum(bool(row[config.SAMPLE_BOXES_COLUMN]) for row in rows)


def write_labels(labels: Path, rows: list[dict], columns: list[str] = COLUMNS) -> None:
    """Written beside, then put in place: a failure leaves the old file whole."""
    written = labels.with_name(labels.name + ".new")
    with open(written, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    written.replace(labels)


def shrink_copy(source: Path, target: Path) -> None:
    with Image.open(source) as image:
        image = ImageOps.exif_transpose(image)
        image.thumbnail((LONGEST_SIDE, LONGEST_SIDE), Image.Resampling.LANCZOS)
        (image if image.mode in ("L", "RGB") else image.convert("RGB")).save(target, quality=JPEG_QUALITY)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.make_samples", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder holding fracatlas/ and bone_break/")
    parser.add_argument("--models", type=Path, default=config.MODELS_DIR)
    parser.add_argument("--out", type=Path, default=config.SAMPLE_IMAGES_DIR)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--annotations-only", action="store_true",
                        help="only add FracAtlas's fracture boxes and hardware flags to the labels.csv already in --out")
    args = parser.parse_args(argv)
    if args.annotations_only:
        labels = args.out / "labels.csv"
        if not labels.is_file():
            print(f"error: {labels} not found", file=sys.stderr)
            return 2
        try:
            boxed = add_annotations(labels, args.data)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"wrote the fracture boxes of {boxed} samples, and hardware flags, into {labels}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    remove_earlier_samples(args.out)
    rows = []
    for task, per_class in ((config.BINARY_TASK, PER_BINARY_CLASS), (config.TYPE_TASK, PER_TYPE)):
        source = SOURCES[task]
        manifest = artifact_paths(args.models, task)["manifest"]
        if not manifest.is_file():
            print(f"error: {manifest} not found; train the {task} model first", file=sys.stderr)
            return 2
        hardware = hardware_flagged(args.data / source)  # the table read once, not per sample
        for sample, truth in choose(manifest, args.data / source, config.CLASSES[task], per_class, args.seed):
            name = f"{source}_{sample.path.stem[:40]}.jpg".replace(" ", "_")
            shrink_copy(sample.path, args.out / name)
            rows.append({"file": name, "source": source, "ground_truth": truth,
                         "original": sample.path.relative_to(args.data).as_posix(),
                         **(annotations(args.data / source, sample.path, hardware)
                            if task == config.BINARY_TASK else {})})
    write_labels(args.out / "labels.csv", rows)
    (args.out / "ATTRIBUTION.md").write_text(attribution(len(rows)), encoding="utf-8")
    print(f"wrote {len(rows)} sample X-rays to {args.out}")
    return 0


def remove_earlier_samples(folder: Path) -> None:
    """The X-rays an earlier run of this command listed in its labels.csv: a new draw replaces them, not adds to
    them. Only in a folder this command wrote (its ATTRIBUTION.md beside), and only files named as it names them."""
    labels = folder / "labels.csv"
    if not (labels.is_file() and (folder / "ATTRIBUTION.md").is_file()):
        return
    prefixes = tuple(f"{source}_" for source in SOURCES.values())
    with open(labels, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            name = Path(row.get("file") or "").name
            if name.startswith(prefixes):
                (folder / name).unlink(missing_ok=True)


def attribution(count: int) -> str:
    return f"""# Sample X-rays: sources and licences

These {count} radiographs were taken from the **test splits** of the shipped models (the models never trained
on them), by `python -m training.make_samples`. `labels.csv` gives each file's source, ground truth,
original path and, for FracAtlas, its fracture boxes (from FracAtlas's annotations, relative to the image) and
whether FracAtlas marks orthopaedic hardware on it.

- `fracatlas_*.jpg` — {config.DATA_ATTRIBUTION["fracatlas"]}
- `bone_break_*.jpg` — {config.DATA_ATTRIBUTION["bone_break"]}

Both are licensed under Creative Commons Attribution 4.0 International (CC BY 4.0,
https://creativecommons.org/licenses/by/4.0/). Changes made here: a selection only;
downscaled so the longer side is at most {LONGEST_SIDE} px; re-encoded as JPEG (quality {JPEG_QUALITY});
renamed with the source as prefix. Ground truth is the label of the folder each image came from.
"""


if __name__ == "__main__":
    sys.exit(main())
