"""Recompute a model card's metrics: on the stored test split, or on a new data set.

    python -m training.evaluate --model models/fracture_binary.keras --data ../shared/data/fracatlas
    python -m training.evaluate --model models/fracture_type.keras --data my_xrays/ --split all
    python -m training.evaluate --model models/fracture_binary.keras --data ../shared/data/fracatlas --choose-gradcam-layer
    python -m training.evaluate --model models/fracture_binary.keras --data ../shared/data/fracatlas --redo-validation-choices
    python -m training.evaluate --model models/fracture_binary.keras --data ../shared/data/fracatlas --write-subgroups

Images take exactly the app's road (read_image → prepare → calibrated model), so a card's figures are
what a user of the app gets.
"""

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fracture_app import config
from fracture_app.data_layout import has_fracture_boxes
from fracture_app.errors import FractureAppError
from fracture_app.imaging import read_image
from fracture_app.models import artifact_paths, sha256_of
from fracture_app.preprocess import prepare_batch
from training import datasets, metrics
from training.card import command_line, limitations, update_card, without_nan
from training.localisation import choose_and_score, pointing_game
from training.subgroups import SHORTCUT_OPENING, image_flags, print_subgroups, shortcut_limitations, subgroup_metrics

BATCH_SIZE = 32
HEADLINE = {config.BINARY_TASK: ("auroc", "accuracy", "sensitivity", "specificity", "precision", "f1", "ece"),
            config.TYPE_TASK: ("top1", "top3", "macro_f1", "ece")}


def split_samples(model_path: Path, data_dir: Path, split: str, task: str, classes) -> list[datasets.Sample]:
    """The stored split's rows (from the manifest beside the model), or every image of a new data set."""
    if split != "all":
        manifest = artifact_paths(model_path.parent, task)["manifest"]
        if not manifest.is_file():
            raise FractureAppError(f"no split manifest beside the model ({manifest.name}); use --split all")
        samples = [s for s in datasets.read_manifest(manifest, data_dir) if s.split == split]
        missing = [s.path for s in samples if not s.path.is_file()]
        if missing:
            raise FractureAppError(f"{len(missing)} {split} images missing under {data_dir} (first: {missing[0]}); "
                                   "is --data the folder the model was trained on? Use --split all for a new data set.")
        return samples
    found = datasets.discover(data_dir, task)
    unknown = set(found.classes) - set(classes)
    if unknown:
        raise FractureAppError(f"classes {sorted(unknown)} are not among the model's {list(classes)}")
    return [datasets.Sample(s.path, list(classes).index(found.classes[s.label]), split="all") for s in found.samples]


def predict_files(model, samples) -> tuple[list[datasets.Sample], np.ndarray, list[str]]:
    """The readable samples and their probabilities; unreadable ones are listed, not counted."""
    kept, outputs, skipped, pending, pending_samples = [], [], [], [], []

    def flush():
        if pending:
            outputs.append(model.probabilities(prepare_batch(pending, model.spec)))
            kept.extend(pending_samples)
            pending.clear()
            pending_samples.clear()

    for sample in samples:
        try:
            pending.append(read_image(sample.path).pixels)
            pending_samples.append(sample)
        except FractureAppError as error:
            skipped.append(f"{sample.path}: {error}")
        if len(pending) == BATCH_SIZE:
            flush()
    flush()
    return kept, np.concatenate(outputs) if outputs else np.zeros(0), skipped


def measure(model, samples, probabilities, data_dir: Path) -> dict:
    """The card's figures for these samples; for the binary model on FracAtlas, its subgroups' too."""
    labels = np.array([s.label for s in samples], int)
    if model.task != config.BINARY_TASK:
        return metrics.multiclass_metrics(labels, probabilities, model.classes)
    result = metrics.binary_metrics(labels, probabilities, model.card.threshold)
    flags = image_flags(samples, data_dir)
    if flags is not None:
        result["subgroups"] = subgroup_metrics(labels, probabilities, model.card.threshold, flags)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a .keras file with its model card beside it")
    parser.add_argument("--data", type=Path, required=True, help="the data folder (the one trained on, or a new one)")
    parser.add_argument("--split", default="test", choices=("test", "val", "train", "all"),
                        help="a stored split from the model's manifest (default test), or all images of --data")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.add_argument("--choose-gradcam-layer", action="store_true",
                        help="binary model on FracAtlas: pick the heat-map layer and its blur by the validation pointing game, "
                             "then write it and the test pointing game into the model card")
    parser.add_argument("--redo-validation-choices", action="store_true",
                        help="redo, with this version of the code, every choice training makes on the validation "
                             "split (test-time flip, calibration, thresholds, Grad-CAM layer and blur); rewrite the card's "
                             "figures and test plots. The model file is not changed.")
    parser.add_argument("--write-subgroups", action="store_true",
                        help="binary model on FracAtlas: write the test split's figures within each body region, "
                             "hardware and view into the model card (training and --redo-validation-choices do it too)")
    args = parser.parse_args(argv)
    from fracture_app.models import load_model

    try:
        model = load_model(args.model)
        if model.task not in config.TASKS:
            raise FractureAppError(f"{args.model.name} is the {config.TASK_NAMES[model.task]}: measure it with "
                                   f"`{config.TRAINING_COMMANDS[model.task]} --measure {args.model} --data D "
                                   "--split models/fracture_binary_split.csv`")
        samples = split_samples(args.model, args.data, args.split, model.task, model.classes)
        boxed = model.task == config.BINARY_TASK and has_fracture_boxes(args.data)
        if args.redo_validation_choices:
            if args.split == "all":
                raise FractureAppError("--redo-validation-choices needs the stored splits; leave out --split all")
            command = command_line("training.evaluate", argv)
            model = redo_validation_choices(args.model, model, args.data, boxed, command)
        layer, smoothing, chosen_game = model.card.gradcam_layer, model.card.gradcam_smoothing, None
        if args.choose_gradcam_layer:
            if not boxed:
                raise FractureAppError("--choose-gradcam-layer needs the binary model and FracAtlas fracture boxes")
            layer, smoothing, chosen_game = write_gradcam_choice(args.model, model, args.data)
        kept, probabilities, skipped = predict_files(model, samples)
        result = measure(model, kept, probabilities, args.data)
        if args.write_subgroups:
            write_subgroups(args.model, model.card.data, result, args.split, args.data)
    except (FractureAppError, datasets.DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if boxed:
        positives = [s for s in samples if s.label == 1]
        result["pointing_game"] = (chosen_game if chosen_game and args.split == "test" else
                                   pointing_game(model.keras_model, model.spec, args.data, positives, layer,
                                                 model.card.flip_average, smoothing))
    result["skipped"] = skipped
    if args.json:
        print(json.dumps(without_nan({k: v for k, v in result.items() if k != "roc"}), indent=2))
    else:
        print_comparison(result, model.card.data.get("metrics", {}).get(args.split), model.task, args.split)
    return 0


def write_subgroups(model_path: Path, card: dict, result: dict, split: str, data_dir: Path) -> None:
    """The test subgroups into the card, with the limitations the data set's flags call for (replacing any
    written before)."""
    if split != "test" or "subgroups" not in result:
        raise FractureAppError("--write-subgroups needs the binary model's test split and FracAtlas' dataset.csv in --data")
    kept = [item for item in card.get("limitations", []) if not item.startswith(SHORTCUT_OPENING)]
    update_card(model_path, {"limitations": kept + shortcut_limitations(data_dir)},
                test_metrics={"subgroups": result["subgroups"]})


def write_gradcam_choice(model_path: Path, model, data_dir: Path) -> tuple[str | None, float, dict]:
    """Choose the Grad-CAM layer and its smoothing on the validation split; record them and the test pointing
    game in the card.

    Returns the chosen layer, the smoothing and that test pointing game."""
    rows = datasets.read_manifest(artifact_paths(model_path.parent, model.task)["manifest"], data_dir)
    choice, game = choose_and_score(model.keras_model, model.spec, data_dir, rows, model.card.flip_average)
    update_card(model_path, {"gradcam": choice}, test_metrics={"pointing_game": game})
    print(f"Grad-CAM layer {choice['layer'] or 'last'} (validation hit rates {choice['validation_hit_rates']}), "
          f"smoothing {choice['smoothing_cells']} cells (validation hit rates {choice['validation_hit_rates_by_smoothing']})")
    return choice["layer"], choice["smoothing_cells"], game


def redo_validation_choices(model_path: Path, model, data_dir: Path, boxed: bool, command: str):
    """Training's choices on validation, made again on the stored splits; returns the model with its new card."""
    from fracture_app.models import load_model
    from training import plots
    from training.validation_choices import evaluate_splits

    splits = {split: split_samples(model_path, data_dir, split, model.task, model.classes) for split in ("val", "test")}
    arrays = {split: (prepare_batch([read_image(s.path).pixels for s in rows], model.spec),
                      np.array([s.label for s in rows], int)) for split, rows in splits.items()}
    evaluation = evaluate_splits(model.keras_model, arrays, model.task, model.classes, image_flags(splits["test"], data_dir))
    if boxed:
        evaluation["gradcam"], evaluation["metrics"]["test"]["pointing_game"] = choose_and_score(
            model.keras_model, model.spec, data_dir, splits["val"] + splits["test"], evaluation["test_time_flip"]["used"])
    now = datetime.now(timezone.utc)
    # The same file now answers differently (new calibration, thresholds, perhaps the mirror): a new version.
    evaluation["version"] = f"{model.card.version.split('+')[0]}+choices-{now:%Y.%m.%d-%H%M%S}"
    evaluation["validation_choices_redone"] = {"command": command, "at": now.isoformat(timespec="seconds"),
                                               "version_before": model.card.version}
    evaluation.update(split_size_fields(model.card.data, model_path, data_dir))
    rounded = model.card.data.get("weights_rounded")
    if isinstance(rounded, dict):  # the figures now describe the rounded weights this file holds, where all were redone
        if model.task == config.TYPE_TASK or boxed:
            evaluation["weights_rounded"] = {**rounded, "measured_again": evaluation["version"]}
        else:
            print("the Grad-CAM choice needs the FracAtlas fracture boxes in --data: the card still says its "
                  "figures were measured before the weights were rounded", file=sys.stderr)
    card = update_card(model_path, evaluation)
    if card.get("compared_runs"):  # the shipped row quotes the card's own figures, which just changed
        from training.compare import summary

        rows = [{**summary(card, row["run"]), "shipped": True} if row.get("shipped") else row
                for row in card["compared_runs"]]
        card = update_card(model_path, {"compared_runs": rows})
    paths = artifact_paths(model_path.parent, model.task)
    kinds = ("confusion", "roc") if model.task == config.BINARY_TASK else ("confusion",)
    plots.test_split_plots(card, {kind: paths[kind] for kind in kinds})
    flip = evaluation["test_time_flip"]
    scores = flip["validation"]
    print(f"test-time flip {'used' if flip['used'] else 'not used'}: {flip['chosen_on']} {scores['image_alone']:.4f} "
          f"for the image alone, {scores['averaged_with_mirror']:.4f} averaged with its mirror", file=sys.stderr)
    return load_model(model_path)


def split_size_fields(card: dict, model_path: Path, data_dir: Path) -> dict:
    """The card's split sizes and the limitation that quotes them, from the split file as it stands now.

    Only where they differ: a split file mended after training (training.mend_split: copies across splits found
    later, held-out images moved to train) changes what the card must say the model was validated and tested on,
    not what it was trained on; the sizes at training are kept (`trained_split_sizes`), and the file's hash is
    that of the mended file.
    """
    manifest = artifact_paths(model_path.parent, card["task"])["manifest"]
    sizes = datasets.split_sizes(datasets.read_manifest(manifest, data_dir))
    if sizes == card["data"].get("split_sizes"):
        return {}
    trained = card["data"].get("trained_split_sizes", card["data"].get("split_sizes", sizes))
    first = limitations(card["task"], card["weights_init"], {**sizes, "train": trained["train"]},
                        card.get("weights_init_sha256"))[0]
    moved = sizes["train"] - trained["train"]
    if moved > 0:
        first += (f" After training, {moved} validation or test images were found to be copies of images in another "
                  "split (or grouped with such copies): they were moved to the training split and every figure was "
                  "measured again without them. The model never trained on them.")
    data = {**card["data"], "split_sizes": sizes, "trained_split_sizes": trained}
    if isinstance(data.get("split_file"), dict):
        recorded = data["split_file"]
        data["split_file"] = {**recorded, "sha256": sha256_of(manifest),
                              "sha256_when_trained": recorded.get("sha256_when_trained", recorded.get("sha256"))}
    return {"data": data, "limitations": [first, *card["limitations"][1:]]}


def print_comparison(result: dict, card_metrics: dict | None, task: str, split: str) -> None:
    print(f"{'metric':<14}{'measured':>10}{'card':>10}")
    for key in HEADLINE[task]:
        stored = (card_metrics or {}).get(key)
        card_value = "—" if stored is None else f"{stored:.4f}"  # None: absent, or undefined on that split
        print(f"{key:<14}{result[key]:>10.4f}{card_value:>10}")
    print(f"images: {result['n']} ({split} split), skipped: {len(result['skipped'])}")
    if "subgroups" in result:
        print_subgroups(result["subgroups"], (card_metrics or {}).get("subgroups"))
    if "pointing_game" in result:
        game = result["pointing_game"]
        rate = "—" if game["hit_rate"] is None else f"{game['hit_rate']:.3f}"
        print(f"pointing game: {game['hits']}/{game['images']} peaks inside a fracture box ({rate}), "
              f"layer {game['layer']}, smoothing {game.get('smoothing_cells', 0.0)} cells")


if __name__ == "__main__":
    sys.exit(main())
