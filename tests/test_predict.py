"""The batch command line on a folder that mixes real X-rays with broken files."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fracture_app import config, predict
from fracture_app.diagnosis import LIKELY, NOT_RULED_OUT, LOW_SCORE, POSSIBLE

from conftest import FRACATLAS_FIXTURES

HEADER = ("path,fractured,fracture_probability,reading,fracture_type,fracture_type_probability,warnings,heatmaps,"
          "error,turned_back,fracture_probability_as_uploaded")


@pytest.fixture()
def mixed_folder(tmp_path):
    good = sorted((FRACATLAS_FIXTURES / "images").rglob("*.jpg"))[:3]
    nested = tmp_path / "inbox" / "nested"
    nested.mkdir(parents=True)
    for file in good[:2]:
        shutil.copy(file, tmp_path / "inbox")
    shutil.copy(good[2], nested / "accentué et espace.jpg")
    (tmp_path / "inbox" / "notes.png").write_text("not a picture")
    (tmp_path / "inbox" / "empty.jpg").write_bytes(b"")
    (tmp_path / "inbox" / "half.jpg").write_bytes(good[0].read_bytes()[:300])
    return tmp_path / "inbox"


def run(args, capsys):
    code = predict.main([*args, "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_csv_rows_for_good_and_broken_files(tiny_models_dir, mixed_folder, capsys):
    code, out, err = run(["--models", str(tiny_models_dir), str(mixed_folder)], capsys)
    assert code == 1
    assert err.splitlines()[-1] == "warning: 3 of 6 files not diagnosed in full: the error column says why"
    assert out.splitlines()[0] == HEADER
    rows = {row["path"].split("/")[-1]: row for row in csv.DictReader(io.StringIO(out))}
    assert len(rows) == 6
    for name in ("accentué et espace.jpg", *[p.name for p in mixed_folder.glob("IMG*.jpg")]):
        row = rows[name]
        assert row["error"] == "" and row["fractured"] in ("true", "false")
        assert 0 <= float(row["fracture_probability"]) <= 1
        assert row["reading"] in (LIKELY, POSSIBLE, NOT_RULED_OUT, LOW_SCORE)
        if row["fractured"] == "true":
            assert row["fracture_type"] in config.FRACTURE_TYPES and 0 <= float(row["fracture_type_probability"]) <= 1
        else:  # the type model names a type for every picture: beside "Not fractured" it is withheld
            assert row["fracture_type"] == row["fracture_type_probability"] == ""
    assert "not an image" in rows["notes.png"]["error"]
    assert "empty" in rows["empty.jpg"]["error"]
    for name in ("notes.png", "empty.jpg", "half.jpg"):
        assert rows[name]["error"] and rows[name]["fractured"] == "" and rows[name]["fracture_probability"] == ""


def test_the_fractured_column_follows_the_card_threshold(tiny_models_dir, mixed_folder, capsys):
    threshold = json.loads((tiny_models_dir / "fracture_binary.json").read_text())["threshold"]
    _, out, _ = run(["--models", str(tiny_models_dir), str(mixed_folder)], capsys)
    for row in csv.DictReader(io.StringIO(out)):
        if not row["error"]:
            assert (row["fractured"] == "true") == (float(row["fracture_probability"]) >= round(threshold, 4) - 1e-4)


def test_json_output_and_exit_zero_when_all_are_read(tiny_models_dir, tmp_path, capsys):
    out_dir = tmp_path / "cams"
    good = sorted((FRACATLAS_FIXTURES / "images" / "Fractured").glob("*.jpg"))[:2]
    code, out, _ = run(["--format", "json", "--models", str(tiny_models_dir), "--gradcam", str(out_dir),
                        *map(str, good)], capsys)
    assert code == 0
    rows = json.loads(out)
    assert [row["path"] for row in rows] == [str(p) for p in good]
    assert all(isinstance(row["fractured"], bool) and row["error"] is None for row in rows)
    assert len(list(out_dir.glob("*_gradcam.png"))) == 2 * len(good)
    assert all(Path(name).is_file() for row in rows for name in row["heatmaps"].split("; "))


def test_json_gives_null_for_every_absent_value_and_csv_an_empty_cell(tiny_models_dir, mixed_folder, capsys):
    _, out, _ = run(["--format", "json", "--models", str(tiny_models_dir), str(mixed_folder)], capsys)
    rows = json.loads(out)
    assert {row["error"] is None for row in rows} == {True, False}
    assert all(value != "" for row in rows for value in row.values())
    _, out, _ = run(["--models", str(tiny_models_dir), str(mixed_folder)], capsys)
    assert all(None not in row.values() for row in csv.DictReader(io.StringIO(out)))


def test_same_named_files_in_two_folders_get_two_sets_of_overlays(tiny_models_dir, tmp_path, capsys):
    image = sorted((FRACATLAS_FIXTURES / "images" / "Fractured").glob("*.jpg"))[0]
    for folder in ("a", "b"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        shutil.copy(image, tmp_path / "in" / folder / "scan.jpg")
    code, out, _ = run(["--format", "json", "--models", str(tiny_models_dir), "--gradcam", str(tmp_path / "cams"),
                        str(tmp_path / "in")], capsys)
    assert code == 0
    written = [row["heatmaps"].split("; ") for row in json.loads(out)]
    assert len(set(written[0]) | set(written[1])) == 4
    assert sorted(p.name for p in (tmp_path / "cams").iterdir()) == [
        "scan_2_binary_gradcam.png", "scan_2_type_gradcam.png", "scan_binary_gradcam.png", "scan_type_gradcam.png"]


def test_a_second_run_into_the_same_overlay_folder_numbers_its_overlays_instead_of_replacing_them(
        tiny_models_dir, tmp_path, capsys):
    image = sorted((FRACATLAS_FIXTURES / "images" / "Fractured").glob("*.jpg"))[0]
    shutil.copy(image, tmp_path / "scan.jpg")
    arguments = ["--models", str(tiny_models_dir), "--gradcam", str(tmp_path / "cams"), str(tmp_path / "scan.jpg")]
    for _ in range(2):
        assert run(arguments, capsys)[0] == 0
    assert sorted(p.name for p in (tmp_path / "cams").iterdir()) == [
        "scan_2_binary_gradcam.png", "scan_2_type_gradcam.png", "scan_binary_gradcam.png", "scan_type_gradcam.png"]


def test_a_gradcam_folder_that_is_a_file_is_a_usage_error_before_the_models_load(tmp_path, capsys, monkeypatch):
    import fracture_app.diagnosis

    monkeypatch.setattr(fracture_app.diagnosis.Diagnoser, "from_dir", lambda *_: pytest.fail("models were loaded"))
    taken = tmp_path / "cams.png"
    taken.write_bytes(b"x")
    image = sorted((FRACATLAS_FIXTURES / "images" / "Fractured").glob("*.jpg"))[0]
    code, out, err = run(["--gradcam", str(taken), str(image)], capsys)
    assert code == 2 and out == ""
    assert err.strip() == f"error: --gradcam {taken} is a file, not a folder"


def test_an_overlay_that_cannot_be_written_is_that_files_error(tiny_models_dir, tmp_path, capsys):
    image = sorted((FRACATLAS_FIXTURES / "images" / "Fractured").glob("*.jpg"))[0]
    long_name = tmp_path / "in" / ("a" * 240 + ".jpg")  # fits the file system; its overlay's name does not
    long_name.parent.mkdir()
    shutil.copy(image, long_name)
    code, out, _ = run(["--format", "json", "--models", str(tiny_models_dir), "--gradcam", str(tmp_path / "cams"),
                        str(long_name)], capsys)
    assert code == 1
    [row] = json.loads(out)
    assert row["error"].startswith("could not write the heat map") and row["heatmaps"] is None
    assert row["fractured"] is not None  # the reading itself stands
    assert not list((tmp_path / "cams").iterdir())


def test_a_colour_photograph_gets_no_verdict_and_its_reason_as_the_error(tiny_models_dir, tmp_path, capsys):
    from PIL import Image

    colours = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(colours).save(tmp_path / "photo.png")
    code, out, _ = run(["--format", "json", "--models", str(tiny_models_dir), "--gradcam", str(tmp_path / "heat"),
                        str(tmp_path / "photo.png")], capsys)
    assert code == 1, "not every input got a verdict"
    row = json.loads(out)[0]
    assert row["error"].startswith("no verdict: a colour image, not an X-ray")
    assert row["fractured"] is None and row["fracture_probability"] is None and row["fracture_type"] is None
    assert not list((tmp_path / "heat").iterdir()), "no overlay for a picture without a verdict"


def test_usage_errors_exit_2_without_a_traceback(tiny_models_dir, tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "fracture_app.predict", *args], capture_output=True, text=True)

    empty = tmp_path / "empty_folder"
    empty.mkdir()
    for result in (cli(), cli("--format", "xml", str(empty)), cli(str(empty)),
                   cli("--models", str(tmp_path / "nothing"), str(FRACATLAS_FIXTURES))):
        assert result.returncode == 2
        assert "Traceback" not in result.stderr and result.stderr.strip()


def test_an_incomplete_jpeg_is_flagged_and_never_called_not_fractured_with_a_third_missing(tiny_models_dir, tmp_path,
                                                                                           capsys):
    whole = sorted((FRACATLAS_FIXTURES / "images" / "Fractured").glob("*.jpg"))[0].read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) * 2 // 3])
    (tmp_path / "cut_a_little.jpg").write_bytes(whole[: len(whole) * 19 // 20])
    _, out, _ = run(["--format", "json", "--models", str(tiny_models_dir), str(tmp_path / "cut.jpg"),
                     str(tmp_path / "cut_a_little.jpg")], capsys)
    cut, cut_a_little = json.loads(out)
    assert cut["fractured"] is not False
    assert "incomplete file: about" in (cut["warnings"] or cut["error"])
    assert cut_a_little["error"] is None and "incomplete file: about" in cut_a_little["warnings"]


def test_a_folder_with_no_images_among_other_paths_is_named_in_a_warning(tiny_models_dir, tmp_path, capsys):
    image = sorted((FRACATLAS_FIXTURES / "images" / "Fractured").glob("*.jpg"))[0]
    nothing = tmp_path / "nothing_here"
    nothing.mkdir()
    (nothing / "notes.txt").write_text("no images")
    code, out, err = run(["--models", str(tiny_models_dir), str(image), str(nothing)], capsys)
    assert code == 0 and len(out.splitlines()) == 2
    assert f"warning: no image files found in the folder {nothing}" in err


def test_a_picture_the_models_fail_on_is_its_rows_error_and_the_rest_are_read(tiny_models_dir, tmp_path, capsys,
                                                                               monkeypatch):
    from fracture_app.diagnosis import Diagnoser

    images = sorted((FRACATLAS_FIXTURES / "images").rglob("*.jpg"))[:3]
    for index, image in enumerate(images):
        shutil.copy(image, tmp_path / f"{'bad' if index == 1 else 'good'}{index}.jpg")
    batch_as_trained = Diagnoser.diagnose_batch

    def failing_on_bad(self, xrays):
        if any(xray.source.startswith("bad") for xray in xrays):
            raise RuntimeError("out of memory in the model")
        return batch_as_trained(self, xrays)

    monkeypatch.setattr(Diagnoser, "diagnose_batch", failing_on_bad)
    code, out, err = run(["--format", "json", "--models", str(tiny_models_dir), str(tmp_path)], capsys)
    assert code == 1 and "Traceback" not in err
    rows = {Path(row["path"]).name: row for row in json.loads(out)}
    assert rows["bad1.jpg"]["error"] == "the models could not process this image (RuntimeError: out of memory in the model)"
    assert rows["bad1.jpg"]["fractured"] is None
    assert all(rows[name]["error"] is None and rows[name]["fractured"] is not None for name in ("good0.jpg", "good2.jpg"))


def test_a_heat_map_that_fails_is_that_files_error_and_its_reading_stands(tiny_models_dir, tmp_path, capsys,
                                                                         monkeypatch):
    from fracture_app.diagnosis import Diagnoser

    def failing(*_):
        raise ValueError("no gradient")

    monkeypatch.setattr(Diagnoser, "heatmap", failing)
    image = sorted((FRACATLAS_FIXTURES / "images" / "Fractured").glob("*.jpg"))[0]
    code, out, _ = run(["--format", "json", "--models", str(tiny_models_dir), "--gradcam", str(tmp_path / "cams"),
                        str(image)], capsys)
    [row] = json.loads(out)
    assert code == 1
    assert row["error"] == "could not make the heat map: the models could not process this image (ValueError: no gradient)"
    assert row["fractured"] is not None


def test_without_the_fracture_model_no_type_guess_is_given_as_an_answer(tiny_models_dir, tmp_path, capsys):
    only_type = tmp_path / "models"
    shutil.copytree(tiny_models_dir, only_type)
    (only_type / "fracture_binary.keras").write_bytes(b"damaged")
    code, out, err = run(["--models", str(only_type), str(FRACATLAS_FIXTURES)], capsys)
    assert code == 2 and out == ""
    assert "the fracture model did not load, so no verdict can be given" in err
    assert "fracture_binary.keras does not match its model card" in err


def test_a_reader_that_stops_early_or_a_full_disk_ends_without_a_traceback(tiny_models_dir):
    command = [sys.executable, "-m", "fracture_app.predict", "--no-progress", "--models", str(tiny_models_dir),
               *[str(FRACATLAS_FIXTURES)] * 4]  # a folder given four times: more rows than one read takes
    reader = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.stdout.readline().startswith("path,")
    reader.stdout.close()  # as `| head -1` does
    assert reader.wait(timeout=300) == 1
    assert "Traceback" not in reader.stderr.read()
    reader.stderr.close()
    buffered = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    for output_format in ("csv", "json"):  # JSON is written at the end, where a buffered write would fail at exit
        with open("/dev/full", "w") as full:
            result = subprocess.run([*command, "--format", output_format], stdout=full, stderr=subprocess.PIPE,
                                    text=True, timeout=300, env=buffered)
        assert result.returncode == 1, output_format
        assert "error: cannot write the output: No space left on device" in result.stderr
        assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


def test_a_file_name_that_is_not_utf8_is_read_its_overlays_written_and_its_row_escaped(tiny_models_dir, tmp_path):
    """A Latin-1 name from an old archive: OpenCV used to crash the process writing its overlay, and a strict
    UTF-8 stdout to end in a traceback."""
    folder = tmp_path / "latin1"
    folder.mkdir()
    name = os.fsdecode(b"h\xe9r\xe9.jpg")
    shutil.copy(sorted((FRACATLAS_FIXTURES / "images").rglob("*.jpg"))[0], folder / name)
    result = subprocess.run([sys.executable, "-m", "fracture_app.predict", "--no-progress", "--models",
                             str(tiny_models_dir), "--gradcam", str(tmp_path / "heat"), str(folder)],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    row = next(csv.DictReader(io.StringIO(result.stdout)))
    assert row["path"].endswith("h\\udce9r\\udce9.jpg") and row["fractured"] in ("true", "false") and not row["error"]
    assert len(list((tmp_path / "heat").glob("*_gradcam.png"))) == 2


def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_quoted(tiny_models_dir, tmp_path, capsys, monkeypatch):
    source = sorted((FRACATLAS_FIXTURES / "images").rglob("*.jpg"))[0]
    shutil.copy(source, tmp_path / "=HYPERLINK(1).jpg")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(["--models", str(tiny_models_dir), "=HYPERLINK(1).jpg"], capsys)
    assert code == 0
    assert next(csv.DictReader(io.StringIO(out)))["path"] == "'=HYPERLINK(1).jpg"


def test_the_shipped_orientation_model_turns_a_turned_x_ray_back_and_the_row_says_so(tmp_path, capsys):
    """A FracAtlas sample turned a quarter turn clockwise: the row gives the turn and the score as uploaded."""
    from PIL import Image

    sample = config.SAMPLE_IMAGES_DIR / "fracatlas_IMG0000620.jpg"
    turned = tmp_path / "turned.png"
    Image.open(sample).rotate(-90, expand=True).save(turned)  # PIL turns anticlockwise for a positive angle
    code, out, _ = run(["--format", "json", "--models", str(config.SHIPPED_MODELS_DIR), str(sample), str(turned)], capsys)
    assert code == 0
    as_stored, lying = json.loads(out)
    assert as_stored["turned_back"] is None and as_stored["fracture_probability_as_uploaded"] is None
    assert lying["turned_back"] == "turned a quarter turn clockwise" and "turned back before reading" in lying["warnings"]
    assert lying["fracture_probability"] == pytest.approx(as_stored["fracture_probability"], abs=0.01)
    without_orientation = tmp_path / "models"
    without_orientation.mkdir()
    for path in config.SHIPPED_MODELS_DIR.glob("fracture_*"):
        shutil.copy(path, without_orientation)
    _, out, _ = run(["--format", "json", "--models", str(without_orientation), str(turned)], capsys)
    assert json.loads(out)[0]["fracture_probability"] == pytest.approx(lying["fracture_probability_as_uploaded"], abs=1e-4)


def test_every_row_has_every_column_in_order_even_a_file_not_read(tiny_models_dir, mixed_folder, capsys):
    _, out, _ = run(["--format", "json", "--models", str(tiny_models_dir), str(mixed_folder)], capsys)
    rows = json.loads(out)
    assert any(row["error"] for row in rows) and all(list(row) == list(predict.COLUMNS) for row in rows)
