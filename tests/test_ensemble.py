"""Joining trained models into one file: the answer and the heat map are the members' averages."""

import json

import numpy as np
import pytest

from conftest import BONE_BREAK_FIXTURES, FRACATLAS_FIXTURES, TINY_SIZE
from fracture_app.preprocess import PreprocessSpec
from training import architectures
from training.card import MEMBERS_OWN_START
from training.ensemble import join

SIZE = 64
TYPE_CLASSES = 10


def heads_and_maps(member, images):
    import keras

    probe = keras.Model(member.inputs, [member.get_layer("logits").output,
                                        member.get_layer(architectures.FRACTURE_MAP).output])
    head, fracture_map = probe(images)
    return np.asarray(head), np.asarray(fracture_map)


def random_members(count: int = 2, architecture: str = "custom_cnn_map", outputs: int = 1):
    import keras

    spec = PreprocessSpec(size=SIZE)
    members = []
    for seed in range(count):
        keras.utils.set_random_seed(seed)
        members.append(architectures.build(architecture, spec, outputs))
    return members


def test_the_joined_answer_is_the_mean_head_plus_the_peak_of_the_mean_map():
    import keras

    members = random_members()
    images = np.random.default_rng(0).random((3, SIZE, SIZE, 1), dtype=np.float32)
    joined = join(members)
    assert not any(isinstance(layer, keras.Model) for layer in joined.layers), "flat, so Grad-CAM can probe any layer"
    parts = [heads_and_maps(member, images) for member in members]
    mean_head = np.mean([head for head, _ in parts], axis=0)
    mean_map = np.mean([fracture_map for _, fracture_map in parts], axis=0)
    expected = mean_head + mean_map.max(axis=(1, 2))
    np.testing.assert_allclose(np.asarray(joined(images)), expected, rtol=1e-5, atol=1e-5)
    # The members keep their weights: each copy answers as the member it came from.
    copied = keras.Model(joined.inputs, joined.get_layer("m1_logits").output)
    np.testing.assert_allclose(np.asarray(copied(images)), parts[1][0], rtol=1e-5, atol=1e-5)


def test_gradcam_on_the_joined_map_is_the_mean_map():
    from fracture_app.gradcam import GradCam

    members = random_members()
    for member in members:  # a positive map everywhere, so the ReLU of Grad-CAM keeps all of it
        layer = member.get_layer(architectures.FRACTURE_MAP)
        layer.set_weights([layer.get_weights()[0], np.array([10.0], np.float32)])
    image = np.zeros((SIZE, SIZE, 1), np.float32)
    image[10:20, 30:40] = 1.0
    mean_map = np.mean([heads_and_maps(member, image[None])[1][0, ..., 0] for member in members], axis=0)
    heat = GradCam(join(members), architectures.FRACTURE_MAP).heatmap(image, 1)
    np.testing.assert_allclose(heat, mean_map / mean_map.max(), rtol=1e-4, atol=1e-5)


def test_joined_type_models_answer_the_mean_of_their_logits():
    import keras

    members = random_members(3, "custom_cnn", TYPE_CLASSES)
    images = np.random.default_rng(0).random((3, SIZE, SIZE, 1), dtype=np.float32)
    joined = join(members)
    assert not any(isinstance(layer, keras.Model) for layer in joined.layers)
    expected = np.mean([np.asarray(member(images)) for member in members], axis=0)
    np.testing.assert_allclose(np.asarray(joined(images)), expected, rtol=1e-5, atol=1e-5)
    from fracture_app.gradcam import find_layer

    assert find_layer(joined)[1].name == "members_features", "Grad-CAM's default map carries every member"


def raw_gradcam(model, layer_name: str, image, class_index: int) -> np.ndarray:
    """Grad-CAM before its ReLU and scaling: the feature map weighted by its mean gradients."""
    import keras
    import tensorflow as tf

    probe = keras.Model(model.inputs, [model.get_layer(layer_name).output, model.output])
    with tf.GradientTape() as tape:
        features, logits = probe(image[None])
        score = logits[0, class_index]
    grads = tape.gradient(score, features)[0]
    return np.asarray(tf.reduce_sum(features[0] * tf.reduce_mean(grads, axis=(0, 1)), axis=-1))


def test_gradcam_on_joined_type_models_is_the_mean_of_the_members_gradcams():
    from fracture_app.gradcam import GradCam

    members = random_members(2, "custom_cnn", TYPE_CLASSES)
    image = np.random.default_rng(1).random((SIZE, SIZE, 1), dtype=np.float32)
    raw = [raw_gradcam(member, "block4_out", image, 3) for member in members]
    expected = np.maximum(np.mean(raw, axis=0), 0) / np.maximum(np.mean(raw, axis=0), 0).max()
    for own in raw:  # so a map from one member alone would fail
        assert not np.allclose(np.maximum(own, 0) / np.maximum(own, 0).max(), expected, atol=1e-3)
    np.testing.assert_allclose(GradCam(join(members)).heatmap(image, 3), expected, rtol=1e-4, atol=1e-5)


def test_only_models_of_one_kind_and_input_size_join():
    spec = PreprocessSpec(size=SIZE)
    with pytest.raises(ValueError, match="mix custom_cnn_map and other"):
        join([architectures.build("custom_cnn_map", spec, 1), architectures.build("custom_cnn", spec, 1)])
    with pytest.raises(ValueError, match="different inputs"):
        join([architectures.build("custom_cnn_map", spec, 1),
              architectures.build("custom_cnn_map", PreprocessSpec(size=2 * SIZE), 1)])
    with pytest.raises(ValueError, match="at least two"):
        join(random_members(1))


@pytest.fixture(scope="module")
def two_members(tmp_path_factory):
    """Two tiny fracture-map models trained alike from different seeds by the real training command."""
    from training.train import main as train

    root = tmp_path_factory.mktemp("members")
    paths = []
    for seed in (1, 2):
        out = root / f"seed{seed}"
        same_split = ["--split", str(root / "seed1" / "fracture_binary_split.csv")] if paths else []
        assert train(["--task", "binary", "--data", str(FRACATLAS_FIXTURES), "--arch", "custom_cnn_map",
                      "--img-size", str(TINY_SIZE), "--epochs", "1", "--batch-size", "8", "--seed", str(seed),
                      *same_split, "--out", str(out), "--quiet"]) == 0
        paths.append(out / "fracture_binary.keras")
    return paths


def test_the_command_writes_a_model_that_evaluate_gives_its_validation_choices(two_members, tmp_path):
    from fracture_app.models import load_model, sha256_of
    from training.ensemble import main as ensemble
    from training.evaluate import main as evaluate

    out = tmp_path / "joined"
    assert ensemble(["--members", *map(str, two_members), "--out", str(out)]) == 0
    model_path = out / "fracture_binary.keras"
    assert evaluate(["--model", str(model_path), "--data", str(FRACATLAS_FIXTURES), "--redo-validation-choices"]) == 0
    model = load_model(model_path)  # checks the sha256 in the card
    card = model.card.data
    assert card["architecture"] == "custom_cnn_map, mean of 2"
    assert card["version"].split("+")[0].endswith("-mean-of-2") and "+choices-" in card["version"]
    assert [member["sha256"] for member in card["training"]["members"]] == [sha256_of(p) for p in two_members]
    assert "--seed 2" in card["training"]["members"][1]["command"]
    assert card["training"]["command"].startswith("python -m training.ensemble --members")
    assert card["training"]["augmentation"]["method"] == "one affine warp", "what the members share is kept"
    assert "best_epoch" not in card["training"] and "time_limit_minutes" not in card["training"]
    assert architectures.FRACTURE_MAP in card["gradcam"]["validation_hit_rates"]
    assert "pointing_game" in card["metrics"]["test"]
    assert (out / "fracture_binary_split.csv").is_file()
    assert (out / "fracture_binary_member2_curves.png").is_file(), "each member's training curves come along"

    def page(folder):
        from pathlib import Path

        from fracture_app.card_view import render_card
        from fracture_app.models import load_model

        render_card(load_model(Path(folder) / "fracture_binary.keras").card, Path(folder), "binary")

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(page, args=(str(out),), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [c for image in at.image for c in image.captions]
    assert sum("member" in c for c in captions) == 2, captions
    shown = [block.value for block in at.code]
    assert any("in all over 2 networks" in block.value for block in at.markdown)
    assert any("--seed 1" in code for code in shown) and any("training.ensemble" in code for code in shown)


def refusal(two_members, tmp_path, capsys, change) -> str:
    """The command's message for the first member beside a copy of the second that `change(folder)` altered."""
    import shutil

    from training.ensemble import main as ensemble

    other = tmp_path / "other"
    shutil.copytree(two_members[1].parent, other)
    change(other)
    assert ensemble(["--members", str(two_members[0]), str(other / "fracture_binary.keras"),
                     "--out", str(tmp_path / "joined")]) == 2
    assert not (tmp_path / "joined").exists()
    return capsys.readouterr().err


def changed_card(**fields):
    def change(folder):
        card_path = folder / "fracture_binary.json"
        card_path.write_text(json.dumps({**json.loads(card_path.read_text()), **fields}))
    return change


def test_a_member_read_out_of_a_joined_model_answers_as_it_did_inside_it():
    import keras

    from training.ensemble import member_of

    members = random_members()
    joined = join(members)
    images = np.random.default_rng(0).random((2, SIZE, SIZE, 1)).astype(np.float32)
    inside = keras.Model(joined.inputs, [joined.get_layer("m1_logits").output,
                                         joined.get_layer(f"m1_{architectures.FRACTURE_MAP}").output])(images)
    alone = heads_and_maps(member_of(joined, 1, PreprocessSpec(size=SIZE), 1), images)
    for a, b in zip(alone, inside):
        np.testing.assert_array_equal(a, np.asarray(b))
    with pytest.raises(ValueError, match="no member 2"):
        member_of(joined, 2, PreprocessSpec(size=SIZE), 1)
    plain = join(random_members(architecture="custom_cnn", outputs=TYPE_CLASSES))
    with pytest.raises(ValueError, match="share one dense head"):
        member_of(plain, 0, PreprocessSpec(size=SIZE), TYPE_CLASSES)


def test_the_command_reads_a_member_out_as_a_start_for_training(two_members, tmp_path, capsys):
    from training.ensemble import main as ensemble

    assert ensemble(["--members", *map(str, two_members), "--out", str(tmp_path / "joined")]) == 0
    assert ensemble(["--member-of", str(tmp_path / "joined" / "fracture_binary.keras"), "--index", "1",
                     "--out", str(tmp_path / "member")]) == 0
    start = tmp_path / "member" / "member1.keras"
    assert f"--weights {start}" in capsys.readouterr().out
    type_model = architectures.build("custom_cnn", PreprocessSpec(size=TINY_SIZE), TYPE_CLASSES, str(start))
    import keras

    second = keras.saving.load_model(two_members[1], compile=False)
    np.testing.assert_array_equal(type_model.get_layer("block4_conv2_conv").get_weights()[0],
                                  second.get_layer("block4_conv2_conv").get_weights()[0])
    assert ensemble(["--member-of", str(tmp_path / "joined" / "fracture_binary.keras"), "--index", "5",
                     "--out", str(tmp_path / "member")]) == 2
    assert "no member 5" in capsys.readouterr().err


def test_the_command_never_writes_over_the_shipped_models(two_members, capsys):
    from fracture_app import config
    from training.ensemble import main as ensemble

    assert ensemble(["--members", *map(str, two_members), "--out", str(config.SHIPPED_MODELS_DIR)]) == 2
    assert "not models/" in capsys.readouterr().err


def test_the_command_refuses_members_trained_on_other_splits(two_members, tmp_path, capsys):
    def move_one_training_image_to_test(folder):
        manifest = folder / "fracture_binary_split.csv"
        rows = manifest.read_text().splitlines()
        first_train = next(i for i, row in enumerate(rows) if ",train," in row)
        rows[first_train] = rows[first_train].replace(",train,", ",test,")
        manifest.write_text("\n".join(rows) + "\n")

    assert "another split" in refusal(two_members, tmp_path, capsys, move_one_training_image_to_test)


def test_the_command_refuses_a_model_that_does_not_match_its_card(two_members, tmp_path, capsys):
    assert "does not match its model card" in refusal(two_members, tmp_path, capsys, changed_card(sha256="0" * 64))


def test_the_command_refuses_members_that_started_differently(two_members, tmp_path, capsys):
    # The file, and so its sha256, unchanged: only the card says it started elsewhere.
    started_elsewhere = changed_card(weights_init="runs/an_earlier_model/fracture_binary.keras")
    assert "differs from" in refusal(two_members, tmp_path, capsys, started_elsewhere)


def test_type_models_each_started_from_its_own_binary_model_join(two_members, tmp_path):
    """How the type model's members were made: each from another binary run, on one split."""
    from fracture_app.models import load_model
    from training.ensemble import main as ensemble
    from training.evaluate import main as evaluate
    from training.train import main as train

    paths = []
    for number, start in enumerate(two_members, start=1):
        out = tmp_path / f"type{number}"
        same_split = ["--split", str(tmp_path / "type1" / "fracture_type_split.csv")] if paths else []
        assert train(["--task", "type", "--data", str(BONE_BREAK_FIXTURES), "--arch", "custom_cnn", "--img-size",
                      str(TINY_SIZE), "--epochs", "1", "--batch-size", "8", "--weights", str(start), *same_split,
                      "--out", str(out), "--quiet"]) == 0
        paths.append(out / "fracture_type.keras")
    joined = tmp_path / "joined"
    assert ensemble(["--members", *map(str, paths), "--out", str(joined)]) == 0
    model_path = joined / "fracture_type.keras"
    assert evaluate(["--model", str(model_path), "--data", str(BONE_BREAK_FIXTURES), "--redo-validation-choices"]) == 0
    card = load_model(model_path).card.data
    assert card["architecture"] == "custom_cnn, mean of 2"
    assert card["weights_init"] == MEMBERS_OWN_START and "weights_init_sha256" not in card
    assert [member["weights_init"] for member in card["training"]["members"]] == [str(p) for p in two_members]
    assert card["limitations"][0].startswith("Averages several networks, each started from")
    assert card["calibration"]["fitted_on"] == "validation"
