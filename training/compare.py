"""Record in a shipped model's card the other runs tried for the same task, side by side.

    python -m training.compare --model models/fracture_type.keras runs/*/fracture_type.json
    python -m training.compare --model models/fracture_binary.keras --earlier runs/shipped_before/fracture_binary.json runs/new/fracture_binary.json
    python -m training.compare --model models/fracture_binary.keras --keep-rows runs/another_try/fracture_binary.json

Every figure is copied from a run's own card, where `training.train` measured it on the same grouped split;
runs on another split are refused, since their figures would not be comparable. Validation is the column
that chose what ships; the test columns are for the reader.
"""

import argparse
import json
import re
import sys
from pathlib import Path

from fracture_app import config
from fracture_app.models import artifact_paths, card_path_for
from training.architectures import trains_in_two_phases
from training.card import update_card
from training.datasets import split_assignments
from training.validation_choices import VALIDATION_METRIC

TEST_FIGURES = {config.BINARY_TASK: ("auroc", "sensitivity", "specificity"),
                config.TYPE_TASK: ("top1", "top3", "macro_f1")}
SAME_SPLIT_KEYS = ("source", "images", "split_seed", "split_sizes")
EARLIER_LABEL = "shipped before"
OLDER_RELEASE = re.compile(r"shipped (\d+) releases before")
# Comparisons on a split no longer in use: not comparable with compared_runs, kept as the earlier card had them.
EARLIER_SPLIT_ROWS = "compared_runs_earlier_split"


class NotComparable(ValueError):
    pass


def summary(card: dict, label: str) -> dict:
    """One row: how the run was made and what it measured."""
    task, training, val, test = card["task"], card["training"], card["metrics"]["val"], card["metrics"]["test"]
    return {
        "run": label,
        "architecture": card["architecture"],
        "weights_init": card["weights_init"],
        # The same path names a different model after each release; only the digest says which one it was.
        "weights_init_sha256": card.get("weights_init_sha256"),
        "input_size": card["preprocessing"]["size"],
        "mirror_averaged": card["test_time_flip"]["used"] if "test_time_flip" in card else None,  # None: not tried
        "weight_average": training.get("weight_average_momentum"),  # None: the last step's weights
        "augmentation": training.get("augmentation", {}).get("method"),  # None: not recorded (before session 12)
        "lr_schedule": training.get("lr_schedule"),  # None: not recorded (before session 14)
        "epochs_run": training["epochs_run"],
        "minutes": round(training["seconds"] / 60, 1) if training.get("seconds") is not None else None,
        "hardware": training["hardware"],
        "command": training["command"],
        f"val_{VALIDATION_METRIC[task][0]}": val[VALIDATION_METRIC[task][0]],
        **{f"test_{key}": test[key] for key in TEST_FIGURES[task]},
        **(pointing_game(card) if task == config.BINARY_TASK else {}),
        **fine_tune_share(card),
        "weights_rounded_to": rounded_to(card),
    }


def fine_tune_share(card: dict) -> dict:
    """The share of a pretrained backbone's layers that learnt after the head-only epochs; None where there was no
    pretrained backbone; left out for runs from before cards recorded it (they trained the top 30%)."""
    share = card["training"].get("fine_tune_layer_share")
    pretrained = trains_in_two_phases(card["architecture"], card["weights_init"])
    return {} if share is None and pretrained else {"fine_tune_share": share}


def rounded_to(card: dict) -> str | None:
    """The precision a run's weights were rounded to for the trip back from a GPU machine (training.transport)."""
    rounded = card.get("weights_rounded")
    return rounded.get("to") if isinstance(rounded, dict) else None


def pointing_game(card: dict) -> dict:
    """The Grad-CAM pointing game's hit rates on validation (the chosen layer's, with the chosen blur) and on test,
    and that blur; None where the run did not measure them (on JAX, until `training.evaluate
    --redo-validation-choices` does), and a blur of None where the card predates the choice (it had none)."""
    test = (card["metrics"]["test"].get("pointing_game") or {}).get("hit_rate")
    if test is None:  # measured again without the boxes, a card keeps the earlier weights' layer choice: not theirs
        return {"val_pointing_game": None, "test_pointing_game": None, "pointing_game_smoothing": None}
    gradcam = card.get("gradcam") or {}
    smoothing = gradcam.get("smoothing_cells")
    validation = (gradcam.get("validation_hit_rates_by_smoothing") or {}).get(str(float(smoothing))) if smoothing else (
        gradcam.get("validation_hit_rates") or {}).get(gradcam.get("layer"))
    return {"val_pointing_game": validation, "test_pointing_game": test, "pointing_game_smoothing": smoothing}


def compare(shipped: dict, others: dict[str, dict]) -> list[dict]:
    """Rows for the shipped card and each other card, after checking they share task and split."""
    for label, card in others.items():
        if card["task"] != shipped["task"]:
            raise NotComparable(f"{label} is a {card['task']} model, the shipped one a {shipped['task']} model")
        # A split file, not a seed, made the split of a card that names one: check_split_files compares them.
        keys = [key for key in SAME_SPLIT_KEYS
                if key != "split_seed" or not (card["data"].get("split_file") or shipped["data"].get("split_file"))]
        differing = [key for key in keys if card["data"].get(key) != shipped["data"].get(key)]
        if differing:
            raise NotComparable(f"{label} was split differently ({', '.join(differing)} differ)")
    return [{**summary(shipped, "shipped"), "shipped": True}] + [
        {**summary(card, label), "shipped": False} for label, card in others.items()]


def earlier_rows(earlier: dict, taken: set[str], aging: bool = False) -> list[dict]:
    """The runs a card had compared, as it recorded them (their run folders may be gone), less those in `taken`.

    aging: the card is the one shipped before, so its own "shipped before" row is a release older now."""
    rows = [{**row, "run": _one_release_older(row["run"]) if aging else row["run"], "shipped": False}
            for row in earlier.get("compared_runs", []) if not row.get("shipped")]
    return [row for row in rows if row["run"] not in taken]


def _one_release_older(run: str) -> str:
    """"shipped before" → "shipped 2 releases before" → "shipped 3 releases before"; other runs keep their name."""
    if run == EARLIER_LABEL:
        return "shipped 2 releases before"
    match = OLDER_RELEASE.fullmatch(run)
    return f"shipped {int(match.group(1)) + 1} releases before" if match else run


def check_split_files(model_path: Path, card_paths: list[Path], task: str) -> None:
    """Equal split sizes are not the same split: where a run kept its split file, each image's split must match."""
    def assignments(manifest: Path) -> dict[Path, str] | None:
        if not manifest.is_file():
            return None  # runs from before split files were kept: the card's keys are all there is
        return split_assignments(manifest)

    shipped = assignments(artifact_paths(model_path.parent, task)["manifest"])
    for path in card_paths:
        theirs = assignments(artifact_paths(path.parent, task)["manifest"])
        if shipped is not None and theirs is not None and theirs != shipped:
            raise NotComparable(f"{path.parent.name} put other images in its splits (its split file differs)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the shipped .keras model whose card is updated")
    parser.add_argument("cards", nargs="*", type=Path, help="model cards (.json) of the other runs")
    parser.add_argument("--keep-rows", action="store_true",
                        help="keep the runs the card already compares (its own row is made again) and add these")
    parser.add_argument("--earlier", type=Path,
                        help="the card of the model shipped before this one, saved aside before it was replaced: "
                             "its own figures and the runs it had compared are kept, folders gone or not")
    args = parser.parse_args(argv)
    if not args.cards and not args.earlier:
        parser.error("name at least one run's card, or --earlier")
    try:
        shipped = json.loads(card_path_for(args.model).read_text(encoding="utf-8"))
        if shipped.get("task") not in config.TASKS:
            raise NotComparable(f"{args.model.name} is not a fracture or fracture-type model: its runs are compared "
                                "in training/HISTORY.md")
        labels = [path.parent.name for path in args.cards]
        if len(set(labels)) < len(labels) or EARLIER_LABEL in labels or any(map(OLDER_RELEASE.fullmatch, labels)):
            raise NotComparable("two cards come from the same folder, or a folder takes the name of a model "
                                "shipped before; each run needs a folder of its own")
        others = {label: json.loads(path.read_text(encoding="utf-8")) for label, path in zip(labels, args.cards)}
        earlier = json.loads(args.earlier.read_text(encoding="utf-8")) if args.earlier else None
        if earlier is not None:
            others[EARLIER_LABEL] = earlier
        rows = compare(shipped, others)
        if earlier is not None:
            rows += earlier_rows(earlier, {row["run"] for row in rows}, aging=True)
        if args.keep_rows:
            rows += earlier_rows(shipped, {row["run"] for row in rows})
        check_split_files(args.model, args.cards + ([args.earlier] if args.earlier else []), shipped["task"])
    except (OSError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    kept = {EARLIER_SPLIT_ROWS: earlier[EARLIER_SPLIT_ROWS]} if earlier and EARLIER_SPLIT_ROWS in earlier else {}
    update_card(args.model, {"compared_runs": rows, **kept})
    score = f"val_{VALIDATION_METRIC[shipped['task']][0]}"
    run_width = max(len(row["run"]) for row in rows) + 2
    arch_width = max(len(row["architecture"]) for row in rows) + 2
    for row in rows:
        value = "—" if row[score] is None else f"{row[score]:.3f}"
        print(f"{row['run']:<{run_width}}{row['architecture']:<{arch_width}}{str(row['weights_init'])[:40]:<42}{score} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
