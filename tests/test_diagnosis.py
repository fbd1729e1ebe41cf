"""The single road: bytes → XRay → both models → calibrated verdict, band, type ranking, heat maps."""

import dataclasses

import numpy as np
import pytest

from fracture_app import config
from fracture_app.cautions import READINGS_DISAGREE, TOO_INCOMPLETE, TOO_POOR, TURNED, cautions_for
from fracture_app.diagnosis import (LIKELY, LOW_SCORE, NOT_RULED_OUT, POSSIBLE, Diagnoser, Diagnosis, band_shares,
                                    confidence_band)
from fracture_app.imaging import XRay, read_image

from conftest import FRACATLAS_FIXTURES


@pytest.fixture(scope="module")
def diagnoser(tiny_models_dir):
    return Diagnoser.from_dir(tiny_models_dir)


def test_bands_follow_the_threshold_and_the_two_operating_points():
    points = {"high_sensitivity": {"threshold": 0.2}, "high_specificity": {"threshold": 0.7}}
    assert confidence_band(0.1, points, 0.4) == LOW_SCORE
    assert confidence_band(0.2, points, 0.4) == NOT_RULED_OUT
    assert confidence_band(0.39, points, 0.4) == NOT_RULED_OUT
    assert confidence_band(0.4, points, 0.4) == POSSIBLE
    assert confidence_band(0.69, points, 0.4) == POSSIBLE
    assert confidence_band(0.7, points, 0.4) == LIKELY


@pytest.mark.parametrize("probability", np.linspace(0, 1, 41))
def test_the_band_never_contradicts_the_verdict_even_when_a_card_is_odd(probability):
    odd_points = {"high_sensitivity": {"threshold": 0.6}, "high_specificity": {"threshold": 0.3}}
    band = confidence_band(probability, odd_points, 0.45)
    assert (band in (LIKELY, POSSIBLE)) == (probability >= 0.45)


@pytest.mark.parametrize("colour, metadata, kinds", [
    (0.0, {}, []),
    (0.9, {}, ["not_xray"]),
    (0.0, {"missing_fraction": 0.12, "frames": 3, "brightness_bits": 12},
     ["incomplete", "more_frames", "guessed_brightness"]),
    (0.0, {"frames": 1}, []),
    (0.0, {"missing_detail": True}, ["incomplete"]),
    (0.0, {"no_display_window": True}, ["guessed_brightness"]),
])
def test_cautions_come_from_what_the_reader_recorded(colour, metadata, kinds):
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))  # a picture the reader would accept
    xray = XRay(ramp, "upload", "PNG", colour, metadata)
    cautions = cautions_for(xray)
    assert [caution.kind for caution in cautions] == kinds
    texts = " ".join(caution.text for caution in cautions)
    for word in ("12%" if "missing_fraction" in metadata else None, "3 images" if "more_frames" in kinds else None,
                 "12-bit" if "brightness_bits" in metadata else None,
                 "no display window" if "no_display_window" in metadata else None):
        assert word is None or word in texts


@pytest.mark.parametrize("probability, types, withheld", [
    (0.1, {"Oblique fracture": 1.0}, True),  # "Not fractured", yet the type model names a type
    (0.9, {"Oblique fracture": 1.0}, False),
    (0.1, {}, False),  # no type model: nothing to withhold
    (None, {"Oblique fracture": 1.0}, False),  # no fracture model: nothing says "no fracture"
])
def test_the_type_guess_is_withheld_beside_not_fractured(probability, types, withheld):
    # An X-ray with a caution of its own (a multi-frame file), which the notes still give.
    xray = XRay(np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1)), "upload", "PNG", 0.0, {"frames": 3})
    diagnosis = Diagnosis(xray, probability, 0.5, None, types)
    assert diagnosis.type_withheld == withheld
    assert diagnosis.best_type == next(iter(types.items()), (None, None)), "kept for a reader who asks to see it"
    assert diagnosis.notes == [cautions_for(xray)[0].brief]


@pytest.mark.parametrize("missing, probability, verdict", [
    (0.30, 0.1, "No verdict"),  # "Not fractured" on 70% of a picture would be read as about the whole
    (0.30, 0.9, "Fractured"),  # the fracture it scored is in the part that is there
    (0.12, 0.1, "Not fractured"),  # a strip missing: the caution says so
])
def test_a_negative_verdict_is_withheld_where_a_quarter_of_the_picture_is_missing(missing, probability, verdict):
    xray = XRay(np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1)), "upload", "JPEG", 0.0,
                {"missing_fraction": missing})
    diagnosis = Diagnosis(xray, probability, 0.5, None, {"Oblique fracture": 1.0})
    assert diagnosis.verdict == verdict
    assert diagnosis.notes == [f"incomplete file: about {missing:.0%} missing"
                               + (", too much for a “Not fractured” verdict" if verdict == "No verdict" else "")]
    assert diagnosis.type_top == ([] if verdict == "No verdict" else [("Oblique fracture", 1.0)])


@pytest.mark.parametrize("metadata", [{"low_contrast": 0.1}, {"narrow_band": 0.01}, {}])
def test_no_negative_verdict_on_a_picture_of_a_kind_the_model_misses_fractures_on(metadata):
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))
    pixels = ramp if metadata else 1.0 - 0.5 * np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1)) ** 4
    xray = XRay(pixels, "upload", "PNG", 0.0, metadata)  # {}: a bright picture, a negative's look
    [picture_caution] = cautions_for(xray)
    low, high = Diagnosis(xray, 0.1, 0.5, None, {}), Diagnosis(xray, 0.9, 0.5, None, {})
    assert low.verdict == "No verdict" and low.withheld_because.kind == TOO_POOR
    assert low.withheld_because.text.startswith(picture_caution.text) and "no “Not fractured”" in low.withheld_because.text
    assert low.cautions_before_the_answer == (picture_caution,)  # says what the picture is, not what the model made of it
    assert high.verdict == "Fractured" and high.cautions == (picture_caution,)


def test_no_negative_verdict_where_the_reading_as_uploaded_says_fractured():
    xray = XRay(np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1)), "upload", "JPEG", 0.0, {})
    disagreeing = Diagnosis(xray, 0.1, 0.5, None, {}, turn=2, as_uploaded_probability=0.7)
    assert disagreeing.verdict == "No verdict" and disagreeing.withheld_because.kind == READINGS_DISAGREE
    assert disagreeing.notes == ["readings disagree: Fractured as uploaded, not when turned back"]
    assert disagreeing.cautions_before_the_answer == ()
    assert disagreeing.stated()["fracture_probability"] is None
    for as_uploaded, verdict in ((0.2, "Not fractured"), (None, "Not fractured")):
        assert Diagnosis(xray, 0.1, 0.5, None, {}, turn=2 if as_uploaded else 0,
                         as_uploaded_probability=as_uploaded).verdict == verdict
    assert Diagnosis(xray, 0.9, 0.5, None, {}, turn=2, as_uploaded_probability=0.1).verdict == "Fractured"


def test_a_withheld_negative_on_a_turned_picture_gives_no_score_as_uploaded_either():
    xray = XRay(np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1)), "upload", "JPEG", 0.0,
                {"missing_fraction": 0.4})
    diagnosis = Diagnosis(xray, 0.1, 0.5, None, {}, turn=1, as_uploaded_probability=0.9)
    assert diagnosis.verdict == "No verdict" and diagnosis.withheld_because.kind == TOO_INCOMPLETE
    assert diagnosis.fractured_as_uploaded is None and diagnosis.verdict_as_uploaded is None
    assert diagnosis.notes == ["incomplete file: about 40% missing, too much for a “Not fractured” verdict"]


def test_what_a_table_states_follows_the_withholding_rules():
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))
    types = {"Oblique fracture": 0.7, "Spiral fracture": 0.3}
    turned_fracture = Diagnosis(XRay(ramp, "upload", "JPEG", 0.0, {}), 0.9, 0.5, "band", types, turn=1,
                                as_uploaded_probability=0.2).stated()
    assert turned_fracture == {
        "verdict": "Fractured", "fractured": True, "fracture_probability": 0.9, "reading": "band",
        "fracture_type": "Oblique fracture", "fracture_type_probability": 0.7,
        "notes": turned_fracture["notes"], "turned_back": config.ORIENTATIONS[1], "fracture_probability_as_uploaded": 0.2}
    assert "as uploaded: 20.0%" in turned_fracture["notes"]
    negative = Diagnosis(XRay(ramp, "upload", "JPEG", 0.0, {}), 0.1, 0.5, "band", types).stated()
    assert negative["fractured"] is False and negative["fracture_probability"] == 0.1
    assert negative["fracture_type"] is None and negative["fracture_type_probability"] is None
    withheld = Diagnosis(XRay(ramp, "upload", "JPEG", 0.0, {"missing_fraction": 0.4}), 0.1, 0.5, "band", types,
                         turn=1, as_uploaded_probability=0.9).stated()
    assert withheld["verdict"] == "No verdict" and "too much for a “Not fractured” verdict" in withheld["notes"][0]
    assert {key: value for key, value in withheld.items() if key not in ("verdict", "notes")} == dict.fromkeys(
        ("fractured", "fracture_probability", "reading", "fracture_type", "fracture_type_probability",
         "turned_back", "fracture_probability_as_uploaded"))


def test_before_the_answer_a_trainee_sees_the_file_is_incomplete_but_not_what_the_model_made_of_it():
    xray = XRay(np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1)), "upload", "JPEG", 0.0,
                {"missing_fraction": 0.4, "frames": 2})
    withheld = Diagnosis(xray, 0.1, 0.5, None, {})
    turned = Diagnosis(dataclasses.replace(xray, metadata={"frames": 2}), 0.9, 0.5, None, {}, turn=1,
                       as_uploaded_probability=0.2)
    assert [caution.kind for caution in withheld.cautions] == [TOO_INCOMPLETE, "more_frames"]
    assert withheld.cautions_before_the_answer == tuple(cautions_for(xray))  # "incomplete", as the picture alone
    assert "no fracture" not in " ".join(caution.text for caution in withheld.cautions_before_the_answer)
    assert [caution.kind for caution in turned.cautions] == ["more_frames", TURNED]
    assert [caution.kind for caution in turned.cautions_before_the_answer] == ["more_frames"]


def test_a_real_upload_gets_a_full_diagnosis(diagnoser, fractured_xray_path):
    xray = read_image(fractured_xray_path.read_bytes(), name=fractured_xray_path.name)
    diagnosis = diagnoser.diagnose(xray)
    assert diagnosis.verdict in ("Fractured", "Not fractured")
    assert 0 <= diagnosis.fracture_probability <= 1
    assert diagnosis.fractured == (diagnosis.fracture_probability >= diagnosis.threshold)
    assert len(diagnosis.type_top) == 3 and sum(diagnosis.type_probabilities.values()) == pytest.approx(1, abs=1e-4)
    assert list(diagnosis.type_probabilities) == sorted(diagnosis.type_probabilities, key=diagnosis.type_probabilities.get, reverse=True)
    for task in config.TASKS:
        assert diagnosis.heatmaps[task].shape == xray.pixels.shape
    assert not diagnosis.verdict_withheld
    assert set(diagnosis.model_versions) == set(config.TASKS)  # the tiny orientation card turns nothing: not named


def test_batch_and_single_answers_agree(diagnoser, fixtures_dir):
    xrays = [read_image(p) for p in sorted((fixtures_dir / "fracatlas" / "images").rglob("*.jpg"))[:5]]
    batch = diagnoser.diagnose_batch(xrays)
    singles = [diagnoser.diagnose(x, heatmap_tasks=()) for x in xrays]
    np.testing.assert_allclose([d.fracture_probability for d in batch], [d.fracture_probability for d in singles], atol=1e-5)


def test_works_with_only_one_model(tiny_models_dir, tmp_path, fractured_xray_path):
    import shutil

    for path in tiny_models_dir.glob("fracture_binary*"):
        shutil.copy(path, tmp_path)
    only_binary = Diagnoser.from_dir(tmp_path)
    assert "fracture_type.keras" in only_binary.problems[config.TYPE_TASK]
    assert config.BINARY_TASK not in only_binary.problems
    diagnosis = only_binary.diagnose(read_image(fractured_xray_path))
    assert diagnosis.type_probabilities == {} and diagnosis.verdict in ("Fractured", "Not fractured")


def test_the_heat_map_is_blurred_as_the_card_says(tiny_models_dir, tmp_path, fractured_xray_path):
    import json
    import shutil

    from fracture_app.gradcam import GradCam, heatmap_on_image, smoothed
    from fracture_app.preprocess import prepare

    for path in tiny_models_dir.glob("fracture_binary*"):
        shutil.copy(path, tmp_path)
    card_path = tmp_path / "fracture_binary.json"
    card = json.loads(card_path.read_text())
    card["gradcam"] = {**(card.get("gradcam") or {}), "smoothing_cells": 1.0}
    card_path.write_text(json.dumps(card))
    diagnoser = Diagnoser.from_dir(tmp_path)
    model, xray = diagnoser.models["binary"], read_image(fractured_xray_path)
    raw = GradCam(model.keras_model, model.card.gradcam_layer, model.card.flip_average).heatmap(
        prepare(xray.pixels, model.spec), 1)
    expected = heatmap_on_image(smoothed(raw, 1.0), xray.pixels.shape, model.spec.size)
    np.testing.assert_allclose(diagnoser.diagnose(xray).heatmaps["binary"], expected, atol=1e-4)


def test_each_band_says_what_share_of_the_cards_test_xrays_it_held(diagnoser):
    points = {"high_sensitivity": {"test": {"sensitivity": 0.95, "specificity": 0.5}},
              "high_specificity": {"test": {"sensitivity": 0.7, "specificity": 0.96}}}
    shares = band_shares(points, {"sensitivity": 0.88, "specificity": 0.86})
    assert shares[LOW_SCORE] == pytest.approx((0.5, 0.05)) and shares[LIKELY] == pytest.approx((0.04, 0.7))
    assert shares[NOT_RULED_OUT] == pytest.approx((0.36, 0.07)) and shares[POSSIBLE] == pytest.approx((0.10, 0.18))
    assert band_shares(points, {"sensitivity": 0.99, "specificity": 0.86}) == {}, "points out of order: no figures"
    assert band_shares({}, {"sensitivity": 0.88, "specificity": 0.86}) == {}
    card = diagnoser.models[config.BINARY_TASK].card
    measured = band_shares(card.operating_points, card.data["metrics"]["test"])
    xray = read_image(sorted((FRACATLAS_FIXTURES / "images").rglob("*.jpg"))[0])
    diagnosis = diagnoser.diagnose_batch([xray])[0]
    assert diagnosis.band_measured == measured.get(diagnosis.band)


def test_the_shipped_cards_bands_are_whole_counts_of_its_test_x_rays_and_the_readme_quotes_them():
    import json
    import re

    card = json.loads((config.SHIPPED_MODELS_DIR / "fracture_binary.json").read_text())
    shares = band_shares(card["operating_points"], card["metrics"]["test"])
    assert set(shares) == {LOW_SCORE, NOT_RULED_OUT, POSSIBLE, LIKELY}
    (true_negatives, false_positives), (false_negatives, true_positives) = card["metrics"]["test"]["confusion_matrix"]
    unfractured, fractured = true_negatives + false_positives, false_negatives + true_positives
    for without, with_fracture in shares.values():  # each share is so many of the test X-rays, not a stray figure
        assert unfractured * without == pytest.approx(round(unfractured * without), abs=1e-6)
        assert fractured * with_fracture == pytest.approx(round(fractured * with_fracture), abs=1e-6)
    readme = (config.REPO_ROOT / "README.md").read_text()
    quoted = re.search(r"\*fracture not ruled out\* held (\d+)% of those\s+without one", readme)
    assert quoted and int(quoted.group(1)) == round(100 * shares[NOT_RULED_OUT][0])
