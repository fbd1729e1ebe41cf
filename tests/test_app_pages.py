"""Samples, Teaching mode, Model card and About pages, driven by Streamlit's AppTest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fracture_app import config
from fracture_app.models import artifact_paths
from fracture_app.samples import ALL, NAME_THE_TYPE, NOT_FRACTURED, SPOT_THE_FRACTURE, list_samples

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")
FIXTURES = Path(__file__).parent / "fixtures"
TIMEOUT = 180


pytestmark = pytest.mark.usefixtures("app_environment")


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page(page).run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def test_samples_page_shows_truth_beside_the_models_answer():
    at = open_page("pages/samples.py")
    shown = metrics(at)
    truths = {sample.ground_truth for sample in list_samples(FIXTURES).samples}
    assert shown["Data set's label"] in truths
    assert shown["Verdict"] in ("Fractured", "Not fractured")
    assert any(c.startswith("Grad-CAM") for image in at.image for c in image.captions)
    boxes = {"success": at.success, "warning": at.warning, "error": at.error}
    [(colour, message)] = [(colour, box.value) for colour, found in boxes.items() for box in found
                           if box.value.startswith("The model ")]
    expected = {"success": "agrees with the data set's label", "warning": "its type guess", "error": "worth studying"}
    assert expected[colour] in message, (colour, message)

    before = at.session_state["samples_current"]
    at.button(key="samples_next").click().run()
    assert_clean(at)
    assert at.session_state["samples_current"] != before

    at.selectbox(key="samples_filter").set_value(NOT_FRACTURED).run()
    assert_clean(at)
    assert metrics(at)["Data set's label"] == NOT_FRACTURED
    at.selectbox(key="samples_filter").set_value("Oblique fracture").run()
    assert metrics(at)["Data set's label"] == "Oblique fracture"
    assert at.selectbox(key="samples_filter").options[0] == ALL


def test_samples_and_teaching_draw_the_data_sets_fracture_box_once_the_answer_is_shown(tmp_path, monkeypatch):
    from fracture_app.reading_view import HARDWARE_SAMPLE, TRUTH_BOX_CAPTION

    image = sorted((FIXTURES / "fracatlas" / "images" / "Fractured").glob("*.jpg"))[0]
    (tmp_path / "a.jpg").write_bytes(image.read_bytes())
    (tmp_path / "labels.csv").write_text("file,source,ground_truth,fracture_boxes,hardware\n"
                                         "a.jpg,fracatlas,Fractured,0.5 0.4 0.1 0.2,yes\n", encoding="utf-8")
    monkeypatch.setenv("FRACTURE_SAMPLES_DIR", str(tmp_path))
    at = open_page("pages/samples.py")
    assert TRUTH_BOX_CAPTION in [caption.value for caption in at.caption]
    assert HARDWARE_SAMPLE in [info.value for info in at.info]
    at = open_page("pages/teaching.py")
    assert TRUTH_BOX_CAPTION not in [caption.value for caption in at.caption], "not before the trainee answers"
    assert HARDWARE_SAMPLE not in [info.value for info in at.info]
    at.radio(key="teach_fractured").set_value("Fractured")
    at.form_submit_button[0].click().run()
    assert TRUTH_BOX_CAPTION in [caption.value for caption in at.caption]


def test_samples_and_teaching_explain_an_empty_sample_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("FRACTURE_SAMPLES_DIR", str(tmp_path))
    for page in ("pages/samples.py", "pages/teaching.py"):
        at = open_page(page)
        assert any("No sample X-rays found" in info.value for info in at.info), page


def test_teaching_mode_hides_the_answer_until_the_guess_then_scores_it():
    at = open_page("pages/teaching.py")
    assert metrics(at) == {"Cases read": "0", "Fracture calls right": "–", "Types right": "–"}
    assert "Data set's label" not in metrics(at) and "Verdict" not in metrics(at)
    assert not any(c.startswith("Grad-CAM") for image in at.image for c in image.captions)
    truths = {str(s.path): s for s in list_samples(FIXTURES).samples}
    assert at.radio(key="teach_exercise").value == SPOT_THE_FRACTURE
    case = Path(at.session_state["teach_case"])
    truth = truths[str(case)]
    assert truth.fracture_type is None, "no journal figure, whose arrows would give the fracture away"

    at.form_submit_button[0].click().run()  # no answer chosen yet
    assert any("first" in w.value for w in at.warning)
    assert metrics(at)["Cases read"] == "0"

    at.radio(key="teach_fractured").set_value("Fractured")
    at.form_submit_button[0].click().run()
    assert_clean(at)
    shown = metrics(at)
    assert shown["Cases read"] == "1"
    assert shown["Fracture calls right"] == ("1 / 1" if truth.fractured else "0 / 1")
    assert shown["Data set's label"] == truth.ground_truth
    assert shown["Verdict"] in ("Fractured", "Not fractured")
    assert any(c.startswith("Grad-CAM") for image in at.image for c in image.captions)
    feedback = [e.value for e in (*at.success, *at.warning, *at.error) if "Correct" in e.value or "Not quite" in e.value]
    assert feedback and "data set" in feedback[0]  # a label, not a second reading

    at.button(key="teach_next").click().run()
    assert_clean(at)
    assert at.session_state["teach_committed"] is False
    assert at.session_state["teach_case"] != str(case)
    assert metrics(at)["Cases read"] == "1"

    at.radio(key="teach_exercise").set_value(NAME_THE_TYPE).run()
    typed = truths[at.session_state["teach_case"]]
    assert typed.fracture_type
    assert "teach_fractured" not in [radio.key for radio in at.radio], "every case here is fractured: not asked"
    at.selectbox(key="teach_type").set_value(typed.fracture_type)
    at.form_submit_button[0].click().run()
    assert_clean(at)
    shown = metrics(at)
    assert shown["Cases read"] == "2" and shown["Types right"] == "1 / 1"
    assert shown["Fracture calls right"] == ("1 / 1" if truth.fractured else "0 / 1"), "naming a type is no fracture call"
    at.button(key="teach_reset").click().run()
    assert metrics(at)["Cases read"] == "0"


def test_model_card_page_shows_metrics_plots_and_provenance(tiny_models_dir):
    at = open_page("pages/model_card.py")
    shown = metrics(at)
    for label in ("AUROC", "Sensitivity", "Specificity", "Top-1 accuracy", "Top-3 accuracy", "Macro F1"):
        assert label in shown
    captions = [c for image in at.image for c in image.captions]
    for expected in ("ROC curve", "Confusion matrix", "Training curves"):
        assert any(c.startswith(expected) for c in captions), captions
    text = " ".join(m.value for m in (*at.markdown, *at.caption, *at.info))
    assert "FracAtlas" in text and "Bone Break" in text
    assert "held back for a check outside this project" in text  # the cards' counts are not the published ones
    assert "Intended use" in text and "Limitations" in text and "CPU only" in text
    tables = [frame.value for frame in (*at.dataframe, *at.table)]
    points = next(table for table in tables if "Operating point" in table.columns)
    assert any("High sensitivity" in v for v in points["Operating point"])
    assert all(points["Validation sensitivity"]) and all(points["Validation specificity"])  # the decision row too
    assert sum("Target" in table.columns for table in tables) == 2, "each card's targets are shown"
    by_kind = next(table for table in tables if "Subgroup" in table.columns)
    card = json.loads(artifact_paths(tiny_models_dir, config.BINARY_TASK)["card"].read_text())
    assert list(by_kind["Subgroup"]) == [row["subgroup"] for row in card["metrics"]["test"]["subgroups"]]
    assert list(by_kind["Images"]) == [row["images"] for row in card["metrics"]["test"]["subgroups"]]
    assert "95% intervals: AUROC" in text and "95% intervals: Top-1 accuracy" in text
    assert "chosen on validation AUROC" in text and "chosen on validation macro-F1" in text
    # The third tab: the orientation model's card (the tiny one has no threshold, so it turns nothing, and says so)
    orientation = json.loads(artifact_paths(tiny_models_dir, config.ORIENTATION_TASK)["card"].read_text())
    assert "What it does." in text and "Upright X-rays taken for turned: " in text
    test = orientation["metrics"]["test"]
    assert f"Turned X-rays set upright: {test['turned_set_upright']} of {test['turned']}" in text
    assert any("never turns a picture" in warning.value for warning in at.warning)


def test_a_card_entry_the_page_cannot_read_is_said_not_raised(tiny_models_dir, tmp_path, monkeypatch):
    import shutil

    models_dir = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models_dir)
    card_path = artifact_paths(models_dir, config.BINARY_TASK)["card"]
    card = json.loads(card_path.read_text())
    card["targets"] = [{"target": "AUROC ≥ 0.90"}]  # as a hand edit might leave it: no measured figure, no "met"
    card_path.write_text(json.dumps(card))
    monkeypatch.setenv("FRACTURE_MODELS_DIR", str(models_dir))
    at = open_page("pages/model_card.py")
    said = [warning.value for warning in at.warning if "could not be shown" in warning.value]
    assert len(said) == 1 and f"`{card_path.name}`" in said[0] and "KeyError" in said[0]
    assert "Top-1 accuracy" in metrics(at)  # the other cards are shown in full


def test_the_card_reports_each_target_from_its_own_figures():
    from training.card import target_report

    binary = {"task": "binary", "architecture": "custom_cnn_map",
              "metrics": {"test": {"auroc": 0.95, "sensitivity": 0.86, "specificity": 0.70,
                                   "intervals": {"auroc": [0.9, 0.97]},
                                   "pointing_game": {"hits": 3, "images": 10, "hit_rate": 0.3,
                                                     "interval": [0.11, 0.6]}}}}
    rows = target_report(binary)
    report = {row["target"]: (row["measured"], row["met"]) for row in rows}
    intervals = {row["target"]: row["interval"] for row in rows}
    assert intervals["AUROC ≥ 0.90"] == [0.9, 0.97] and intervals["Grad-CAM pointing game ≥ 0.60"] == [0.11, 0.6]
    assert intervals["specificity at the decision threshold ≥ 0.80"] is None
    assert report["AUROC ≥ 0.90"] == (0.95, True)
    assert report["specificity at the decision threshold ≥ 0.80"] == (0.70, False)
    assert report["expected calibration error ≤ 0.05"] == (None, None)
    assert report["Grad-CAM pointing game ≥ 0.60"] == (0.3, False)
    fracture_type = {"task": "type", "architecture": "custom_cnn", "metrics": {"test": {"top1": 0.6, "top3": 0.7}}}
    assert [row["met"] for row in target_report(fracture_type)] == [True, False, False]


def test_the_model_card_page_says_how_many_targets_are_missed():
    def page():
        from fracture_app.card_view import render_targets

        render_targets([{"target": "AUROC ≥ 0.90", "measured": 0.856, "interval": [0.81, 0.9], "met": False},
                        {"target": "expected calibration error ≤ 0.05", "measured": 0.019, "met": True},
                        {"target": "architecture resnet50", "measured": "custom_cnn", "met": False}])

    at = AppTest.from_function(page).run()
    assert_clean(at)
    assert "misses 2 of its 3 targets" in at.warning[0].value
    table = at.table[0].value
    assert list(table["Measured"]) == ["0.856", "0.019", "custom_cnn"] and list(table["Met"]) == ["no", "yes", "no"]
    assert list(table["95% interval"]) == ["0.810–0.900", "", ""]


def test_the_model_card_page_says_when_every_target_is_met():
    def page():
        from fracture_app.card_view import render_targets

        render_targets([{"target": "AUROC ≥ 0.90", "measured": 0.93, "interval": [0.89, 0.96], "met": True},
                        {"target": "expected calibration error ≤ 0.05", "measured": 0.019, "met": True}])

    at = AppTest.from_function(page).run()
    assert_clean(at)
    assert not at.warning and "meets all 2 of its targets" in at.success[0].value


def test_about_page_explains_the_tool_and_the_heat_map():
    at = open_page("pages/about.py")
    text = " ".join(m.value for m in (*at.markdown, *at.warning))
    assert config.NOTICE in text
    assert "How to read a Grad-CAM heat map" in text
    assert "not a segmentation" in text


def test_model_card_lists_the_runs_compared_without_their_commands():
    def page():
        from fracture_app.card_view import render_compared_runs

        render_compared_runs([
            {"run": "shipped", "architecture": "custom_cnn", "val_macro_f1": 0.138, "command": "python -m …",
             "shipped": True},
            {"run": "resnet50_domain", "architecture": "resnet50", "val_macro_f1": 0.05, "command": "python -m …",
             "shipped": False},
        ])

    at = AppTest.from_function(page).run()
    assert_clean(at)
    assert any("Runs compared" in m.value for m in at.markdown)
    table = at.dataframe[0].value
    assert list(table["run"]) == ["shipped", "resnet50_domain"] and "command" not in table.columns


def test_model_card_says_why_a_compared_run_has_no_figure():
    def page():
        from fracture_app.card_view import render_compared_runs

        render_compared_runs([
            {"run": "shipped", "val_auroc": 0.85, "augmentation": "one affine warp", "val_pointing_game": 0.37735849,
             "weights_rounded_to": None},
            {"run": "on_jax", "val_auroc": 0.81, "augmentation": "one affine warp", "val_pointing_game": None,
             "weights_rounded_to": "float16", "lr_schedule": "cosine", "weights_init_sha256": None},
            {"run": "older", "val_auroc": 0.80},
        ])

    at = AppTest.from_function(page).run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table["val_pointing_game"]) == ["0.377", "not measured", "not recorded"]
    assert list(table["augmentation"]) == ["one affine warp", "one affine warp", "not recorded"]
    assert list(table["weights_rounded_to"]) == ["not rounded", "float16", "not recorded"]
    assert list(table["lr_schedule"]) == ["not recorded", "cosine", "not recorded"]
    assert list(table["weights_init_sha256"]) == ["not recorded", "—", "not recorded"]
    assert "test_pointing_game" not in table.columns


def card_page(card, directory):
    """One card on a page of its own (AppTest runs this function's source as the script)."""
    from fracture_app.card_view import render_card

    render_card(card, directory, card.task)


def test_model_card_says_which_file_training_started_from_and_the_time_in_all(tiny_models_dir):
    from fracture_app.models import read_card

    card = read_card(tiny_models_dir / config.MODEL_FILES[config.TYPE_TASK])
    card.data.update(weights_init="models/fracture_binary.keras", weights_init_sha256="50ac208f26e2" + "0" * 52)
    card.data["training"]["time_note"] = "this run started from the binary model"

    at = AppTest.from_function(card_page, kwargs={"card": card, "directory": tiny_models_dir}).run()
    assert_clean(at)
    captions = " ".join(c.value for c in at.caption)
    assert "initial weights: an earlier model of ours (named under “How it was made”)" in captions, \
        "the header names no developer's path"
    assert "- Started from: models/fracture_binary.keras (sha256 50ac208f26e2…)" in " ".join(m.value for m in at.markdown)
    assert "Training time in all: this run started from the binary model" in captions


def test_model_card_gives_the_cross_validated_figures_beside_the_models_own_on_the_same_terms(tiny_models_dir):
    from fracture_app.models import read_card

    card = read_card(tiny_models_dir / config.MODEL_FILES[config.TYPE_TASK])
    assert "cross_validation" not in card.data
    card.data["metrics"]["val"].update(macro_f1=0.363, n=154)
    card.data["metrics"]["test"].update(macro_f1=0.274)
    card.data["test_time_flip"] = {"used": True, "validation": {"image_alone": 0.338, "averaged_with_mirror": 0.363}}
    card.data["compared_runs"] = [{"run": "shipped"}, {"run": "another"}]
    card.data["cross_validation"] = {
        "metric": "macro-F1", "metric_key": "macro_f1", "images": 865, "at": "2026-11-28T03:17:11+00:00",
        "model_version": card.version,
        "differs_from_this_file": [
            {"option": "--keep-last-epoch", "theirs": "yes", "instead_of": "no"},
            {"option": "--weights", "theirs": "sha256 2ad48155f225…", "instead_of": "sha256 d5138e0d1243…"},
            {"option": "--learning-rate", "theirs": "0.0003", "instead_of": "not given"},
            {"option": "mirror", "theirs": "each image alone", "instead_of": "averaged with its mirror"}],
        "recipes": [{"runs": 5, "score": 0.294, "interval": [0.259, 0.327],
                     "also": {"top1": {"score": 0.32, "interval": [0.284, 0.357]},
                              "top3": {"score": 0.564, "interval": [0.527, 0.6]}}},
                    {"runs": 5, "score": 0.288, "interval": [0.257, 0.321],
                     "differs": [{"option": "--img-size", "theirs": "224", "instead_of": "160"}]}],
        "difference": {"score": 0.006, "interval": [-0.026, 0.036]}}

    at = AppTest.from_function(card_page, kwargs={"card": card, "directory": tiny_models_dir}).run()
    assert_clean(at)
    text = " ".join(m.value for m in at.markdown)
    assert "5 models made nearly as this one was (the differences are below) were each trained on all but one of 5" in text
    assert ("first guess right for 32.0% (95% interval 28.4%–35.7%); right type among the top three for 56.4% (95% "
            "interval 52.7%–60.0%); macro-F1 (the mean over the types") in text
    assert f"about {1 / len(card.classes):.1f} is chance" in text
    assert "**0.294** (95% interval 0.259–0.327). For comparison, this model's own test macro-F1 above is 0.274" in text
    assert "validation macro-F1 is 0.338 (0.363 as the app runs it), on only 154 X-rays; it was picked" in text
    captions = " ".join(c.value for c in at.caption)
    assert ("otherwise than this one: they trained for all their epochs instead of stopping at the best one on "
            "validation; started from another earlier model; --learning-rate 0.0003 instead of not given; read each "
            "X-ray once instead of averaging it with its mirror image.") in captions
    assert ("The same models read 224 px instead of 160 px: macro-F1 0.288 (95% interval 0.257–0.321). This way "
            "minus that: +0.006 (95% interval −0.026 to +0.036): no detectable difference.") in captions
    assert not any("not this one" in w.value for w in at.warning), "measured on this very version"

    card.data["cross_validation"].update(model_version="an older one", difference={"score": None})
    card.data["metrics"]["val"] = None
    at = AppTest.from_function(card_page, kwargs={"card": card, "directory": tiny_models_dir}).run()
    assert_clean(at)
    assert any("Measured for version an older one" in w.value for w in at.warning)
    captions = " ".join(c.value for c in at.caption)
    assert "minus that: n/a (95% interval n/a to n/a): no detectable difference" in captions
    assert "as the app runs it" not in " ".join(m.value for m in at.markdown), "no validation figure to give"


@pytest.mark.parametrize("difference, words", [
    ({"option": "--keep-last-epoch", "theirs": "no", "instead_of": "yes"}, "stopped at their best epoch on validation"),
    ({"option": "--weights", "theirs": "none", "instead_of": "sha256 d5138e0d1243…"},
     "started from scratch instead of from an earlier model"),
    ({"option": "--weights", "theirs": "imagenet", "instead_of": "none"},
     "started from ImageNet weights instead of from scratch"),
    ({"option": "--float32", "theirs": "yes", "instead_of": "no"}, "--float32 yes instead of no"),
    ({"option": "epochs run", "theirs": "80", "instead_of": "120"}, "ran 80 epochs instead of 120"),
])
def test_each_training_difference_is_worded_the_right_way_round(difference, words):
    from fracture_app.card_view import difference_words

    assert difference_words(difference) == words or difference_words(difference).startswith(words)


def test_model_card_names_a_split_file_and_a_pointing_game_left_for_later(tiny_models_dir):
    """A run on a GPU machine without TensorFlow: its split came from a file, Grad-CAM was not measured."""
    from fracture_app.models import read_card

    card = read_card(tiny_models_dir / config.MODEL_FILES[config.BINARY_TASK])
    card.data["data"].update(split_file={"path": "models/fracture_binary_split.csv", "sha256": "0" * 64},
                             groups_spanning_split_file=2, split_seed=None)
    card.data["metrics"]["test"].pop("pointing_game", None)
    card.data["gradcam"] = {"not_measured": "Grad-CAM runs on TensorFlow only; training.evaluate measures it"}

    at = AppTest.from_function(card_page, kwargs={"card": card, "directory": tiny_models_dir}).run()
    assert_clean(at)
    text = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "split from the file `models/fracture_binary_split.csv`" in text and "2 groups" in text
    assert "Grad-CAM pointing game not measured: Grad-CAM runs on TensorFlow only" in text


def test_model_card_says_how_a_heat_map_choice_came_about_where_the_card_discloses_it(tiny_models_dir):
    from fracture_app.models import read_card

    card = read_card(tiny_models_dir / config.MODEL_FILES[config.BINARY_TASK])
    card.data["disclosures"] = {"gradcam": "How this choice came about: after test."}
    at = AppTest.from_function(card_page, kwargs={"card": card, "directory": tiny_models_dir}).run()
    assert_clean(at)
    assert "How this choice came about: after test." in [c.value for c in at.caption]


def test_the_shipped_binary_card_discloses_that_its_blur_was_tried_after_a_test_figure():
    from fracture_app.models import read_card

    disclosure = read_card(config.SHIPPED_MODELS_DIR / config.MODEL_FILES[config.BINARY_TASK]).data["disclosures"]["gradcam"]
    assert "54 of 92" in disclosure and "missed the 0.60 target" in disclosure


@pytest.mark.parametrize("measured_again", [None, "1.0+choices-2026.11.27-010000"])
def test_model_card_says_whether_its_figures_were_measured_after_the_weights_were_rounded(tiny_models_dir,
                                                                                            measured_again):
    from fracture_app.models import read_card

    card = read_card(tiny_models_dir / config.MODEL_FILES[config.TYPE_TASK])
    card.data["weights_rounded"] = {"to": "float16", "by": "python -m training.transport", "at": "2026-11-27T00:00:00",
                                    "measured_again": measured_again}

    at = AppTest.from_function(card_page, kwargs={"card": card, "directory": tiny_models_dir}).run()
    assert_clean(at)
    captions = " ".join(c.value for c in at.caption)
    assert "carried as float16" in captions
    expected = "measured again on this file" if measured_again else "measured before that rounding"
    assert expected in captions
