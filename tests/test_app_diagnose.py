"""The Read X-rays page and the app's frame (navigation, sidebar), driven by Streamlit's AppTest.

AppTest runs the real app.py in this process; its file uploader takes bytes as a browser would send them.
The models are the tiny ones trained by the conftest fixture, found through FRACTURE_MODELS_DIR.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from fracture_app import config, reading_view, ui
from fracture_app.report import TYPE_GUESS_CAVEAT

from conftest import xray_as_dicom

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")
FIXTURES = Path(__file__).parent / "fixtures"
PERCENT = re.compile(r"^(<0\.1|>99\.9|\d{1,2}\.\d|100\.0)%$")
TIMEOUT = 180  # the first run loads TensorFlow and the models


pytestmark = pytest.mark.usefixtures("app_environment")


def run_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page:
        at.switch_page(page).run()
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def upload(at: AppTest, *files: tuple[str, bytes]) -> AppTest:
    at.file_uploader(key="diagnose_uploads").set_value([(name, data, "application/octet-stream") for name, data in files])
    return at.run()


def fixture_bytes(path: Path) -> tuple[str, bytes]:
    return path.name, path.read_bytes()


def test_landing_page_is_read_x_rays_with_notice_and_model_versions(tiny_models_dir):
    at = run_app()
    assert_clean(at)
    assert at.title[0].value == "Read X-rays"
    assert at.file_uploader(key="diagnose_uploads").accept_multiple_files
    assert at.file_uploader(key="diagnose_uploads").allowed_type == []  # extension-less DICOM must pass
    sidebar = " ".join(element.value for element in at.sidebar.warning) + " ".join(c.value for c in at.sidebar.caption)
    assert config.NOTICE in sidebar
    from fracture_app.models import read_card, model_path_for

    for task in config.TASKS:
        assert read_card(model_path_for(task, tiny_models_dir)).version in sidebar
    # How good each model measured, from its card: a trainee sees it beside every reading.
    type_test = read_card(model_path_for(config.TYPE_TASK, tiny_models_dir)).data["metrics"]["test"]
    assert f"its first guess was right for {100 * type_test['top1']:.1f}% of fractures" in sidebar
    binary_test = read_card(model_path_for(config.BINARY_TASK, tiny_models_dir)).data["metrics"]["test"]
    if binary_test["sensitivity"] is not None:  # undefined where a tiny test split holds no fracture
        assert f"it found {100 * binary_test['sensitivity']:.1f}% of fractures" in sidebar
    if read_card(model_path_for(config.ORIENTATION_TASK, tiny_models_dir)).turn_threshold is None:
        assert "Orientation model: loaded, but its card sets no threshold, so it turns no picture" in sidebar


def test_uploaded_xray_gets_the_same_verdict_as_the_core(fractured_xray_path, tiny_models_dir):
    from fracture_app import ui
    from fracture_app.imaging import read_image
    from fracture_app.report import percent

    at = upload(run_app(), fixture_bytes(fractured_xray_path))
    assert_clean(at)
    assert not [e.value for e in at.error if "could not" in e.value]
    shown = metrics(at)
    diagnoser = ui.load_models().diagnoser  # the process-wide cached one: Diagnoser.from_dir(tiny_models_dir)
    assert set(diagnoser.models) == set(config.TASKS)
    expected = diagnoser.diagnose(read_image(fractured_xray_path))
    assert shown["Verdict"] == expected.verdict
    assert shown["Verdict"] in ("Fractured", "Not fractured")
    assert PERCENT.match(shown["Fracture probability"]), shown
    assert shown["Fracture probability"] == percent(expected.fracture_probability)
    callouts = [element.value for element in (*at.info, *at.warning, *at.error)]
    assert any(expected.band.capitalize() in text for text in callouts), callouts
    if expected.band_measured:
        without, with_fracture = expected.band_measured
        assert any(f"held {without:.0%} of the X-rays without a fracture and {with_fracture:.0%}" in text
                   for text in callouts), callouts
    captions = [caption for image in at.image for caption in image.captions]
    assert any(caption.startswith("Original") for caption in captions)
    assert any(caption.startswith("Grad-CAM") for caption in captions)
    assert at.download_button(key="diagnose_report").label.startswith("Download the report")
    kept = list(at.session_state[ui.READINGS_KEY].values())
    assert len(kept) == 1 and kept[0].xray.pixels.dtype == np.float16, "readings are kept small in the session"
    assert all(heat.dtype == np.float16 for heat in kept[0].heatmaps.values())
    assert "The type model's guess" in " ".join(m.value for m in at.markdown)
    type_measure = expected.model_measures[config.TYPE_TASK]
    guess_captions = [c.value for c in at.main.caption if c.value.startswith(TYPE_GUESS_CAVEAT.capitalize())]
    assert type_measure and any(type_measure in text for text in guess_captions), "how often its first guess is right"


def test_opacity_and_heatmap_choice_do_not_rerun_the_models(fractured_xray_path, monkeypatch):
    from fracture_app.diagnosis import Diagnoser

    calls = []
    original = Diagnoser.diagnose

    def counting(self, xray, *args, **kwargs):
        calls.append(xray.source)
        return original(self, xray, *args, **kwargs)

    monkeypatch.setattr(Diagnoser, "diagnose", counting)
    at = upload(run_app(), fixture_bytes(fractured_xray_path))
    assert len(calls) == 1
    at.slider(key="diagnose_opacity").set_value(0.8).run()
    at.radio(key="diagnose_heat").set_value(config.TYPE_TASK).run()
    at.radio(key="diagnose_report_format").set_value("PNG").run()
    assert_clean(at)
    assert len(calls) == 1
    assert any(c.startswith("Grad-CAM of the fracture-type model") for image in at.image for c in image.captions)


def test_a_broken_upload_shows_the_readers_message_and_the_others_are_still_read(fractured_xray_path):
    others = sorted((FIXTURES / "fracatlas" / "images" / "Non_fractured").glob("*.jpg"))[:1]
    at = upload(run_app(), fixture_bytes(fractured_xray_path), ("notes.pdf", b"%PDF-1.7 not an x-ray"),
                ("cut.jpg", fractured_xray_path.read_bytes()[:200]), *map(fixture_bytes, others))
    assert_clean(at)
    errors = [element.value for element in at.error]
    assert any("notes.pdf" in e and "PDF document" in e for e in errors), errors
    assert any("cut.jpg" in e for e in errors), errors
    table = at.dataframe[0].value
    assert list(table["File"]) == [fractured_xray_path.name, "notes.pdf", "cut.jpg", others[0].name]
    assert list(table["Verdict"][[1, 2]]) == ["Not read", "Not read"]
    assert set(table["Verdict"][[0, 3]]) <= {"Fractured", "Not fractured"}
    for index in (0, 3):  # a type is guessed only beside "Fractured": beside a normal film it could be acted on
        assert bool(table["Type guess"][index]) == (table["Verdict"][index] == "Fractured")
    assert table["Image"][0].startswith("data:image/png;base64,")
    notes = next(m.value for m in at.markdown if m.value.startswith("**Notes**"))  # in full: a cell cuts them short
    assert f"- `` notes.pdf ``: {table['Note'][1]}" in notes and f"- `` cut.jpg ``: {table['Note'][2]}" in notes
    assert at.download_button(key="diagnose_csv")
    assert metrics(at)["Verdict"] in ("Fractured", "Not fractured")  # the detail view of a readable one
    assert len(at.selectbox(key="diagnose_detail").options) == 2


def test_past_what_a_session_keeps_only_the_first_files_are_read_and_the_page_says_so(monkeypatch):
    """Otherwise every slider move would read the extra files again (they fall out of the session's readings)."""
    monkeypatch.setattr(ui, "MAX_READINGS_KEPT", 2)
    images = sorted((FIXTURES / "fracatlas" / "images").rglob("*.jpg"))[:3]
    at = upload(run_app(), *map(fixture_bytes, images))
    assert_clean(at)
    assert any(f"3 files were chosen; the first 2 are read here, not {images[2].name}." in warning.value
               for warning in at.warning)
    assert list(at.dataframe[0].value["File"]) == [image.name for image in images[:2]]


def test_the_uploader_refuses_what_the_reader_would_refuse():
    import tomllib

    settings = tomllib.loads((config.REPO_ROOT / ".streamlit" / "config.toml").read_text())
    # The browser counts a megabyte as 2**20 bytes (as 10**6 on some systems, where the uploader is the stricter).
    assert settings["server"]["maxUploadSize"] * 2**20 == config.MAX_FILE_BYTES


def test_extensionless_dicom_is_read_and_summarised(fractured_xray_path):
    at = upload(run_app(), ("IM000001", xray_as_dicom(fractured_xray_path)))
    assert_clean(at)
    assert not [e.value for e in at.error if "could not" in e.value]
    assert metrics(at)["Verdict"] in ("Fractured", "Not fractured")
    summary = " ".join(caption.value for caption in at.caption)
    assert "HAND" in summary and "PA" in summary and "DX" in summary
    assert any("no display window" in warning.value for warning in at.warning), "its contrast is a guess"
    assert "SECRET-123" not in summary and "Doe" not in summary


def test_colour_photo_is_flagged_as_not_an_xray():
    import matplotlib

    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"  # a real colour photograph
    at = upload(run_app(), ("holiday.jpg", photo.read_bytes()))
    assert_clean(at)
    assert any(reading_view.NO_VERDICT in i.value and "This picture is in colour" in i.value for i in at.info)
    assert "Verdict" not in metrics(at) and not any("colour" in w.value for w in at.warning), "the reason once"
    captions = [caption for image in at.image for caption in image.captions]
    assert captions == ["Original: holiday.jpg"], "the original alone: no heat map"
    assert not any("type model's guess" in m.value for m in at.markdown)


def test_in_the_table_a_picture_that_is_not_an_xray_gets_no_verdict(fractured_xray_path):
    noise = np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8)
    ok, encoded = cv2.imencode(".png", noise)
    at = upload(run_app(), fixture_bytes(fractured_xray_path), ("noise.png", encoded.tobytes()))
    assert_clean(at)
    table = at.dataframe[0].value
    assert table["Verdict"][1] == reading_view.NO_VERDICT and np.isnan(table["Fracture probability (%)"][1])
    assert "not an X-ray" in table["Note"][1] and table["Type guess"][1] == ""
    assert table["Verdict"][0] in ("Fractured", "Not fractured")


def test_the_tables_csv_names_the_models_the_threshold_and_the_notice():
    from test_report import make_diagnosis

    rows = list(csv.DictReader(io.StringIO(reading_view.results_csv(
        [("wrist.png", make_diagnosis(probability=0.42, threshold=0.3)), ("notes.pdf", "not an image")]).decode())))
    assert rows[0]["Verdict"] == "Fractured" and rows[1]["Verdict"] == "Not read"
    for row in rows:
        assert row["Fracture model version"] == "2026.01.01-0001" and row["Fracture-type model version"] == "2026.01.01-0002"
        assert row["Decision threshold (%)"] == "30.0" and row["Notice"] == config.NOTICE
    assert "Image" not in rows[0]
    formula = reading_view.results_csv([("=HYPERLINK(1).png", "not an image"), ("-2.png", "not an image")]).decode()
    assert [row["File"] for row in csv.DictReader(io.StringIO(formula))] == ["'=HYPERLINK(1).png", "'-2.png"]


def test_missing_models_give_a_clear_message_and_about_still_works(tmp_path, monkeypatch):
    monkeypatch.setenv("FRACTURE_MODELS_DIR", str(tmp_path / "no_models_here"))
    at = run_app()
    assert_clean(at)
    assert any("models are not available" in e.value for e in at.error)
    assert not at.file_uploader
    assert any("None loaded" in c.value for c in at.sidebar.caption)
    at.switch_page("pages/about.py").run()
    assert_clean(at)
    assert not at.error
    assert at.title[0].value == "About this reading aid"


def test_corrupt_model_file_is_reported(tmp_path, monkeypatch, tiny_models_dir):
    import shutil

    for path in tiny_models_dir.glob("fracture_binary*"):
        shutil.copy(path, tmp_path / path.name)
    model = tmp_path / config.MODEL_FILES[config.BINARY_TASK]
    model.write_bytes(model.read_bytes()[:1000])
    monkeypatch.setenv("FRACTURE_MODELS_DIR", str(tmp_path))
    at = run_app()
    assert_clean(at)
    assert any("does not match its model card" in e.value for e in at.error)


def test_a_reading_turned_back_gives_its_turn_and_score_as_uploaded_in_the_table_and_last_in_the_csv():
    from dataclasses import replace

    from test_report import make_diagnosis

    plain = make_diagnosis(probability=0.42, threshold=0.3)
    turned = replace(plain, turn=3, as_uploaded_probability=0.12, cautions=None,
                     model_versions={**plain.model_versions, config.ORIENTATION_TASK: "2026.11.28-0052"})
    frame = reading_view.results_frame([("turned.png", turned)])
    assert "turned back before reading: turned a quarter turn clockwise compared with the training X-rays; as uploaded: 12.0%" in frame["Note"][0]
    text = reading_view.results_csv([("turned.png", turned), ("wrist.png", plain), ("notes.pdf", "not an image")]).decode()
    header = next(csv.reader(io.StringIO(text)))
    assert header[-4:] == ["Notice", "Orientation model version", "Turned back before reading",
                           "Fracture probability as uploaded (%)"]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert (rows[0]["Turned back before reading"], rows[0]["Fracture probability as uploaded (%)"]) == (
        "turned a quarter turn clockwise", "12.0")
    assert rows[0]["Orientation model version"] == "2026.11.28-0052"
    assert rows[1]["Turned back before reading"] == rows[1]["Fracture probability as uploaded (%)"] == ""


def test_beside_not_fractured_the_type_guess_waits_behind_an_expander_unless_asked_for():
    def page():
        from fracture_app import reading_view
        from test_report import make_diagnosis

        normal = make_diagnosis(probability=0.01, threshold=0.3)
        reading_view.render_type_guess(normal, "a")
        reading_view.render_type_guess(normal, "b", always=True)  # "name the type": every case is fractured

    at = AppTest.from_function(page).run()
    assert not at.exception
    assert len(at.expander) == 1 and "Show its guess anyway" in at.expander[0].label
    withheld = [c.value for c in at.caption if c.value.startswith("No type guess")]
    assert len(withheld) == 1  # said once, for the first; the second shows its guess outright


def test_a_turned_back_verdict_shows_both_readings_and_says_when_they_disagree():
    def page():
        from dataclasses import replace

        from fracture_app import config, reading_view
        from test_report import make_diagnosis

        plain = make_diagnosis(probability=0.42, threshold=0.3)
        measures = {config.ORIENTATION_TASK: "On its test split it set 84.6% of turned X-rays upright."}
        reading_view.render_verdict(replace(plain, turn=2, as_uploaded_probability=0.05, cautions=None,
                                            model_measures=measures))
        reading_view.render_verdict(replace(plain, turn=2, as_uploaded_probability=0.50, cautions=None))

    at = AppTest.from_function(page).run()
    assert not at.exception
    labels = [metric.label for metric in at.metric]
    assert labels.count("Verdict (turned back)") == 2 and labels.count("Verdict (as uploaded)") == 2
    disagreements = [w.value for w in at.warning if "The two readings disagree" in w.value]
    assert len(disagreements) == 1  # the second reading agrees: fractured both ways
    assert "as uploaded, 5.0% (“Not fractured”)" in disagreements[0] and "84.6%" in disagreements[0]
    assert sum("appears upside down" in w.value for w in at.warning) == 2  # the turned caution, once per reading


def test_the_screen_shows_every_column_of_the_table_and_no_other():
    assert sorted(reading_view.SHOWN_COLUMNS) == sorted(reading_view.RESULT_COLUMNS)


def test_every_caution_shown_above_a_reading_has_its_own_icon():
    from fracture_app.cautions import CAUTION_KINDS, NOT_READABLE

    assert set(reading_view.CAUTION_ICONS) == set(CAUTION_KINDS) - {NOT_READABLE}


def test_a_note_and_a_file_name_show_as_they_are_in_the_notes_list():
    assert reading_view.as_code("a`b_[1]\n.png") == "`` a`b_[1]\\n.png ``"
    assert reading_view.as_text("failed: $5 *x* [l](u)") == "failed: \\$5 \\*x\\* \\[l\\](u)"
