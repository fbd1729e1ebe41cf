"""The pointing game's hit test and the Grad-CAM layer candidates."""

import numpy as np

from fracture_app import config
from fracture_app.models import load_model
from fracture_app.models import artifact_paths
from training.localisation import candidate_layers, fracture_boxes, peak_in_a_box

from conftest import FRACATLAS_FIXTURES


def heat_with_peak(shape, row, column):
    heat = np.zeros(shape, np.float32)
    heat[row, column] = 1.0
    return heat


def test_a_peak_inside_a_box_is_a_hit_and_one_outside_is_not():
    heat = heat_with_peak((8, 8), row=2, column=1)  # cell centre on a 64-px square: x 0.1875, y 0.3125
    square = (400, 400)
    assert peak_in_a_box(heat, square, 64, [(0.19, 0.31, 0.02, 0.02)])
    assert not peak_in_a_box(heat, square, 64, [(0.75, 0.30, 0.10, 0.10)])
    assert peak_in_a_box(heat, square, 64, [(0.75, 0.30, 0.10, 0.10), (0.19, 0.31, 0.02, 0.02)]), "any box counts"
    assert not peak_in_a_box(heat, square, 64, [])


def test_the_peak_is_placed_through_the_letterbox_and_misses_in_its_padding():
    wide = (100, 200)  # letterboxed into 64: the image fills rows 16..47
    whole_image = [(0.5, 0.5, 1.0, 1.0)]
    assert not peak_in_a_box(heat_with_peak((8, 8), row=0, column=4), wide, 64, whole_image)
    assert peak_in_a_box(heat_with_peak((8, 8), row=2, column=4), wide, 64, [(0.5625, 0.125, 0.02, 0.02)])


def test_the_hottest_cell_counts_even_when_a_nearly_as_hot_one_comes_first():
    """Upsampled and clipped for display, both cells would reach 1 and the first would pass for the peak."""
    heat = np.zeros((8, 8), np.float32)
    heat[1, 1], heat[6, 6] = 0.97, 1.0
    box_around_the_hottest = [((6 + 0.5) / 8, (6 + 0.5) / 8, 0.1, 0.1)]
    assert peak_in_a_box(heat, (256, 256), 64, box_around_the_hottest)


def test_fracture_boxes_are_read_from_the_yolo_annotations():
    fractured = sorted((FRACATLAS_FIXTURES / "images" / "Fractured").glob("*.jpg"))
    boxes = [fracture_boxes(FRACATLAS_FIXTURES, path) for path in fractured]
    assert any(boxes), "the fixtures include annotated fractures"
    for x, y, width, height in (box for image_boxes in boxes for box in image_boxes):
        assert 0 <= x <= 1 and 0 <= y <= 1 and 0 < width <= 1 and 0 < height <= 1
    assert fracture_boxes(FRACATLAS_FIXTURES, FRACATLAS_FIXTURES / "images" / "Non_fractured" / "none.jpg") == []


def test_candidate_layers_run_from_coarse_to_fine_and_stop_at_an_eighth_of_the_input(tiny_models_dir):
    model = load_model(artifact_paths(tiny_models_dir, config.BINARY_TASK)["model"])
    names = candidate_layers(model.keras_model, model.spec.size)
    sides = [model.keras_model.get_layer(name).output.shape[1] for name in names]
    assert sides == sorted(sides) and len(set(sides)) == len(sides)
    assert max(sides) <= model.spec.size // 8
