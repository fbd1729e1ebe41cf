"""Preprocessing, defined once: the same function feeds training, evaluation, the command line and the app.

A `PreprocessSpec` is stored in every model card, so a model file always says how it must be fed.
"""

from dataclasses import asdict, dataclass

import cv2
import numpy as np

PAD_VALUE = 0.0  # radiographs have black borders; padding with black adds no false edges
WIDTH_AXIS = 2  # of a (batch, height, width, channels) array


@dataclass(frozen=True)
class PreprocessSpec:
    size: int  # square side in pixels
    channels: int = 1  # 1 = grayscale; 3 = gray repeated, for backbones built for RGB
    # Pixels enter the model in [0, 1]; any backbone-specific normalisation lives inside the model.
    scaling: str = "unit"
    # Always letterboxed: heat maps and fracture boxes are placed through the same letterbox, so a card asking
    # for stretched input is refused rather than fed in a way the rest of the code would misplace.
    keep_aspect: bool = True

    def __post_init__(self):
        if self.scaling != "unit":
            raise ValueError(f"unknown scaling {self.scaling!r}")
        if not self.keep_aspect:
            raise ValueError("only letterboxed input (keep_aspect true) is supported")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PreprocessSpec":
        return cls(**{key: values[key] for key in cls.__dataclass_fields__ if key in values})


def letterbox_box(shape: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    """Where an image of `shape` lands inside the letterboxed square: (top, left, height, width)."""
    height, width = shape[:2]
    scale = size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    return (size - new_h) // 2, (size - new_w) // 2, new_h, new_w


def resize_longer_side(pixels: np.ndarray, size: int) -> np.ndarray:
    """A 2-D image resized so its longer side is `size`, keeping its shape's proportions."""
    _, _, new_h, new_w = letterbox_box(pixels.shape, size)
    # INTER_AREA when shrinking keeps thin fracture lines instead of aliasing them away.
    shrinking = max(pixels.shape) > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(pixels, (new_w, new_h), interpolation=interpolation)


def at_most(pixels: np.ndarray, max_side: int) -> np.ndarray:
    """The image shrunk so its longer side is at most `max_side`; never enlarged."""
    return pixels if max(pixels.shape[:2]) <= max_side else resize_longer_side(pixels, max_side)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """A [0, 1] picture or heat map as 8-bit, for display and PNG files."""
    return np.clip(pixels * 255.0, 0, 255).astype(np.uint8)


def letterbox(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize a 2-D image so its longer side is `size`, then pad to a centred square."""
    top, left, new_h, new_w = letterbox_box(pixels.shape, size)
    resized = resize_longer_side(pixels, size)
    canvas = np.full((size, size), PAD_VALUE, dtype=np.float32)
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas


def prepare(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """A 2-D float image in [0, 1] → the model's input, shape (size, size, channels), float32."""
    square = np.clip(letterbox(np.asarray(pixels, dtype=np.float32), spec.size), 0.0, 1.0)
    return np.repeat(square[:, :, None], spec.channels, axis=2)


def prepare_batch(images: list[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    return np.stack([prepare(image, spec) for image in images]) if images else np.zeros(
        (0, spec.size, spec.size, spec.channels), np.float32
    )


def mirrored(batch: np.ndarray) -> np.ndarray:
    """The batch flipped left↔right.

    A model card may ask for the answer averaged over the image and its mirror (`test_time_flip`, chosen on
    validation): left and right limbs are mirror images, and training already flips at random."""
    return np.flip(batch, axis=WIDTH_AXIS)
