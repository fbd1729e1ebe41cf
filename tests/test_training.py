"""`python -m training.train` end to end at a tiny size on real X-rays, then evaluate and export the result."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fracture_app import config
from fracture_app.models import load_model, sha256_of
from training import augment, evaluate, export
from fracture_app.models import artifact_paths
from training.fit import ELAPSED_FILE
from training.localisation import SMOOTHING_CELLS
from training.subgroups import SHORTCUT_OPENING
from training.train import main as train

from conftest import BONE_BREAK_FIXTURES, FRACATLAS_FIXTURES, TINY_SIZE

ROOT = Path(__file__).resolve().parents[1]

BINARY_TEST_KEYS = {"auroc", "accuracy", "sensitivity", "specificity", "precision", "f1", "confusion_matrix",
                    "roc", "threshold", "ece", "pointing_game", "subgroups"}
TYPE_TEST_KEYS = {"top1", "top3", "macro_f1", "per_class", "confusion_matrix"}


def card(models_dir, task):
    return json.loads(artifact_paths(models_dir, task)["card"].read_text())


@pytest.mark.parametrize("task", config.TASKS)
def test_training_writes_a_loadable_model_with_a_complete_card(tiny_models_dir, task):
    paths = artifact_paths(tiny_models_dir, task)
    for kind, path in paths.items():
        if kind != "roc" or task == config.BINARY_TASK:
            assert path.is_file(), f"{kind} missing"
    written = card(tiny_models_dir, task)
    assert written["sha256"] == sha256_of(paths["model"])
    assert written["preprocessing"]["size"] == TINY_SIZE
    assert written["classes"] == list(config.CLASSES[task])
    for key in ("architecture", "weights_init", "data", "training", "calibration", "test_time_flip", "metrics",
                "intended_use"):
        assert key in written
    assert [row["target"].split(" ")[0] for row in written["targets"]][:2] in (["AUROC", "sensitivity"],
                                                                            ["top-1", "top-3"])
    assert written["data"]["attribution"] == config.DATA_ATTRIBUTION[written["data"]["source"]]
    assert sum(written["data"]["split_sizes"].values()) == written["data"]["images"]
    assert {"seconds", "hardware", "epochs_run", "best_epoch"} <= set(written["training"])
    assert written["training"]["augmentation"] == augment.description()
    keys = BINARY_TEST_KEYS if task == config.BINARY_TASK else TYPE_TEST_KEYS
    assert keys <= set(written["metrics"]["test"])
    if task == config.BINARY_TASK:
        assert set(written["operating_points"]) == {"high_sensitivity", "high_specificity"}
        assert written["gradcam"]["chosen_on"] == "validation pointing game"
        assert written["gradcam"]["layer"] in (None, *written["gradcam"]["validation_hit_rates"])
        assert written["metrics"]["test"]["pointing_game"]["layer"] == (written["gradcam"]["layer"] or "last")
        tried = written["gradcam"]["validation_hit_rates_by_smoothing"]
        if written["gradcam"]["layer"] is not None:  # the blur is chosen for the chosen layer, least first on a tie
            assert [float(sigma) for sigma in tried] == list(SMOOTHING_CELLS)
            chosen = written["gradcam"]["smoothing_cells"]
            assert tried[str(chosen)] == max(tried.values())
            assert all(rate < tried[str(chosen)] for sigma, rate in tried.items() if float(sigma) < chosen)
        assert written["metrics"]["test"]["pointing_game"]["smoothing_cells"] == written["gradcam"]["smoothing_cells"]
    model = load_model(paths["model"])
    assert model.task == task
    assert not list(tiny_models_dir.glob(".training-*")) and not list(tiny_models_dir.glob(".writing-*"))


def test_type_card_uses_the_bone_break_display_names(tiny_models_dir):
    assert sorted(card(tiny_models_dir, config.TYPE_TASK)["classes"]) == sorted(config.FRACTURE_TYPES)


def test_evaluate_reproduces_the_card(tiny_models_dir, capsys):
    model_path = artifact_paths(tiny_models_dir, config.BINARY_TASK)["model"]
    assert evaluate.main(["--model", str(model_path), "--data", str(FRACATLAS_FIXTURES), "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    stored = card(tiny_models_dir, config.BINARY_TASK)["metrics"]["test"]
    for key in ("auroc", "accuracy", "sensitivity", "specificity", "ece"):
        if stored[key] is None:  # undefined on a tiny split (one class only): undefined again
            assert measured[key] is None, key
        else:
            assert measured[key] == pytest.approx(stored[key], abs=0.01), key
    assert [(row["subgroup"], row["images"], row["fractured"]) for row in measured["subgroups"]] == \
        [(row["subgroup"], row["images"], row["fractured"]) for row in stored["subgroups"]]
    for again, first in zip(measured["subgroups"], stored["subgroups"]):
        for key in ("auroc", "sensitivity", "specificity"):
            if first[key] is None:  # undefined in a subgroup of one class
                assert again[key] is None, (first["subgroup"], key)
            else:
                assert again[key] == pytest.approx(first[key], abs=0.01), (first["subgroup"], key)


def test_writing_the_subgroups_into_a_card_changes_nothing_else(tiny_models_dir, tmp_path, capsys):
    copy = tmp_path / "models"
    shutil.copytree(tiny_models_dir, copy)
    paths = artifact_paths(copy, config.BINARY_TASK)
    before = card(copy, config.BINARY_TASK)
    del before["metrics"]["test"]["subgroups"]
    current = before["limitations"][-1]
    assert current.startswith(SHORTCUT_OPENING)  # the fixtures' two X-rays with hardware are both fractured
    before["limitations"][-1] = SHORTCUT_OPENING + "an older wording."
    paths["card"].write_text(json.dumps(before))
    assert evaluate.main(["--model", str(paths["model"]), "--data", str(FRACATLAS_FIXTURES), "--write-subgroups"]) == 0
    after = card(copy, config.BINARY_TASK)
    written = after["metrics"]["test"].pop("subgroups")
    assert after["limitations"] == [*before["limitations"][:-1], current]  # replaced, not added beside
    assert after == {**before, "targets": after["targets"], "limitations": after["limitations"]}
    assert after["sha256"] == sha256_of(paths["model"])
    test_images = [row for row in written if row["group"] == "orthopaedic hardware"]
    assert sum(row["images"] for row in test_images) == before["metrics"]["test"]["n"]  # present + absent: all
    printed = capsys.readouterr().out
    assert all(f"{row['group']}: {row['subgroup']}" in printed for row in written)


def test_subgroups_need_fracatlas_flags(tiny_models_dir, capsys):
    model_path = artifact_paths(tiny_models_dir, config.TYPE_TASK)["model"]
    assert evaluate.main(["--model", str(model_path), "--data", str(BONE_BREAK_FIXTURES), "--write-subgroups"]) == 2
    assert "--write-subgroups needs" in capsys.readouterr().err


def test_evaluate_on_a_new_data_set(tiny_models_dir, capsys):
    model_path = artifact_paths(tiny_models_dir, config.BINARY_TASK)["model"]
    assert evaluate.main(["--model", str(model_path), "--data", str(FRACATLAS_FIXTURES), "--split", "all"]) == 0
    assert "images: 12 (all split)" in capsys.readouterr().out


def test_a_folder_evaluate_does_not_recognise_is_one_line_of_error(tiny_models_dir, tmp_path, capsys):
    model_path = artifact_paths(tiny_models_dir, config.TYPE_TASK)["model"]
    (tmp_path / "empty").mkdir()
    assert evaluate.main(["--model", str(model_path), "--data", str(tmp_path / "empty"), "--split", "all"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_a_fracture_map_size_that_cannot_work_is_refused_before_any_image_is_read(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        train(["--task", "binary", "--data", str(FRACATLAS_FIXTURES), "--arch", "custom_cnn_map", "--img-size", "100",
               "--out", str(tmp_path / "run")])
    assert stopped.value.code == 2 and "multiple of 32" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_make_samples_replaces_only_the_samples_it_wrote_itself(tmp_path):
    from training.make_samples import remove_earlier_samples

    (tmp_path / "labels.csv").write_text("file,source,ground_truth\nfracatlas_IMG1.jpg,fracatlas,Fractured\n"
                                         "my_xray.jpg,mine,Fractured\n")
    for name in ("fracatlas_IMG1.jpg", "my_xray.jpg"):
        (tmp_path / name).write_bytes(b"x")
    remove_earlier_samples(tmp_path)  # no ATTRIBUTION.md: not a folder this command wrote
    assert (tmp_path / "fracatlas_IMG1.jpg").exists()
    (tmp_path / "ATTRIBUTION.md").write_text("written by make_samples")
    remove_earlier_samples(tmp_path)
    assert not (tmp_path / "fracatlas_IMG1.jpg").exists() and (tmp_path / "my_xray.jpg").exists()


def test_make_samples_adds_fracatlas_boxes_and_hardware_to_a_labels_file_written_before_them(tmp_path):
    from fracture_app.data_layout import fracture_boxes
    from training.make_samples import add_annotations

    fractured = FRACATLAS_FIXTURES / "images" / "Fractured"
    with_hardware, without = fractured / "IMG0000092.jpg", fractured / "IMG0000044.jpg"  # by the fixtures' dataset.csv
    labels = tmp_path / "labels.csv"
    labels.write_text("file,source,ground_truth,original,my_notes\n" + "".join(
        f"fracatlas_{path.name},fracatlas,Fractured,{path.relative_to(FRACATLAS_FIXTURES.parent).as_posix()},mine\n"
        for path in (with_hardware, without)) + "bone_break_b.jpg,bone_break,Oblique fracture,bone_break/x.jpg,\n")
    assert add_annotations(labels, FRACATLAS_FIXTURES.parent) == 2
    rows = list(csv.DictReader(labels.open()))
    for row, path in zip(rows, (with_hardware, without)):
        boxes = [tuple(map(float, box.split())) for box in row["fracture_boxes"].split("; ")]
        assert boxes == [tuple(round(value, 4) for value in box) for box in fracture_boxes(FRACATLAS_FIXTURES, path)]
    assert [row["hardware"] for row in rows] == ["yes", "", ""]
    assert rows[2]["fracture_boxes"] == "" and [row["my_notes"] for row in rows] == ["mine", "mine", ""]
    (tmp_path / "hand_made.csv").write_text("file,ground_truth\na.jpg,Fractured\n")
    with pytest.raises(ValueError, match="no source and original columns"):
        add_annotations(tmp_path / "hand_made.csv", FRACATLAS_FIXTURES.parent)
    assert (tmp_path / "hand_made.csv").read_text() == "file,ground_truth\na.jpg,Fractured\n"


def test_export_checks_on_every_image_kind_the_app_reads(tmp_path):
    for name in ("a.jpg", "b.PNG", "c.jpeg", "d.dcm", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [path.name for path in export.check_images(tmp_path)] == ["a.jpg", "b.PNG", "c.jpeg", "d.dcm"]


def test_choosing_the_gradcam_layer_rewrites_only_the_card(tiny_models_dir, tmp_path, capsys):
    copy = tmp_path / "models"
    shutil.copytree(tiny_models_dir, copy)
    model_path = artifact_paths(copy, config.BINARY_TASK)["model"]
    before = card(copy, config.BINARY_TASK)
    args = ["--model", str(model_path), "--data", str(FRACATLAS_FIXTURES), "--choose-gradcam-layer"]
    assert evaluate.main(args) == 0
    after = card(copy, config.BINARY_TASK)
    assert after["sha256"] == sha256_of(model_path) == before["sha256"]
    assert after["gradcam"]["chosen_on"] == "validation pointing game"
    assert after["gradcam"]["layer"] in (None, *after["gradcam"]["validation_hit_rates"])
    assert load_model(model_path).card.gradcam_layer == after["gradcam"]["layer"]
    assert load_model(model_path).card.gradcam_smoothing == after["gradcam"]["smoothing_cells"]
    assert f"), layer {after['gradcam']['layer'] or 'last'}" in capsys.readouterr().out  # the pointing-game line


def test_redoing_the_validation_choices_rewrites_the_card_and_plots_not_the_model(tiny_models_dir, tmp_path, capsys):
    copy = tmp_path / "models"
    shutil.copytree(tiny_models_dir, copy)
    paths = artifact_paths(copy, config.BINARY_TASK)
    before = card(copy, config.BINARY_TASK)
    earlier_run = {"run": "earlier_run", "val_auroc": 0.5, "shipped": False}
    before["compared_runs"] = [{"run": "shipped", "val_auroc": -1.0, "shipped": True}, earlier_run]
    paths["card"].write_text(json.dumps(before))
    for kind in ("roc", "confusion"):
        paths[kind].unlink()
    args = ["--model", str(paths["model"]), "--data", str(FRACATLAS_FIXTURES), "--redo-validation-choices", "--json"]
    assert evaluate.main(args) == 0
    after = card(copy, config.BINARY_TASK)
    assert after["sha256"] == sha256_of(paths["model"]) == before["sha256"]
    assert paths["roc"].is_file() and paths["confusion"].is_file()
    assert "--redo-validation-choices" in after["validation_choices_redone"]["command"]
    assert after["test_time_flip"]["chosen_on"] == "validation AUROC"
    assert load_model(paths["model"]).card.flip_average is after["test_time_flip"]["used"]
    printed = capsys.readouterr().out
    measured = json.loads(printed)
    assert measured["pointing_game"] == after["metrics"]["test"]["pointing_game"]
    if after["metrics"]["test"]["auroc"] is not None:
        assert measured["auroc"] == pytest.approx(after["metrics"]["test"]["auroc"], abs=1e-4)
    assert after["version"] != before["version"]
    assert after["validation_choices_redone"]["version_before"] == before["version"]
    shipped_row = after["compared_runs"][0]
    assert shipped_row["val_auroc"] == after["metrics"]["val"]["auroc"], "the shipped row quotes the new figures"
    assert shipped_row["shipped"] and after["compared_runs"][1] == earlier_run
    assert after["data"] == before["data"] and after["limitations"] == before["limitations"]  # split file unchanged


def test_a_corrected_split_file_corrects_the_cards_split_sizes(tiny_models_dir, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(tiny_models_dir, copy)
    paths = artifact_paths(copy, config.BINARY_TASK)
    lines = paths["manifest"].read_text(encoding="utf-8").splitlines()
    moved = next(i for i, line in enumerate(lines) if line.split(",")[3] == "test")
    lines[moved] = lines[moved].replace(",test,", ",train,")
    paths["manifest"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = card(copy, config.BINARY_TASK)
    before["data"]["split_file"] = {"path": str(paths["manifest"]), "sha256": "as it was when the model trained"}

    fields = evaluate.split_size_fields(before, paths["model"], FRACATLAS_FIXTURES)
    sizes = before["data"]["split_sizes"]
    expected = {"train": sizes["train"] + 1, "val": sizes["val"], "test": sizes["test"] - 1}
    assert fields["data"]["split_sizes"] == expected and fields["data"]["trained_split_sizes"] == sizes
    # It trained on what it trained on: the image moved into the training split was never trained on.
    assert f"on {sizes['train']} public images" in fields["limitations"][0]
    assert f"tested on {expected['test']} others" in fields["limitations"][0]
    assert "After training, 1 validation or test images were found to be copies" in fields["limitations"][0]
    assert fields["data"]["split_file"]["sha256"] == sha256_of(paths["manifest"])
    assert fields["data"]["split_file"]["sha256_when_trained"] == before["data"]["split_file"]["sha256"]
    assert fields["limitations"][1:] == before["limitations"][1:]


def test_tflite_export_agrees_with_keras(tiny_models_dir, tmp_path, capsys):
    model_path = artifact_paths(tiny_models_dir, config.BINARY_TASK)["model"]
    out = tmp_path / "binary.tflite"
    assert export.main(["--model", str(model_path), "--out", str(out)]) == 0
    model = load_model(model_path)
    images = export.check_images(FRACATLAS_FIXTURES)
    assert export.agreement(model, out.read_bytes(), images) < export.AGREEMENT_TOLERANCE


def test_export_writes_into_a_folder_and_refuses_a_missing_one_before_converting(tiny_models_dir, tmp_path, capsys):
    model_path = artifact_paths(tiny_models_dir, config.BINARY_TASK)["model"]
    assert export.main(["--model", str(model_path), "--out", str(tmp_path)]) == 0
    assert (tmp_path / model_path.with_suffix(".tflite").name).stat().st_size > 0
    assert export.main(["--model", str(model_path), "--out", str(tmp_path / "no" / "such.tflite")]) == 2
    assert "no folder" in capsys.readouterr().err


def test_a_mirror_averaged_model_exports_with_the_averaging_built_in(tiny_models_dir, tmp_path, capsys):
    for kind in ("model", "card"):
        shutil.copy(artifact_paths(tiny_models_dir, config.BINARY_TASK)[kind], tmp_path)
    model_path = tmp_path / config.MODEL_FILES[config.BINARY_TASK]
    written = card(tmp_path, config.BINARY_TASK)
    written["test_time_flip"] = {"used": True}
    model_path.with_suffix(".json").write_text(json.dumps(written))
    out = tmp_path / "binary.tflite"
    assert export.main(["--model", str(model_path), "--out", str(out)]) == 0
    model, images = load_model(model_path), export.check_images(FRACATLAS_FIXTURES)
    assert export.agreement(model, out.read_bytes(), images) < export.AGREEMENT_TOLERANCE
    single_pass = export.to_tflite(model.keras_model)
    assert export.agreement(model, single_pass, images) > export.AGREEMENT_TOLERANCE, "the mirror must matter here"


def test_unknown_layout_is_a_usage_error(tmp_path, capsys):
    assert train(["--task", "binary", "--data", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "expected at least two class folders" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_weights_default_to_imagenet_only_where_imagenet_weights_exist(tmp_path):
    from training.train import parse_args

    common = ["--data", str(tmp_path)]
    assert parse_args(["--task", "type", *common]).weights == "imagenet"  # the type default is a ResNet50
    assert parse_args(["--task", "type", "--arch", "custom_cnn", *common]).weights == "none"
    assert parse_args(["--task", "binary", *common]).weights == "none"


def test_a_negative_map_loss_weight_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train(["--task", "binary", "--data", str(tmp_path), "--map-loss-weight", "-1"])
    assert exit_info.value.code == 2
    assert "--map-loss-weight must not be negative" in capsys.readouterr().err


def test_weight_averaging_ships_the_average_rather_than_the_last_step(tiny_models_dir, tmp_path):
    """With a momentum near 1 the average stays at the weights after the first step (Keras starts it there),
    while the raw weights go on moving with every step."""
    start = artifact_paths(tiny_models_dir, config.BINARY_TASK)["model"]
    common = ["--task", "binary", "--data", str(FRACATLAS_FIXTURES), "--img-size", str(TINY_SIZE), "--epochs", "1",
              "--batch-size", "2", "--learning-rate", "1e-2", "--weights", str(start), "--quiet"]
    kernels = {}
    for name, momentum in (("raw", "0"), ("averaged", "0.999999")):
        assert train([*common, "--weight-average", momentum, "--out", str(tmp_path / name)]) == 0
        model = load_model(artifact_paths(tmp_path / name, config.BINARY_TASK)["model"]).keras_model
        kernels[name] = [layer.kernel.numpy() for layer in model.layers if hasattr(layer, "kernel")]
    kernels["start"] = [layer.kernel.numpy() for layer in load_model(start).keras_model.layers if hasattr(layer, "kernel")]
    moved = lambda name: max(float(np.abs(a - b).max()) for a, b in zip(kernels[name], kernels["start"]))
    one_step = 1e-2  # Adam moves a weight by about the learning rate per step
    assert moved("raw") > 3 * one_step
    assert moved("averaged") < 1.5 * one_step
    assert card(tmp_path / "averaged", config.BINARY_TASK)["training"]["weight_average_momentum"] == 0.999999
    assert "weight_average_momentum" not in card(tmp_path / "raw", config.BINARY_TASK)["training"]


@pytest.mark.parametrize("option, value, said", [("--weight-average", "1", "--weight-average must be in [0, 1)"),
                                                  ("--map-loss-weight", "nan", "--map-loss-weight must not be negative"),
                                                  ("--img-size", "16", "--img-size must be at least 32")])
def test_an_out_of_range_option_is_a_usage_error_that_names_it(tmp_path, capsys, option, value, said):
    with pytest.raises(SystemExit) as exit_info:
        train(["--task", "binary", "--data", str(tmp_path), option, value])
    assert exit_info.value.code == 2
    assert said in capsys.readouterr().err


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--task", "--data", "--arch", "--img-size", "--epochs", "--batch-size", "--weights", "--out", "--seed",
                   "--map-loss-weight", "--weight-average", "--fine-tune-share", "--split", "--lr-schedule", "--time-limit",
                   "--float32"):
        assert option in text


def test_split_folder_layout_trains_too(tmp_path):
    """Layout (a): train/val/test class folders, Kaggle-style names; a one-epoch run gives a loadable model."""
    for index, file in enumerate(sorted(FRACATLAS_FIXTURES.rglob("*.jpg"))):
        folder = "fractured" if "Fractured" == file.parent.name else "not fractured"
        split = ("train", "train", "valid", "test")[index % 4]
        (tmp_path / "data" / split / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(file, tmp_path / "data" / split / folder)
    out = tmp_path / "out"
    assert train(["--task", "binary", "--data", str(tmp_path / "data"), "--img-size", "32", "--epochs", "1",
                  "--out", str(out), "--quiet"]) == 0
    model = load_model(artifact_paths(out, config.BINARY_TASK)["model"])
    probabilities = model.probabilities(np.zeros((2, 32, 32, 1), np.float32))
    assert probabilities.shape == (2,) and np.all((probabilities >= 0) & (probabilities <= 1))


def split_no_seed_made(manifest) -> list[list[str]]:
    """Rewrite a split file with one lone training image and one lone test image swapped; its rows."""
    lines = manifest.read_text(encoding="utf-8").splitlines()
    rows = [line.split(",") for line in lines[1:]]
    single = [row for row in rows if sum(r[4] == row[4] for r in rows) == 1]  # alone in its group
    train_row = next(row for row in single if row[3] == "train")
    test_row = next(row for row in single if row[3] == "test")
    train_row[3], test_row[3] = "test", "train"  # a split no seed made: only the file can give it
    manifest.write_text("\n".join([lines[0], *(",".join(row) for row in rows)]) + "\n", encoding="utf-8")
    return rows


def split_rows(out) -> list[list[str]]:
    kept = artifact_paths(out, config.BINARY_TASK)["manifest"].read_text(encoding="utf-8").splitlines()
    return [line.split(",")[:4] for line in kept[1:]]


def test_a_run_from_a_model_on_the_same_data_keeps_its_split(tiny_models_dir, tmp_path):
    """A fresh split could differ from the start model's and test on images it trained on."""
    start = tmp_path / "start"
    shutil.copytree(tiny_models_dir, start)
    rows = split_no_seed_made(artifact_paths(start, config.BINARY_TASK)["manifest"])

    out = tmp_path / "out"
    assert train(["--task", "binary", "--data", str(FRACATLAS_FIXTURES), "--img-size", "32", "--epochs", "1",
                  "--weights", str(artifact_paths(start, config.BINARY_TASK)["model"]), "--seed", "5",
                  "--out", str(out), "--quiet"]) == 0
    assert split_rows(out) == [row[:4] for row in rows]


def test_a_split_file_named_on_the_command_line_is_followed(tiny_models_dir, tmp_path):
    named = tmp_path / "split.csv"
    shutil.copy(artifact_paths(tiny_models_dir, config.BINARY_TASK)["manifest"], named)
    rows = split_no_seed_made(named)

    out = tmp_path / "out"
    assert train(["--task", "binary", "--data", str(FRACATLAS_FIXTURES), "--img-size", "32", "--epochs", "1",
                  "--split", str(named), "--seed", "5", "--out", str(out), "--quiet"]) == 0
    assert split_rows(out) == [row[:4] for row in rows]
    data = card(out, config.BINARY_TASK)["data"]
    assert data["split_file"] == {"path": str(named), "sha256": sha256_of(named)} and data["split_seed"] is None


def test_a_split_file_that_differs_from_the_start_models_is_refused(tiny_models_dir, tmp_path):
    start = tmp_path / "start"
    shutil.copytree(tiny_models_dir, start)
    named = tmp_path / "split.csv"
    shutil.copy(artifact_paths(start, config.BINARY_TASK)["manifest"], named)
    split_no_seed_made(named)
    with pytest.raises(SystemExit, match="differs from"):
        train(["--task", "binary", "--data", str(FRACATLAS_FIXTURES), "--img-size", "32", "--epochs", "1",
               "--weights", str(artifact_paths(start, config.BINARY_TASK)["model"]), "--split", str(named),
               "--out", str(tmp_path / "out"), "--quiet"])


def test_a_time_limit_ends_training_after_the_epoch_under_way(tmp_path):
    out = tmp_path / "out"
    assert train(["--task", "binary", "--data", str(FRACATLAS_FIXTURES), "--img-size", "32", "--epochs", "3",
                  "--time-limit", "0.00001", "--out", str(out), "--quiet"]) == 0
    written = card(out, config.BINARY_TASK)
    assert written["training"]["epochs_run"] == 1
    assert written["training"]["time_limit_minutes"] == 0.00001


def logged_rates(models_dir, task):
    from training.fit import read_history

    return read_history(artifact_paths(models_dir, task)["history"])["learning_rate"]


@pytest.mark.parametrize("lr_schedule, epochs_run", [("plateau", 1), ("cosine", 3)])
def test_only_the_plateau_schedule_stops_early_and_the_cosine_one_lowers_the_rate_each_epoch(
        tmp_path, monkeypatch, lr_schedule, epochs_run):
    import keras

    from training import schedule
    from training.schedule import cosine_rate

    made = []

    class StopAtOnce(keras.callbacks.Callback):  # early stopping at its most eager
        def __init__(self, **_):
            super().__init__()
            made.append("early stopping")

        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    class HalveNever(keras.callbacks.Callback):
        def __init__(self, **_):
            super().__init__()
            made.append("halving on a plateau")

    deadlines = []
    cosine_decay = schedule.cosine_decay
    monkeypatch.setattr(schedule, "cosine_decay",
                        lambda *arguments: (deadlines.append(arguments[-1]), cosine_decay(*arguments))[1])
    monkeypatch.setattr(keras.callbacks, "EarlyStopping", StopAtOnce)
    monkeypatch.setattr(keras.callbacks, "ReduceLROnPlateau", HalveNever)
    out = tmp_path / "out"
    assert train(["--task", "binary", "--data", str(FRACATLAS_FIXTURES), "--img-size", "32", "--epochs", "3",
                  "--batch-size", "8", "--lr-schedule", lr_schedule, "--time-limit", "600", "--out", str(out),
                  "--quiet"]) == 0
    written = card(out, config.BINARY_TASK)
    assert written["training"]["lr_schedule"] == lr_schedule
    assert written["training"]["epochs_run"] == epochs_run
    if lr_schedule == "plateau":
        assert made == ["early stopping", "halving on a plateau"] and not deadlines
    else:
        assert not made and len(deadlines) == 1 and deadlines[0] is not None  # the time limit paces it too
        assert logged_rates(out, config.BINARY_TASK) == pytest.approx([cosine_rate(1e-3, epoch / 3)
                                                                       for epoch in range(3)], rel=1e-6)


def test_a_pretrained_run_logs_both_phases_and_each_falls_from_its_own_rate(tiny_models_dir, tmp_path):
    from training.schedule import cosine_rate

    donor_path = artifact_paths(tiny_models_dir, config.TYPE_TASK)["model"]
    out = tmp_path / "out"
    assert train(["--task", "type", "--data", str(BONE_BREAK_FIXTURES), "--arch", "mobilenetv2",
                  "--weights", str(donor_path), "--img-size", str(TINY_SIZE), "--epochs", "4", "--batch-size", "8",
                  "--lr-schedule", "cosine", "--out", str(out), "--quiet"]) == 0
    # One head-only epoch at 1e-3, then three fine-tuning epochs falling from 1e-4.
    assert logged_rates(out, config.TYPE_TASK) == pytest.approx(
        [1e-3, 1e-4, cosine_rate(1e-4, 1 / 3), cosine_rate(1e-4, 2 / 3)], rel=1e-6)


def test_training_runs_on_jax_without_tensorflow_and_evaluate_adds_the_pointing_game(tmp_path):
    """The road on a GPU machine that has JAX but no TensorFlow: train there (here with the fracture
    boxes' loss, the most backend-specific part), then measure Grad-CAM where TensorFlow is."""
    pytest.importorskip("jax")
    out = tmp_path / "out"
    environment = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    finished = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "without_tensorflow.py"), "training.train", "--task", "binary",
         "--data", str(FRACATLAS_FIXTURES), "--arch", "custom_cnn_map", "--img-size", "32", "--epochs", "1",
         "--batch-size", "8", "--out", str(out), "--quiet"],
        env=environment, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    trained = card(out, config.BINARY_TASK)
    assert trained["training"]["keras_backend"] == "jax"
    assert "pointing_game" not in trained["metrics"]["test"] and "TensorFlow only" in trained["gradcam"]["not_measured"]

    model_path = artifact_paths(out, config.BINARY_TASK)["model"]
    assert evaluate.main(["--model", str(model_path), "--data", str(FRACATLAS_FIXTURES), "--redo-validation-choices"]) == 0
    measured = card(out, config.BINARY_TASK)
    assert measured["metrics"]["test"]["pointing_game"]["images"] > 0
    assert load_model(model_path).probabilities(np.zeros((1, 32, 32, 1), np.float32)).shape == (1,)


def test_backbone_weights_come_from_one_of_our_models(tiny_models_dir):
    """Domain pre-training: --weights PATH takes the nested backbone out of an earlier .keras model."""
    from fracture_app.preprocess import PreprocessSpec
    from training import architectures

    donor_path = artifact_paths(tiny_models_dir, config.TYPE_TASK)["model"]
    donor = architectures.find_backbone(load_model(donor_path).keras_model)
    model = architectures.build("mobilenetv2", PreprocessSpec(size=TINY_SIZE, channels=3), 10, str(donor_path))
    for mine, theirs in zip(architectures.find_backbone(model).get_weights(), donor.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def test_imagenet_weights_fall_back_with_a_clear_warning_when_offline():
    from fracture_app.preprocess import PreprocessSpec
    from training import architectures

    def offline(**_):
        raise OSError("URL fetch failure: Name or service not known")

    with pytest.warns(UserWarning, match="training from random initialisation"):
        assert architectures._download_or_none(offline, PreprocessSpec(size=64, channels=3)) is None


def test_an_offline_imagenet_run_is_recorded_and_trained_as_from_scratch(tmp_path, monkeypatch):
    """No frozen random backbone, and a card that does not claim ImageNet weights."""
    from training import architectures

    real, mode = architectures.BACKBONES["mobilenetv2"]

    def offline(weights=None, **kwargs):
        if weights == "imagenet":
            raise OSError("URL fetch failure: Name or service not known")
        return real(weights=weights, **kwargs)

    monkeypatch.setitem(architectures.BACKBONES, "mobilenetv2", (offline, mode))
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="could not be downloaded"):
        assert train(["--task", "type", "--data", str(BONE_BREAK_FIXTURES), "--arch", "mobilenetv2",
                      "--weights", "imagenet", "--img-size", str(TINY_SIZE), "--epochs", "1",
                      "--batch-size", "8", "--out", str(out), "--quiet"]) == 0
    written = card(out, config.TYPE_TASK)
    assert written["weights_init"] == "none"
    assert written["limitations"][0].startswith("Trained from random initialisation")
    assert any("only on fractured images" in item for item in written["limitations"])


@pytest.mark.parametrize("share_option, share", [([], 0.3), (["--fine-tune-share", "1"], 1.0)])
def test_pretrained_run_trains_in_two_phases(tiny_models_dir, tmp_path, monkeypatch, share_option, share):

    import training.fit as fit_module

    shares_set = []
    set_trainable_top = fit_module._set_trainable_top
    monkeypatch.setattr(fit_module, "_set_trainable_top",
                        lambda backbone, share_: (shares_set.append(share_), set_trainable_top(backbone, share_)))
    donor_path = artifact_paths(tiny_models_dir, config.TYPE_TASK)["model"]
    out = tmp_path / "out"
    assert train(["--task", "type", "--data", str(BONE_BREAK_FIXTURES), "--arch", "mobilenetv2",
                  "--weights", str(donor_path), "--img-size", str(TINY_SIZE), "--epochs", "2",
                  "--batch-size", "8", "--out", str(out), "--quiet", *share_option]) == 0
    written = card(out, config.TYPE_TASK)
    assert written["weights_init"] == str(donor_path)
    assert written["weights_init_sha256"] == sha256_of(donor_path)
    assert written["training"]["epochs_run"] == 2  # one frozen-backbone epoch, then one fine-tuning epoch
    assert shares_set == [0.0, share]
    assert written["training"]["fine_tune_layer_share"] == share


@pytest.mark.parametrize("share", [0.3, 1.0])
def test_fine_tune_share_sets_which_backbone_layers_learn(share):
    import keras

    from training.fit import _set_trainable_top

    backbone = keras.applications.MobileNetV2(input_shape=(TINY_SIZE, TINY_SIZE, 3), weights=None, include_top=False)
    _set_trainable_top(backbone, share)
    first = int(len(backbone.layers) * (1 - share))
    for index, layer in enumerate(backbone.layers):
        if layer.weights:
            learns = index >= first and not isinstance(layer, keras.layers.BatchNormalization)
            assert layer.trainable == learns, (index, layer.name)


@pytest.mark.parametrize("share", ["0", "-0.1", "1.5"])
def test_a_fine_tune_share_outside_zero_to_one_is_a_usage_error(tmp_path, capsys, share):
    with pytest.raises(SystemExit):
        train(["--task", "type", "--data", str(tmp_path), "--fine-tune-share", share])
    assert "--fine-tune-share must be in (0, 1]" in capsys.readouterr().err


@pytest.mark.parametrize("arguments", [["--arch", "custom_cnn"], ["--arch", "resnet50", "--weights", "none"]])
def test_a_fine_tune_share_without_a_pretrained_backbone_is_a_usage_error(tmp_path, capsys, arguments):
    with pytest.raises(SystemExit):
        train(["--task", "type", "--data", str(tmp_path), "--fine-tune-share", "0.5", *arguments])
    assert "--fine-tune-share applies to a pretrained backbone only" in capsys.readouterr().err


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    import training.train as train_module

    out = tmp_path / "out"
    arguments = ["--task", "binary", "--data", str(FRACATLAS_FIXTURES), "--img-size", "32", "--epochs", "1",
                 "--batch-size", "8", "--out", str(out), "--quiet"]

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "evaluate_splits", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(arguments)
    monkeypatch.undo()
    assert not (out / config.MODEL_FILES[config.BINARY_TASK]).exists()  # nothing half-written
    (checkpoint_dir,) = out.glob(".training-*")
    spent_before = float((checkpoint_dir / ELAPSED_FILE).read_text())
    assert spent_before > 0
    assert train([*arguments, "--resume", str(checkpoint_dir), "--epochs", "2"]) == 0  # one epoch more
    written = card(out, config.BINARY_TASK)
    assert written["training"]["resumed_from_checkpoint"] and written["training"]["epochs_run"] == 2
    history = artifact_paths(out, config.BINARY_TASK)["history"].read_text().splitlines()
    assert len(history) == 3, "the resumed epoch is logged after the interrupted run's one"
    assert written["training"]["seconds"] > spent_before, "the card counts the interrupted run's time too"
    assert not list(out.glob(".training-*"))


@pytest.mark.parametrize("epochs", [4, 1])
def test_a_run_whose_loss_or_answers_go_to_nan_writes_nothing_and_says_why(tmp_path, epochs):
    """With one epoch the loss was measured before the step that broke the weights: only the answers show it."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="training diverged: the loss or the answers became NaN"):
        train(["--task", "binary", "--data", str(FRACATLAS_FIXTURES), "--img-size", "32", "--epochs", str(epochs),
               "--learning-rate", "1e30", "--out", str(out), "--quiet"])
    assert not artifact_paths(out, config.BINARY_TASK)["model"].exists()
    assert not list(out.glob(".training-*")), "no scratch folder left behind"


@pytest.mark.parametrize("full_precision, policy", [(False, "mixed_float16"), (True, "float32")])
def test_a_gpu_trains_in_mixed_precision_unless_told_float32(monkeypatch, full_precision, policy):
    import keras

    from training import train as train_module

    monkeypatch.setattr(train_module, "gpu_names", lambda: ["a GPU"])
    try:
        _, chosen = train_module.configure_hardware(full_precision)
        assert chosen == policy == keras.mixed_precision.global_policy().name
    finally:
        keras.mixed_precision.set_global_policy("float32")
