"""A model card's parts that are not measured figures (intended use, limitations, targets, the hardware, the
command), and writing a trained model with its card and plots, atomically, into the output folder."""

import json
import math
import os
import platform
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from fracture_app import config
from fracture_app.data_layout import SPLITS
from fracture_app.models import card_path_for, sha256_of

INTENDED_USE = (
    "Education and research: helps clinicians in training practise reading musculoskeletal radiographs "
    "and see where a model looks. Not a medical device; not for diagnosis or treatment decisions."
)
GENERAL_LIMITATIONS = [
    "Evaluated on a held-out split of the same public data sets: performance on other hospitals, devices, "
    "populations and body regions is unknown and likely lower.",
    "Grad-CAM shows which regions raised the score, at coarse resolution; it is not a segmentation and can "
    "highlight hardware, text or borders.",
]
# What `training.train --keep-last-epoch` records as training.kept, and training.crossval asks of a fold run.
LAST_EPOCH_KEPT = "last epoch"
MEMBERS_OWN_START = config.MEMBERS_OWN_START
TYPE_LIMITATION = (
    "Trained only on fractured images from journals and web pages (some with arrows or text); its guess is "
    "meaningful only when a fracture is present."
)


# The targets the project set for the shipped models (issue 3), on each model's own test split. Each card
# reports its measured figure against them, so a missed target is said in the card itself.
TARGETS = {
    config.BINARY_TASK: (("AUROC", "auroc", ">=", 0.90),
                         ("sensitivity at the decision threshold", "sensitivity", ">=", 0.85),
                         ("specificity at the decision threshold", "specificity", ">=", 0.80),
                         ("expected calibration error", "ece", "<=", 0.05),
                         ("Grad-CAM pointing game", "pointing_game", ">=", 0.60)),
    config.TYPE_TASK: (("top-1 accuracy", "top1", ">=", 0.50), ("top-3 accuracy", "top3", ">=", 0.80)),
}
TARGET_ARCHITECTURE = {config.TYPE_TASK: "resnet50"}  # as the user asked


def command_line(module: str, argv: list[str] | None) -> str:
    """The command as called, for the card; from Python (tests, an ensemble's members) sys.argv is someone else's."""
    return f"python -m {module} " + shlex.join(str(word) for word in (sys.argv[1:] if argv is None else argv))


def target_report(card: dict) -> list[dict]:
    """Each target with the card's measured figure, its 95% interval where known, and whether the figure
    meets it (None when not measured)."""
    task, test = card.get("task"), card.get("metrics", {}).get("test", {})
    report = []
    for name, key, sign, goal in TARGETS.get(task, ()):
        value, interval = test.get(key), (test.get("intervals") or {}).get(key)
        if isinstance(value, dict):  # the pointing game: hits, images, hit rate, interval
            value, interval = value.get("hit_rate"), value.get("interval")
        met = None if value is None else (value >= goal if sign == ">=" else value <= goal)
        report.append({"target": f"{name} {'≥' if sign == '>=' else '≤'} {goal:.2f}", "measured": value,
                       "interval": interval, "met": met})
    if task in TARGET_ARCHITECTURE:
        wanted = TARGET_ARCHITECTURE[task]
        report.append({"target": f"architecture {wanted}", "measured": card.get("architecture"),
                       "met": card.get("architecture") == wanted})
    return report


def limitations(task: str, weights_init: str, split_sizes: dict, weights_sha256: str | None = None) -> list[str]:
    """The card's limitations, true to how this model started and what it is for."""
    if weights_init == "none":
        start = "Trained from random initialisation"
    elif weights_init == "imagenet":
        start = "Started from ImageNet weights (photographs, not radiographs), then trained"
    elif weights_init == MEMBERS_OWN_START:
        start = ("Averages several networks, each started from the layers it shares with an earlier model of its own "
                 "(listed with the members), then trained")
    else:
        digest = f" (sha256 {weights_sha256[:12]}…)" if weights_sha256 else ""
        start = f"Started from the layers it shares with an earlier model, {Path(weights_init).name}{digest}, then trained"
    sizes = {split: split_sizes.get(split, 0) for split in SPLITS}
    items = [f"{start} on {sizes['train']} public images (validated on {sizes['val']}, tested on {sizes['test']} "
             "others); far smaller than clinical data sets.", *GENERAL_LIMITATIONS]
    return items + [TYPE_LIMITATION] if task == config.TYPE_TASK else items


def gpu_names() -> list[str]:
    """The GPUs the Keras backend in use can train on (TensorFlow's, or JAX's on a machine without TensorFlow)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return [device.device_kind for device in jax.devices() if device.platform == "gpu"]
    if keras.backend.backend() != "tensorflow":
        return []
    import tensorflow as tf

    return [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            for gpu in tf.config.list_physical_devices("GPU")]


def hardware_description() -> str:
    import keras

    names = gpu_names()
    if names:
        return f"{len(names)} GPU ({', '.join(names)}), Keras backend {keras.backend.backend()}"
    return f"CPU only: {os.cpu_count()} cores, {platform.processor() or platform.machine()}"


def without_nan(value):
    """Undefined figures (e.g. AUROC of a split with one class) become JSON null, not invalid NaN."""
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nan(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def card_text(card: dict) -> str:
    return json.dumps(without_nan(card), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def update_card(model_path: Path, fields: dict, test_metrics: dict | None = None) -> dict:
    """Add figures measured after training (e.g. the Grad-CAM layer choice) to a card, atomically."""
    path = card_path_for(model_path)
    card = json.loads(path.read_text(encoding="utf-8"))
    card.update(fields)
    card.setdefault("metrics", {}).setdefault("test", {}).update(test_metrics or {})
    card["targets"] = target_report(card)
    write_card(path, card)
    return card


def write_card(path: Path, card: dict) -> None:
    """The card into `path` atomically: a killed process leaves the old card whole."""
    staged = path.with_name(f".{path.name}.writing")
    staged.write_text(card_text(card), encoding="utf-8")
    os.replace(staged, path)


def write_atomically(model, card: dict, staged_files: dict[str, Path], paths: dict[str, Path]) -> None:
    """Save into a scratch folder inside `out`, then rename into place: a killed run leaves no half file."""
    out_dir = paths["model"].parent
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".writing-", dir=out_dir))
    try:
        staged_model = scratch / paths["model"].name
        model.save(staged_model)
        card["sha256"] = sha256_of(staged_model)
        staged_card = scratch / paths["card"].name
        staged_card.write_text(card_text(card), encoding="utf-8")
        for kind, staged in staged_files.items():
            os.replace(staged, paths[kind])
        # The card goes last but one, the model last: a reader that sees the model sees its card too.
        os.replace(staged_card, paths["card"])
        os.replace(staged_model, paths["model"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
