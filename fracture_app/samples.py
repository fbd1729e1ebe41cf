"""Sample X-rays with their ground truth, for the Samples and Teaching pages.

Where the samples come from (first match wins):

  1. the folder named by the environment variable FRACTURE_SAMPLES_DIR, else `sample_images/`;
  2. in that folder, `labels.csv` with columns `file,source,ground_truth`, where ground_truth is
     "Not fractured", "Fractured" or one of the fracture-type names (config.FRACTURE_TYPES), and optionally
     `fracture_boxes` (where the data set marks the fracture; see config.SAMPLE_BOXES_COLUMN) and `hardware`
     ("yes" where it marks orthopaedic hardware on the film);
  3. otherwise the folder read as a data set, in any layout `fracture_app.data_layout.discover` knows
     (FracAtlas, Bone Break, class folders), or a folder holding several such data sets; the images the
     models trained or were tuned on, by their split files, are left out.

Nothing here imports Streamlit or TensorFlow: the pages and the tests share it.
"""

from __future__ import annotations

import csv
import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

from fracture_app import config
from fracture_app.config import FRACTURED, NOT_FRACTURED
from fracture_app.data_layout import fracture_boxes, hardware_flagged, has_fracture_boxes, normalise

LABELS_FILE = "labels.csv"
ALL = "All samples"
ANY_FRACTURE = "Fractured (any type)"
# How deep to look for data sets inside the samples folder (tests/fixtures holds two side by side).
MAX_NESTING = 2

# Keys are spelt as data_layout.normalise spells them, so a labels.csv accepts what a folder name would.
_CANONICAL = {
    **{normalise(name): name for name in config.FRACTURE_TYPES},
    "not fractured": NOT_FRACTURED, "non fractured": NOT_FRACTURED,
    "normal": NOT_FRACTURED, "fractured": FRACTURED, "fracture": FRACTURED,
}


@dataclass(frozen=True)
class SampleImage:
    path: Path
    ground_truth: str  # "Not fractured", "Fractured" or a fracture-type name
    source: str = ""  # data set or origin, for attribution
    # Where the data set marks the fracture: (x_centre, y_centre, width, height) relative to the image (FracAtlas)
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    hardware: bool = False  # the data set marks orthopaedic hardware on the film (FracAtlas)

    @property
    def fractured(self) -> bool:
        return self.ground_truth != NOT_FRACTURED

    @property
    def fracture_type(self) -> str | None:
        """The type when the ground truth names one (Bone Break); None for "Fractured" alone (FracAtlas)."""
        return self.ground_truth if self.ground_truth in config.FRACTURE_TYPES else None

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class SampleSet:
    root: Path
    samples: list[SampleImage] = field(default_factory=list)
    origin: str = ""  # "labels.csv", a data set layout, or "" when nothing was found
    problems: list[str] = field(default_factory=list)  # rows or folders that were skipped, and why


def samples_dir() -> Path:
    """The samples folder: FRACTURE_SAMPLES_DIR when set, else the repository's `sample_images/`."""
    value = os.environ.get(config.SAMPLES_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else config.SAMPLE_IMAGES_DIR


def canonical_truth(value: str) -> str | None:
    """'not fractured', 'Non-fractured', 'oblique_fracture' … → the display name; None if unknown."""
    return _CANONICAL.get(normalise(str(value)))


def list_samples(root: Path | str | None = None) -> SampleSet:
    """Every sample under `root` (default: `samples_dir()`) with its ground truth. Never raises for content."""
    root = Path(root) if root is not None else samples_dir()
    result = SampleSet(root)
    if not root.is_dir():
        result.problems.append(f"sample folder not found: {root}")
        return result
    if (root / LABELS_FILE).is_file():
        result.samples, result.problems = _from_labels(root)
        result.origin = LABELS_FILE
        return result
    result.samples, layouts = _from_datasets(root, MAX_NESTING)
    result.origin = ", ".join(sorted(set(layouts)))
    if not result.samples:
        result.problems.append(
            f"no labelled images in {root}: add {LABELS_FILE} (columns file,source,ground_truth) or use a "
            "data set layout such as images/Fractured + images/Non_fractured, or one folder per class")
    return result


def _from_labels(root: Path) -> tuple[list[SampleImage], list[str]]:
    samples, problems = [], []
    resolved_root = root.resolve()
    try:
        with open(root / LABELS_FILE, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        return [], [f"{LABELS_FILE} could not be read: {error}"]
    for number, row in enumerate(rows, start=2):
        file_name = (row.get("file") or "").strip()
        truth = canonical_truth(row.get("ground_truth") or "")
        path = (root / file_name).resolve()
        if not file_name or truth is None:
            problems.append(f"{LABELS_FILE} line {number}: needs a file and a known ground_truth")
        elif not path.is_relative_to(resolved_root):  # a labels file must not reach outside its folder
            problems.append(f"{LABELS_FILE} line {number}: {file_name} is outside the sample folder")
        elif not path.is_file():
            problems.append(f"{LABELS_FILE} line {number}: {file_name} not found")
        else:
            boxes = parse_boxes(row.get(config.SAMPLE_BOXES_COLUMN) or "")
            if boxes is None:
                problems.append(f"{LABELS_FILE} line {number}: its {config.SAMPLE_BOXES_COLUMN} are not "
                                "'x_centre y_centre width height' fractions between 0 and 1, ';' between boxes")
            hardware = (row.get(config.SAMPLE_HARDWARE_COLUMN) or "").strip().lower() in ("yes", "true", "1")
            samples.append(SampleImage(path, truth, (row.get("source") or "").strip(), boxes or (), hardware))
    return samples, problems


def parse_boxes(text: str) -> tuple[tuple[float, float, float, float], ...] | None:
    """"x y w h; x y w h" (fractions of the image) → boxes; None where the text is not that."""
    boxes = []
    for part in filter(None, (piece.strip() for piece in text.split(";"))):
        try:
            box = tuple(float(value) for value in part.split())
        except ValueError:
            return None
        if len(box) != 4 or not all(0 <= value <= 1 for value in box):
            return None
        boxes.append(box)
    return tuple(boxes)


def _from_datasets(folder: Path, depth: int) -> tuple[list[SampleImage], list[str]]:
    found = _from_dataset(folder)
    if found is not None:
        return found
    samples, layouts = [], []
    if depth > 0:
        for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            more, more_layouts = _from_datasets(child, depth - 1)
            samples += more
            layouts += more_layouts
    return samples, layouts


def _from_dataset(folder: Path) -> tuple[list[SampleImage], list[str]] | None:
    from fracture_app.data_layout import DatasetError, discover

    for task in config.TASKS:
        try:
            dataset = discover(folder, task)
        except (DatasetError, OSError):
            continue
        if task == config.TYPE_TASK and not set(dataset.classes) <= set(config.FRACTURE_TYPES):
            continue  # class folders that are not fracture types (e.g. several data sets side by side)
        chosen = _unseen_by_model(dataset, task)
        source = dataset.source if dataset.source != "custom" else folder.name
        boxed, hardware = has_fracture_boxes(dataset.root), hardware_flagged(dataset.root)
        return [SampleImage(s.path, dataset.classes[s.label], source,
                            tuple(fracture_boxes(dataset.root, s.path)) if boxed else (), s.path.name in hardware)
                for s in chosen], [dataset.layout]
    return None


def _unseen_by_model(dataset, task: str) -> list:
    """The samples the task's model neither trained nor was tuned on, so a demo never grades it on its lessons.

    The model's split file says which images it learned from (paths relative to the data set); where there is
    none, a data set's own test folder is the best guess, and a folder of other images is all unseen.
    """
    from fracture_app.models import artifact_paths

    try:
        with open(artifact_paths(config.models_dir(), task)["manifest"], newline="", encoding="utf-8") as handle:
            seen = {row["path"] for row in csv.DictReader(handle) if row["split"] != "test"}
    except (OSError, UnicodeDecodeError, csv.Error, KeyError):
        seen = None
    if seen is not None:
        return [s for s in dataset.samples if s.path.relative_to(dataset.root).as_posix() not in seen]
    if any(sample.given_split == "test" for sample in dataset.samples):
        return [sample for sample in dataset.samples if sample.given_split == "test"]
    return dataset.samples


def filter_options(samples: list[SampleImage]) -> list[str]:
    """The choices of the class filter: everything, any fracture, not fractured, then the types present."""
    options = [ALL]
    if any(s.fractured for s in samples):
        options.append(ANY_FRACTURE)
    if any(not s.fractured for s in samples):
        options.append(NOT_FRACTURED)
    options += [name for name in config.FRACTURE_TYPES if any(s.fracture_type == name for s in samples)]
    return options


def filter_samples(samples: list[SampleImage], choice: str) -> list[SampleImage]:
    if choice == ALL:
        return list(samples)
    if choice == ANY_FRACTURE:
        return [s for s in samples if s.fractured]
    if choice == NOT_FRACTURED:
        return [s for s in samples if not s.fractured]
    return [s for s in samples if s.ground_truth == choice]


def pick(samples: list[SampleImage], rng: random.Random | None = None,
         avoid: Path | str | None = None) -> SampleImage | None:
    """A random sample, a different one from `avoid` when there is a choice.

    Fractured and not-fractured X-rays come up equally often when both are there, whatever their numbers,
    so a trainee who always answers the same way scores about half, not the pool's share of fractures.
    """
    if not samples:
        return None
    rng = rng or random.Random()
    candidates = [s for s in samples if str(s.path) != str(avoid)] or samples
    by_truth = [group for group in ([s for s in candidates if s.fractured], [s for s in candidates if not s.fractured])
                if group]
    return rng.choice(rng.choice(by_truth))


SPOT_THE_FRACTURE, NAME_THE_TYPE = "Spot the fracture", "Name the type"


def exercises(samples: list[SampleImage]) -> dict[str, list[SampleImage]]:
    """Teaching mode's two exercises, each on the samples that make it a fair test: whether there is a fracture,
    on those whose truth is fractured or not (FracAtlas's full radiographs); which type, on those whose truth names
    one (Bone Break's journal figures: all fractured, often with arrows that would give a fracture away)."""
    pools = {SPOT_THE_FRACTURE: [s for s in samples if s.fracture_type is None],
             NAME_THE_TYPE: [s for s in samples if s.fracture_type is not None]}
    return {name: pool for name, pool in pools.items() if pool}


WRONG, HALF_RIGHT, RIGHT, NOT_MARKED = "wrong", "half right", "right", "not marked"


@dataclass(frozen=True)
class Grade:
    fracture_correct: bool
    type_scored: bool  # only when the truth names a type and the trainee named one
    type_correct: bool
    message: str
    marked: bool = True  # False where nothing was asked that the answer could be marked on ("Not sure" of a type)

    @property
    def outcome(self) -> str:
        """wrong (the fracture), half right (the fracture, not its type), right, or not marked: how pages colour it."""
        if not self.marked:
            return NOT_MARKED
        if not self.fracture_correct:
            return WRONG
        return HALF_RIGHT if self.type_scored and not self.type_correct else RIGHT


@dataclass
class TeachingScore:
    """A trainee's tally over a browser session, both exercises together."""
    cases: int = 0
    fracture_calls: int = 0  # "name the type" asks none: every case there is fractured
    fracture_correct: int = 0
    types_scored: int = 0
    types_correct: int = 0

    def record(self, result: Grade, exercise: str) -> None:
        self.cases += 1
        if exercise == SPOT_THE_FRACTURE:
            self.fracture_calls += 1
            self.fracture_correct += result.fracture_correct
        self.types_scored += result.type_scored
        self.types_correct += result.type_correct


def grade(sample: SampleImage, guessed_fractured: bool, guessed_type: str | None) -> Grade:
    """Mark a trainee's reading of a sample against its ground truth."""
    fracture_correct = guessed_fractured == sample.fractured
    type_scored = bool(sample.fracture_type and guessed_fractured and guessed_type)
    type_correct = type_scored and guessed_type == sample.fracture_type
    # The truth is the data set's label, not a second reading of this picture: the messages say so.
    if not fracture_correct and sample.fractured:
        detail = f" ({sample.fracture_type})" if sample.fracture_type else ""
        message = f"Not quite: the data set labels this X-ray fractured{detail}."
    elif not fracture_correct:
        message = "Not quite: the data set labels this X-ray not fractured."
    elif not sample.fractured:
        message = "Correct: the data set labels it not fractured."
    elif type_scored and type_correct:
        message = f"Correct: fractured, and the type is right ({sample.fracture_type})."
    elif type_scored:
        message = f"Correct that it is fractured; the type is {sample.fracture_type}, not {guessed_type}."
    elif sample.fracture_type:
        message = f"Correct: fractured ({sample.fracture_type})."
    else:
        message = "Correct: fractured (this data set does not record the type)."
    return Grade(fracture_correct, type_scored, type_correct, message)


def grade_type(sample: SampleImage, guessed_type: str | None) -> Grade:
    """Mark a trainee's type for a sample known to be fractured (teaching's "name the type"): no fracture was asked,
    so none is marked, and "Not sure" is shown the label without a mark."""
    if guessed_type is None:
        return Grade(True, False, False, f"The data set's label: {sample.fracture_type}.", marked=False)
    if guessed_type == sample.fracture_type:
        return Grade(True, True, True, f"Right: the data set's label is {sample.fracture_type}.")
    return Grade(True, True, False, f"Not the data set's label: it is {sample.fracture_type}, not {guessed_type}.")


def grade_model(sample: SampleImage, model_fractured: bool, model_type: str | None,
                fractured_as_uploaded: bool | None = None) -> Grade:
    """The model's reading of a sample, marked as a trainee's is and worded for the Samples page; where the fracture
    model also read the picture as uploaded (it read it turned back) and that verdict differs, the message says so."""
    marked = grade(sample, model_fractured, model_type)
    if not marked.fracture_correct and sample.fractured:
        detail = f" ({sample.fracture_type})" if sample.fracture_type else ""
        message = f"The model misses this fracture{detail}: a case worth studying."
    elif not marked.fracture_correct:
        message = "The model sees a fracture where there is none: a case worth studying."
    elif marked.type_scored and not marked.type_correct:
        message = (f"The model is right that this is fractured, but its type guess ({model_type}) is not the "
                   f"data set's label ({sample.fracture_type}).")
    else:
        message = f"The model agrees with the data set's label ({sample.ground_truth})."
    if fractured_as_uploaded is not None and fractured_as_uploaded != model_fractured:
        said = "fractured" if fractured_as_uploaded else "not fractured"
        message += (f" Read as uploaded, not turned back, it says {said}, which is "
                    f"{'right' if fractured_as_uploaded == sample.fractured else 'wrong'}.")
    return replace(marked, message=message)
