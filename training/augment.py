"""Random changes to training images: drawn in NumPy, applied with keras.ops in a single resampling.

Each image's flip, rotation, zoom, shift, brightness and contrast are drawn from the batch order's random
generator (training.pipeline.BatchOrder), so an epoch's augmentation follows from the seed alone, on
either feed and any backend. The geometric part is one affine warp: a chain of Keras' RandomRotation,
RandomZoom and RandomTranslation resamples the image three times, blurring the thin lines fractures
are, and costs three times the work. `apply` is a pure function of its inputs, so JAX can compile it.
"""

import numpy as np

# Strengths: radiographs are taken at many angles, scales and exposures, rarely upside down.
ROTATION = 0.05  # fraction of a full turn (±18°)
ZOOM = 0.15  # the input span shown changes by up to this share (above 1: zoomed out)
SHIFT = 0.08  # share of the side
BRIGHTNESS = 0.10  # added to pixels in [0, 1]
CONTRAST = 0.20  # distance from the image's mean scaled by 1 ± this

METHOD = "one affine warp"

# One row per image: the affine warp's 8 coefficients (keras.ops.image.affine_transform's layout),
# then the brightness offset and the contrast factor.
WARP = slice(0, 8)
BRIGHTNESS_COLUMN, CONTRAST_COLUMN = 8, 9
COLUMNS = 10


def description() -> dict:
    """What a model card records of the augmentation a run trained with."""
    return {"method": METHOD, "mirror": "horizontal, half the images", "rotation_turns": ROTATION, "zoom": ZOOM,
            "shift": SHIFT, "brightness": BRIGHTNESS, "contrast": CONTRAST}


def draw(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """(count, COLUMNS) float32: random augmentations for `count` square images of side `size`."""
    angle = rng.uniform(-ROTATION, ROTATION, count) * 2 * np.pi
    scale = rng.uniform(1 - ZOOM, 1 + ZOOM, count)
    shift = rng.uniform(-SHIFT, SHIFT, (count, 2)) * size
    mirror = np.where(rng.random(count) < 0.5, -1.0, 1.0)
    brightness = rng.uniform(-BRIGHTNESS, BRIGHTNESS, count)
    contrast = rng.uniform(1 - CONTRAST, 1 + CONTRAST, count)
    rows = np.zeros((count, COLUMNS), np.float32)
    rows[:, WARP] = warp_coefficients(angle, scale, shift, mirror, size)
    rows[:, BRIGHTNESS_COLUMN], rows[:, CONTRAST_COLUMN] = brightness, contrast
    return rows


def drawer(size: int):
    """`draw` for images of side `size`, as the feeds take it: (rng, count) → rows."""
    return lambda rng, count: draw(rng, count, size)


def unchanged(count: int, size: int) -> np.ndarray:
    """Rows that leave images as they are (for tests and checks)."""
    rows = np.zeros((count, COLUMNS), np.float32)
    rows[:, WARP] = warp_coefficients(np.zeros(count), np.ones(count), np.zeros((count, 2)), np.ones(count), size)
    rows[:, CONTRAST_COLUMN] = 1.0
    return rows


def warp_coefficients(angle, scale, shift, mirror, size: int) -> np.ndarray:
    """(count, 8): for each output pixel (x, y), the input point it samples, about the square's centre:
    input = centre + scale · rotation(angle) · mirror_x · (output − centre) + shift."""
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    a0, a1, b0, b1 = cos * mirror, -sin, sin * mirror, cos
    centre = (size - 1) / 2
    a2 = centre + shift[:, 0] - (a0 + a1) * centre
    b2 = centre + shift[:, 1] - (b0 + b1) * centre
    zeros = np.zeros_like(a0)
    return np.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def warp(images, rows):
    """Moves pixels: the same warp for an image and anything stacked on it as channels (a fracture-box mask)."""
    from keras import ops

    return ops.image.affine_transform(images, rows[:, WARP], interpolation="bilinear", fill_mode="constant")


def expose(images, rows):
    """Changes exposure only (never applied to a mask), clipped to [0, 1]."""
    from keras import ops

    brightness = ops.reshape(rows[:, BRIGHTNESS_COLUMN], (-1, 1, 1, 1))
    contrast = ops.reshape(rows[:, CONTRAST_COLUMN], (-1, 1, 1, 1))
    mean = ops.mean(images, axis=(1, 2), keepdims=True)
    return ops.clip((images - mean) * contrast + mean + brightness, 0.0, 1.0)


def apply(images, rows):
    return expose(warp(images, rows), rows)
