"""A type head on the binary model's frozen features (a linear probe), measured on validation.

    python -m training.probe --binary models/fracture_binary.keras --data ../shared/data/bone_break \\
        --split models/fracture_type_split.csv --out runs/probe

Only a softmax layer learns, on the pooled last feature maps of a binary model trained on FracAtlas: far fewer
weights than a whole network for the type split's few hundred groups of copies to pin down. The L2 penalty is
chosen by grouped cross-validation inside the training rows, so the validation rows choose nothing before they
are scored; the figure printed for them is the type rule's (macro-F1, the mirror averaged in where that scores
higher, as `training.evaluate` chooses). Test rows are never read here.
"""

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import numpy as np

from fracture_app.errors import FractureAppError
from fracture_app.models import softmax
from training import metrics
from training.crossval import fold_rows
from training.architectures import POOL
from training.validation_choices import choose_flip

PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
FOLDS = 5
STEPS = 3000
MOMENTUM = 0.9
BATCH = 32
POOLED_FEATURES = re.compile(rf"(m\d+_)?{POOL}")  # a model's own pooled head, or each ensemble member's


def feature_extractor(keras_model):
    """The model's pooled last feature maps (every member's, side by side): what its own head reads."""
    import keras

    pooled = [layer.output for layer in keras_model.layers if POOLED_FEATURES.fullmatch(layer.name)]
    if not pooled:
        raise FractureAppError(f"{keras_model.name} has no pooled head ({POOL!r}) to read features from")
    outputs = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="probe_features")(pooled)
    return keras.Model(keras_model.inputs, outputs, name="probe_features")


def image_features(extractor, spec, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Features of each image and of its mirror, read and prepared as the app reads an upload."""
    from fracture_app.imaging import read_image
    from fracture_app.preprocess import mirrored, prepare_batch

    alone, mirror = [], []
    for start in range(0, len(paths), BATCH):
        batch = prepare_batch([read_image(path).pixels for path in paths[start:start + BATCH]], spec)
        alone.append(np.asarray(extractor.predict(batch, verbose=0), np.float64))
        mirror.append(np.asarray(extractor.predict(mirrored(batch), verbose=0), np.float64))
    return np.concatenate(alone), np.concatenate(mirror)


def fit_softmax(features: np.ndarray, labels: np.ndarray, classes: int, penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights and biases minimising class-weighted cross-entropy + penalty/2 · |W|² (convex: plain momentum
    descent from zero gets there); features are expected standardised."""
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    sample_weight = (len(labels) / (classes * np.maximum(counts, 1)))[labels]
    sample_weight /= sample_weight.sum()
    targets = np.eye(classes)[labels]
    weights, biases = np.zeros((features.shape[1], classes)), np.zeros(classes)
    velocity_w, velocity_b = np.zeros_like(weights), np.zeros_like(biases)
    # 1 / (a bound on the loss's curvature): the softmax's Hessian is at most half the identity per sample.
    step = 1 / (0.5 * (np.linalg.eigvalsh((features * sample_weight[:, None]).T @ features)[-1] + 1) + penalty)
    for _ in range(STEPS):
        error = (softmax(features @ weights + biases) - targets) * sample_weight[:, None]
        velocity_w = MOMENTUM * velocity_w - step * (features.T @ error + penalty * weights)
        velocity_b = MOMENTUM * velocity_b - step * error.sum(axis=0)
        weights, biases = weights + velocity_w, biases + velocity_b
    return weights, biases


class Standardiser:
    def __init__(self, features: np.ndarray):
        self.mean, self.scale = features.mean(axis=0), features.std(axis=0) + 1e-6

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) / self.scale


def fit_head(alone, mirror, labels, classes, penalty):
    """The head fitted on images and their mirrors; returns (standardiser, weights, biases)."""
    both = np.concatenate([alone, mirror])
    standardise = Standardiser(both)
    weights, biases = fit_softmax(standardise(both), np.concatenate([labels, labels]), classes, penalty)
    return standardise, weights, biases


def out_of_fold_score(rows, alone, mirror, labels, classes, penalty) -> float:
    """Pooled macro-F1 of each training group scored by a head fitted without it (images alone)."""
    logits = np.zeros((len(rows), classes))
    for fold in fold_rows(rows, FOLDS):
        held = np.array([row["split"] == "val" for row in fold])
        standardise, weights, biases = fit_head(alone[~held], mirror[~held], labels[~held], classes, penalty)
        logits[held] = standardise(alone[held]) @ weights + biases
    return metrics.macro_f1(labels, logits)


def measure(binary_model: Path, data_dir: Path, split_file: Path) -> dict:
    from fracture_app.models import load_model

    with open(split_file, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    classes = len({row["label"] for row in rows})
    model = load_model(binary_model)
    extractor = feature_extractor(model.keras_model)
    by_split = {}
    for split in ("train", "val"):
        chosen = [row for row in rows if row["split"] == split]
        alone, mirror = image_features(extractor, model.spec, [data_dir / row["path"] for row in chosen])
        by_split[split] = (chosen, alone, mirror, np.array([int(row["label"]) for row in chosen]))
    train_rows, alone, mirror, labels = by_split["train"]
    cross_validated = {penalty: out_of_fold_score(train_rows, alone, mirror, labels, classes, penalty)
                       for penalty in PENALTIES}
    penalty = max(PENALTIES, key=lambda value: (cross_validated[value], value))  # ties: the stronger penalty
    standardise, weights, biases = fit_head(alone, mirror, labels, classes, penalty)
    _, val_alone, val_mirror, val_labels = by_split["val"]
    flip = choose_flip("type", val_labels, standardise(val_alone) @ weights + biases,
                       standardise(val_mirror) @ weights + biases)
    return {"binary_model": str(binary_model), "features": int(alone.shape[1]), "train_images": len(train_rows),
            "val_images": len(val_labels), "out_of_fold_macro_f1_by_penalty": cross_validated, "penalty": penalty,
            "test_time_flip": flip, "validation_macro_f1": max(flip["validation"].values())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", type=Path, required=True, help="the binary model whose features are read")
    parser.add_argument("--data", type=Path, required=True, help="the Bone Break folder")
    parser.add_argument("--split", type=Path, required=True, help="the type split file")
    parser.add_argument("--out", type=Path, help="folder for probe.json")
    args = parser.parse_args(argv)
    try:
        result = measure(args.binary, args.data, args.split)
    except (FractureAppError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for penalty, score in result["out_of_fold_macro_f1_by_penalty"].items():
        print(f"penalty {penalty:g}: out-of-fold macro-F1 {score:.3f} (training rows, {FOLDS} grouped folds)")
    flip = result["test_time_flip"]["validation"]
    print(f"chosen penalty {result['penalty']:g}; validation macro-F1 {result['validation_macro_f1']:.3f} "
          f"(image alone {flip['image_alone']:.3f}, with its mirror {flip['averaged_with_mirror']:.3f})")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "probe.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
