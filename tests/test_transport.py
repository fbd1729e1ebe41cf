"""Carrying a model as float16 parts: each part under the limit, the joined model loads and answers as before."""

import json
import shutil

import numpy as np
import pytest

from fracture_app.imaging import read_image
from fracture_app.models import load_model
from fracture_app.preprocess import prepare_batch
from training import transport

from conftest import FRACATLAS_FIXTURES

PART_MIB = 0.25  # small enough that even the tiny type model is cut into several parts


@pytest.fixture(scope="module")
def carried(tiny_models_dir, tmp_path_factory):
    """(original model path, parts folder, unpacked model path) for the tiny type model."""
    original = tiny_models_dir / "fracture_type.keras"
    parts_dir = tmp_path_factory.mktemp("parts")
    transport.pack(original, parts_dir, PART_MIB)
    unpacked = transport.unpack(parts_dir, tmp_path_factory.mktemp("here") / "fracture_type.keras")
    return original, parts_dir, unpacked


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
    assert "float16" in card["weights_rounded"]
    assert (unpacked.parent / "fracture_type_split.csv").is_file()
    images = xrays(before.spec)
    np.testing.assert_allclose(after.probabilities(images), before.probabilities(images), atol=5e-3)
    for old, new in zip(before.keras_model.weights, after.keras_model.weights):
        old, new = np.asarray(old), np.asarray(new)
        assert new.dtype == old.dtype
        assert np.array_equal(new, old.astype(np.float16).astype(old.dtype)), "the float16 values, nothing else"


def test_a_damaged_or_missing_part_is_refused_with_a_clear_error(carried, tmp_path, capsys):
    _, parts_dir, _ = carried
    damaged = tmp_path / "damaged"
    shutil.copytree(parts_dir, damaged)
    first = sorted(damaged.glob("*.part*"))[0]
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.write_bytes(bytes(data))
    assert transport.main(["unpack", "--parts", str(damaged), "--out", str(tmp_path / "m.keras")]) == 2
    assert "damaged" in capsys.readouterr().err
    first.unlink()
    assert transport.main(["unpack", "--parts", str(damaged), "--out", str(tmp_path / "m.keras")]) == 2
    assert "missing" in capsys.readouterr().err
    assert not (tmp_path / "m.keras").exists()


def test_a_weight_too_large_for_float16_is_refused(tmp_path):
    import h5py

    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as weights:
        weights.create_dataset("layer/vars/0", data=np.array([1.0, 1e6], np.float32))
    with pytest.raises(transport.TransportError, match="too large for float16"):
        transport.convert_weights(path.read_bytes(), np.float16)
