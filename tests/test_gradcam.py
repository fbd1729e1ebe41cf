"""Grad-CAM: right shape, follows the image, works through a nested backbone, overlays cleanly."""

import numpy as np
import pytest

from fracture_app import config
from fracture_app.gradcam import GradCam, find_layer, heatmap_on_image, overlay, smoothed
from fracture_app.imaging import read_image
from fracture_app.models import load_model
from fracture_app.preprocess import PreprocessSpec, prepare
from training import architectures
from fracture_app.models import artifact_paths

from conftest import FRACATLAS_FIXTURES


@pytest.fixture(scope="module")
def xrays():
    paths = sorted((FRACATLAS_FIXTURES / "images").rglob("*.jpg"))
    return [read_image(path).pixels for path in paths[:2]]


def test_heatmap_shape_range_and_response_to_the_image(xrays):
    """On a fixed-seed model: a briefly trained one can have an all-zero last map (every weight negative)."""
    import keras

    keras.utils.set_random_seed(7)
    spec = PreprocessSpec(size=64)
    gradcam = GradCam(architectures.build("custom_cnn", spec, 1))
    first, second = (gradcam.heatmap(prepare(x, spec), 1) for x in xrays)
    side = spec.size // 32
    assert first.shape == (side, side)
    assert first.min() >= 0 and first.max() <= 1 + 1e-6
    assert not np.allclose(first, second), "the heat map must depend on the image"


def test_nested_backbone_does_not_hit_graph_disconnected(xrays):
    """The classic Keras 3 pitfall: the conv layer sits inside a nested ResNet50."""
    spec = PreprocessSpec(size=64, channels=3)
    model = architectures.build("resnet50", spec, 10, "none")
    owner, layer = find_layer(model)
    assert owner is not model and owner.name == "resnet50"
    heat = GradCam(model).heatmap(prepare(xrays[0], spec), 3)
    assert heat.shape == (2, 2) and np.isfinite(heat).all()
    finer = GradCam(model, "conv3_block4_out").heatmap(prepare(xrays[0], spec), 3)
    assert finer.shape == (8, 8) and np.isfinite(finer).all()


def test_a_named_finer_layer_gives_a_finer_map(tiny_models_dir, xrays):
    model = load_model(artifact_paths(tiny_models_dir, config.BINARY_TASK)["model"])
    prepared = prepare(xrays[0], model.spec)
    coarse = GradCam(model.keras_model).heatmap(prepared, 1)
    finer = GradCam(model.keras_model, "block2_out").heatmap(prepared, 1)
    assert coarse.shape == (model.spec.size // 32,) * 2 and finer.shape == (model.spec.size // 8,) * 2
    with pytest.raises(ValueError, match="no 4-D layer named"):
        GradCam(model.keras_model, "no_such_layer")


def test_heatmap_maps_back_onto_the_original_picture(xrays):
    pixels = xrays[0]
    heat = np.zeros((8, 8), np.float32)
    heat[0, 0] = 1.0
    mapped = heatmap_on_image(heat, pixels.shape, 256)
    assert mapped.shape == pixels.shape
    row, column = np.unravel_index(np.argmax(mapped), mapped.shape)
    assert row < pixels.shape[0] / 4 and column < pixels.shape[1] / 4


def test_overlay_opacity(xrays):
    pixels = xrays[0]
    heat = np.ones_like(pixels)
    invisible = overlay(pixels, heat, opacity=0.0)
    assert invisible.shape == (*pixels.shape, 3) and invisible.dtype == np.uint8
    np.testing.assert_allclose(invisible[..., 0], np.round(pixels * 255), atol=1)
    assert not np.array_equal(overlay(pixels, heat, 0.5), invisible)


def test_a_flip_averaged_map_treats_an_image_and_its_mirror_alike(xrays):
    """The map explains the averaged answer, so mirroring the image only mirrors the map."""
    import keras

    keras.utils.set_random_seed(7)
    spec = PreprocessSpec(size=64)
    model = architectures.build("custom_cnn", spec, 1)
    image = prepare(xrays[0], spec)
    averaged, alone = GradCam(model, "block2_out", flip_average=True), GradCam(model, "block2_out")
    heat = averaged.heatmap(image, 1)
    assert heat.max() > 0
    np.testing.assert_allclose(heat, averaged.heatmap(image[:, ::-1], 1)[:, ::-1], atol=1e-5)
    assert not np.allclose(alone.heatmap(image, 1), alone.heatmap(image[:, ::-1], 1)[:, ::-1], atol=1e-3)


def test_smoothing_lets_a_hot_region_outweigh_a_hotter_lone_cell():
    heat = np.zeros((24, 24), np.float32)
    heat[3, 3] = 1.0  # a lone hot cell
    heat[14:18, 14:18] = 0.8  # a region of warm ones
    assert np.unravel_index(np.argmax(heat), heat.shape) == (3, 3)
    blurred = smoothed(heat, 1.0)
    assert 14 <= np.unravel_index(np.argmax(blurred), heat.shape)[0] <= 17
    assert blurred.max() == pytest.approx(1.0) and blurred.min() >= 0
    np.testing.assert_array_equal(smoothed(heat, 0.0), heat)


def test_the_card_smoothing_reaches_the_heat_map():
    import keras

    keras.utils.set_random_seed(3)
    spec = PreprocessSpec(size=64)
    model = architectures.build("custom_cnn_map", spec, 1)
    image = np.random.default_rng(0).random((64, 64, 1), dtype=np.float32)
    plain = GradCam(model, architectures.FRACTURE_MAP).heatmap(image, 1)
    blurred = GradCam(model, architectures.FRACTURE_MAP, smoothing=1.5).heatmap(image, 1)
    np.testing.assert_allclose(blurred, smoothed(plain, 1.5), rtol=1e-5, atol=1e-6)
