"""What training chooses on validation: the test-time flip only where it helps, thresholds from validation."""

import numpy as np

from fracture_app import config
from training.validation_choices import choose_flip, evaluate_splits, validation_score

LABELS = np.array([0, 0, 0, 1, 1, 1])


def test_the_mirror_is_used_only_where_it_ranks_validation_better():
    noisy = np.array([[0.0], [2.0], [-1.0], [1.0], [-2.0], [3.0]])
    clean = np.array([[-3.0], [-2.0], [-1.0], [1.0], [2.0], [3.0]])
    helped = choose_flip(config.BINARY_TASK, LABELS, noisy, clean)
    assert helped["used"] and helped["validation"]["averaged_with_mirror"] > helped["validation"]["image_alone"]
    assert not choose_flip(config.BINARY_TASK, LABELS, clean, noisy)["used"]
    assert not choose_flip(config.BINARY_TASK, LABELS, clean, clean)["used"], "a tie keeps the simpler answer"


class MirrorReadingModel:
    """Scores a fracture by the left column alone: the mirror sees the right column."""

    def predict(self, inputs, batch_size, verbose):
        return inputs[:, :, 0, 0].mean(axis=1, keepdims=True)


def test_the_mirror_is_chosen_on_validation_even_where_it_hurts_on_test():
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], 20)
    val = rng.normal(size=(40, 4, 4, 1)).astype(np.float32)
    val[:, :, -1, 0] += 3 * labels[:, None]  # validation's evidence sits in the right column only
    test = rng.normal(size=(40, 4, 4, 1)).astype(np.float32)
    test[:, :, 0, 0] += 3 * labels[:, None]  # test's in the left, and the right column misleads
    test[:, :, -1, 0] -= 5 * labels[:, None]
    arrays = {"val": (val, labels), "test": (test, labels)}
    evaluation = evaluate_splits(MirrorReadingModel(), arrays, config.BINARY_TASK, config.BINARY_CLASSES)
    assert evaluation["test_time_flip"]["used"]
    assert evaluation["test_time_flip"]["validation"]["averaged_with_mirror"] > 0.9
    assert evaluation["metrics"]["val"]["auroc"] > 0.9
    assert evaluation["metrics"]["test"]["auroc"] < 0.5, "test is measured with the choice validation made"


def test_weights_gone_to_nan_never_score():
    """Argmax of NaN logits picks the first class, which macro-F1 would score like an answer."""
    logits = np.full((6, 10), np.nan, np.float32)
    assert np.isnan(validation_score(config.TYPE_TASK, np.arange(6), logits))
    assert np.isnan(validation_score(config.BINARY_TASK, LABELS, np.full((6, 1), np.nan, np.float32)))
