"""Everything chosen on the validation split once a model is trained: whether to average the answer over
the image and its mirror, the calibration, and the thresholds. The test split is measured, never used to choose.
"""

import numpy as np

from fracture_app import config
from fracture_app.models import calibrate
from fracture_app.preprocess import mirrored
from training import metrics
from training.subgroups import subgroup_metrics

BATCH_SIZE = 32
# What picks the best epoch, the mirror and the model to ship: (the history's column stem, its name for people).
VALIDATION_METRIC = {config.BINARY_TASK: ("auroc", "AUROC"), config.TYPE_TASK: ("macro_f1", "macro-F1")}


def evaluate_splits(keras_model, arrays, task: str, classes, test_flags: list[dict] | None = None) -> dict:
    """arrays: split → (prepared inputs, labels), with "val" and "test"; test_flags: each test image's FracAtlas
    flags (`subgroups.image_flags`), where known (the binary model's subgroups are measured on them; the type
    model ignores them). Returns the card's evaluation fields."""
    labels = {split: arrays[split][1] for split in ("val", "test")}
    plain = {split: _logits(keras_model, arrays[split][0]) for split in labels}
    flipped = {split: _logits(keras_model, mirrored(arrays[split][0])) for split in labels}
    flip_choice = choose_flip(task, labels["val"], plain["val"], flipped["val"])
    logits = {split: (plain[split] + flipped[split]) / 2 if flip_choice["used"] else plain[split] for split in labels}
    return {"test_time_flip": flip_choice, **fit_on_validation(logits, labels, task, classes, test_flags)}


def _logits(keras_model, inputs: np.ndarray) -> np.ndarray:
    return np.asarray(keras_model.predict(inputs, batch_size=BATCH_SIZE, verbose=0), np.float32)


def validation_score(task: str, labels, logits) -> float:
    """What picks the best epoch and the test-time flip: AUROC (binary) or macro-F1 (type); NaN where a
    logit is not finite (weights gone to NaN must never look like a score)."""
    if not np.all(np.isfinite(logits)):
        return float("nan")
    if task == config.BINARY_TASK:
        return metrics.auroc(labels, logits[:, 0])
    return metrics.macro_f1(labels, logits)


def choose_flip(task: str, labels, plain, flipped) -> dict:
    """Average over the mirror only where that scores the validation images better than the image alone."""
    alone, averaged = validation_score(task, labels, plain), validation_score(task, labels, (plain + flipped) / 2)
    return {"used": bool(averaged > alone),
            "chosen_on": "validation " + VALIDATION_METRIC[task][1],
            "validation": {"image_alone": alone, "averaged_with_mirror": averaged}}


def fit_on_validation(logits: dict, labels: dict, task: str, classes, test_flags: list[dict] | None = None) -> dict:
    """Calibration and thresholds fitted on validation logits; metrics for both splits, and for the binary
    model's test subgroups where test_flags are given."""
    if task == config.BINARY_TASK:
        calibration = metrics.fit_platt(logits["val"][:, 0], labels["val"])
        probabilities = {split: calibrate(logits[split], calibration) for split in logits}
        threshold = metrics.threshold_for_sensitivity(labels["val"], probabilities["val"], metrics.DECISION_SENSITIVITY)
        points = {
            "high_sensitivity": metrics.threshold_for_sensitivity(labels["val"], probabilities["val"], metrics.HIGH_SENSITIVITY),
            "high_specificity": metrics.threshold_for_specificity(labels["val"], probabilities["val"], metrics.HIGH_SPECIFICITY),
        }
        measured = {split: metrics.binary_metrics(labels[split], probabilities[split], threshold) for split in logits}
        if test_flags is not None:
            measured["test"]["subgroups"] = subgroup_metrics(labels["test"], probabilities["test"], threshold, test_flags)
        return {
            "calibration": calibration,
            "threshold": threshold,
            "operating_points": {
                name: {"threshold": t, "validation": metrics.operating_point(labels["val"], probabilities["val"], t),
                       "test": metrics.operating_point(labels["test"], probabilities["test"], t)}
                for name, t in points.items()
            },
            "metrics": measured,
        }
    calibration = metrics.fit_temperature(logits["val"], labels["val"])
    probabilities = {split: calibrate(logits[split], calibration) for split in logits}
    return {
        "calibration": calibration,
        "metrics": {split: metrics.multiclass_metrics(labels[split], probabilities[split], classes) for split in logits},
    }
