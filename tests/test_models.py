"""Model loading refuses what it cannot trust, and calibration does what the card says."""

import json
import shutil

import numpy as np
import pytest

from fracture_app import config
from fracture_app.errors import ModelLoadError
from fracture_app.models import calibrate, load_model, read_card
from fracture_app.preprocess import mirrored
from fracture_app.models import artifact_paths


def copied(models_dir, task, into):
    """A tiny model and its card, copied where a test may damage them."""
    paths = artifact_paths(models_dir, task)
    for kind in ("model", "card"):
        shutil.copy(paths[kind], into)
    return into / paths["model"].name


@pytest.fixture()
def binary_copy(tiny_models_dir, tmp_path):
    return copied(tiny_models_dir, config.BINARY_TASK, tmp_path)


def test_missing_model_file_names_the_training_command(tmp_path):
    with pytest.raises(ModelLoadError, match="python -m training.train"):
        load_model(tmp_path / "fracture_binary.keras")


def test_missing_card(binary_copy):
    binary_copy.with_suffix(".json").unlink()
    with pytest.raises(ModelLoadError, match="model card missing"):
        load_model(binary_copy)


def test_corrupt_card(binary_copy):
    binary_copy.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="corrupt"):
        read_card(binary_copy)


def test_changed_model_file_fails_the_checksum(binary_copy):
    data = bytearray(binary_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    binary_copy.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="does not match its model card"):
        load_model(binary_copy)


def test_truncated_model_with_matching_checksum_is_a_clear_error(binary_copy):
    from fracture_app.models import sha256_of

    binary_copy.write_bytes(binary_copy.read_bytes()[:1000])
    card_path = binary_copy.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["sha256"] = sha256_of(binary_copy)
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_model(binary_copy)


def test_calibration_methods():
    logits = np.array([[-2.0], [0.0], [3.0]])
    np.testing.assert_allclose(calibrate(logits, {"method": "none"}), 1 / (1 + np.exp(-logits[:, 0])))
    platt = calibrate(logits, {"method": "platt", "a": 0.5, "b": 1.0})
    np.testing.assert_allclose(platt, 1 / (1 + np.exp(-(0.5 * logits[:, 0] + 1.0))))
    multi = np.array([[1.0, 2.0, 3.0]])
    hot = calibrate(multi, {"method": "temperature", "temperature": 0.5})
    assert hot.sum() == pytest.approx(1.0) and hot[0, 2] > calibrate(multi, {"method": "none"})[0, 2]


def test_a_card_naming_a_missing_gradcam_layer_is_refused_at_load_time(binary_copy):
    card_path = binary_copy.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["gradcam"] = {"layer": "no_such_layer"}
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="no 4-D layer named 'no_such_layer'"):
        load_model(binary_copy)


@pytest.fixture()
def type_copy(tiny_models_dir, tmp_path):
    return copied(tiny_models_dir, config.TYPE_TASK, tmp_path)


@pytest.mark.parametrize("edit, said", [
    (lambda card: card["preprocessing"].update(size=card["preprocessing"]["size"] + 32), "takes 64×64 pictures"),
    (lambda card: card.update(classes=card["classes"][:-1]), "gives 10 answers, the card says 64×64 and 9"),
])
def test_a_card_that_does_not_describe_its_model_is_refused_at_load_time(type_copy, edit, said):
    """The sha256 is the model file's, so a card edited by hand (or paired with another model) passes it."""
    card_path = type_copy.with_suffix(".json")
    card = json.loads(card_path.read_text())
    edit(card)
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match=f"does not describe fracture_type.keras: .*{said}"):
        load_model(type_copy)


@pytest.mark.parametrize("preprocessing, refusal", [({"keep_aspect": False}, "only letterboxed input"),
                                                    ({"scaling": "imagenet"}, "unknown scaling")])
def test_a_card_asking_for_preprocessing_we_do_not_do_is_refused(binary_copy, preprocessing, refusal):
    """Heat maps and boxes are placed through the letterbox: stretched input would be misread, not refused late."""
    card_path = binary_copy.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["preprocessing"].update(preprocessing)
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match=refusal):
        read_card(binary_copy)


@pytest.mark.parametrize("flip_average", [False, True])
def test_a_card_asking_for_the_mirror_gets_the_mean_of_both_logits(binary_copy, flip_average):
    card_path = binary_copy.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["test_time_flip"] = {"used": flip_average}
    card_path.write_text(json.dumps(card))
    model = load_model(binary_copy)
    batch = np.random.default_rng(3).random((2, model.spec.size, model.spec.size, model.spec.channels), np.float32)
    alone, mirror = (np.asarray(model.keras_model(x, training=False)) for x in (batch, mirrored(batch)))
    assert not np.allclose(alone, mirror, atol=1e-4), "the check needs a model that sees the mirror differently"
    expected = (alone + mirror) / 2 if flip_average else alone
    np.testing.assert_allclose(model.logits(batch), expected, rtol=1e-5, atol=1e-5)
    assert model.card.flip_average is flip_average


def test_a_card_says_in_brief_how_its_model_measured():
    from pathlib import Path

    from fracture_app.models import ModelCard

    checks = {"Bone Break": {"model_version": "v2", "share": 0.583},
              "Elsewhere": {"model_version": "v1", "share": 0.9}}  # measured on an earlier version: not quoted
    binary = ModelCard(Path("m.keras"), {"task": config.BINARY_TASK, "version": "v2", "external_checks": checks,
                                         "metrics": {"test": {"sensitivity": 0.88, "specificity": 0.8766}}})
    assert binary.measured_in_brief == ("On its test split, without the orientation step, it found 88.0% of fractures "
                                        "and cleared 87.7% of X-rays without one; on Bone Break's fracture pictures, from elsewhere, it found 58.3%.")
    fracture_type = ModelCard(Path("t.keras"), {"task": config.TYPE_TASK, "metrics": {"test": {"top1": 0.34, "top3": 0.595}}})
    assert fracture_type.measured_in_brief == ("On its test split its first guess was right for 34.0% of fractures "
                                               "(among its top three: 59.5%).")
    undefined = ModelCard(Path("m.keras"), {"task": config.BINARY_TASK, "metrics": {"test": {"sensitivity": None}}})
    assert undefined.measured_in_brief == ModelCard(Path("t.keras"), {"task": config.TYPE_TASK}).measured_in_brief == ""
    garbled = ModelCard(Path("t.keras"), {"task": config.TYPE_TASK, "metrics": {"test": {"top1": "high", "top3": 1}}})
    assert garbled.measured_in_brief == ""  # every page's sidebar shows this line: never a traceback
