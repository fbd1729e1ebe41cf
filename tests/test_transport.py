"""Carrying a model as float16 parts: each part under the limit, the joined model loads and answers as before."""

import json
import shutil
import zipfile

import numpy as np
import pytest

from fracture_app.imaging import read_image
from fracture_app.models import artifact_paths, load_model
from fracture_app.preprocess import prepare_batch
from training import transport

from conftest import BONE_BREAK_FIXTURES, FRACATLAS_FIXTURES

PART_MIB = 0.25  # small enough that even the tiny type model is cut into several parts


@pytest.fixture(scope="module")
def carried(tiny_models_dir, tmp_path_factory):
    """(original model path, parts folder, unpacked model path) for the tiny type model, through the command line."""
    original = tiny_models_dir / "fracture_type.keras"
    parts_dir = tmp_path_factory.mktemp("parts")
    assert transport.main(["pack", "--model", str(original), "--out", str(parts_dir), "--part-mib", str(PART_MIB)]) == 0
    here = tmp_path_factory.mktemp("here") / "unpacked"
    assert transport.main(["unpack", "--parts", str(parts_dir), "--out", str(here)]) == 0
    return original, parts_dir, here / original.name


def xrays(spec) -> np.ndarray:
    paths = sorted((FRACATLAS_FIXTURES / "images").rglob("*.jpg"))[:6]
    return prepare_batch([read_image(path).pixels for path in paths], spec)


def test_parts_stay_under_the_limit_and_hold_about_half_the_float32_weights(carried):
    original, parts_dir, _ = carried
    parts = sorted(parts_dir.glob("*.part*"))
    assert len(parts) > 1
    assert all(part.stat().st_size <= PART_MIB * 2**20 for part in parts)
    assert sum(part.stat().st_size for part in parts) < 0.65 * original.stat().st_size
    assert {path.name for path in parts_dir.iterdir()} == {part.name for part in parts} | {transport.SHA_FILE}


def test_the_unpacked_model_loads_against_its_card_and_answers_as_the_original_did(carried):
    original, _, unpacked = carried
    before, after = load_model(original), load_model(unpacked)  # load_model checks the card's sha256
    card = json.loads(unpacked.with_suffix(".json").read_text())
    assert card["weights_rounded"]["to"] == "float16" and card["weights_rounded"]["measured_again"] is None
    companions = {kind: path.name for kind, path in artifact_paths(original.parent, "type").items() if path.is_file()}
    assert {path.name for path in unpacked.parent.iterdir()} == set(companions.values())
    images = xrays(before.spec)
    np.testing.assert_allclose(after.probabilities(images), before.probabilities(images), atol=5e-3)
    with zipfile.ZipFile(unpacked) as archive:  # as Keras writes it: it seeks about in the weights when loading
        assert archive.getinfo(transport.WEIGHTS_MEMBER).compress_type == zipfile.ZIP_STORED
    for old, new in zip(before.keras_model.weights, after.keras_model.weights, strict=True):
        old, new = np.asarray(old), np.asarray(new)
        assert new.dtype == old.dtype
        assert np.array_equal(new, old.astype(np.float16).astype(old.dtype)), "the float16 values, nothing else"


def test_more_than_a_hundred_parts_join_in_order(tiny_models_dir, tmp_path):
    original = tiny_models_dir / "fracture_type.keras"
    parts = transport.pack(original, tmp_path / "parts", part_mib=0.01)
    assert len(parts) > 100
    unpacked = transport.unpack(tmp_path / "parts", tmp_path / "here")
    assert load_model(unpacked).classes == load_model(original).classes


def test_a_damaged_or_missing_part_is_refused_with_a_clear_error(carried, tmp_path, capsys):
    _, parts_dir, _ = carried
    damaged = tmp_path / "damaged"
    shutil.copytree(parts_dir, damaged)
    first = sorted(damaged.glob("*.part*"))[0]
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.write_bytes(bytes(data))
    assert transport.main(["unpack", "--parts", str(damaged), "--out", str(tmp_path / "here")]) == 2
    assert "damaged" in capsys.readouterr().err
    first.unlink()
    assert transport.main(["unpack", "--parts", str(damaged), "--out", str(tmp_path / "here")]) == 2
    assert "missing" in capsys.readouterr().err
    assert not (tmp_path / "here").exists()


@pytest.mark.parametrize("listing", [b"[]", b'{"model": "fracture_type.keras", "parts": []}', b"not json", b"\xff\xfe"])
def test_a_parts_list_that_pack_did_not_write_is_refused(tmp_path, capsys, listing):
    (tmp_path / transport.SHA_FILE).write_bytes(listing)
    assert transport.main(["unpack", "--parts", str(tmp_path), "--out", str(tmp_path / "here")]) == 2
    assert "not a parts list" in capsys.readouterr().err


def test_unpacking_never_writes_over_a_model(carried, capsys):
    _, parts_dir, unpacked = carried
    before = unpacked.read_bytes()
    assert transport.main(["unpack", "--parts", str(parts_dir), "--out", str(unpacked.parent)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert unpacked.read_bytes() == before


@pytest.mark.parametrize("part_mib", ["0", "-1", "nan", "inf"])
def test_a_part_size_that_cannot_work_is_a_usage_error(tiny_models_dir, tmp_path, capsys, part_mib):
    with pytest.raises(SystemExit) as exit_:
        transport.main(["pack", "--model", str(tiny_models_dir / "fracture_type.keras"), "--out", str(tmp_path),
                        "--part-mib", part_mib])
    assert exit_.value.code == 2 and "part size" in capsys.readouterr().err


def test_only_a_model_file_as_training_names_it_is_packed(tiny_models_dir, tmp_path, capsys):
    renamed = tmp_path / "mine.keras"
    shutil.copy(tiny_models_dir / "fracture_type.keras", renamed)
    assert transport.main(["pack", "--model", str(renamed), "--out", str(tmp_path / "parts")]) == 2
    assert "fracture_type.keras" in capsys.readouterr().err


def test_a_weight_too_large_for_float16_is_refused(tmp_path):
    import h5py

    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as weights:
        weights.create_dataset("layer/vars/0", data=np.array([1.0, 1e6], np.float32))
    with pytest.raises(transport.TransportError, match="too large for float16"):
        transport.convert_weights(path.read_bytes(), np.float16)


def test_measuring_the_unpacked_model_again_says_so_in_its_card(carried, tmp_path):
    from training.evaluate import main as evaluate

    _, _, unpacked = carried
    copy = shutil.copytree(unpacked.parent, tmp_path / "copy") / unpacked.name
    assert evaluate(["--model", str(copy), "--data", str(BONE_BREAK_FIXTURES), "--redo-validation-choices"]) == 0
    card = json.loads(copy.with_suffix(".json").read_text())
    assert card["weights_rounded"]["measured_again"] == card["version"]
    assert load_model(copy).card.version == card["version"]
