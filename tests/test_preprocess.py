"""prepare(): the one preprocessing that training and the app share, checked on a real X-ray."""

import numpy as np
import pytest

from fracture_app.imaging import read_image
from fracture_app.preprocess import PreprocessSpec, letterbox_box, prepare, prepare_batch


@pytest.fixture(scope="module")
def xray(fractured_xray_path):
    return read_image(fractured_xray_path).pixels


def test_letterbox_keeps_aspect_ratio_and_pads_with_black(xray):
    height, width = xray.shape
    assert height != width  # the fixture is not square, so padding must appear
    prepared = prepare(xray, PreprocessSpec(size=128))
    top, left, new_h, new_w = letterbox_box(xray.shape, 128)
    assert prepared.shape == (128, 128, 1) and prepared.dtype == np.float32
    assert max(new_h, new_w) == 128
    assert abs(new_w / new_h - width / height) < 0.02
    padding = np.ones((128, 128), bool)
    padding[top : top + new_h, left : left + new_w] = False
    assert np.all(prepared[..., 0][padding] == 0.0)
    # Shrinking with area averaging keeps the mean brightness of the picture.
    content = prepared[top : top + new_h, left : left + new_w, 0]
    assert abs(float(content.mean()) - float(xray.mean())) < 0.01


def test_same_size_square_input_is_unchanged():
    square = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    np.testing.assert_allclose(prepare(square, PreprocessSpec(size=64))[..., 0], square, atol=1e-6)


def test_three_channels_repeat_the_grey_picture(xray):
    prepared = prepare(xray, PreprocessSpec(size=96, channels=3))
    assert prepared.shape == (96, 96, 3)
    np.testing.assert_array_equal(prepared[..., 0], prepared[..., 2])


def test_spec_round_trips_through_the_card_dictionary():
    spec = PreprocessSpec(size=224, channels=3)
    assert PreprocessSpec.from_dict(spec.to_dict() | {"unknown_future_key": 1}) == spec


def test_batch_stacks_and_handles_empty_input(xray):
    spec = PreprocessSpec(size=32)
    assert prepare_batch([xray, xray], spec).shape == (2, 32, 32, 1)
    assert prepare_batch([], spec).shape == (0, 32, 32, 1)


def test_at_most_shrinks_large_pictures_only_and_keeps_their_shape():
    from fracture_app.preprocess import at_most

    wide = np.random.default_rng(0).random((300, 600, 3), dtype=np.float32)  # an RGB overlay too
    assert at_most(wide, 200).shape == (100, 200, 3)
    small = wide[:50, :80]
    assert at_most(small, 200) is small


def test_to_uint8_clips_what_lies_outside_zero_to_one():
    from fracture_app.preprocess import to_uint8

    assert to_uint8(np.array([-0.2, 0.0, 0.5, 1.0, 1.3], np.float32)).tolist() == [0, 0, 127, 255, 255]
