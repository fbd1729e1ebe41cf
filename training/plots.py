"""The PNG plots beside each model: training curves, ROC curve, confusion matrix."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

FIGURE_DPI = 110


def training_curves(history: dict[str, list[float]], metric: str, path: Path, title: str) -> None:
    figure, (loss_axes, metric_axes) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for key, label in (("loss", "training"), ("val_loss", "validation")):
        if key in history:
            loss_axes.plot(epochs, history[key], label=label)
    loss_axes.set(title="Loss", xlabel="epoch")
    loss_axes.legend()
    if metric in history:
        metric_axes.plot(epochs, history[metric], color="tab:green")
    metric_axes.set(title=f"Validation {metric.removeprefix('val_').replace('_', ' ')}", xlabel="epoch")
    figure.suptitle(title)
    _save(figure, path)


def roc(fpr, tpr, auroc: float, points: dict, path: Path, title: str) -> None:
    figure, axes = plt.subplots(figsize=(4.5, 4.5))
    axes.plot(fpr, tpr, label=f"test AUROC {auroc:.3f}")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    for name, point in points.items():
        axes.scatter(1 - point["specificity"], point["sensitivity"], label=f"{name.replace('_', ' ')} (t={point['threshold']:.2f})")
    axes.set(xlabel="1 − specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(loc="lower right", fontsize=8)
    _save(figure, path)


def confusion(matrix, classes, path: Path, title: str) -> None:
    matrix = np.asarray(matrix)
    size = max(4.0, 0.6 * len(classes) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(classes)), classes, fontsize=8)
    for (row, column), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=8)
    axes.set(xlabel="model", ylabel="truth", title=title)
    _save(figure, path)


def test_split_plots(card: dict, paths: dict[str, Path]) -> None:
    """The confusion matrix (and, for the binary model, the ROC curve) of the card's test figures."""
    test = card["metrics"]["test"]
    confusion(test["confusion_matrix"], card["classes"], paths["confusion"], "Test split")
    if "roc" in paths:
        points = {name: point["test"] for name, point in card["operating_points"].items()}
        points["decision"] = {"threshold": card["threshold"], "sensitivity": test["sensitivity"],
                              "specificity": test["specificity"]}
        roc(test["roc"]["fpr"], test["roc"]["tpr"], test["auroc"], points, paths["roc"], "Test split ROC")


def _save(figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=FIGURE_DPI)
    plt.close(figure)
