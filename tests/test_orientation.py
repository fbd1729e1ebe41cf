"""Which way up: the turn decision, turning back and forth, the training labels, and the reading of a turned X-ray."""

import dataclasses

import numpy as np
import pytest

from fracture_app import config
from fracture_app.diagnosis import Diagnoser
from fracture_app.imaging import XRay, read_image
from fracture_app.orientation import UPRIGHT, onto_picture_as_uploaded, detected_turn, set_upright
from training.orientation import choose_threshold, every_turn, turn_figures, turned

from conftest import FRACATLAS_FIXTURES

ASYMMETRIC = np.arange(12, dtype=np.float32).reshape(3, 4)


@pytest.mark.parametrize("probabilities, threshold, turn", [
    ([0.1, 0.7, 0.1, 0.1], 0.6, 1),
    ([0.1, 0.7, 0.1, 0.1], 0.8, UPRIGHT),  # not sure enough: read as given
    ([0.9, 0.05, 0.03, 0.02], 0.5, UPRIGHT),
    ([0.0, 0.0, 0.0, 1.0], 0.99, 3),
    ([0.0, 0.0, 0.0, 1.0], None, UPRIGHT),  # a card without a threshold turns nothing
])
def test_a_turn_is_taken_only_at_or_above_the_threshold(probabilities, threshold, turn):
    assert detected_turn(np.array(probabilities), threshold) == turn


def test_the_turn_names_say_which_way_np_rot90_turns():
    top_row_marked = np.zeros((3, 3))
    top_row_marked[0] = 1
    np.testing.assert_array_equal(np.rot90(top_row_marked, 1)[:, 0], 1)  # turn 1 sends the top to the left side
    assert config.ORIENTATIONS == ("upright", "turned a quarter turn anticlockwise", "upside down",
                                   "turned a quarter turn clockwise")


def test_an_orientation_card_says_in_one_sentence_how_it_measured(tmp_path):
    from fracture_app.models import ModelCard

    card = ModelCard(tmp_path / "orientation.json", {"task": config.ORIENTATION_TASK, "threshold": None, "metrics": {
        "test": {"found_share": 0.8464, "false_turn_share": 0.0374}}})
    assert card.measured_in_brief == ("On its test split it set 84.6% of turned X-rays upright and took 3.7% of "
                                      "upright ones for turned.")
    assert card.turn_threshold is None


@pytest.mark.parametrize("turn", range(4))
def test_setting_upright_undoes_the_turn_and_maps_go_back_onto_the_picture_as_uploaded(turn):
    lying = np.rot90(ASYMMETRIC, turn)
    np.testing.assert_array_equal(set_upright(lying, turn), ASYMMETRIC)
    np.testing.assert_array_equal(onto_picture_as_uploaded(set_upright(lying, turn), turn), lying)


def test_every_turn_labels_each_copy_with_its_turn():
    images = np.stack([ASYMMETRIC[:3, :3, None], ASYMMETRIC[:3, 1:, None]])
    copies, turns = every_turn(images)
    assert copies.shape == (8, 3, 3, 1) and list(turns) == [0, 0, 1, 1, 2, 2, 3, 3]
    for copy, turn, original in zip(copies, turns, np.concatenate([images] * 4)):
        np.testing.assert_array_equal(copy, np.rot90(original, turn))
    np.testing.assert_array_equal(turned(images, [3, 0])[0], np.rot90(images[0], 3))


def _answers(turns, answers, confidence):
    rows = np.full((len(answers), 4), (1 - confidence) / 3)
    rows[np.arange(len(answers)), answers] = confidence
    return rows, np.array(turns)


def test_turn_figures_count_each_outcome():
    # two upright (one taken for turned), four turned: one set upright, one set the wrong way, two left (one unsure)
    probabilities, turns = _answers([0, 0, 1, 2, 3, 3], [0, 2, 1, 3, 0, 3], 0.9)
    probabilities[5] = [0.3, 0.1, 0.1, 0.5]
    figures = turn_figures(probabilities, turns, 0.6)
    assert (figures["upright_taken_for_turned"], figures["turned_set_upright"], figures["turned_set_wrong"],
            figures["turned_left_as_they_lie"]) == (1, 1, 1, 2)
    assert figures["false_turn_share"] == 0.5 and figures["found_share"] == 0.25
    assert figures["accuracy"] == 0.5  # argmax right for the first upright, the turn-1 one and the unsure one


def test_the_threshold_is_the_lowest_that_keeps_upright_x_rays_upright():
    probabilities, turns = _answers([0] * 100 + [1] * 10, [0] * 100 + [1] * 10, 0.95)
    probabilities[:2] = [0.2, 0.75, 0.03, 0.02]  # two upright X-rays taken for turned, at 0.75
    assert choose_threshold(probabilities, turns) == 0.8
    probabilities[:2] = [0.0, 1.0, 0.0, 0.0]  # no threshold clears them
    assert choose_threshold(probabilities, turns) is None


class _Says:
    """An orientation model that answers one turn for every picture (or, with `wide_only`, for pictures that are
    wider than tall, by their letterboxed input, and upright for the others), with the card field the diagnoser
    reads."""

    def __init__(self, spec, turn: int, threshold: float | None = 0.8, wide_only: bool = False):
        self.spec, self.turn, self.wide_only = spec, turn, wide_only
        self.card = type("Card", (), {"turn_threshold": threshold, "version": "stub", "measured_in_brief": ""})()

    def probabilities(self, batch):
        rows = np.full((len(batch), 4), 0.01)
        for row, picture in zip(rows, batch):
            # a wide picture's letterbox leaves its top rows black
            row[self.turn if not self.wide_only or picture[0].max() == 0 else UPRIGHT] = 0.97
        return rows


@pytest.fixture(scope="module")
def reads_as_uploaded(tiny_models_dir):
    return Diagnoser.from_dir(tiny_models_dir)


@pytest.mark.parametrize("turn", [1, 2, 3])
def test_a_turned_x_ray_is_read_as_its_upright_self_and_says_so(reads_as_uploaded, fractured_xray_path, turn):
    models = reads_as_uploaded.models
    upright = read_image(fractured_xray_path)
    lying = dataclasses.replace(upright, pixels=np.ascontiguousarray(np.rot90(upright.pixels, turn)))
    reads_upright = Diagnoser(models[config.BINARY_TASK], models[config.TYPE_TASK],
                              orientation=_Says(reads_as_uploaded.orientation.spec, UPRIGHT))
    sees_turn = Diagnoser(models[config.BINARY_TASK], models[config.TYPE_TASK],
                          orientation=_Says(reads_as_uploaded.orientation.spec, turn))
    reference, reading = reads_upright.diagnose(upright), sees_turn.diagnose(lying)
    assert reading.turn == turn
    # The fracture model reads it turned back; its heat map lies on the picture as given.
    assert reading.fracture_probability == pytest.approx(reference.fracture_probability, abs=1e-5)
    np.testing.assert_allclose(reading.heatmaps[config.BINARY_TASK],
                               np.rot90(reference.heatmaps[config.BINARY_TASK], turn), atol=1e-4)
    # The type model reads it as given, as it learnt Bone Break's pictures.
    as_it_lies = Diagnoser(models[config.BINARY_TASK], models[config.TYPE_TASK]).diagnose(lying)
    assert reading.type_probabilities == pytest.approx(as_it_lies.type_probabilities, abs=1e-5)
    np.testing.assert_allclose(reading.heatmaps[config.TYPE_TASK], as_it_lies.heatmaps[config.TYPE_TASK], atol=1e-4)
    assert reading.as_uploaded_probability == pytest.approx(as_it_lies.fracture_probability, abs=1e-5)
    assert reading.fractured_as_uploaded == (reading.as_uploaded_probability >= reading.threshold)
    caution = next(c for c in reading.cautions if c.kind == "turned")
    assert config.ORIENTATIONS[turn] in caution.brief and config.ORIENTATIONS[turn] in caution.text
    assert "%" not in caution.text  # the Teaching page shows cautions before the trainee commits: no score in them
    assert caution.brief in reading.notes
    assert not any(c.kind == "turned" for c in reference.cautions) and reference.as_uploaded_probability is None
    assert reading.model_versions[config.ORIENTATION_TASK] == "stub"  # the reading names the model that turned it


def test_a_batch_of_turned_and_upright_pictures_reads_as_each_alone(reads_as_uploaded):
    models = reads_as_uploaded.models
    sees_wide_ones_turned = Diagnoser(models[config.BINARY_TASK], models[config.TYPE_TASK],
                                      orientation=_Says(reads_as_uploaded.orientation.spec, 2, wide_only=True))
    rows, columns = np.mgrid[0:120, 0:80].astype(np.float32)
    # no black edge, so only a wide picture's letterbox has black top rows
    tall = [XRay(0.2 + 0.6 * np.abs(np.sin(rows / period + columns / 9)), "upload", "PNG", 0.0, {}) for period in (7, 13)]
    wide = [dataclasses.replace(x, pixels=np.ascontiguousarray(np.rot90(x.pixels))) for x in tall]
    batch = sees_wide_ones_turned.diagnose_batch(tall + wide)
    singles = [sees_wide_ones_turned.diagnose(xray, heatmap_tasks=()) for xray in tall + wide]
    assert [d.turn for d in batch] == [UPRIGHT, UPRIGHT, 2, 2] == [d.turn for d in singles]
    for mine, alone in zip(batch, singles):
        assert mine.fracture_probability == pytest.approx(alone.fracture_probability, abs=1e-5)
        assert (mine.as_uploaded_probability is None) == (alone.as_uploaded_probability is None)
        if mine.as_uploaded_probability is not None:
            assert mine.as_uploaded_probability == pytest.approx(alone.as_uploaded_probability, abs=1e-5)


def test_no_turn_below_the_threshold_and_none_on_a_picture_the_models_cannot_read(reads_as_uploaded):
    models = reads_as_uploaded.models
    spec = reads_as_uploaded.orientation.spec
    unsure = Diagnoser(models[config.BINARY_TASK], None, orientation=_Says(spec, 2, threshold=0.99))
    ramp = np.tile(np.linspace(0, 1, 96, dtype=np.float32), (96, 1))
    assert unsure.diagnose(XRay(ramp, "upload", "PNG", 0.0, {"original_size": (96, 96)})).turn == UPRIGHT
    without_threshold = Diagnoser(models[config.BINARY_TASK], None, orientation=_Says(spec, 2, threshold=None))
    assert without_threshold.diagnose(XRay(ramp, "upload", "PNG", 0.0, {"original_size": (96, 96)})).turn == UPRIGHT
    sure = Diagnoser(models[config.BINARY_TASK], None, orientation=_Says(spec, 2))
    colour_picture = XRay(ramp, "upload", "PNG", 0.9, {"original_size": (96, 96)})
    withheld = sure.diagnose(colour_picture)
    assert withheld.verdict_withheld and [c.kind for c in withheld.cautions] == ["not_xray"]
    assert withheld.turn == UPRIGHT and withheld.as_uploaded_probability is None
    type_only = Diagnoser(None, models[config.TYPE_TASK], orientation=_Says(spec, 2))
    reading = type_only.diagnose(XRay(ramp, "upload", "PNG", 0.0, {"original_size": (96, 96)}))
    assert reading.turn == UPRIGHT and not any(c.kind == "turned" for c in reading.cautions)  # nothing was turned back
    assert sure.orientation_idle_because is None and unsure.orientation_idle_because is None
    assert "threshold" in without_threshold.orientation_idle_because
    assert "without the fracture model" in type_only.orientation_idle_because


def test_the_training_command_writes_a_model_the_diagnoser_loads(reads_as_uploaded, tiny_models_dir):
    orientation = reads_as_uploaded.orientation
    assert orientation is not None and orientation.classes == config.ORIENTATIONS
    card = orientation.card.data
    assert card["task"] == config.ORIENTATION_TASK and card["data"]["split_sizes"]["val"] > 0
    assert set(card["metrics"]) == {"val", "test"} and card["training"]["command"].startswith("python -m training.orientation")
    assert not reads_as_uploaded.problems
    # without a threshold it cannot turn anything, so a reading does not name it among its models
    assert reads_as_uploaded.orienting is None and config.ORIENTATION_TASK not in reads_as_uploaded.model_versions


def test_a_model_file_in_the_wrong_place_is_refused_by_its_card(tiny_models_dir, tmp_path):
    import shutil

    from fracture_app.errors import ModelLoadError
    from fracture_app.models import artifact_paths, load_model

    for path in tiny_models_dir.glob("fracture_binary*"):
        shutil.copy(path, tmp_path)
    binary = artifact_paths(tmp_path, config.BINARY_TASK)
    with pytest.raises(ModelLoadError, match="card is for the fracture model, not the orientation model"):
        load_model(binary["model"], config.ORIENTATION_TASK)
    with pytest.raises(ModelLoadError, match="python -m training.orientation"):
        load_model(tmp_path / "orientation.keras", config.ORIENTATION_TASK)


def test_without_an_orientation_model_pictures_are_read_as_uploaded_and_that_is_said(tiny_models_dir, tmp_path,
                                                                                  fractured_xray_path):
    import shutil

    for path in tiny_models_dir.glob("fracture_*"):
        shutil.copy(path, tmp_path)
    diagnoser = Diagnoser.from_dir(tmp_path)
    assert diagnoser.orientation is None
    problem = diagnoser.problems[config.ORIENTATION_TASK]
    assert "orientation.keras" in problem and "read as uploaded" in problem
    assert diagnoser.diagnose(read_image(fractured_xray_path)).turn == UPRIGHT


def test_evaluate_and_compare_point_the_orientation_model_to_its_own_measure(tiny_models_dir, capsys):
    from fracture_app.models import artifact_paths
    from training import compare, evaluate

    model = artifact_paths(tiny_models_dir, config.ORIENTATION_TASK)["model"]
    assert evaluate.main(["--model", str(model), "--data", str(tiny_models_dir)]) == 2
    assert "python -m training.orientation --measure" in capsys.readouterr().err
    assert compare.main(["--model", str(model), str(artifact_paths(tiny_models_dir, config.BINARY_TASK)["card"])]) != 0
    assert "not a fracture or fracture-type model" in capsys.readouterr().err


def test_measure_again_prints_each_figure_beside_the_card(tiny_models_dir, capsys):
    from training.orientation import main as orientation

    model = tiny_models_dir / config.MODEL_FILES[config.ORIENTATION_TASK]
    split = tiny_models_dir / "fracture_binary_split.csv"  # another split than its own: the figures may differ
    assert orientation(["--measure", str(model), "--data", str(FRACATLAS_FIXTURES), "--split", str(split)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["split", "figure", "measured", "card"]
    assert [line.split()[:2] for line in lines[1:]] == [[part, key] for part in ("val", "test")
                                                        for key in ("accuracy", "false_turn_share", "found_share")]
    with pytest.raises(SystemExit):
        orientation(["--measure", str(model), "--data", str(FRACATLAS_FIXTURES)])  # no split to measure on


def test_choosing_the_threshold_again_on_a_mended_split_rewrites_the_card_but_not_what_it_trained_on(tiny_models_dir,
                                                                                                   tmp_path, capsys):
    import json
    import shutil

    from fracture_app.models import load_model
    from training.orientation import main as orientation

    for name in (config.MODEL_FILES[config.ORIENTATION_TASK], "orientation.json", "fracture_binary_split.csv"):
        shutil.copy(tiny_models_dir / name, tmp_path)
    model, split = tmp_path / config.MODEL_FILES[config.ORIENTATION_TASK], tmp_path / "fracture_binary_split.csv"
    before = json.loads((tmp_path / "orientation.json").read_text())
    assert orientation(["--measure", str(model), "--data", str(FRACATLAS_FIXTURES), "--split", str(split),
                        "--redo-validation-choice"]) == 0
    after = json.loads((tmp_path / "orientation.json").read_text())
    assert after["version"].startswith(before["version"].split("+")[0] + "+choices-") and after["version"] != before["version"]
    assert after["validation_choices_redone"]["version_before"] == before["version"]
    assert after["data"]["trained_split_sizes"] == before["data"]["split_sizes"]
    assert after["metrics"]["test"]["upright"] == after["data"]["split_sizes"]["test"]
    assert load_model(model).card.version == after["version"]  # the model file itself is unchanged (its sha256)
    with pytest.raises(SystemExit):
        orientation(["--data", str(FRACATLAS_FIXTURES), "--out", str(tmp_path), "--redo-validation-choice"])
