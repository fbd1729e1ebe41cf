"""The models in models/ are the ones their cards describe, and they work on the shipped sample X-rays."""

import csv
import json

import pytest

from fracture_app import config
from fracture_app.diagnosis import Diagnoser
from fracture_app.imaging import read_image
from fracture_app.models import load_model, model_path_for
from training import evaluate
from fracture_app.models import artifact_paths
from training.datasets import read_manifest

SOURCE_FOLDER = {config.BINARY_TASK: "fracatlas", config.TYPE_TASK: "bone_break"}
MAX_MODEL_BYTES = 100 * 1024 * 1024


@pytest.fixture(scope="module")
def samples():
    with open(config.SAMPLE_IMAGES_DIR / "labels.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("task", config.TASKS)
def test_shipped_model_matches_its_card_and_is_small_enough(task):
    path = model_path_for(task, config.REPO_ROOT / "models")
    assert path.stat().st_size < MAX_MODEL_BYTES
    model = load_model(path)  # checks the sha256 recorded in the card
    assert model.classes == config.CLASSES[task]
    assert model.card.data["metrics"]["test"]["n"] > 0


def test_the_type_cards_cross_validated_figure_covers_every_image_outside_its_test_split():
    """The out-of-fold figure (training.crossval --write-card) pools the shipped split's training and validation rows."""
    path = model_path_for(config.TYPE_TASK, config.REPO_ROOT / "models")
    result = load_model(path).card.data["cross_validation"]
    with open(artifact_paths(path.parent, config.TYPE_TASK)["manifest"], newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    # (less the test images the split's mending moved out of the test split after the folds were dealt)
    moved = set(result.get("test_images_moved_out_since", []))
    assert result["images"] == sum(row["split"] != "test" and row["path"] not in moved for row in rows)
    assert moved <= {row["path"] for row in rows if row["split"] != "test"}
    assert result["model_version"] == load_model(path).card.version
    own = load_model(path).card.data
    first = result["recipes"][0]["recipe"]
    assert (first["--arch"], first["--img-size"]) == (own["architecture"], str(own["preprocessing"]["size"])), \
        "the fold runs were this model's architecture and size"
    assert all(recipe["runs"] == result["folds"] for recipe in result["recipes"])


def test_sample_images_come_from_the_test_splits_only(samples):
    assert len(samples) >= 24
    truths = {row["ground_truth"] for row in samples}
    assert set(config.BINARY_CLASSES) <= truths and set(config.FRACTURE_TYPES) <= truths
    models_dir = config.REPO_ROOT / "models"
    for task, folder in SOURCE_FOLDER.items():
        split_of = {s.path.as_posix(): s.split for s in
                    read_manifest(artifact_paths(models_dir, task)["manifest"], folder)}
        for row in samples:
            if row["source"] == folder:
                assert split_of[row["original"]] == "test", row["file"]


def test_shipped_models_classify_every_sample_into_the_card_classes(samples):
    diagnoser = Diagnoser.from_dir(config.REPO_ROOT / "models")
    assert not diagnoser.problems
    xrays = [read_image(config.SAMPLE_IMAGES_DIR / row["file"]) for row in samples]
    diagnoses = diagnoser.diagnose_batch(xrays)
    for diagnosis in diagnoses:  # a verdict, or none where a "Not fractured" could not be trusted (it says why)
        assert diagnosis.verdict in config.BINARY_CLASSES or (diagnosis.verdict_withheld and diagnosis.notes)
        assert 0.0 <= diagnosis.fracture_probability <= 1.0
        assert diagnosis.best_type[0] in config.FRACTURE_TYPES
    # And reads them as a model with the card's sensitivity and specificity would (a model answering at random, or
    # one with its classes swapped, would not): the shipped one agrees with FracAtlas's label on 14 of the 15.
    fracatlas = [(row, diagnosis) for row, diagnosis in zip(samples, diagnoses) if row["source"] == "fracatlas"]
    agreeing = sum(diagnosis.verdict == row["ground_truth"] for row, diagnosis in fracatlas)
    assert agreeing >= 0.75 * len(fracatlas), f"{agreeing} of {len(fracatlas)}"


@pytest.mark.parametrize("task", config.TASKS)
def test_evaluate_reproduces_the_shipped_card(task, full_data_dir, capsys):
    model_path = model_path_for(task, config.REPO_ROOT / "models")
    data = full_data_dir / SOURCE_FOLDER[task]
    assert evaluate.main(["--model", str(model_path), "--data", str(data), "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    stored = json.loads(artifact_paths(model_path.parent, task)["card"].read_text())["metrics"]["test"]
    keys = ("auroc", "sensitivity", "specificity", "ece") if task == config.BINARY_TASK else ("top1", "top3", "macro_f1")
    for key in keys:
        assert measured[key] == pytest.approx(stored[key], abs=0.01), key
    if task == config.BINARY_TASK:
        assert measured["pointing_game"]["hit_rate"] == pytest.approx(stored["pointing_game"]["hit_rate"], abs=0.01)


def test_shipped_orientation_model_matches_its_card():
    model = load_model(model_path_for(config.ORIENTATION_TASK, config.REPO_ROOT / "models"))  # checks the sha256
    assert model.classes == config.ORIENTATIONS
    assert 0.5 <= model.card.data["threshold"] < 1
    assert model.card.data["metrics"]["test"]["upright"] > 0


def test_shipped_orientation_model_sets_the_fracatlas_samples_upright(samples):
    """The FracAtlas samples (test X-rays) as stored, and turned each quarter turn: on the 16 shipped, 15 read
    upright as stored and 42 of the 48 turned copies were set upright when this model shipped."""
    import numpy as np

    from fracture_app.orientation import UPRIGHT, detected_turn
    from fracture_app.preprocess import prepare_batch

    model = load_model(model_path_for(config.ORIENTATION_TASK, config.REPO_ROOT / "models"))
    pictures = [read_image(config.SAMPLE_IMAGES_DIR / row["file"]).pixels for row in samples
                if row["source"] == SOURCE_FOLDER[config.BINARY_TASK]]
    answers = {turn: [detected_turn(row, model.card.data["threshold"])
                      for row in model.probabilities(prepare_batch([np.rot90(p, turn) for p in pictures], model.spec))]
               for turn in range(4)}
    assert sum(answer != UPRIGHT for answer in answers[UPRIGHT]) <= 2
    assert sum(answer == turn for turn in (1, 2, 3) for answer in answers[turn]) >= 0.8 * 3 * len(pictures)


def test_the_orientation_card_figures_are_measured_again(full_data_dir):
    from training.orientation import remeasure

    model_path = model_path_for(config.ORIENTATION_TASK, config.REPO_ROOT / "models")
    measured = remeasure(model_path, full_data_dir / "fracatlas", artifact_paths(model_path.parent, config.BINARY_TASK)["manifest"])
    stored = load_model(model_path).card.data["metrics"]
    for split in ("val", "test"):  # counts, not shares: one X-ray is under 0.002 of a share
        assert measured[split]["accuracy"] == pytest.approx(stored[split]["accuracy"], abs=0.002), split
        for key in ("upright", "turned", "upright_taken_for_turned", "turned_set_upright", "turned_set_wrong"):
            assert measured[split][key] == pytest.approx(stored[split][key], abs=1), (split, key)
