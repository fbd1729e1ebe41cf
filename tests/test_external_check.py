"""The binary model on another source's fractures: the share it calls fractured, per image and per picture."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from fracture_app import config
from fracture_app.models import artifact_paths
from training.external_check import main as external_check, measure

from conftest import BONE_BREAK_FIXTURES

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/data")


def test_copies_of_one_picture_count_once_and_folders_separately():
    paths = [DATA / "Spiral" / "Train" / "a_jpg.rf.1.jpg", DATA / "Spiral" / "Train" / "a_jpg.rf.2.jpg",
             DATA / "Spiral" / "Test" / "b.jpg", DATA / "Greenstick" / "Train" / "a_jpg.rf.3.jpg"]
    # Picture a in Spiral: one copy above the threshold, one below; their mean (0.45) is below it.
    result = measure(paths, np.array([0.8, 0.1, 0.6, 0.9]), DATA, threshold=0.5)
    assert (result["images"], result["found"], result["share"]) == (4, 3, 0.75)
    assert (result["source_pictures"]["images"], result["source_pictures"]["found"]) == (3, 2)
    spiral, greenstick = result["by_folder"]["Spiral"], result["by_folder"]["Greenstick"]
    assert (spiral["images"], spiral["found"], spiral["source_pictures"]["found"]) == (3, 2, 1)
    assert (greenstick["images"], greenstick["found"], greenstick["source_pictures"]["images"]) == (1, 1, 1)
    assert result["interval"][0] < 0.75 < result["interval"][1]


def test_the_check_is_written_into_the_card_and_shown_on_the_model_card_page(tiny_models_dir, tmp_path, capsys,
                                                                             monkeypatch):
    copy = tmp_path / "models"
    shutil.copytree(tiny_models_dir, copy)
    paths = artifact_paths(copy, config.BINARY_TASK)
    args = ["--model", str(paths["model"]), "--data", str(BONE_BREAK_FIXTURES), "--name", "Bone Break", "--write"]
    assert external_check(args) == 0
    check = json.loads(paths["card"].read_text())["external_checks"]["Bone Break"]
    assert check["images"] == 30 and sorted(check["by_folder"]) == sorted(config.FRACTURE_TYPES)
    assert sum(part["found"] for part in check["by_folder"].values()) == check["found"]
    assert f"{check['found']}/30" in capsys.readouterr().out

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FRACTURE_MODELS_DIR", str(copy))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/model_card.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(m.value.startswith("#### Fractures from another source: Bone Break") for m in at.markdown)
    table = next(frame.value for frame in at.table if "Folder" in frame.value.columns)
    assert list(table["Images"]) == [part["images"] for part in check["by_folder"].values()]
    assert not any("not on this one" in warning.value for warning in at.warning)  # measured on this version
    sidebar = " ".join(caption.value for caption in at.sidebar.caption)
    test = json.loads(paths["card"].read_text())["metrics"]["test"]
    assert f"it found {100 * test['sensitivity']:.1f}% of fractures" in sidebar
    assert f"on Bone Break's fracture pictures, from elsewhere, it found {100 * check['share']:.1f}%" in sidebar

    card = json.loads(paths["card"].read_text())
    card["version"] += "+choices-later"  # as --redo-validation-choices leaves it: a new threshold, perhaps
    paths["card"].write_text(json.dumps(card))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("pages/model_card.py").run()
    assert any("not on this one" in warning.value for warning in at.warning)
    assert "from elsewhere" not in " ".join(caption.value for caption in at.sidebar.caption)  # not quoted as current


def test_only_the_binary_model_is_checked(tiny_models_dir, capsys):
    model_path = artifact_paths(tiny_models_dir, config.TYPE_TASK)["model"]
    assert external_check(["--model", str(model_path), "--data", str(BONE_BREAK_FIXTURES)]) == 2
    assert "measures the binary model" in capsys.readouterr().err


def test_a_folder_without_images_is_an_error(tiny_models_dir, tmp_path, capsys):
    model_path = artifact_paths(tiny_models_dir, config.BINARY_TASK)["model"]
    assert external_check(["--model", str(model_path), "--data", str(tmp_path)]) == 2
    assert "no images under" in capsys.readouterr().err


def test_images_directly_in_the_folder_and_unreadable_ones(tiny_models_dir, tmp_path, capsys):
    xray = next((BONE_BREAK_FIXTURES / "Spiral Fracture").rglob("*.jpg"))
    shutil.copy(xray, tmp_path / "loose.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not a picture")
    model_path = artifact_paths(tiny_models_dir, config.BINARY_TASK)["model"]
    assert external_check(["--model", str(model_path), "--data", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "(1 unreadable images left out)" in printed
    lines = printed.splitlines()[1:]
    assert [line.split()[0] for line in lines] == ["all", "(the"]  # the one readable image, in the folder itself
    assert all(" 0/1 " in line or " 1/1 " in line for line in lines)

    (tmp_path / "loose.jpg").unlink()
    assert external_check(["--model", str(model_path), "--data", str(tmp_path)]) == 2
    assert "none of the 1 images" in capsys.readouterr().err


def test_with_the_orientation_model_it_counts_what_the_app_would_say(capsys):
    """The shipped models on the Bone Break fixtures: the orientation model turns some of them (journal figures lie
    otherwise than FracAtlas X-rays), and the fractures found are those the app's own road finds."""
    from fracture_app.diagnosis import Diagnoser
    from fracture_app.imaging import read_image

    shipped = ROOT / "models"
    model, orientation = (artifact_paths(shipped, task)["model"] for task in (config.BINARY_TASK, config.ORIENTATION_TASK))
    card_before = artifact_paths(shipped, config.BINARY_TASK)["card"].read_text()
    assert external_check(["--model", str(model), "--data", str(BONE_BREAK_FIXTURES), "--orientation", str(orientation)]) == 0
    out = capsys.readouterr().out
    turned = int(re.search(r"(\d+) of 30 pictures set upright first by orientation.keras", out).group(1))
    found = int(re.search(r"^all\s+(\d+)/30", out, re.M).group(1))
    readings = Diagnoser.from_dir(shipped).diagnose_batch([read_image(p) for p in sorted(BONE_BREAK_FIXTURES.rglob("*.jpg"))])
    assert turned == sum(reading.turn != 0 for reading in readings) > 0
    assert found == sum(bool(reading.fractured) for reading in readings)
    with pytest.raises(SystemExit) as refused:
        external_check(["--model", str(model), "--data", str(BONE_BREAK_FIXTURES), "--orientation", str(orientation),
                        "--write"])
    assert refused.value.code == 2
    assert artifact_paths(shipped, config.BINARY_TASK)["card"].read_text() == card_before
