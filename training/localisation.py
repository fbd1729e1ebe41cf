"""Does the heat map point at the fracture? The pointing game on FracAtlas boxes, and the Grad-CAM layer choice.

The pointing game (Zhang et al., 2018) counts a hit when the hottest pixel of the heat map falls inside an
annotated fracture box. FracAtlas boxes are small (often 5% of the image side), so the last, coarsest feature
map (8×8 for a 256-px input) can hardly hit them; a finer map may. Which map to show, and how much to blur it,
is chosen on the validation split, never on the test split, and saved in the model card.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fracture_app.data_layout import fracture_boxes
from fracture_app.errors import FractureAppError
from fracture_app.imaging import read_image
from fracture_app.preprocess import prepare
from training.metrics import wilson_interval

FINEST_MAP_SHARE = 1 / 8  # finer maps than input/8 are edge detectors, not evidence for the answer
# Blurs of the chosen map tried on validation (σ in map cells), fixed before any was measured; 0: none.
SMOOTHING_CELLS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
FRACTURED = 1


@dataclass(frozen=True)
class BoxedImage:
    shape: tuple[int, int]
    model_input: np.ndarray
    boxes: list[tuple[float, float, float, float]]


def boxed_images(data_dir: Path, samples, spec) -> list[BoxedImage]:
    """The readable samples that have at least one fracture box, prepared once for every layer tried."""
    found = []
    for sample in samples:
        if not fracture_boxes(data_dir, sample.path):
            continue
        try:
            xray = read_image(sample.path)
        except FractureAppError:
            continue
        boxes = fracture_boxes(data_dir, sample.path, cut_short="missing_fraction" in xray.metadata)
        if boxes:
            found.append(BoxedImage(xray.pixels.shape, prepare(xray.pixels, spec), boxes))
    return found


def peak_in_a_box(heat: np.ndarray, image_shape: tuple[int, int], input_size: int, boxes) -> bool:
    """Does the hottest pixel of a heat map (as GradCam computes it), on the image's own pixels, fall inside a box?

    Read before the map is clipped for display: clipping flattens the places where hot cells meet into one
    plateau, whose first pixel in reading order would pass for the peak.
    """
    from fracture_app.gradcam import peak_location, resize_to_image

    on_image = resize_to_image(heat, image_shape, input_size)
    row, column = peak_location(on_image)
    y, x = (row + 0.5) / on_image.shape[0], (column + 0.5) / on_image.shape[1]
    return any(abs(x - bx) <= bw / 2 and abs(y - by) <= bh / 2 for bx, by, bw, bh in boxes)


def heatmaps(keras_model, images: list[BoxedImage], layer_name: str | None = None,
             flip_average: bool = False) -> list[np.ndarray]:
    """Each image's unsmoothed Grad-CAM map for "Fractured", computed once for every smoothing tried on it."""
    from fracture_app.gradcam import GradCam

    gradcam = GradCam(keras_model, layer_name, flip_average)
    return [gradcam.heatmap(image.model_input, FRACTURED) for image in images]


def hits_in(maps: list[np.ndarray], images: list[BoxedImage], input_size: int, smoothing: float = 0.0) -> int:
    from fracture_app.gradcam import smoothed

    return sum(peak_in_a_box(smoothed(heat, smoothing), image.shape, input_size, image.boxes)
               for heat, image in zip(maps, images))


def pointing_game(keras_model, spec, data_dir: Path, samples, layer_name: str | None = None,
                  flip_average: bool = False, smoothing: float = 0.0) -> dict:
    """Share of boxed fractures whose Grad-CAM peak (after the smoothing the app applies) falls inside a box."""
    images = boxed_images(data_dir, samples, spec)
    hits = hits_in(heatmaps(keras_model, images, layer_name, flip_average), images, spec.size, smoothing)
    return {"images": len(images), "hits": hits, "hit_rate": hits / len(images) if images else None,
            "interval": wilson_interval(hits, len(images)), "layer": layer_name or "last",
            "smoothing_cells": smoothing}


def candidate_layers(keras_model, input_size: int) -> list[str]:
    """The deepest layer at each spatial resolution, from coarsest to finest, down to input/8."""
    from fracture_app.gradcam import feature_layers

    deepest = {}
    for _, layer in feature_layers(keras_model):
        side = layer.output.shape[1]
        if side is not None and side <= input_size * FINEST_MAP_SHARE:
            deepest[side] = layer.name
    return [deepest[side] for side in sorted(deepest)]


def choose_gradcam_layer(keras_model, spec, data_dir: Path, validation_samples, flip_average: bool = False) -> dict:
    """The candidate layer with the most validation hits (ties go to the coarser, more abstract one), then the
    smoothing of its map with the most validation hits (ties go to the lesser, none first).

    Without candidates or validation boxes, the layer is None: the last feature map, as before any choice.
    """
    images = boxed_images(data_dir, validation_samples, spec)
    candidates = candidate_layers(keras_model, spec.size) if images else []
    maps = {name: heatmaps(keras_model, images, name, flip_average) for name in candidates}
    hits = {name: hits_in(maps[name], images, spec.size) for name in candidates}
    best = max(hits, key=hits.get) if hits else None  # dicts keep insertion order: coarsest first wins a tie
    smoothing_hits = {sigma: hits_in(maps[best], images, spec.size, sigma) for sigma in SMOOTHING_CELLS} if best else {}
    smoothing = max(smoothing_hits, key=smoothing_hits.get) if smoothing_hits else 0.0
    return {"layer": best, "chosen_on": "validation pointing game", "validation_images": len(images),
            "validation_hit_rates": {name: count / len(images) for name, count in hits.items()},
            "smoothing_cells": smoothing,
            "validation_hit_rates_by_smoothing": {str(sigma): count / len(images)
                                                  for sigma, count in smoothing_hits.items()}}


def choose_and_score(keras_model, spec, data_dir: Path, samples, flip_average: bool = False) -> tuple[dict, dict]:
    """Choose the layer on the fractured validation images, then play the pointing game on the test ones."""
    fractured = {split: [s for s in samples if s.split == split and s.label == FRACTURED] for split in ("val", "test")}
    choice = choose_gradcam_layer(keras_model, spec, data_dir, fractured["val"], flip_average)
    return choice, pointing_game(keras_model, spec, data_dir, fractured["test"], choice["layer"], flip_average,
                                 choice["smoothing_cells"])
