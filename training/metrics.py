"""Metrics, operating points and calibration in plain NumPy, so every figure in a card can be checked by hand."""

import numpy as np

# The decision threshold is the highest one that still finds this share of fractures on validation.
DECISION_SENSITIVITY = 0.85
HIGH_SENSITIVITY = 0.95
HIGH_SPECIFICITY = 0.95
ECE_BINS = 10
ROC_POINTS_KEPT = 101
# 95% intervals: Wilson's for proportions, a stratified bootstrap (fixed seed, so a card is reproducible) for AUROC.
Z_95 = 1.959964
BOOTSTRAP_REPLICATES = 2000
BOOTSTRAP_SEED = 0


def roc_curve(labels: np.ndarray, scores: np.ndarray):
    """(false positive rates, true positive rates, thresholds), thresholds descending, ties merged."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, float)
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    tp = np.cumsum(labels)[last_of_tie]
    fp = np.cumsum(~labels)[last_of_tie]
    positives, negatives = max(labels.sum(), 1), max((~labels).sum(), 1)
    tpr = np.r_[0.0, tp / positives]
    fpr = np.r_[0.0, fp / negatives]
    thresholds = np.r_[np.inf, scores[last_of_tie]]
    return fpr, tpr, thresholds


def auroc(labels, scores) -> float:
    """Area under the ROC curve; NaN when only one class is present (it is undefined there)."""
    labels = np.asarray(labels, bool)
    if labels.all() or not labels.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def threshold_for_sensitivity(labels, scores, sensitivity: float) -> float:
    """The highest threshold whose sensitivity is at least `sensitivity` (so specificity is as high as it can be)."""
    _, tpr, thresholds = roc_curve(labels, scores)
    index = int(np.argmax(tpr >= sensitivity - 1e-12))
    return float(min(thresholds[index], 1.0))


def threshold_for_specificity(labels, scores, specificity: float) -> float:
    """The lowest threshold whose specificity is at least `specificity`."""
    fpr, _, thresholds = roc_curve(labels, scores)
    allowed = np.nonzero(fpr <= 1.0 - specificity + 1e-12)[0]
    index = int(allowed[-1])
    return float(min(thresholds[index], 1.0))


def wilson_interval(successes: int, total: int) -> list[float] | None:
    """95% interval for a proportion; sound for small counts and for 0 or 100%, unlike p ± 1.96·SE."""
    if total == 0:
        return None
    p, z2 = successes / total, Z_95**2
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = Z_95 * np.sqrt(p * (1 - p) / total + z2 / (4 * total**2)) / (1 + z2 / total)
    return [float(centre - half), float(centre + half)]


def auroc_interval(labels, scores) -> list[float] | None:
    """95% percentile interval of AUROC over bootstrap resamples drawn within each class."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, float)
    positives, negatives = np.flatnonzero(labels), np.flatnonzero(~labels)
    if not len(positives) or not len(negatives):
        return None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    values = []
    for _ in range(BOOTSTRAP_REPLICATES):
        chosen = np.r_[rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))]
        values.append(auroc(labels[chosen], scores[chosen]))
    return np.percentile(values, [2.5, 97.5]).tolist()


def _confusion_cells(labels, probabilities, threshold: float) -> tuple[int, int, int, int]:
    """(true positives, true negatives, false positives, false negatives) at the threshold."""
    labels, predicted = np.asarray(labels, int), np.asarray(probabilities, float) >= threshold
    return (int(np.sum(predicted & (labels == 1))), int(np.sum(~predicted & (labels == 0))),
            int(np.sum(predicted & (labels == 0))), int(np.sum(~predicted & (labels == 1))))


def binary_metrics(labels, probabilities, threshold: float) -> dict:
    labels, probabilities = np.asarray(labels, int), np.asarray(probabilities, float)
    tp, tn, fp, fn = _confusion_cells(labels, probabilities, threshold)
    sensitivity = _ratio(tp, tp + fn)
    precision = _ratio(tp, tp + fp)
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), ROC_POINTS_KEPT)).astype(int))
    return {
        "n": int(len(labels)),
        "auroc": auroc(labels, probabilities),
        "accuracy": _ratio(tp + tn, len(labels)),
        "sensitivity": sensitivity,
        "specificity": _ratio(tn, tn + fp),
        "precision": precision,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "confusion_matrix": [[tn, fp], [fn, tp]],  # rows: truth (not fractured, fractured)
        "threshold": float(threshold),
        "ece": expected_calibration_error(labels, probabilities),
        "roc": {"fpr": fpr[keep].round(4).tolist(), "tpr": tpr[keep].round(4).tolist(),
                "thresholds": np.minimum(thresholds[keep], 1.0).round(4).tolist()},
        "intervals": {"auroc": auroc_interval(labels, probabilities), "sensitivity": wilson_interval(tp, tp + fn),
                      "specificity": wilson_interval(tn, tn + fp)},
    }


def operating_point(labels, probabilities, threshold: float) -> dict:
    tp, tn, fp, fn = _confusion_cells(labels, probabilities, threshold)
    return {"threshold": float(threshold), "sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp)}


def expected_calibration_error(labels, probabilities, bins: int = ECE_BINS) -> float:
    """Gap between confidence and accuracy of the predicted class, averaged over equal-width bins."""
    labels, probabilities = np.asarray(labels, int), np.asarray(probabilities, float)
    if probabilities.ndim == 1:
        probabilities = np.stack([1 - probabilities, probabilities], axis=1)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def multiclass_metrics(labels, probabilities, classes) -> dict:
    labels, probabilities = np.asarray(labels, int), np.asarray(probabilities, float)
    count = len(classes)
    predicted = probabilities.argmax(axis=1)
    top3 = np.argsort(-probabilities, axis=1)[:, :3]
    confusion = np.zeros((count, count), int)
    np.add.at(confusion, (labels, predicted), 1)
    per_class, f1s = {}, []
    for index, name in enumerate(classes):
        tp = confusion[index, index]
        precision = tp / max(confusion[:, index].sum(), 1)
        recall = tp / max(confusion[index].sum(), 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                           "support": int(confusion[index].sum())}
        f1s.append(f1)
    top1_hits = int(np.sum(predicted == labels))
    top3_hits = int(sum(label in row for label, row in zip(labels, top3)))
    return {
        "n": int(len(labels)),
        "top1": _ratio(top1_hits, len(labels)),
        "top3": _ratio(top3_hits, len(labels)),
        "intervals": {"top1": wilson_interval(top1_hits, len(labels)), "top3": wilson_interval(top3_hits, len(labels))},
        "macro_f1": float(np.mean(f1s)),
        "ece": expected_calibration_error(labels, probabilities),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),  # rows: truth, columns: prediction, in `classes` order
    }


def macro_f1(labels, probabilities) -> float:
    probabilities = np.asarray(probabilities)
    return multiclass_metrics(labels, probabilities, list(range(probabilities.shape[1])))["macro_f1"]


def fit_platt(logits, labels, iterations: int = 100) -> dict:
    """Logistic regression p = σ(a·logit + b), fitted on validation logits by damped Newton steps."""
    x, y = np.asarray(logits, float).ravel(), np.asarray(labels, float)

    def nll(a, b):
        z = a * x + b
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    a, b = 1.0, 0.0
    for _ in range(iterations):
        p = 0.5 * (1 + np.tanh(0.5 * (a * x + b)))  # σ without overflow
        gradient = np.array([np.sum((p - y) * x), np.sum(p - y)])
        w = p * (1 - p) + 1e-9
        hessian = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        scale, current = 1.0, nll(a, b)
        while nll(a - scale * step[0], b - scale * step[1]) > current and scale > 1e-4:
            scale /= 2  # halve the step until the likelihood improves: plain Newton can overshoot
        a, b = a - scale * step[0], b - scale * step[1]
        if np.abs(scale * step).max() < 1e-8:
            break
    return {"method": "platt", "a": float(a), "b": float(b), "fitted_on": "validation"}


def fit_temperature(logits, labels) -> dict:
    """The temperature minimising validation negative log-likelihood (a 1-D search; NLL is convex in 1/T)."""
    logits, labels = np.asarray(logits, float), np.asarray(labels, int)

    def nll(temperature):
        scaled = logits / temperature
        scaled -= scaled.max(axis=1, keepdims=True)
        log_probs = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        return -log_probs[np.arange(len(labels)), labels].mean()

    candidates = np.exp(np.linspace(np.log(0.05), np.log(20.0), 400))
    best = float(candidates[np.argmin([nll(t) for t in candidates])])
    return {"method": "temperature", "temperature": best, "fitted_on": "validation"}
