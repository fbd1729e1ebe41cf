"""Metrics against figures worked out by hand."""

import numpy as np
import pytest

from training import metrics


def test_auroc_counts_correctly_ordered_pairs():
    labels = [0, 0, 1, 1]
    assert metrics.auroc(labels, [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)  # 3 of 4 pairs
    assert metrics.auroc(labels, [0.1, 0.2, 0.3, 0.4]) == pytest.approx(1.0)
    assert metrics.auroc(labels, [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)  # ties count half


def test_binary_metrics_confusion_matrix_and_rates():
    result = metrics.binary_metrics([0, 0, 0, 1, 1], [0.1, 0.6, 0.2, 0.7, 0.3], threshold=0.5)
    assert result["confusion_matrix"] == [[2, 1], [1, 1]]
    assert result["sensitivity"] == pytest.approx(0.5)
    assert result["specificity"] == pytest.approx(2 / 3)
    assert result["precision"] == pytest.approx(0.5)
    assert result["accuracy"] == pytest.approx(0.6)


def test_thresholds_meet_the_asked_sensitivity_and_specificity():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.clip(labels * 0.3 + rng.normal(0.35, 0.2, 500), 0, 1)
    t_sens = metrics.threshold_for_sensitivity(labels, scores, 0.9)
    assert np.mean(scores[labels == 1] >= t_sens) >= 0.9
    t_spec = metrics.threshold_for_specificity(labels, scores, 0.9)
    assert np.mean(scores[labels == 0] < t_spec) >= 0.9
    assert t_spec > t_sens


def test_expected_calibration_error_is_zero_when_confidence_matches_accuracy():
    labels = np.array([1] * 8 + [0] * 2)
    assert metrics.expected_calibration_error(labels, np.full(10, 0.8)) == pytest.approx(0.0)
    assert metrics.expected_calibration_error(labels, np.full(10, 0.99)) == pytest.approx(0.19)


def test_platt_and_temperature_scaling_reduce_overconfidence():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 2000)
    logits = (labels * 2 - 1) * 1.0 + rng.normal(0, 1.0, 2000)
    overconfident = logits * 5
    platt = metrics.fit_platt(overconfident, labels)
    assert platt["a"] == pytest.approx(0.2 * 2, rel=0.2)  # true slope is 2 for N(±1, 1) classes

    multi = np.stack([-overconfident, overconfident], axis=1) / 2
    assert 2.0 < metrics.fit_temperature(multi, labels)["temperature"] < 8.0


def test_multiclass_metrics_top_k_and_macro_f1():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.2, 0.5, 0.3]])
    labels = [0, 1, 2, 2]
    result = metrics.multiclass_metrics(labels, probabilities, ["a", "b", "c"])
    assert result["top1"] == pytest.approx(0.5)
    assert result["top3"] == pytest.approx(1.0)
    assert result["confusion_matrix"] == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]
    # F1: a = 2/3, b = 0, c = 2/3
    assert result["macro_f1"] == pytest.approx((2 / 3 + 0 + 2 / 3) / 3)


def test_undefined_figures_are_nan_not_zero():
    result = metrics.binary_metrics([1, 1], [0.2, 0.9], threshold=0.5)
    assert np.isnan(result["auroc"]) and np.isnan(result["specificity"])
    assert result["sensitivity"] == pytest.approx(0.5)


@pytest.mark.parametrize("successes, total, low, high", [
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)])
def test_wilson_intervals_match_newcombes_worked_examples(successes, total, low, high):
    """Newcombe, Statistics in Medicine 17, 857 (1998), table I, method 3."""
    assert metrics.wilson_interval(successes, total) == pytest.approx([low, high], abs=1e-4)


def test_the_auroc_interval_holds_the_auroc_narrows_with_more_data_and_is_reproducible():
    rng = np.random.default_rng(0)

    def sample(n):
        labels = rng.random(n) < 0.2
        return labels, rng.normal(size=n) + labels

    small, large = sample(200), sample(2000)
    low, high = metrics.auroc_interval(*small)
    assert low < metrics.auroc(*small) < high
    assert metrics.auroc_interval(*small) == [low, high]
    large_low, large_high = metrics.auroc_interval(*large)
    assert large_high - large_low < (high - low) * 0.6
    assert metrics.auroc_interval([1, 1], [0.2, 0.9]) is None
    result = metrics.binary_metrics([0, 0, 0, 1, 1], [0.1, 0.6, 0.2, 0.7, 0.3], threshold=0.5)
    assert result["intervals"]["sensitivity"] == metrics.wilson_interval(1, 2)
    assert result["intervals"]["specificity"] == metrics.wilson_interval(2, 3)
