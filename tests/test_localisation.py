"""The pointing game's hit test and the Grad-CAM layer candidates."""

import numpy as np

from fracture_app import config
from fracture_app.models import load_model
from fracture_app.models import artifact_paths
from fracture_app.gradcam import heatmap_on_image, resize_to_image
from training.localisation import candidate_layers, fracture_boxes, peak_in_a_box

from conftest import FRACATLAS_FIXTURES


def heat_with_peak(shape, row, column):
    heat = np.zeros(shape, np.float32)
    heat[row, column] = 1.0
    return heat


def test_a_peak_inside_a_box_is_a_hit_and_one_outside_is_not():
    heat = heat_with_peak((100, 200), row=30, column=50)  # centre of the pixel: x 0.2525, y 0.305
    assert peak_in_a_box(heat, [(0.25, 0.30, 0.02, 0.02)])
    assert not peak_in_a_box(heat, [(0.75, 0.30, 0.10, 0.10)])
    assert peak_in_a_box(heat, [(0.75, 0.30, 0.10, 0.10), (0.25, 0.30, 0.02, 0.02)]), "any box counts"
    assert not peak_in_a_box(heat, [])


def test_the_peak_is_read_before_the_map_is_clipped_for_display():
    """Upsampled, two clusters of hot cells both pass 1; clipped, the first in reading order would pass for the peak."""
    heat = np.zeros((8, 8), np.float32)
    heat[1:3, 1:3], heat[5:7, 5:7] = 0.9, 1.0
    image_shape = (256, 256)
    around_the_hotter = [(6 / 8, 6 / 8, 0.2, 0.2)]
    assert heatmap_on_image(heat, image_shape, 64)[64, 64] == 1.0, "the cooler cluster reaches 1 once clipped"
    assert not peak_in_a_box(heatmap_on_image(heat, image_shape, 64), around_the_hotter)
    assert peak_in_a_box(resize_to_image(heat, image_shape, 64), around_the_hotter)


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
