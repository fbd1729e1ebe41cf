"""What the orientation model does to X-rays as they are stored: which FracAtlas X-rays it takes for turned (by
body region and by shape), and how the type model fares on its validation split read as given or turned the
FracAtlas way up (why the app shows only the fracture model a picture turned back).

    python benchmarks/orientation_effects.py ../shared/data

Prints figures, asserts nothing.
"""

import csv
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.command_line import data_folders  # noqa: E402
from fracture_app import config, import_tensorflow_quietly  # noqa: E402
from fracture_app.imaging import read_image  # noqa: E402
from fracture_app.models import artifact_paths, load_model  # noqa: E402
from fracture_app.orientation import UPRIGHT, set_upright, turns_for  # noqa: E402
from fracture_app.preprocess import prepare_batch  # noqa: E402
from training.datasets import read_manifest  # noqa: E402
from training.metrics import macro_f1  # noqa: E402

REGIONS = ("hand", "leg", "hip", "shoulder")
BATCH = 32


def split_rows(task: str, data_dir: Path, split: str):
    manifest = artifact_paths(config.SHIPPED_MODELS_DIR, task)["manifest"]
    return [row for row in read_manifest(manifest, data_dir) if row.split == split]


def region_of(flags: dict) -> str:
    regions = [name for name in REGIONS if flags.get(name) == "1"]
    return regions[0] if len(regions) == 1 else "several or none"


def taken_for_turned(orientation, fracatlas: Path) -> None:
    flags = {row["image_id"]: row for row in csv.DictReader(open(fracatlas / "dataset.csv", encoding="utf-8"))}
    for split in ("val", "test"):
        rows = split_rows(config.BINARY_TASK, fracatlas, split)
        pictures = [read_image(row.path).pixels for row in rows]
        turns = turns_for(orientation, pictures)
        print(f"\nFracAtlas {split} X-rays as stored, taken for turned: {sum(t != UPRIGHT for t in turns)} of {len(rows)}")
        groups = {"region": [region_of(flags[row.path.name]) for row in rows],
                  "shape": ["wider than tall" if p.shape[1] > p.shape[0] else "taller than wide or square" for p in pictures]}
        for name, keys in groups.items():
            every, turned = Counter(keys), Counter(key for key, turn in zip(keys, turns) if turn != UPRIGHT)
            print(f"  by {name}: " + ", ".join(f"{key} {turned[key]}/{count}" for key, count in sorted(every.items())))


def type_model_both_ways(orientation, type_model, bone_break: Path) -> None:
    rows = split_rows(config.TYPE_TASK, bone_break, "val")
    pictures = [read_image(row.path).pixels for row in rows]
    labels = np.array([row.label for row in rows])
    turns = turns_for(orientation, pictures)
    print(f"\nBone Break validation pictures the orientation model takes for turned: "
          f"{sum(t != UPRIGHT for t in turns)} of {len(rows)}")
    for name, shown in (("as given", pictures), ("turned the FracAtlas way up", list(map(set_upright, pictures, turns)))):
        probabilities = np.concatenate([type_model.probabilities(prepare_batch(shown[start:start + BATCH], type_model.spec))
                                        for start in range(0, len(shown), BATCH)])
        print(f"  type model, {name}: top-1 {np.mean(probabilities.argmax(1) == labels):.3f}, "
              f"macro-F1 {macro_f1(labels, probabilities):.3f}")


def main(data_dir: Path) -> None:
    import_tensorflow_quietly()
    models = config.SHIPPED_MODELS_DIR
    orientation = load_model(artifact_paths(models, config.ORIENTATION_TASK)["model"], config.ORIENTATION_TASK)
    taken_for_turned(orientation, data_dir / "fracatlas")
    type_model = load_model(artifact_paths(models, config.TYPE_TASK)["model"], config.TYPE_TASK)
    type_model_both_ways(orientation, type_model, data_dir / "bone_break")


if __name__ == "__main__":
    main(data_folders(__doc__, ["../shared/data"])[0])
