"""Which way up an X-ray lies, and setting it so before the fracture model reads it.

The fracture model learnt from FracAtlas X-rays as that data set stores them, and reads one turned a quarter turn
at chance (training/HISTORY.md, twenty-first session). The orientation model (training.orientation) names the
turn; a picture it takes for turned, with at least its card's threshold, is shown to the fracture model turned
back, and the reading says so. The type model reads every picture as given.
"""

import numpy as np

from fracture_app.preprocess import prepare_batch

UPRIGHT = 0


def detected_turn(probabilities: np.ndarray, threshold: float | None) -> int:
    """The quarter turns (anticlockwise, config.ORIENTATIONS) a picture lies turned: the orientation model's most
    probable answer where that has at least `threshold`, else UPRIGHT (read as given; always, without a threshold)."""
    best = int(np.argmax(probabilities))
    return best if threshold is not None and probabilities[best] >= threshold else UPRIGHT


def turns_for(orientation_model, pictures: list[np.ndarray]) -> list[int]:
    """Each picture's detected turn; all UPRIGHT without a model."""
    if orientation_model is None or not pictures:
        return [UPRIGHT] * len(pictures)
    probabilities = orientation_model.probabilities(prepare_batch(pictures, orientation_model.spec))
    return [detected_turn(row, orientation_model.card.turn_threshold) for row in probabilities]


def set_upright(pixels: np.ndarray, turn: int) -> np.ndarray:
    """The picture turned back by `turn` quarter turns."""
    return np.ascontiguousarray(np.rot90(pixels, -turn)) if turn else pixels


def onto_picture_as_uploaded(upright_map: np.ndarray, turn: int) -> np.ndarray:
    """A map drawn on the picture turned back, turned to lie on the picture as given."""
    return np.ascontiguousarray(np.rot90(upright_map, turn)) if turn else upright_map
