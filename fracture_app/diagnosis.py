"""The one road from an X-ray to an answer, shared by the app, the command line and evaluation.

    read_image() → which way up → prepare() → the two fracture models → calibrated probabilities → band → Grad-CAM
        → Diagnosis

"Which way up" is the orientation model's (fracture_app.orientation): a picture lying otherwise than the FracAtlas
X-rays the fracture model learnt from is shown to that model turned back. The type model learnt from Bone Break's
pictures as they were published and reads every picture as given (on its validation split, setting them the
FracAtlas way up lowered its macro-F1 from 0.363 to 0.313: training/HISTORY.md, twenty-first session).
"""

import dataclasses
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fracture_app import config
from fracture_app.cautions import (READINGS_DISAGREE, TURNED, WITHHOLDING, Caution, cautions_against_a_negative,
                                   cautions_for, looks_like_xray, turned_caution)
from fracture_app.errors import FractureAppError, ModelLoadError
from fracture_app.gradcam import GradCam, heatmap_on_image
from fracture_app.imaging import XRay
from fracture_app.models import MIDPOINT_THRESHOLD, FractureModel, load_model, model_path_for
from fracture_app.orientation import UPRIGHT, onto_picture_as_uploaded, set_upright, turns_for
from fracture_app.preprocess import prepare, prepare_batch

# The band refines the verdict, never contradicts it: the first two go with "Fractured", the last two
# with "Not fractured". Each says how the score ranks against the card's operating points, not the chance of a
# fracture: with fractures in one X-ray of six, a probability of 40% is a high suspicion, not a likelihood.
LIKELY = "high suspicion of fracture"
POSSIBLE = "possible fracture — look closely"
NOT_RULED_OUT = "fracture not ruled out — look closely"
LOW_SCORE = "low fracture score"  # not "no fracture seen": that is a reader's finding, not a score's
# What each band says about the score, in a clause (the UI's advice and the report's reading row).
BAND_MEANING = {LIKELY: "few X-rays without a fracture score this high",
                POSSIBLE: "many X-rays without a fracture score this high too",
                NOT_RULED_OUT: "some fractured X-rays score this low too",
                LOW_SCORE: "few fractured X-rays score this low"}
# How loudly each band is shown, in the app and in the report alike: a low score is never shown as reassuring
# (green): it clears nothing.
ALARM, WARNING, NEUTRAL = "alarm", "warning", "neutral"
BAND_LEVEL = {LIKELY: ALARM, POSSIBLE: WARNING, NOT_RULED_OUT: WARNING, LOW_SCORE: NEUTRAL}
# Said wherever the lowest band is (the app's box, the report): a fracture the model reads poorly scores low too.
CLEARS_NOTHING = ("it clears nothing: a fracture the model reads poorly (a picture turned or inverted, a region it "
                  "rarely saw) can score this low too, so look at the film")
NO_VERDICT = "No verdict"

TYPE_TOP_K = 3


@dataclass(frozen=True)
class Diagnosis:
    xray: XRay
    fracture_probability: float | None  # None when no binary model is loaded
    threshold: float
    band: str | None
    type_probabilities: dict[str, float]  # all classes, best first; {} when no type model is loaded
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict)  # task → map on the original pixels
    model_versions: dict[str, str] = field(default_factory=dict)
    model_measures: dict[str, str] = field(default_factory=dict)  # task → how it measured, from its card
    # Of the card's test X-rays without a fracture and with one, the shares that scored in this reading's band.
    band_measured: tuple[float, float] | None = None
    # Quarter turns (config.ORIENTATIONS) the orientation model took the picture for turned, so that the fracture
    # model read it turned back; and the fracture score of the picture as uploaded, which such a reading reports
    # beside its own (None where nothing was turned).
    turn: int = UPRIGHT
    as_uploaded_probability: float | None = None
    # About the image itself (the app shows these above everything else), and the turned reading's: judged once, on
    # the picture as read and its scores, and carried by every copy (dataclasses.replace), such as the smaller copy a
    # browser session keeps.
    cautions: tuple["Caution", ...] | None = None

    def __post_init__(self):
        if self.cautions is None:
            found = cautions_for(self.xray)
            if self.fracture_probability is not None and self.fracture_probability < self.threshold:
                found = cautions_against_a_negative(found, self)
            if self.turn != UPRIGHT and not any(caution.kind in WITHHOLDING for caution in found):
                found.append(turned_caution(self.turn))
            object.__setattr__(self, "cautions", tuple(found))

    @property
    def verdict_withheld(self) -> bool:
        """No verdict and no type guess on a picture that does not look like an X-ray (the models' answer there
        means nothing, and a verdict in a table or a CSV would be read as one all the same), nor a "Not fractured"
        where it could not be trusted (`cautions_against_a_negative`)."""
        return self.withheld_because is not None

    @property
    def withheld_because(self) -> "Caution | None":
        """The caution that withholds the verdict, if one does."""
        return next((caution for caution in self.cautions if caution.kind in WITHHOLDING), None)

    @property
    def cautions_before_the_answer(self) -> tuple["Caution", ...]:
        """What a trainee may see before committing a reading: none that tells the model's answer (the turned
        reading's, the disagreeing readings'; a withheld negative's says in its place only what is wrong with the
        picture)."""
        return tuple(caution.about_the_picture or caution for caution in self.cautions
                     if caution.kind not in (TURNED, READINGS_DISAGREE))

    @property
    def fractured(self) -> bool | None:
        if self.fracture_probability is None or self.verdict_withheld:
            return None
        return self.fracture_probability >= self.threshold

    @property
    def verdict(self) -> str:
        if self.verdict_withheld:
            return NO_VERDICT
        return {None: "No binary model", True: "Fractured", False: "Not fractured"}[self.fractured]

    @property
    def best_type(self) -> tuple[str | None, float | None]:
        """The type model's first guess and its probability; (None, None) without a type model."""
        return next(iter(self.type_probabilities.items()), (None, None))

    @property
    def type_top(self) -> list[tuple[str, float]]:
        """The type model's first guesses, to show; none where the verdict is withheld."""
        return [] if self.verdict_withheld else list(self.type_probabilities.items())[:TYPE_TOP_K]

    @property
    def turned_back(self) -> str | None:
        """Which way the picture seemed to lie, where the fracture model read it turned back (config.ORIENTATIONS)."""
        return config.ORIENTATIONS[self.turn] if self.turn != UPRIGHT else None

    @property
    def fractured_as_uploaded(self) -> bool | None:
        """The verdict the picture as uploaded would have had; None where it was read as uploaded, or where no
        verdict is given."""
        if self.as_uploaded_probability is None or self.verdict_withheld:
            return None
        return self.as_uploaded_probability >= self.threshold

    @property
    def verdict_as_uploaded(self) -> str | None:
        """fractured_as_uploaded in the verdict's words."""
        if self.fractured_as_uploaded is None:
            return None
        return config.FRACTURED if self.fractured_as_uploaded else config.NOT_FRACTURED

    @property
    def type_withheld(self) -> bool:
        """No type guess is offered where the fracture model says "Not fractured": the type model, trained on
        fractures only, names one for every picture, and "Pathological fracture" beside a normal film could be
        acted on. The guess stays in type_probabilities for a reader who asks to see it anyway."""
        return self.fractured is False and bool(self.type_probabilities)

    def stated(self) -> dict:
        """What a results table, its CSV and the command line say of this reading, typed (None where nothing is
        said), with the withholding rules applied here once for all of them: a withheld verdict takes its score,
        band, type guess and turn with it (its notes say why), and a withheld type guess its probability."""
        withheld = self.verdict_withheld
        best_type, type_probability = (None, None) if withheld or self.type_withheld else self.best_type
        return {
            "verdict": self.verdict,
            "fractured": self.fractured,
            "fracture_probability": None if withheld else self.fracture_probability,
            "reading": None if withheld else self.band,
            "fracture_type": best_type,
            "fracture_type_probability": type_probability,
            "notes": self.notes,
            "turned_back": None if withheld else self.turned_back,
            "fracture_probability_as_uploaded": None if withheld else self.as_uploaded_probability,
        }

    @property
    def notes(self) -> list[str]:
        """Every caution's brief, for a table cell or a CSV column; a turned-back reading's score as uploaded with its
        caution, since the caution says to go by it where the picture already lay the right way."""
        briefs = [caution.brief for caution in self.cautions]
        if self.fractured_as_uploaded is not None:
            at = next((i + 1 for i, caution in enumerate(self.cautions) if caution.kind == TURNED), len(briefs))
            briefs.insert(at, f"as uploaded: {100 * self.as_uploaded_probability:.1f}%")
        return briefs


TYPE_GUESS_WITHHELD = ("No type guess: the fracture model's score is below its decision threshold, and the type "
                       "model, trained on fractures only, names a type for every picture.")


def band_shares(operating_points: dict, test: dict) -> dict[str, tuple[float, float]]:
    """For each band, the shares of the card's test X-rays (without a fracture, with one) that scored in it, from
    the specificity and sensitivity measured at its three operating points; {} where a figure is missing or the
    points are out of order."""
    try:
        low, high = operating_points["high_sensitivity"]["test"], operating_points["high_specificity"]["test"]
        specificity = (low["specificity"], test["specificity"], high["specificity"])
        sensitivity = (low["sensitivity"], test["sensitivity"], high["sensitivity"])
    except (KeyError, TypeError):
        return {}
    shares = {LOW_SCORE: (specificity[0], 1 - sensitivity[0]),
              NOT_RULED_OUT: (specificity[1] - specificity[0], sensitivity[0] - sensitivity[1]),
              POSSIBLE: (specificity[2] - specificity[1], sensitivity[1] - sensitivity[2]),
              LIKELY: (1 - specificity[2], sensitivity[2])}
    return shares if all(share >= 0 for pair in shares.values() for share in pair) else {}


def confidence_band(probability: float, operating_points: dict, threshold: float) -> str:
    """Plain words from the decision threshold and the card's two other operating points.

    The high-sensitivity point sits at or below the decision threshold and the high-specificity one at or
    above it (clamped so, should a card disagree), so the band always agrees with the verdict.
    """
    low = min(operating_points.get("high_sensitivity", {}).get("threshold", threshold), threshold)
    high = max(operating_points.get("high_specificity", {}).get("threshold", threshold), threshold)
    if probability >= high:
        return LIKELY
    if probability >= threshold:
        return POSSIBLE
    if probability >= low:
        return NOT_RULED_OUT
    return LOW_SCORE


def models_failed(error: Exception) -> str:
    """What to say where the models failed on one picture (the app and the command line go on with the rest)."""
    if isinstance(error, FractureAppError):  # already said in words for the reader
        return str(error)
    return f"the models could not process this image ({type(error).__name__}: {error})"


class Diagnoser:
    """The fracture and fracture-type models, their Grad-CAMs, and the orientation model that decides which way up
    the fracture model sees a picture. Build once per process; safe to share between sessions."""

    def __init__(self, binary: FractureModel | None, fracture_type: FractureModel | None,
                 problems: dict[str, str] | None = None, orientation: FractureModel | None = None):
        self.models = {task: model for task, model in
                       ((config.BINARY_TASK, binary), (config.TYPE_TASK, fracture_type)) if model is not None}
        self.orientation = orientation  # None: pictures are read as given
        self._gradcams: dict[str, GradCam] = {}
        self._gradcam_lock = threading.Lock()
        self.problems = dict(problems or {})  # task → why its model is missing, for the pages to show

    @classmethod
    def from_dir(cls, models_dir: Path | None = None) -> "Diagnoser":
        """Load whatever models are present; raise only when none can be loaded."""
        loaded, problems = {}, {}
        for task in config.TASKS:
            try:
                loaded[task] = load_model(model_path_for(task, models_dir), task)
            except ModelLoadError as error:
                problems[task] = str(error)
        if not loaded:
            raise ModelLoadError("no model could be loaded: " + "; ".join(problems.values()))
        try:
            orientation = load_model(model_path_for(config.ORIENTATION_TASK, models_dir), config.ORIENTATION_TASK)
        except ModelLoadError as error:
            orientation = None
            problems[config.ORIENTATION_TASK] = (f"{error}; without it, X-rays are read as uploaded, without checking "
                                                 "which way up they lie")
        return cls(loaded.get(config.BINARY_TASK), loaded.get(config.TYPE_TASK), problems, orientation)

    @property
    def orienting(self) -> FractureModel | None:
        """The orientation model where it can act: it turns pictures for the fracture model, by its card's threshold."""
        if config.BINARY_TASK not in self.models or self.orientation is None:
            return None
        return self.orientation if self.orientation.card.turn_threshold is not None else None

    @property
    def orientation_idle_because(self) -> str | None:
        """Why a loaded orientation model turns no picture; None where it acts, or where none is loaded."""
        if self.orientation is None or self.orienting is not None:
            return None
        if config.BINARY_TASK not in self.models:
            return "without the fracture model it has nothing to turn pictures for"
        return "its card sets no threshold"

    @property
    def every_model(self) -> dict:
        """The models a reading goes through, and names: the fracture models and the orientation model if it acts."""
        return {**self.models, **({config.ORIENTATION_TASK: self.orienting} if self.orienting else {})}

    @property
    def model_versions(self) -> dict[str, str]:
        return {task: model.card.version for task, model in self.every_model.items()}

    @property
    def model_measures(self) -> dict[str, str]:
        return {task: model.card.measured_in_brief for task, model in self.every_model.items()}

    def gradcam(self, task: str) -> GradCam:
        with self._gradcam_lock:
            if task not in self._gradcams:
                model = self.models[task]
                self._gradcams[task] = GradCam(model.keras_model, model.card.gradcam_layer, model.card.flip_average,
                                               model.card.gradcam_smoothing)
            return self._gradcams[task]

    def diagnose(self, xray: XRay, heatmap_tasks: tuple[str, ...] = config.TASKS) -> Diagnosis:
        diagnosis = self.diagnose_batch([xray])[0]
        return dataclasses.replace(diagnosis, heatmaps=self.heatmaps(diagnosis, heatmap_tasks))

    def heatmaps(self, diagnosis: Diagnosis, tasks: tuple[str, ...] = config.TASKS) -> dict[str, np.ndarray]:
        """The heat maps of the loaded models among `tasks`; none where the verdict is withheld, since a hot spot
        would read as a finding."""
        if diagnosis.verdict_withheld:
            return {}
        return {task: self.heatmap(diagnosis.xray, task, diagnosis) for task in tasks if task in self.models}

    def diagnose_batch(self, xrays: list[XRay]) -> list[Diagnosis]:
        turns = self._turns(xrays)
        turned = [index for index, turn in enumerate(turns) if turn != UPRIGHT]
        # One pass of the fracture model: every picture the way up it learnt, then the turned ones as uploaded.
        fracture = self._predict(config.BINARY_TASK, [set_upright(x.pixels, turn) for x, turn in zip(xrays, turns)]
                                 + [xrays[index].pixels for index in turned])
        score_as_uploaded = {} if fracture is None else dict(zip(turned, map(float, fracture[len(xrays):])))
        types = self._predict(config.TYPE_TASK, [xray.pixels for xray in xrays])
        binary = self.models.get(config.BINARY_TASK)
        threshold = binary.card.threshold if binary else MIDPOINT_THRESHOLD
        points = binary.card.operating_points if binary else {}
        measured = band_shares(points, binary.card.data.get("metrics", {}).get("test", {})) if binary else {}
        results = []
        for index, xray in enumerate(xrays):
            probability = None if fracture is None else float(fracture[index])
            ranked = {} if types is None else self._ranked(types[index])
            band = None if probability is None else confidence_band(probability, points, threshold)
            results.append(Diagnosis(xray, probability, threshold, band, ranked, {}, self.model_versions,
                                     self.model_measures, band_measured=measured.get(band), turn=turns[index],
                                     as_uploaded_probability=score_as_uploaded.get(index)))
        return results

    def _turns(self, xrays: list[XRay]) -> list[int]:
        """Which way up each picture lies, for the fracture model; UPRIGHT where the orientation model cannot act,
        and for a picture the models cannot read (it gets no verdict, so nothing is turned for one)."""
        turns = [UPRIGHT] * len(xrays)
        if self.orienting is None:
            return turns
        readable = [index for index, xray in enumerate(xrays) if looks_like_xray(xray)]
        for index, turn in zip(readable, turns_for(self.orienting, [xrays[index].pixels for index in readable])):
            turns[index] = turn
        return turns

    def heatmap(self, xray: XRay, task: str, diagnosis: Diagnosis) -> np.ndarray:
        """Grad-CAM of `task`'s answer: "Fractured" for the binary model, the top type for the type model."""
        model = self.models[task]
        if task == config.BINARY_TASK:
            class_index = config.BINARY_CLASSES.index(config.FRACTURED)  # explain the fracture score, even when low
        else:
            class_index = model.classes.index(diagnosis.best_type[0])
        turn = diagnosis.turn if task == config.BINARY_TASK else UPRIGHT  # as each model read the picture
        shown = set_upright(xray.pixels, turn)
        with model.call_lock:
            heat = self.gradcam(task).heatmap(prepare(shown, model.spec), class_index)
        return onto_picture_as_uploaded(heatmap_on_image(heat, shown.shape, model.spec.size), turn)

    def _predict(self, task: str, pictures: list[np.ndarray]) -> np.ndarray | None:
        model = self.models.get(task)
        if model is None or not pictures:
            return None
        return model.probabilities(prepare_batch(pictures, model.spec))

    def _ranked(self, probabilities: np.ndarray) -> dict[str, float]:
        classes = self.models[config.TYPE_TASK].classes
        order = np.argsort(probabilities)[::-1]
        return {classes[i]: float(probabilities[i]) for i in order}


__all__ = ["Diagnosis", "Diagnoser", "confidence_band"]
