"""Model files and their model cards: loading, checking, and turning pixels into calibrated probabilities.

A model card (JSON beside each `.keras` file) is the contract between training and the app: it says how
to feed the model (preprocessing), whether to average its answer over the image and its mirror
(test_time_flip), what its outputs mean (classes, calibration), where to draw the line (thresholds) and how
good it measured (metrics). Loading checks the model file against the card's sha256.
"""

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fracture_app import config
from fracture_app.errors import ModelLoadError
from fracture_app.preprocess import WIDTH_AXIS, PreprocessSpec

# The decision threshold where a card names none (a model not yet given validation choices).
MIDPOINT_THRESHOLD = 0.5


def card_path_for(model_path: Path) -> Path:
    return Path(model_path).with_suffix(".json")


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


def member_curves_path(out_dir: Path, task: str, number: int) -> Path:
    """The training curves of an ensemble's member `number` (from 1), copied beside the joined model."""
    return artifact_paths(out_dir, task)["curves"].with_name(f"{Path(config.MODEL_FILES[task]).stem}_member{number}_curves.png")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelCard:
    path: Path
    data: dict

    @property
    def task(self) -> str:
        return self.data["task"]

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.data["classes"])

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.data["preprocessing"])

    @property
    def threshold(self) -> float:
        return float(self.data.get("threshold", MIDPOINT_THRESHOLD))

    @property
    def turn_threshold(self) -> float | None:
        """An orientation card's threshold: None where no threshold kept upright X-rays upright (then nothing is
        turned)."""
        value = self.data.get("threshold")
        return None if value is None else float(value)

    @property
    def operating_points(self) -> dict:
        return self.data.get("operating_points", {})

    @property
    def version(self) -> str:
        return self.data.get("version", "unversioned")

    @property
    def gradcam_layer(self) -> str | None:
        """The feature map the heat map is drawn from; None means the last (coarsest) one."""
        return (self.data.get("gradcam") or {}).get("layer")

    @property
    def gradcam_smoothing(self) -> float:
        """σ, in map cells, of the blur applied to the heat map (chosen on validation); 0 means none."""
        return float((self.data.get("gradcam") or {}).get("smoothing_cells") or 0.0)

    @property
    def calibration(self) -> dict:
        return self.data.get("calibration", {"method": "none"})

    @property
    def measured_in_brief(self) -> str:
        """How the model measured, in one sentence for a reader of its answers: on its test split, and on another
        source's fractures where that was checked on this very version; empty where the card does not say (or says
        it in a form this version cannot read: every page's sidebar shows this)."""
        try:
            return self._measured_in_brief()
        except (KeyError, TypeError, ValueError, AttributeError):
            return ""

    def _measured_in_brief(self) -> str:
        test = self.data.get("metrics", {}).get("test", {})
        if self.task == config.ORIENTATION_TASK:
            if test.get("found_share") is None or test.get("false_turn_share") is None:
                return ""
            return (f"On its test split it set {_percent(test['found_share'])} of turned X-rays upright and took "
                    f"{_percent(test['false_turn_share'])} of upright ones for turned.")
        if self.task == config.BINARY_TASK:
            if test.get("sensitivity") is None or test.get("specificity") is None:
                return ""
            checks = [(name, check["share"]) for name, check in (self.data.get("external_checks") or {}).items()
                      if check.get("model_version") == self.version and check.get("share") is not None]
            # The orientation step, which turns some pictures back first, is not in these figures.
            return (f"On its test split, without the orientation step, it found {_percent(test['sensitivity'])} of "
                    f"fractures and cleared {_percent(test['specificity'])} of X-rays without one"
                    + "".join(f"; on {name}'s fracture pictures, from elsewhere, it found {_percent(share)}"
                              for name, share in checks) + ".")
        if test.get("top1") is None or test.get("top3") is None:
            return ""
        return (f"On its test split its first guess was right for {_percent(test['top1'])} of fractures "
                f"(among its top three: {_percent(test['top3'])}).")

    @property
    def flip_average(self) -> bool:
        """Whether the answer is the mean of the logits for the image and its mirror (chosen on validation)."""
        return bool((self.data.get("test_time_flip") or {}).get("used", False))


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"


def read_card(model_path: Path) -> ModelCard:
    path = card_path_for(model_path)
    if not path.is_file():
        raise ModelLoadError(f"model card missing: {path.name} should sit beside {Path(model_path).name}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        card = ModelCard(path, data)
        card.task, card.classes  # noqa: B018 - fail here, not mid-diagnosis
    except (ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(f"model card {path.name} is corrupt or incomplete ({error})") from error
    try:
        card.spec  # noqa: B018
    except (KeyError, TypeError) as error:
        raise ModelLoadError(f"model card {path.name} is corrupt or incomplete ({error})") from error
    except ValueError as error:
        raise ModelLoadError(f"model card {path.name} asks for preprocessing this version does not do: {error}") from error
    if card.task not in config.MODEL_FILES:
        raise ModelLoadError(f"model card {path.name} names an unknown task {card.task!r}")
    return card


def calibrate(logits: np.ndarray, calibration: dict) -> np.ndarray:
    """Raw logits → probabilities, applying the scaling that was fitted on the validation split."""
    method = calibration.get("method", "none")
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 2 and logits.shape[1] == 1:
        slope, intercept = (calibration["a"], calibration["b"]) if method == "platt" else (1.0, 0.0)
        return 1.0 / (1.0 + np.exp(-(slope * logits[:, 0] + intercept)))
    temperature = calibration["temperature"] if method == "temperature" else 1.0
    return softmax(logits / temperature)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from each row of logits (shifted by the row's largest, so exp cannot overflow)."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def as_the_app_runs_it(keras_model, flip_average: bool):
    """The Keras model with the mirror averaging its card asks for built in: one call gives the answer's logits."""
    if not flip_average:
        return keras_model
    import keras

    inputs = keras.Input(keras_model.inputs[0].shape[1:])
    mirror = keras.layers.Lambda(lambda x: keras.ops.flip(x, axis=WIDTH_AXIS), name="mirror")(inputs)
    averaged = keras.layers.Average(name="mean_of_image_and_mirror")([keras_model(inputs), keras_model(mirror)])
    return keras.Model(inputs, averaged, name=f"{keras_model.name}_mirror_averaged")


class FractureModel:
    """A loaded Keras model with its card. Safe to share between threads and app sessions."""

    def __init__(self, keras_model, card: ModelCard):
        import tensorflow as tf

        self.keras_model = keras_model
        self.card = card
        spec = card.spec
        signature = [tf.TensorSpec([None, spec.size, spec.size, spec.channels], tf.float32)]
        answering = as_the_app_runs_it(keras_model, card.flip_average)
        # One traced graph for every batch size: no retracing, no Python overhead per call.
        self._forward = tf.function(lambda batch: answering(batch, training=False), input_signature=signature)
        self._lock = threading.Lock()

    @property
    def task(self) -> str:
        return self.card.task

    @property
    def classes(self) -> tuple[str, ...]:
        return self.card.classes

    @property
    def spec(self) -> PreprocessSpec:
        return self.card.spec

    @property
    def call_lock(self) -> threading.Lock:
        """Held for every call into the Keras model, answers and Grad-CAM alike. TensorFlow already spreads one
        call over all the cores, so sessions calling at once would only slow each other down unpredictably;
        taking turns keeps each reading's time what one reading takes."""
        return self._lock

    def logits(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        with self.call_lock:
            return np.asarray(self._forward(batch), dtype=np.float32)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Binary: (n,) probability of "Fractured". Type: (n, classes) probabilities."""
        return calibrate(self.logits(batch), self.card.calibration)


def load_model(model_path: Path, task: str | None = None) -> FractureModel:
    """The model and its card, refused where the file is not the one its card measured, or (given `task`) its card
    is for another task."""
    model_path = Path(model_path)
    if not model_path.is_file():
        command = config.TRAINING_COMMANDS.get(task, "python -m training.train")
        raise ModelLoadError(f"model file missing: {model_path} (`{command}` trains one; the README's Training "
                             "section gives the commands that made the shipped models)")
    card = read_card(model_path)
    if task is not None and card.task != task:
        raise ModelLoadError(f"{model_path.name}: its card is for the {config.TASK_NAMES[card.task]}, not the "
                             f"{config.TASK_NAMES[task]}")
    if card.task == config.ORIENTATION_TASK and card.classes != config.ORIENTATIONS:
        # its answers are read by position (fracture_app.orientation): other names would turn pictures wrongly
        raise ModelLoadError(f"model card {card.path.name}: its classes are not {list(config.ORIENTATIONS)}")
    expected, actual = card.data.get("sha256"), sha256_of(model_path)
    if expected != actual:
        raise ModelLoadError(
            f"{model_path.name} does not match its model card (sha256 {actual[:12]}… ≠ {str(expected)[:12]}…): "
            "the file is corrupt or was replaced; retrain or restore it."
        )
    import keras

    try:
        keras_model = keras.saving.load_model(model_path, compile=False)
    except Exception as error:  # a damaged zip, an incompatible Keras: the user needs to know which file
        raise ModelLoadError(f"cannot load {model_path.name}: {error}") from error
    check_card_describes(keras_model, card, model_path.name)
    if card.gradcam_layer is not None:
        from fracture_app.gradcam import find_layer

        try:
            find_layer(keras_model, card.gradcam_layer)
        except ValueError as error:  # a card edited by hand, or paired with another model
            raise ModelLoadError(f"model card {card.path.name}: {error}") from error
    return FractureModel(keras_model, card)


def check_card_describes(keras_model, card: ModelCard, file_name: str) -> None:
    """Refuse a card edited by hand or paired with another model: a wrong input size would fail mid-diagnosis, and
    a wrong class count would name the wrong classes."""
    spec = card.spec
    takes = tuple(keras_model.inputs[0].shape[1:])
    gives = keras_model.outputs[0].shape[-1]
    answers = 1 if card.task == config.BINARY_TASK else len(card.classes)
    if takes != (spec.size, spec.size, spec.channels) or gives != answers:
        raise ModelLoadError(
            f"model card {card.path.name} does not describe {file_name}: the model takes {takes[0]}×{takes[1]} "
            f"pictures and gives {gives} answers, the card says {spec.size}×{spec.size} and {answers}")


def model_path_for(task: str, models_dir: Path | None = None) -> Path:
    return Path(models_dir or config.models_dir()) / config.MODEL_FILES[task]
