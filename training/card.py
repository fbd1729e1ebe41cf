"""Writing a trained model and everything that describes it, atomically, into the output folder."""

import json
import math
import os
import platform
import shutil
import tempfile
from pathlib import Path

from fracture_app import config
from fracture_app.models import card_path_for, sha256_of

INTENDED_USE = (
    "Education and research: helps clinicians in training practise reading musculoskeletal radiographs "
    "and see where a model looks. Not a medical device; not for diagnosis or treatment decisions."
)
LIMITATIONS = [
    "Trained from random initialisation on a few thousand public images; far smaller than clinical data sets.",
    "Evaluated on a held-out split of the same public data sets: performance on other hospitals, devices, "
    "populations and body regions is unknown and likely lower.",
    "Grad-CAM shows which regions raised the score, at coarse resolution; it is not a segmentation and can "
    "highlight hardware, text or borders.",
    "The fracture-type model was trained only on fractured images from journals and web pages (some with "
    "arrows or text); its guess is meaningful only when a fracture is present.",
]


def artifact_paths(out_dir: Path, task: str) -> dict[str, Path]:
    """Every file a training run writes, named after the model file so they travel together."""
    model = Path(out_dir) / config.MODEL_FILES[task]
    stem = model.with_suffix("")
    return {
        "model": model,
        "card": card_path_for(model),
        "manifest": Path(f"{stem}_split.csv"),
        "history": Path(f"{stem}_history.csv"),
        "curves": Path(f"{stem}_curves.png"),
        "roc": Path(f"{stem}_roc.png"),
        "confusion": Path(f"{stem}_confusion.png"),
    }


def hardware_description() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
        return f"{len(gpus)} GPU ({', '.join(names)})"
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
    staged = path.with_name(f".{path.name}.writing")
    staged.write_text(card_text(card), encoding="utf-8")
    os.replace(staged, path)
    return card


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
