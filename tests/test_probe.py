"""The linear probe: its softmax fit, the features it reads, and the command on the fixture X-rays."""

import json

import numpy as np

from tests.conftest import BONE_BREAK_FIXTURES
from training.probe import feature_extractor, fit_softmax, main, softmax


def test_the_softmax_fit_separates_separable_classes_and_the_penalty_shrinks_it():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    features = rng.normal(size=(120, 5))
    features[np.arange(120), labels] += 4.0  # class k is high on feature k
    weights, biases = fit_softmax(features, labels, 3, penalty=1e-3)
    assert np.mean(np.argmax(features @ weights + biases, axis=1) == labels) > 0.97
    strong, _ = fit_softmax(features, labels, 3, penalty=1.0)
    assert np.abs(strong).sum() < 0.5 * np.abs(weights).sum()
    assert np.allclose(softmax(features @ weights + biases).sum(axis=1), 1.0)


def test_the_features_of_a_joined_model_are_its_members_pooled_features_side_by_side():
    import keras

    from tests.test_ensemble import SIZE, random_members
    from training.ensemble import join

    members = random_members()
    images = np.random.default_rng(1).random((2, SIZE, SIZE, 1)).astype(np.float32)
    pooled = [keras.Model(member.inputs, member.get_layer("pool").output)(images) for member in members]
    features = feature_extractor(join(members))(images)
    np.testing.assert_allclose(np.asarray(features), np.concatenate([np.asarray(p) for p in pooled], axis=1),
                               rtol=1e-5, atol=1e-6)


def test_the_command_measures_on_validation_and_says_why_it_cannot(tiny_models_dir, tmp_path, capsys):
    arguments = ["--binary", str(tiny_models_dir / "fracture_binary.keras"), "--data", str(BONE_BREAK_FIXTURES),
                 "--split", str(tiny_models_dir / "fracture_type_split.csv")]
    assert main([*arguments, "--out", str(tmp_path / "probe")]) == 0
    assert "validation macro-F1" in capsys.readouterr().out
    result = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert str(result["penalty"]) in result["out_of_fold_macro_f1_by_penalty"]  # JSON keys are strings
    assert 0.0 <= result["validation_macro_f1"] <= 1.0
    assert main(["--binary", str(tmp_path / "missing.keras"), *arguments[2:]]) == 1
    assert capsys.readouterr().err.startswith("error: model file missing")
