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
from fracture_app.errors import FractureAppError, ModelLoadError
from fracture_app.gradcam import GradCam, heatmap_on_image
from fracture_app.imaging import XRay
from fracture_app.models import MIDPOINT_THRESHOLD, FractureModel, load_model, model_path_for
from fracture_app.orientation import UPRIGHT, onto_picture_as_uploaded, set_upright, turns_for
from fracture_app.pixels import FEW_SHADES, FEWEST_XRAY_SHADES, LEAST_XRAY_SPREAD, roughness, shade_count
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
ALARM, CAUTION, NEUTRAL = "alarm", "caution", "neutral"
BAND_LEVEL = {LIKELY: ALARM, POSSIBLE: CAUTION, NOT_RULED_OUT: CAUTION, LOW_SCORE: NEUTRAL}
# Said wherever the lowest band is (the app's box, the report): a fracture the model reads poorly scores low too.
CLEARS_NOTHING = ("it clears nothing: a fracture the model reads poorly (a picture turned or inverted, a region it "
                  "rarely saw) can score this low too, so look at the film")
NO_VERDICT = "No verdict"
NOT_READABLE = "not_xray"  # a caution that withholds the verdict: not a radiograph the models can read
# Cautions that withhold a "Not fractured" (a "Fractured" stands): too little of the picture is there; a picture
# unlike those the model learnt from in a way it misses nearly every fracture on (a negative, a flat or dull one);
# the fracture model's two readings of a turned picture disagree, and the one as uploaded says "Fractured".
TOO_INCOMPLETE = "too_incomplete"
TOO_POOR = "too_poor_for_a_negative"
READINGS_DISAGREE = "readings_disagree"
WITHHOLDING = (NOT_READABLE, TOO_INCOMPLETE, TOO_POOR, READINGS_DISAGREE)
TURNED = "turned"  # the caution on a picture the fracture model read turned back
INCOMPLETE = "incomplete"
NEGATIVE = "negative"
LOW_CONTRAST = "low_contrast"
MORE_FRAMES = "more_frames"
GUESSED_BRIGHTNESS = "guessed_brightness"
NARROW_BAND = "narrow_band"
TRANSPARENT = "transparent"
CAUTION_KINDS = (NOT_READABLE, TOO_INCOMPLETE, TOO_POOR, READINGS_DISAGREE, TURNED, INCOMPLETE, NEGATIVE,
                 LOW_CONTRAST, MORE_FRAMES, GUESSED_BRIGHTNESS, NARROW_BAND, TRANSPARENT)
# The picture's cautions whose kind of picture the fracture model misses nearly every fracture on (README: of
# FracAtlas's 92 test fractures it found 2 inverted and 6 darkened to 32 shades).
POOR_FOR_A_NEGATIVE = (NEGATIVE, LOW_CONTRAST, NARROW_BAND)

# More than this share of coloured pixels means a photograph or drawing, not a radiograph. Measured on
# the data sets: no FracAtlas image and under 1% of Bone Break journal figures exceed it; photographs do.
XRAY_COLOUR_FRACTION_LIMIT = 0.2
# Rougher than this (pixels.roughness) is pixel-level noise, not a radiograph: the data sets' roughest image
# scores 0.25, such noise 1.1 (benchmarks/reader_limits.py).
XRAY_ROUGHNESS_LIMIT = 0.6
# DICOM modalities that are not plain radiographs, as their header names them (the article is for the sentence).
OTHER_MODALITIES = {"CT": "a CT", "MR": "an MR", "US": "an ultrasound", "NM": "a nuclear medicine", "PT": "a PET",
                    "XC": "a camera photograph", "ES": "an endoscopy", "OP": "an ophthalmic photograph",
                    "SM": "a microscopy", "GM": "a microscopy", "OCT": "an OCT", "IVUS": "an intravascular ultrasound"}
TYPE_TOP_K = 3
# From a quarter of the picture missing, "Not fractured" is withheld (too_incomplete_for_a_negative). Of FracAtlas's 54
# truncated files that the reader keeps, 40 miss 12% of their picture or less, and 5 a quarter or more (up to 54%;
# benchmarks/reader_limits.py).
INCOMPLETE_NEGATIVE_LIMIT = 0.25
# A radiograph shows air dark and bone white; a negative the reverse. A picture whose outer twentieth is bright
# along most of its edges (the median of the four edges' means: one dark edge, a label strip or a film's end, does
# not hide it) and whose median is bright too may be one (benchmarks/reader_limits.py gives the counts on both
# data sets, as stored and inverted).
NEGATIVE_EDGE_LEVEL = 0.6
NEGATIVE_MEDIAN = 0.4
BORDER_SHARE = 20  # the outer 1/20 of each side


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


def looks_negative(pixels: np.ndarray) -> bool:
    """Whether the picture may be a negative (see NEGATIVE_EDGE_LEVEL)."""
    height, width = pixels.shape
    rows, columns = max(1, height // BORDER_SHARE), max(1, width // BORDER_SHARE)
    edges = [pixels[:rows].mean(), pixels[-rows:].mean(), pixels[:, :columns].mean(), pixels[:, -columns:].mean()]
    return float(np.median(edges)) > NEGATIVE_EDGE_LEVEL and float(np.median(pixels)) > NEGATIVE_MEDIAN


def looks_like_xray(xray: XRay) -> bool:
    return _unlike_an_xray(xray) is None


def _unlike_an_xray(xray: XRay) -> tuple[str, str] | None:
    """(a few words, a sentence) saying why the models give no verdict on a picture; None where they may read it."""
    radiographs_only = "The models learned from radiographs only, so they give no verdict on it."
    modality = str(xray.metadata.get("Modality", "")).upper()
    if modality in OTHER_MODALITIES:
        kind = OTHER_MODALITIES[modality]
        return (f"{kind.split(' ', 1)[1]} image (DICOM Modality {modality}), not a radiograph",
                f"The DICOM header says this is {kind} image (Modality {modality}), not a radiograph. {radiographs_only}")
    if xray.colour_fraction > XRAY_COLOUR_FRACTION_LIMIT:
        return ("a colour image, not an X-ray",
                f"This picture is in colour, as a photograph or a drawing is, not an X-ray. {radiographs_only}")
    if (shades := shade_count(xray.pixels)) <= FEW_SHADES:  # before roughness: a dithered copy is rough too
        return (f"only {shades} shades of grey: upload the original",
                f"This picture has only {shades} shades of grey, as a thresholded, dithered or posterised copy, a "
                f"drawing or a grossly underexposed film has; every X-ray the models learned from has at least "
                f"{FEWEST_XRAY_SHADES}. The models cannot read it, so they give no verdict: upload the original image.")
    if roughness(xray.pixels) > XRAY_ROUGHNESS_LIMIT:
        return ("noise, not an X-ray",
                f"This picture looks like noise: neighbouring pixels barely resemble each other. {radiographs_only}")
    return None


@dataclass(frozen=True)
class Caution:
    """What a reader must know before trusting a reading, worded once for the app, the report and the CSV."""
    kind: str  # one of CAUTION_KINDS
    brief: str  # a few words a script can grep for
    text: str  # a sentence for the app and the report
    # A caution that withholds a "Not fractured" tells the model's answer; this, the picture's own caution it
    # stands for, does not (Teaching shows it before the trainee commits).
    about_the_picture: "Caution | None" = None


TYPE_GUESS_WITHHELD = ("No type guess: the fracture model's score is below its decision threshold, and the type "
                       "model, trained on fractures only, names a type for every picture.")


def cautions_for(xray: XRay) -> list[Caution]:
    found, metadata = [], xray.metadata
    if unlike := _unlike_an_xray(xray):
        found.append(Caution(NOT_READABLE, *unlike))
    elif not (metadata.get("narrow_band") or metadata.get("low_contrast")) and looks_negative(xray.pixels):
        # (a flat picture's brightness says nothing of its polarity: the contrast caution covers it)
        found.append(Caution(NEGATIVE, "bright background: a negative? a fracture may be missed",
                             "The background of this picture is bright and most of it is light: it may be a negative "
                             "(inverted) image. The models learned from X-rays with dark air and white bone, and on a "
                             "negative they can miss a fracture. Use a positive image if there is one; if bone is "
                             "white in this one, it is not a negative (a film filled by soft tissue looks so too), "
                             "and this warning does not apply."))
    if metadata.get("low_contrast"):
        spread = metadata["low_contrast"]
        found.append(Caution(LOW_CONTRAST, "low contrast: a fracture may be missed",
                             f"This picture's brightness spans only {spread:.0%} of its range, where every X-ray in "
                             f"the two data sets the models learned from spans at least {LEAST_XRAY_SPREAD:.0%}: it "
                             "is much darker, paler or flatter than they are, and the models can miss a fracture on "
                             "it. Use the original export if there is one."))
    if metadata.get("missing_fraction"):
        found.append(incomplete_caution(metadata["missing_fraction"]))
    if metadata.get("transparent_fraction"):
        found.append(transparent_caution(metadata["transparent_fraction"]))
    if metadata.get("missing_detail"):
        found.append(Caution(INCOMPLETE, "incomplete file: fine detail missing",
                             "This file is incomplete: it is a progressive JPEG whose end is missing, so the whole "
                             "picture shows but without its finest detail, where a thin fracture line would be. "
                             "Read with care, and use the complete file if there is one."))
    if metadata.get("frames", 1) > 1:
        frames = metadata["frames"]
        found.append(Caution(MORE_FRAMES, f"first of {frames} images read",
                             f"This file holds {frames} images; only the first was read. Upload the others "
                             "one by one."))
    if metadata.get("brightness_bits"):
        bits = metadata["brightness_bits"]
        found.append(Caution(GUESSED_BRIGHTNESS, f"brightness guessed from the values ({bits} bits)",
                             f"This file stores more than 8 bits a pixel but not how to display them; its values "
                             f"were read as {bits}-bit. If the picture looks too dark or too bright, export it as "
                             "an 8-bit PNG or as DICOM."))
    if metadata.get("no_display_window"):
        found.append(Caution(GUESSED_BRIGHTNESS, "no display window in the DICOM: contrast from its values",
                             "This DICOM file gives no display window (window centre and width, or a VOI LUT) that "
                             "could be used, so its brightness was spread from its darkest to its brightest value. A "
                             "viewer may show it with other contrast, and the models' scores can change with it. "
                             "Export it with its window settings if it has them."))
    if metadata.get("narrow_band"):
        found.append(Caution(NARROW_BAND, "very low contrast: brightness needs a display window",
                             "This picture uses only a narrow band of its brightness range (a raw 16-bit export?), "
                             "so it shows almost flat, and the models read it as flat too. Export it with a display "
                             "window, as an 8-bit PNG or as DICOM with its window settings."))
    return found


def incomplete_caution(missing: float) -> Caution:
    return Caution(INCOMPLETE, f"incomplete file: about {missing:.0%} missing",
                   f"This file is incomplete: about {missing:.0%} of the picture is missing and not shown. "
                   "Read with care.")


def cautions_against_a_negative(found: list[Caution], diagnosis: "Diagnosis") -> list[Caution]:
    """The picture's cautions where its score is below the threshold, with those that make a "Not fractured"
    untrustworthy turned into cautions that withhold it, and, where none does, one more if the reading as uploaded
    says "Fractured"."""
    turned = []
    for caution in found:
        if caution.kind == INCOMPLETE:
            caution = too_incomplete_for_a_negative(diagnosis.xray) or caution
        elif caution.kind == TRANSPARENT:
            caution = too_transparent_for_a_negative(diagnosis.xray) or caution
        elif caution.kind in POOR_FOR_A_NEGATIVE:
            caution = too_poor_for_a_negative(caution)
        turned.append(caution)
    uploaded = diagnosis.as_uploaded_probability
    if uploaded is not None and uploaded >= diagnosis.threshold and not any(c.kind in WITHHOLDING for c in turned):
        turned.append(readings_disagree(diagnosis))
    return turned


def too_poor_for_a_negative(caution: Caution) -> Caution:
    return Caution(TOO_POOR, f"{caution.brief}, so no negative verdict",
                   f"{caution.text} On such pictures the fracture model misses nearly every fracture (of FracAtlas's "
                   "92 test fractures it found 2 inverted and 6 darkened to 32 shades), so its low score here gives "
                   "no “Not fractured” verdict, even where this warning is mistaken.", about_the_picture=caution)


def readings_disagree(diagnosis: "Diagnosis") -> Caution:
    """Without the scores: a withheld verdict gives none (a score alone would be read as a verdict)."""
    words = config.ORIENTATIONS[diagnosis.turn]
    return Caution(READINGS_DISAGREE, "readings disagree: fractured as uploaded, not when turned back",
                   f"Compared with the X-rays the fracture model learnt from, this picture appears {words}, so the "
                   "fracture model read it turned back, and that reading scored below its threshold; read as "
                   "uploaded, it scored at or above it. With the two readings disagreeing, no “Not fractured” "
                   "verdict is given: the orientation model can be wrong, and a picture can have no natural way up. "
                   "Look at the film.")


def transparent_caution(share: float) -> Caution:
    return Caution(TRANSPARENT, f"transparent: about {share:.0%} of the picture shown black",
                   f"About {share:.0%} of this picture is transparent. Transparent parts are shown and read as black, "
                   "as a radiograph's background is, so whatever the file holds there was not seen. Export it "
                   "without transparency if you can.")


def too_transparent_for_a_negative(xray: XRay) -> Caution | None:
    """As too_incomplete_for_a_negative, for a picture whose transparent parts hide as much."""
    share = xray.metadata.get("transparent_fraction", 0)
    if share < INCOMPLETE_NEGATIVE_LIMIT:
        return None
    return Caution(TOO_INCOMPLETE, f"transparent: about {share:.0%} of the picture shown black, too much for a "
                                   "negative verdict",
                   f"About {share:.0%} of this picture is transparent, shown and read as black. The fracture model "
                   "found no fracture in the rest, but one in the transparent part could not be seen, so no “Not "
                   "fractured” verdict is given. Export it without transparency.",
                   about_the_picture=transparent_caution(share))


def too_incomplete_for_a_negative(xray: XRay) -> Caution | None:
    """The caution that withholds a "Not fractured" from a file missing so much of its picture that the verdict
    would cover too little of it; None where less is missing (that file keeps its "incomplete" caution). A
    "Fractured" stands: the fracture it scored is in the part that is there."""
    missing = xray.metadata.get("missing_fraction", 0)
    if missing < INCOMPLETE_NEGATIVE_LIMIT:
        return None
    return Caution(TOO_INCOMPLETE, f"incomplete file: about {missing:.0%} missing, too much for a negative verdict",
                   f"This file is incomplete: about {missing:.0%} of the picture is missing. The fracture model found "
                   "no fracture in the part that is there, but a fracture in the missing part could not be seen, so "
                   "no “Not fractured” verdict is given. Use the complete file.",
                   about_the_picture=incomplete_caution(missing))


def turned_caution(turn: int) -> Caution:
    """Says what was done, not the score (the score goes with the verdict)."""
    words = config.ORIENTATIONS[turn]
    return Caution(TURNED, f"turned back before reading: {words} compared with the training X-rays",
                   f"Compared with the X-rays the fracture model learnt from, this picture appears {words}. That is "
                   "their habit, not a fault in your picture: FracAtlas stores hands fingers up and most feet toes "
                   "down. So the fracture model read it turned back, and it was read as uploaded too: both readings "
                   "are given with the verdict. The heat map is drawn on your picture; the type model read it as "
                   "uploaded.")


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


__all__ = ["Caution", "Diagnosis", "Diagnoser", "cautions_for", "confidence_band", "looks_like_xray"]
