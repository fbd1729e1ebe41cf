"""Grouped cross-validation: folds that validate every image outside test once, and pooled out-of-fold figures."""

import csv
import json
import shutil
from collections import defaultdict

import numpy as np
import pytest

from conftest import BONE_BREAK_FIXTURES, TINY_SIZE
from fracture_app import config
from fracture_app.errors import FractureAppError
from training import metrics
from training.crossval import compare, fold_rows, main, recipe_options, said, top_k_share, write_folds


def split_rows(groups_per_class: int = 6, classes: int = 3) -> list[dict]:
    """Rows as a split file has them: groups of one to three copies, every fourth group in test."""
    rows, group = [], 0
    for label in range(classes):
        for index in range(groups_per_class):
            split = "test" if index % 4 == 3 else ("val" if index % 4 == 2 else "train")
            for copy in range(1 + group % 3):
                rows.append({"path": f"c{label}/g{group}_{copy}.jpg", "label": str(label), "class": f"c{label}",
                             "split": split, "group": str(group)})
            group += 1
    return rows


def test_folds_keep_test_and_validate_every_other_image_once_with_its_whole_group():
    rows = split_rows()
    folds = fold_rows(rows, 3)
    validated = defaultdict(int)
    for fold in folds:
        assert [row for row in fold if row["split"] == "test"] == [row for row in rows if row["split"] == "test"]
        assert [row["path"] for row in fold] == [row["path"] for row in rows], "same images, same order"
        splits_of_group = defaultdict(set)
        for row in fold:
            splits_of_group[row["group"]].add(row["split"])
            validated[row["path"]] += row["split"] == "val"
        assert all(len(splits) == 1 for splits in splits_of_group.values()), "a group of copies is never split"
        assert {row["label"] for row in fold if row["split"] == "val"} == {"0", "1", "2"}, "every class validated"
    assert all(validated[row["path"]] == (row["split"] != "test") for row in rows)


def test_too_few_groups_for_the_folds_are_refused():
    with pytest.raises(FractureAppError, match="too few"):
        fold_rows(split_rows(groups_per_class=1), 5)
    with pytest.raises(FractureAppError, match="at least 2"):
        fold_rows(split_rows(), 1)


def test_written_fold_files_keep_the_split_file_name_and_columns(tmp_path):
    source = tmp_path / "fracture_type_split.csv"
    rows = split_rows()
    with open(source, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    written = write_folds(source, 2, tmp_path / "folds")
    assert [path.relative_to(tmp_path).as_posix() for path in written] == [
        "folds/fold1/fracture_type_split.csv", "folds/fold2/fracture_type_split.csv"]
    with open(written[1], newline="") as handle:
        assert csv.DictReader(handle).fieldnames == list(rows[0])


def recipe(labels, groups, probabilities, runs: int = 2, shift: int = 0) -> dict:
    """Pooled answers as out_of_fold gives them; image i validated in run (i + shift) % runs."""
    return {"task": config.TYPE_TASK, "runs": runs,
            "images": {f"image{i}.jpg": (label, group, answer, (i + shift) % runs)
                       for i, (label, group, answer) in enumerate(zip(labels, groups, probabilities))}}


def test_pooled_figures_and_the_paired_difference():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    groups = np.arange(len(labels)) // 2
    right = np.eye(4)[labels] * 0.7 + 0.1
    guessing = rng.dirichlet(np.ones(4), len(labels))
    result = compare(recipe(labels, groups, right), recipe(labels, groups, guessing))
    assert result["images"] == 120 and result["groups"] == 60 and result["metric"] == "macro-F1"
    assert result["recipes"][0]["score"] == 1.0
    assert result["recipes"][1]["score"] == pytest.approx(metrics.macro_f1(labels, guessing))
    low, high = result["difference"]["interval"]
    assert 0 < low < result["difference"]["score"] < high <= 1


def test_recipes_validated_on_other_folds_are_not_compared():
    labels, groups = np.arange(6) % 3, np.arange(6)
    answers = np.eye(3)[labels]
    assert compare(recipe(labels, groups, answers), recipe(labels, groups, answers, shift=1))["difference"]["score"] == 0, \
        "the same folds, numbered otherwise"
    with pytest.raises(FractureAppError, match="same folds"):
        compare(recipe(labels, groups, answers), recipe(labels[:5], groups[:5], answers[:5]))
    with pytest.raises(FractureAppError, match="same folds"):
        compare(recipe(labels, groups, answers), recipe(labels, groups, answers, runs=3))


def test_the_command_scores_runs_trained_on_the_folds(tiny_models_dir, tmp_path, capsys):
    from training.train import main as train

    folds = write_folds(tiny_models_dir / "fracture_type_split.csv", 2, tmp_path / "folds")
    runs = []
    for number, split_file in enumerate(folds, start=1):
        runs.append(tmp_path / f"run{number}")
        assert train(["--task", "type", "--data", str(BONE_BREAK_FIXTURES), "--arch", "mobilenetv2", "--weights",
                      "none", "--img-size",
                      str(TINY_SIZE), "--epochs", "2", "--batch-size", "8", "--split", str(split_file),
                      "--keep-last-epoch", "--out", str(runs[-1]), "--quiet"]) == 0
    assert json.loads((runs[0] / "fracture_type.json").read_text())["training"]["best_epoch"] == 2
    capsys.readouterr()
    assert main(["score", "--data", str(BONE_BREAK_FIXTURES), "--runs", *map(str, runs)]) == 0
    outside_test = sum(row["split"] != "test" for row in csv.DictReader(open(folds[0], newline="")))
    printed = capsys.readouterr().out
    assert f"out-of-fold macro-F1 on {outside_test} images" in printed and "over 2 folds" in printed
    shipped = tmp_path / "models"  # the tiny type model (mobilenetv2, 1 epoch) whose split the folds came from
    shutil.copytree(tiny_models_dir, shipped)
    model_file = shipped / config.MODEL_FILES[config.TYPE_TASK]
    card_file = model_file.with_suffix(".json")
    assert main(["score", "--data", str(BONE_BREAK_FIXTURES), "--runs", *map(str, runs),
                 "--write-card", str(model_file)]) == 0
    recorded = json.loads(card_file.read_text())["cross_validation"]
    assert f"  --runs    {recorded['recipes'][0]['score']:.3f} [" in capsys.readouterr().out
    assert recorded["images"] == outside_test and recorded["folds"] == 2 and recorded["metric_key"] == "macro_f1"
    assert recorded["recipes"][0]["recipe"]["--img-size"] == str(TINY_SIZE)
    assert {"--epochs 2 instead of 1", "--keep-last-epoch yes instead of no"} <= set(
        map(said, recorded["differs_from_this_file"]))
    assert set(recorded["recipes"][0]["also"]) == {"top1", "top3"}
    assert "--write-card" in recorded["command"]
    assert recorded["model_version"] == json.loads(card_file.read_text())["version"]

    def refused(model, message):
        before = model.with_suffix(".json").read_text()
        assert main(["score", "--data", str(BONE_BREAK_FIXTURES), "--runs", *map(str, runs),
                     "--write-card", str(model)]) == 2
        assert message in capsys.readouterr().err
        assert model.with_suffix(".json").read_text() == before, "a refused write leaves the card as it was"

    refused(shipped / config.MODEL_FILES[config.BINARY_TASK], "task type instead of binary")
    card = json.loads(card_file.read_text())
    card_file.write_text(json.dumps({**card, "architecture": "custom_cnn"}))
    refused(model_file, "architecture mobilenetv2 instead of custom_cnn")
    card_file.write_text(json.dumps(card))
    split_file = shipped / "fracture_type_split.csv"
    rows = list(csv.DictReader(open(split_file, newline="")))
    for row in rows:
        row["split"] = "val" if row["split"] == "test" else row["split"]
    with open(split_file, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    refused(model_file, "were not dealt from")
    for runs_given, refusal in (([runs[0], runs[0]], "validated in two runs"), ([runs[0]], "give one run for every fold"),
                                ([tiny_models_dir / "fracture_type.keras", runs[1]], "--keep-last-epoch")):
        assert main(["score", "--data", str(BONE_BREAK_FIXTURES), "--runs", *map(str, runs_given)]) == 2
        assert refusal in capsys.readouterr().err


def test_the_command_says_in_one_line_what_is_wrong_with_its_input(tmp_path, capsys):
    assert main(["folds", "--split", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "folds")]) == 2
    assert capsys.readouterr().err.startswith("error: No such file")
    (tmp_path / "odd.csv").write_text("path,label\na.jpg,0\n")
    assert main(["folds", "--split", str(tmp_path / "odd.csv"), "--out", str(tmp_path / "folds")]) == 2
    assert "without the column 'split'" in capsys.readouterr().err
    assert main(["folds", "--split", str(tmp_path / "odd.csv"), "--out", str(config.SHIPPED_MODELS_DIR)]) == 2
    assert "not models/" in capsys.readouterr().err


def test_classes_with_fewer_groups_than_folds_spread_over_all_folds():
    folds = fold_rows(split_rows(groups_per_class=3, classes=5), 5)
    assert all(any(row["split"] == "val" for row in fold) for fold in folds)


def test_a_recipe_is_every_setting_of_the_training_command_defaults_included():
    card = {"weights_init_sha256": "2ad48155f225" + "0" * 52, "training": {
        "command": "python -m training.train --task type --data 'my data/x' --split s.csv --arch custom_cnn "
                   "--img-size 160 --weights runs/member0.keras --learning-rate 3e-4 --seed -2 --keep-last-epoch "
                   "--time-limit 6 --out runs/a --quiet", "epochs_run": 120, "keras_backend": "jax"}}
    recipe = recipe_options(card)
    assert recipe["--weights"] == "sha256 2ad48155f225…", "the start by its digest, not its reused path"
    assert (recipe["--learning-rate"], recipe["--seed"], recipe["--keep-last-epoch"]) == ("0.0003", "-2", "yes")
    assert recipe["--float32"] == "no" and recipe["--epochs"].isdigit(), "settings left out are there, as defaults"
    assert not {"--data", "--split", "--out", "--time-limit", "--quiet"} & set(recipe), "where and how long: not how"
    assert (recipe["epochs run"], recipe["backend"]) == ("120", "jax")
    same_by_default = {**card, "training": {**card["training"], "command": card["training"]["command"].replace(
        "--arch custom_cnn", "--arch custom_cnn --batch-size 32")}}
    assert recipe_options(same_by_default) == recipe, "giving a default is not a difference"
    without_rate = {**card, "training": {**card["training"], "command": card["training"]["command"].replace(
        "--learning-rate 3e-4", "")}}
    with_default_rate = {**card, "training": {**card["training"], "command": card["training"]["command"].replace(
        "--learning-rate 3e-4", "--learning-rate 1e-3")}}
    assert recipe_options(without_rate) == recipe_options(with_default_rate), "the default rate, given or not"
    assert recipe_options({"training": {"command": "python -m training.ensemble --members a b --out c"}}) == {}
    with pytest.raises(FractureAppError, match="cannot be read"):
        recipe_options({"training": {"command": "python -m training.train --data 'unclosed"}})


def test_top_k_shares_count_the_label_among_the_k_highest_answers():
    answers = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5]])
    labels = np.array([1, 2, 0])
    assert top_k_share(1)(labels, answers) == pytest.approx(1 / 3)
    assert top_k_share(2)(labels, answers) == pytest.approx(2 / 3)
    assert top_k_share(3)(labels, answers) == 1
