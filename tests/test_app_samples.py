"""Where the Samples and Teaching pages get their X-rays and ground truth, and how a reading is marked."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from fracture_app import config
from fracture_app.samples import (ALL, ANY_FRACTURE, HALF_RIGHT, NAME_THE_TYPE, NOT_FRACTURED, NOT_MARKED, RIGHT,
                                  SPOT_THE_FRACTURE, SampleImage, TeachingScore, canonical_truth, exercises,
                                  filter_options,
                                  filter_samples, grade, grade_model, grade_type, list_samples, pick, samples_dir)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def models_without_split_files(monkeypatch, tmp_path):
    """The fixtures are real data-set images the shipped models trained on; here no split file says so."""
    monkeypatch.setenv(config.MODELS_DIR_ENV, str(tmp_path / "no_models"))


def test_a_folder_of_data_sets_is_read_in_each_ones_layout():
    found = list_samples(FIXTURES)
    truths = [s.ground_truth for s in found.samples]
    assert truths.count(NOT_FRACTURED) == 6 and truths.count("Fractured") == 6  # FracAtlas: every image
    assert {t for t in truths if t in config.FRACTURE_TYPES} == set(config.FRACTURE_TYPES)
    assert all("Test" in s.path.parts for s in found.samples if s.fracture_type)  # Bone Break: its Test folders only
    assert {s.source for s in found.samples} == {"fracatlas", "bone_break"}
    assert not found.problems


def test_a_data_set_shows_only_what_the_models_split_files_kept_for_testing(monkeypatch, tiny_models_dir):
    """Never demo a model on an image it learned from: its split file names them, train and validation alike."""
    from fracture_app.models import artifact_paths
    from training.datasets import read_manifest

    monkeypatch.setenv(config.MODELS_DIR_ENV, str(tiny_models_dir))
    tested = {sample.path for task, folder in ((config.BINARY_TASK, "fracatlas"), (config.TYPE_TASK, "bone_break"))
              for sample in read_manifest(artifact_paths(tiny_models_dir, task)["manifest"], FIXTURES / folder)
              if sample.split == "test"}
    shown = {sample.path for sample in list_samples(FIXTURES).samples}
    assert shown == tested
    assert len(shown) < len(list(FIXTURES.rglob("*.jpg")))  # the split files did leave some out


def test_the_app_reads_data_sets_and_cards_without_the_training_package():
    """The app may be deployed without training/: nothing it runs may import from it."""
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['training'] = None\n"  # any `import training…` now fails
        "from fracture_app import card_view, reading_view, ui\n"
        "from fracture_app.samples import list_samples\n"
        f"found = list_samples({str(FIXTURES)!r})\n"
        "assert len(found.samples) > 12 and not found.problems, found.problems\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr[-2000:]


def test_labels_csv_wins_and_bad_rows_are_reported(tmp_path):
    image = next((FIXTURES / "fracatlas" / "images" / "Fractured").glob("*.jpg"))
    (tmp_path / "a.jpg").write_bytes(image.read_bytes())
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.csv").write_text(
        "file,source,ground_truth\n"
        "a.jpg,fracatlas,fractured\n"
        "a.jpg,bone_break,oblique FRACTURE\n"
        "a.jpg,x,Not_fractured\n"
        "missing.jpg,x,Fractured\n"
        "a.jpg,x,broken-ish\n"
        f"../{tmp_path.name}/../etc.jpg,x,Fractured\n", encoding="utf-8")
    found = list_samples(tmp_path)
    assert found.origin == "labels.csv"
    assert [s.ground_truth for s in found.samples] == ["Fractured", "Oblique fracture", NOT_FRACTURED]
    assert [s.source for s in found.samples] == ["fracatlas", "bone_break", "x"]
    assert len(found.problems) == 3
    assert any("outside the sample folder" in p for p in found.problems)


def test_fracture_boxes_come_from_labels_csv_and_bad_ones_are_reported(tmp_path):
    image = next((FIXTURES / "fracatlas" / "images" / "Fractured").glob("*.jpg"))
    (tmp_path / "a.jpg").write_bytes(image.read_bytes())
    (tmp_path / "labels.csv").write_text(
        "file,source,ground_truth,fracture_boxes,hardware\n"
        "a.jpg,fracatlas,Fractured,0.5 0.4 0.1 0.2; 0.2 0.3 0.05 0.05,yes\n"
        "a.jpg,fracatlas,Fractured,,\n"
        "a.jpg,fracatlas,Fractured,0.5 0.4 0.1,\n"
        "a.jpg,fracatlas,Fractured,0.5 0.4 0.1 1.5,\n", encoding="utf-8")
    found = list_samples(tmp_path)
    assert [s.boxes for s in found.samples] == [((0.5, 0.4, 0.1, 0.2), (0.2, 0.3, 0.05, 0.05)), (), (), ()]
    assert [s.hardware for s in found.samples] == [True, False, False, False]
    assert len(found.problems) == 2 and all("fracture_boxes" in p for p in found.problems)


def test_a_fracatlas_folder_gives_each_sample_its_fracture_boxes(monkeypatch, tmp_path):
    from fracture_app.data_layout import fracture_boxes

    monkeypatch.setenv(config.MODELS_DIR_ENV, str(tmp_path))  # no split files: every image is shown
    samples = list_samples(FIXTURES / "fracatlas").samples
    assert {s.name for s in samples if s.boxes} == {s.name for s in samples if s.fractured}
    for sample in samples:
        assert list(sample.boxes) == fracture_boxes(FIXTURES / "fracatlas", sample.path)
    assert {s.name for s in samples if s.hardware} == {"IMG0000092.jpg", "IMG0000453.jpg"}  # the fixtures' dataset.csv


def test_the_shipped_fractured_fracatlas_samples_carry_their_boxes():
    shipped = list_samples(config.SAMPLE_IMAGES_DIR)
    assert not shipped.problems
    fracatlas = [s for s in shipped.samples if s.source == "fracatlas"]
    assert fracatlas and all(bool(s.boxes) == s.fractured for s in fracatlas)


def test_a_box_is_drawn_where_it_says_and_nowhere_else():
    from fracture_app.reading_view import TRUTH_BOX_COLOUR, with_boxes

    picture = np.zeros((100, 200), np.uint8)
    drawn = with_boxes(picture, [(0.5, 0.5, 0.2, 0.4)])  # x 80–120, y 30–70
    magenta = np.all(drawn == TRUTH_BOX_COLOUR, axis=2)
    assert magenta[30, 80:121].all() and magenta[30:71, 120].all()
    assert not magenta[50, 100] and not magenta[:20].any()  # an outline, not a fill
    assert with_boxes(picture, ()) is picture


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_an_absent_or_empty_folder_gives_no_samples_and_a_reason(tmp_path, folder):
    root = tmp_path / folder
    if folder == "empty":
        root.mkdir()
    found = list_samples(root)
    assert found.samples == [] and found.problems


def test_the_samples_folder_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("FRACTURE_SAMPLES_DIR", raising=False)
    assert samples_dir() == config.SAMPLE_IMAGES_DIR
    monkeypatch.setenv("FRACTURE_SAMPLES_DIR", str(tmp_path))
    assert samples_dir() == tmp_path


def test_filters_and_random_picks():
    samples = list_samples(FIXTURES).samples
    options = filter_options(samples)
    assert options[:3] == [ALL, ANY_FRACTURE, NOT_FRACTURED]
    assert len(filter_samples(samples, ALL)) == len(samples)
    assert all(s.fractured for s in filter_samples(samples, ANY_FRACTURE))
    assert all(s.ground_truth == "Spiral Fracture" for s in filter_samples(samples, "Spiral Fracture"))
    rng = random.Random(3)
    first = pick(samples, rng)
    assert all(pick(samples, rng, avoid=first.path) != first for _ in range(20))
    assert pick([], rng) is None
    assert pick([first], rng, avoid=first.path) == first


def test_fractured_and_not_fractured_come_up_equally_often():
    """The shipped pool is mostly fractured; always answering "Fractured" must not score that share."""
    pool = [SampleImage(Path(f"f{index}.jpg"), "Fractured", "fracatlas") for index in range(9)]
    pool.append(SampleImage(Path("n.jpg"), NOT_FRACTURED, "fracatlas"))
    rng = random.Random(3)
    picks = [pick(pool, rng) for _ in range(4000)]
    assert 0.45 < sum(not sample.fractured for sample in picks) / len(picks) < 0.55
    assert len({sample.path for sample in picks}) == len(pool)


def test_grading_a_reading():
    oblique = SampleImage(Path("x.jpg"), "Oblique fracture")
    fractured = SampleImage(Path("y.jpg"), "Fractured")
    normal = SampleImage(Path("z.jpg"), NOT_FRACTURED)
    right = grade(oblique, True, "Oblique fracture")
    assert right.fracture_correct and right.type_scored and right.type_correct
    wrong_type = grade(oblique, True, "Spiral Fracture")
    assert wrong_type.fracture_correct and wrong_type.type_scored and not wrong_type.type_correct
    assert "Oblique fracture" in wrong_type.message
    unsure = grade(oblique, True, None)
    assert unsure.fracture_correct and not unsure.type_scored
    untyped = grade(fractured, True, "Spiral Fracture")
    assert untyped.fracture_correct and not untyped.type_scored
    missed = grade(normal, True, None)
    assert not missed.fracture_correct and missed.message == "Not quite: the data set labels this X-ray not fractured."
    assert grade(normal, False, None).fracture_correct
    assert "Oblique fracture" in grade(oblique, False, None).message


def test_each_exercise_draws_on_the_samples_that_make_it_fair():
    """No journal figure (arrows point at the fracture, and every one is fractured) comes up in "spot the fracture"."""
    samples = [SampleImage(Path("a.jpg"), "Fractured"), SampleImage(Path("b.jpg"), NOT_FRACTURED),
               SampleImage(Path("c.jpg"), "Oblique fracture")]
    pools = exercises(samples)
    assert [s.name for s in pools[SPOT_THE_FRACTURE]] == ["a.jpg", "b.jpg"]
    assert [s.name for s in pools[NAME_THE_TYPE]] == ["c.jpg"]
    assert list(exercises(samples[:2])) == [SPOT_THE_FRACTURE]  # an exercise with nothing to draw on is not offered


def test_naming_a_type_is_marked_on_the_type_alone():
    oblique = SampleImage(Path("x.jpg"), "Oblique fracture")
    assert grade_type(oblique, "Oblique fracture").outcome == RIGHT
    wrong = grade_type(oblique, "Spiral Fracture")
    assert wrong.outcome == HALF_RIGHT and wrong.message == "Not the data set's label: it is Oblique fracture, not Spiral Fracture."
    unsure = grade_type(oblique, None)
    assert unsure.outcome == NOT_MARKED and not unsure.type_scored and "Correct" not in unsure.message


def test_the_teaching_score_counts_fracture_calls_only_where_one_was_asked():
    oblique, normal = SampleImage(Path("x.jpg"), "Oblique fracture"), SampleImage(Path("z.jpg"), NOT_FRACTURED)
    score = TeachingScore()
    score.record(grade(normal, True, None), SPOT_THE_FRACTURE)
    score.record(grade(oblique, True, "Oblique fracture"), SPOT_THE_FRACTURE)
    score.record(grade_type(oblique, "Spiral Fracture"), NAME_THE_TYPE)
    score.record(grade_type(oblique, None), NAME_THE_TYPE)
    assert score == TeachingScore(cases=4, fracture_calls=2, fracture_correct=1, types_scored=2, types_correct=1)


def test_the_models_reading_of_a_sample_says_when_only_the_type_is_wrong():
    oblique = SampleImage(Path("x.jpg"), "Oblique fracture")
    wrong_type = grade_model(oblique, True, "Pathological fracture")
    assert wrong_type.fracture_correct and not wrong_type.type_correct
    assert "agrees" not in wrong_type.message and "Pathological fracture" in wrong_type.message
    assert "agrees" in grade_model(oblique, True, "Oblique fracture").message
    assert "misses" in grade_model(oblique, False, "Oblique fracture").message
    normal = SampleImage(Path("z.jpg"), NOT_FRACTURED)
    assert "none" in grade_model(normal, True, "Oblique fracture").message
    assert "agrees" in grade_model(normal, False, "Oblique fracture").message  # the type guess is moot


def test_canonical_truth_names():
    assert canonical_truth("non_fractured") == NOT_FRACTURED
    assert canonical_truth(" spiral   fracture ") == "Spiral Fracture"
    # the spellings a data-set folder may use are accepted in labels.csv too
    assert canonical_truth("Non-fractured") == NOT_FRACTURED
    assert canonical_truth("Fracture-Dislocation") == "Fracture Dislocation"
    assert canonical_truth("maybe") is None


def test_the_models_grade_names_its_reading_as_uploaded_where_that_differs():
    crop = SampleImage(Path("crop.jpg"), "Oblique fracture")
    missed = grade_model(crop, False, "Oblique fracture", fractured_as_uploaded=True)
    assert "misses" in missed.message and "Read as uploaded, not turned back, it says fractured, which is right" in missed.message
    assert "as uploaded" not in grade_model(crop, True, "Oblique fracture", fractured_as_uploaded=True).message
    assert "as uploaded" not in grade_model(crop, True, "Oblique fracture").message
