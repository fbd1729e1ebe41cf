"""Training augmentation: drawn within its strengths, one warp that means what OpenCV's means, on a real X-ray."""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fracture_app.imaging import read_image
from fracture_app.preprocess import PreprocessSpec, prepare
from training import augment, pipeline

from conftest import FRACATLAS_FIXTURES

SIDE = 96


@pytest.fixture(scope="module")
def xray() -> np.ndarray:
    """(1, SIDE, SIDE, 1): a real FracAtlas fixture as the model sees it."""
    path = sorted((FRACATLAS_FIXTURES / "images" / "Fractured").glob("*.jpg"))[0]
    return prepare(read_image(path).pixels, PreprocessSpec(size=SIDE, channels=1))[None]


def one_row(angle=0.0, scale=1.0, shift=(0.0, 0.0), mirror=1.0, brightness=0.0, contrast=1.0) -> np.ndarray:
    row = np.zeros((1, augment.COLUMNS), np.float32)
    row[:, augment.WARP] = augment.warp_coefficients(np.array([angle]), np.array([scale]), np.array([shift]),
                                                     np.array([mirror]), SIDE)
    row[:, augment.BRIGHTNESS_COLUMN], row[:, augment.CONTRAST_COLUMN] = brightness, contrast
    return row


def test_rows_that_change_nothing_leave_the_xray_as_it_was(xray):
    rows = augment.unchanged(1, SIDE)
    assert np.array_equal(np.asarray(augment.warp(xray, rows)), xray), "no resampling blur"
    np.testing.assert_allclose(np.asarray(augment.apply(xray, rows)), xray, atol=1e-6)  # float rounding about the mean


def test_a_mirror_row_mirrors_the_xray_exactly(xray):
    assert np.array_equal(np.asarray(augment.warp(xray, one_row(mirror=-1.0))), xray[:, :, ::-1])


def test_rotation_zoom_and_shift_sample_where_opencv_samples(xray):
    """OpenCV's warpAffine with the same matrix as an inverse map: the same pixels, bar interpolation rounding."""
    angle, scale, shift = 0.3, 1.1, (5.0, -7.0)
    row = one_row(angle, scale, shift, mirror=-1.0)
    ours = np.asarray(augment.warp(xray, row))[0, ..., 0]
    matrix = row[0, augment.WARP][:6].reshape(2, 3)
    theirs = cv2.warpAffine(xray[0, ..., 0], matrix, (SIDE, SIDE), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    inner = (slice(2, -2), slice(2, -2))  # edges of the filled border round differently
    assert np.abs(ours[inner] - theirs[inner]).mean() < 2e-3
    assert np.abs(ours - xray[0, ..., 0]).mean() > 0.05, "the warp moved the picture"


def test_exposure_changes_contrast_about_the_mean_then_brightness_and_clips(xray):
    changed = np.asarray(augment.expose(xray, one_row(brightness=0.05, contrast=1.2)))
    expected = np.clip((xray - xray.mean()) * 1.2 + xray.mean() + 0.05, 0.0, 1.0)
    np.testing.assert_allclose(changed, expected, atol=1e-5)


def test_draws_stay_within_the_strengths_and_repeat_with_the_seed():
    rows = augment.draw(np.random.default_rng(4), 2000, SIDE)
    a0, a1, a2, b0, b1, b2 = rows[:, augment.WARP][:, :6].T
    scale = np.hypot(a1, b1)  # the y column is never mirrored
    angle = np.arctan2(-a1, b1)
    centre = (SIDE - 1) / 2
    shift_x, shift_y = a2 - centre + (a0 + a1) * centre, b2 - centre + (b0 + b1) * centre
    assert np.all(np.abs(scale - 1) <= augment.ZOOM + 1e-5)
    assert np.all(np.abs(angle) <= augment.ROTATION * 2 * np.pi + 1e-5)
    assert np.all(np.abs([shift_x, shift_y]) <= augment.SHIFT * SIDE + 1e-3)
    assert 0.45 < np.mean(a0 * b1 - a1 * b0 < 0) < 0.55, "about half are mirrored"
    assert np.all(np.abs(rows[:, augment.BRIGHTNESS_COLUMN]) <= augment.BRIGHTNESS + 1e-6)
    assert np.all(np.abs(rows[:, augment.CONTRAST_COLUMN] - 1) <= augment.CONTRAST + 1e-6)
    assert np.array_equal(rows, augment.draw(np.random.default_rng(4), 2000, SIDE))


def test_both_feeds_augment_an_epoch_the_same_way(xray, monkeypatch):
    images = np.repeat(xray, 6, axis=0)
    labels = np.arange(6, dtype=np.int64)
    from_tf = [np.asarray(batch[0]) for batch in pipeline.batches(images, labels, 3, training=True, seed=2)]
    monkeypatch.setattr(pipeline, "on_tensorflow", lambda: False)
    dataset = pipeline.batches(images, labels, 3, training=True, seed=2)
    from_keras = [np.asarray(dataset[index][0]) for index in range(len(dataset))]
    assert len(from_tf) == len(from_keras) == 2
    for a, b in zip(from_tf, from_keras):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(from_tf[0][0], from_tf[0][1]), "each image draws its own augmentation"


JAX_EPOCH = """
import sys
import numpy as np
from training import pipeline
images = np.load(sys.argv[1])
data = pipeline.batches(images, np.arange(len(images)), 3, training=True, seed=2)
np.save(sys.argv[2], np.concatenate([np.asarray(data[index][0]) for index in range(len(data))]))
"""


def test_jax_compiles_the_same_augmentation_that_tf_data_applies(xray, tmp_path):
    """On a GPU machine without TensorFlow the PyDataset feed runs the augmentation compiled by JAX."""
    pytest.importorskip("jax")
    images = np.repeat(xray, 6, axis=0)
    np.save(tmp_path / "images.npy", images)
    root = Path(__file__).resolve().parent.parent
    finished = subprocess.run([sys.executable, "-c", JAX_EPOCH, str(tmp_path / "images.npy"), str(tmp_path / "jax.npy")],
                              env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(root)}, cwd=root,
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    from_tf = np.concatenate([np.asarray(batch[0]) for batch in pipeline.batches(images, np.arange(6), 3, True, 2)])
    np.testing.assert_allclose(np.load(tmp_path / "jax.npy"), from_tf, atol=1e-4)
