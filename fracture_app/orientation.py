"""Which way up an X-ray lies, and setting it upright before the fracture models read it.

The fracture models learnt from X-rays stored upright and read a turned one at chance (training/HISTORY.md,
twenty-first session). The orientation model (training.orientation) names the turn; a picture it takes for
turned with at least its card's threshold is read turned back upright, and the reading says so.
"""

import numpy as np

from fracture_app import config

UPRIGHT = 0


def detected_turn(probabilities: np.ndarray, threshold: float) -> int:
    """The quarter turns (anticlockwise, config.ORIENTATIONS) a picture lies turned: the orientation model's most
    probable answer where that has at least `threshold`, else UPRIGHT (read as given)."""
    best = int(np.argmax(probabilities))
    return best if probabilities[best] >= threshold else UPRIGHT


def set_upright(pixels: np.ndarray, turn: int) -> np.ndarray:
    """The picture turned back by `turn` quarter turns."""
    return np.ascontiguousarray(np.rot90(pixels, -turn)) if turn else pixels


def as_given(upright_map: np.ndarray, turn: int) -> np.ndarray:
    """A map drawn on the upright picture, turned to lie on the picture as given."""
    return np.ascontiguousarray(np.rot90(upright_map, turn)) if turn else upright_map


def turn_words(turn: int) -> str:
    return config.ORIENTATIONS[turn]

