"""Grouped cross-validation of a training recipe, for comparisons one validation split is too small to make.

    python -m training.crossval folds --split models/fracture_type_split.csv --folds 5 --out runs/type_folds
    # train the recipe once per fold, e.g. --split runs/type_folds/fold1/fracture_type_split.csv --out runs/cv_a_1
    python -m training.crossval score --data ../shared/data/bone_break --runs runs/cv_a_* --against runs/cv_b_*

`folds` keeps every test row as it is and deals the training and validation groups of copies, whole and class
by class, into K folds: fold k's split file validates on fold k and trains on the rest, so every image outside
test is validated on exactly once. Fold runs are trained with `--keep-last-epoch`, so that their validation fold
chooses nothing (no best epoch) before it is scored; `score` refuses others. `score` pools each run's answers on
its own validation fold, on each X-ray alone (no mirror, no calibration: both are chosen on that fold too, and
calibration cannot change a ranking or a top class anyway), into one figure over all of them, the task's
validation metric (macro-F1 for types, AUROC for fractures) with a 95% interval from resampling groups of copies;
with `--against`, the same for a second recipe trained on the same folds, and their paired difference. Every
image outside test must be scored once, and both recipes' folds must match image for image. With
`--write-card MODEL`, the figures go into that model's card under `cross_validation` (the Model card page shows
them), with every training option in which the fold runs differ from that model; refused for another task,
architecture or input size, or for folds not dealt from that model's own split file. The runs of one recipe
must share every training option but where their data, split and output were.
"""

import argparse
import csv
import random
import shlex
import sys
from collections import Counter, defaultdict
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np

from fracture_app import config
from fracture_app.errors import FractureAppError
from training import metrics
from training.card import LAST_EPOCH_KEPT, command_line, update_card
from training.validation_choices import VALIDATION_METRIC, validation_score

FOLD_FOLDER = "fold{number}"
SEED = 0


def fold_rows(rows: list[dict], folds: int, seed: int = SEED) -> list[list[dict]]:
    """One list of split-file rows per fold: test rows unchanged, the others' groups dealt whole into folds."""
    if folds < 2:
        raise FractureAppError("cross-validation needs at least 2 folds")
    groups = defaultdict(list)
    for row in rows:
        if row["split"] != "test":
            groups[row["group"]].append(row)
    by_class = defaultdict(list)
    for members in groups.values():
        by_class[Counter(row["label"] for row in members).most_common(1)[0][0]].append(members)
    fold_of, totals, rng = {}, Counter(), random.Random(seed)
    for _, class_groups in sorted(by_class.items()):
        rng.shuffle(class_groups)
        images = Counter()
        for members in sorted(class_groups, key=len, reverse=True):  # large groups first, so folds even out
            # The fold with the fewest of this class, then the fewest in all: small classes spread over folds.
            fold = min(range(folds), key=lambda k: (images[k], totals[k], k))
            fold_of[members[0]["group"]] = fold
            images[fold] += len(members)
            totals[fold] += len(members)
    if len(set(fold_of.values())) < folds:
        raise FractureAppError(f"only {len(groups)} groups of copies outside test: too few for {folds} folds")
    return [[row if row["split"] == "test" else {**row, "split": "val" if fold_of[row["group"]] == k else "train"}
             for row in rows] for k in range(folds)]


def write_folds(split_file: Path, folds: int, out: Path) -> list[Path]:
    with open(split_file, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    written = []
    for number, fold in enumerate(fold_rows(rows, folds), start=1):
        path = out / FOLD_FOLDER.format(number=number) / split_file.name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(fold)
        written.append(path)
    return written


def out_of_fold(runs: list[Path], data_dir: Path) -> dict:
    """The runs' answers, each on its own validation fold, pooled (`images`: image path → (label, group, answer,
    fold)), with what they share: task, recipe, what model they are, and the first run's command and hardware."""
    from fracture_app.models import artifact_paths, load_model
    from training import datasets

    pooled, outside_test, task, recipe, first = {}, set(), None, None, None
    for fold, run in enumerate(runs):
        model_path = _model_file(run)
        model = load_model(model_path)
        first = first or model.card.data
        task = task or model.task
        if model.task != task:
            raise FractureAppError(f"{run} is a {model.task} model; the others are {task}")
        if model.card.data.get("training", {}).get("kept") != LAST_EPOCH_KEPT:
            raise FractureAppError(f"{run} kept its best epoch on the fold it would be scored on: train fold runs "
                                   "with --keep-last-epoch")
        run_recipe = recipe_options(model.card.data)
        if recipe is not None and run_recipe != recipe:
            unlike = "; ".join(map(said, differences(run_recipe, recipe)))
            raise FractureAppError(f"{run} was not trained like {runs[0]}: {unlike}")
        recipe = run_recipe
        split_file = artifact_paths(model_path.parent, task)["manifest"]
        rows = datasets.read_manifest(split_file, data_dir)
        outside = {row.path for row in rows if row.split != "test"}
        if outside_test and outside != outside_test:
            raise FractureAppError("the runs' test splits differ: they were not trained on folds of one split file")
        outside_test = outside
        samples = [row for row in rows if row.split == "val"]
        for sample, answer in zip(samples, _answers_alone(model, samples)):
            if sample.path in pooled:
                raise FractureAppError(f"{sample.path.name} is validated in two runs: are they folds of one fold set?")
            pooled[sample.path] = (sample.label, sample.group, answer, fold)
    if set(pooled) != outside_test:
        raise FractureAppError(f"the runs validate {len(pooled)} of the {len(outside_test)} images outside test: "
                               "give one run for every fold")
    return {"task": task, "runs": len(runs), "images": pooled, "recipe": recipe, "split_file": split_file,
            "model": model_kind(first), "first_fold_command": first["training"].get("command"),
            "hardware": first["training"].get("hardware")}


def model_kind(card: dict) -> dict:
    """What must match for figures of some models to speak for another: task, architecture and input size."""
    return {"task": card.get("task"), "architecture": card.get("architecture"),
            "input size": (card.get("preprocessing") or {}).get("size")}


# Settings that say where a run's data, split and output were, or how long it might take: not how it was trained.
NOT_RECIPE = ("data", "split", "out", "time_limit", "quiet", "resume")
# Not a setting: how the fold runs were scored (image alone) where the model averages each image with its mirror.
MIRROR = "mirror"


def recipe_options(card: dict) -> dict[str, str]:
    """How a run was trained: every setting of its training command, defaults included (read by training.train's
    own parser), less where its files were and how long it might take, with its start by sha256 (one path names a
    different model after each release); and, from its card, the epochs it ran and the Keras backend. Empty for a
    model that training.train did not make (an ensemble: its members' commands are under training.members)."""
    from training.fit import LEARNING_RATE
    from training.train import argument_parser, with_defaults

    training = card.get("training", {})
    try:
        words = shlex.split(training.get("command") or "")
    except ValueError as error:
        raise FractureAppError(f"a card's training command cannot be read ({error}): "
                               f"{training.get('command')}") from error
    if words[:3] != ["python", "-m", "training.train"]:
        return {}
    try:
        settings, _ = argument_parser().parse_known_args(words[3:])
    except SystemExit as error:  # argparse has printed why
        raise FractureAppError(f"a card's training command cannot be read: {training.get('command')}") from error
    settings = vars(with_defaults(settings))
    settings["learning_rate"] = settings["learning_rate"] or LEARNING_RATE  # as training.fit starts from it
    if card.get("weights_init_sha256") and settings["weights"] not in ("imagenet", "none"):
        settings["weights"] = f"sha256 {card['weights_init_sha256'][:12]}…"
    recipe = {f"--{name.replace('_', '-')}": _setting_text(value) for name, value in settings.items()
              if name not in NOT_RECIPE}
    return {**recipe, "epochs run": _setting_text(training.get("epochs_run")),
            "backend": _setting_text(training.get("keras_backend"))}


def _setting_text(value) -> str:
    if value is None:
        return "not given"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def differences(recipe: dict[str, str], other: dict[str, str]) -> list[dict]:
    """Each setting where `recipe` differs from `other`: its name and both values."""
    return [{"option": name, "theirs": recipe.get(name, "not given"), "instead_of": other.get(name, "not given")}
            for name in sorted(set(recipe) | set(other)) if recipe.get(name) != other.get(name)]


def said(difference: dict) -> str:
    """`--name value instead of value`, for messages."""
    return f"{difference['option']} {difference['theirs']} instead of {difference['instead_of']}"


def _answers_alone(model, samples) -> np.ndarray:
    """The model's logits on each X-ray alone: uncalibrated, which changes no ranking and no top class."""
    from fracture_app.imaging import read_image
    from fracture_app.preprocess import prepare_batch

    pixels = []
    for sample in samples:
        try:
            pixels.append(read_image(sample.path).pixels)
        except FractureAppError as error:
            raise FractureAppError(f"{sample.path}: {error}") from error
    return np.asarray(model.keras_model.predict(prepare_batch(pixels, model.spec), verbose=0), np.float64)


def _model_file(run: Path) -> Path:
    return run / config.MODEL_FILES[_task_of(run)] if run.is_dir() else run


def _task_of(run: Path) -> str:
    found = [task for task, name in config.MODEL_FILES.items() if (run / name).is_file()]
    if len(found) != 1:
        raise FractureAppError(f"{run} holds no single model file ({', '.join(config.MODEL_FILES.values())})")
    return found[0]


def group_bootstrap(score, labels, groups, *predictions) -> list[list[float]]:
    """95% intervals of each prediction set's score(labels, prediction) and, for two, of their difference,
    resampling whole groups."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    members = [np.flatnonzero(groups == group) for group in np.unique(groups)]
    rng, draws = np.random.default_rng(metrics.BOOTSTRAP_SEED), []
    for _ in range(metrics.BOOTSTRAP_REPLICATES):
        chosen = np.concatenate([members[i] for i in rng.integers(len(members), size=len(members))])
        scores = [score(labels[chosen], np.asarray(p)[chosen]) for p in predictions]
        draws.append(scores + ([scores[0] - scores[1]] if len(scores) == 2 else []))
    return np.nanpercentile(np.array(draws, float), [2.5, 97.5], axis=0).T.tolist()


def top_k_share(k: int):
    """The share of images whose label is among the k highest answers (top-1 and top-3 accuracy)."""
    def share(labels, answers) -> float:
        return float(np.mean([label in row for label, row in zip(labels, np.argsort(-answers, axis=1)[:, :k])]))
    return share


# Figures a reader knows better than the validation metric, pooled the same way (fracture types only).
ALSO_POOLED = {config.TYPE_TASK: {"top1": top_k_share(1), "top3": top_k_share(3)}}


def compare(recipe: dict, other: dict | None = None) -> dict:
    """Pooled out-of-fold figures of one recipe, or two on the same images and their paired difference."""
    task, paths = recipe["task"], sorted(recipe["images"])
    if other is not None and (other["task"] != task or _folds(other) != _folds(recipe)):
        raise FractureAppError("the two recipes were not validated on the same folds: train both on one fold set")
    labels = [recipe["images"][path][0] for path in paths]
    groups = [recipe["images"][path][1] for path in paths]
    predictions = [np.array([chosen["images"][path][2] for path in paths]) for chosen in filter(None, (recipe, other))]
    intervals = group_bootstrap(partial(validation_score, task), labels, groups, *predictions)
    result = {"task": task, "metric": VALIDATION_METRIC[task][1], "images": len(paths), "groups": len(set(groups)),
              "metric_key": VALIDATION_METRIC[task][0],
              "recipes": [{"runs": chosen["runs"], "score": validation_score(task, labels, p), "interval": interval,
                           **_also_pooled(task, labels, groups, p),
                           **{key: chosen[key] for key in ("recipe", "first_fold_command", "hardware")
                              if key in chosen}}
                          for chosen, p, interval in zip(filter(None, (recipe, other)), predictions, intervals)]}
    if other is not None and recipe.get("recipe") and other.get("recipe"):
        result["recipes"][1]["differs"] = differences(other["recipe"], recipe["recipe"])
    if other is not None:
        result["difference"] = {"score": result["recipes"][0]["score"] - result["recipes"][1]["score"],
                                "interval": intervals[2]}
    return result


def _also_pooled(task: str, labels, groups, answers) -> dict:
    also = ALSO_POOLED.get(task, {})
    return {"also": {name: {"score": score(np.asarray(labels), answers),
                            "interval": group_bootstrap(score, labels, groups, answers)[0]}
                     for name, score in also.items()}} if also else {}


def _folds(recipe: dict) -> set[frozenset]:
    """The images each run validated on, as a set of folds (runs may be given in any order)."""
    folds = defaultdict(set)
    for path, (_, _, _, fold) in recipe["images"].items():
        folds[fold].add(path)
    return {frozenset(images) for images in folds.values()}


def report(result: dict) -> str:
    lines = [f"out-of-fold {result['metric']} on {result['images']} images ({result['groups']} groups of copies):"]
    for name, recipe in zip(("--runs", "--against"), result["recipes"]):
        low, high = recipe["interval"]
        lines.append(f"  {name:<10}{recipe['score']:.3f} [{low:.3f}–{high:.3f}] over {recipe['runs']} folds"
                     + "".join(f"; {figure} {also['score']:.3f} [{also['interval'][0]:.3f}–{also['interval'][1]:.3f}]"
                               for figure, also in recipe.get("also", {}).items()))
    if "difference" in result:
        low, high = result["difference"]["interval"]
        lines.append(f"  difference {result['difference']['score']:+.3f} [{low:+.3f} – {high:+.3f}]")
    return "\n".join(lines)


def write_into_card(model_path: Path, recipe: dict, result: dict, argv: list[str] | None) -> None:
    """Record the pooled figures in a model's card, with each setting in which the fold runs were trained otherwise
    than the model. Refused where they cannot speak for it: another task, architecture or input size, or folds not
    dealt from the model's own split file."""
    from fracture_app.models import artifact_paths, read_card
    from training.datasets import split_assignments

    card = read_card(model_path)
    unlike = differences(recipe["model"], model_kind(card.data))
    if unlike:
        raise FractureAppError(f"the runs are another model than {model_path.name}: {'; '.join(map(said, unlike))}")
    mine, theirs = (split_assignments(path) for path in (artifact_paths(model_path.parent, card.task)["manifest"],
                                                         recipe["split_file"]))
    if mine.keys() != theirs.keys() or {p for p, s in mine.items() if s == "test"} != {
            p for p, s in theirs.items() if s == "test"}:
        raise FractureAppError(f"the folds were not dealt from {model_path.name}'s split file (other images, or "
                               "another test split)")
    own = recipe_options(card.data)
    differs = differences(recipe["recipe"], own) if recipe["recipe"] and own else None  # None: not known
    if differs is not None and (card.data.get("test_time_flip") or {}).get("used"):
        differs.append({"option": MIRROR, "theirs": "each image alone", "instead_of": "averaged with its mirror"})
    update_card(model_path, {"cross_validation": {
        **result, "folds": result["recipes"][0]["runs"], "model_version": card.version,
        "differs_from_this_file": differs, "command": command_line("training.crossval", argv),
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.crossval", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    folds = commands.add_parser("folds", help="write one split file per fold")
    folds.add_argument("--split", type=Path, required=True, help="a split file (its test rows are kept as they are)")
    folds.add_argument("--folds", type=int, default=5)
    folds.add_argument("--out", type=Path, required=True, help="folder for fold1/, fold2/, … (not models/)")
    scoring = commands.add_parser("score", help="pool the runs' out-of-fold predictions into one figure")
    scoring.add_argument("--data", type=Path, required=True, help="the data folder the runs were trained on")
    scoring.add_argument("--runs", type=Path, nargs="+", required=True, help="one run folder (or model file) per fold")
    scoring.add_argument("--against", type=Path, nargs="+", help="another recipe's runs on the same folds")
    scoring.add_argument("--write-card", type=Path, metavar="MODEL",
                         help="record the figures in this model's card (the folds must come from its split file)")
    args = parser.parse_args(argv)
    try:
        if args.command == "folds" and args.out.resolve() == config.SHIPPED_MODELS_DIR.resolve():
            raise FractureAppError("--out must be a folder of its own, not models/")
        if args.command == "folds":
            for path in write_folds(args.split, args.folds, args.out):
                print(path)
            return 0
        recipe = out_of_fold(args.runs, args.data)
        result = compare(recipe, out_of_fold(args.against, args.data) if args.against else None)
        if args.write_card:
            write_into_card(args.write_card, recipe, result, argv)
    except FractureAppError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {error.strerror or error}: {error.filename or ''}", file=sys.stderr)
        return 2
    except KeyError as error:
        print(f"error: a split file without the column {error}: give one that training wrote", file=sys.stderr)
        return 2
    print(report(result))
    if getattr(args, "write_card", None):
        print(f"written into {args.write_card}'s card under cross_validation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
