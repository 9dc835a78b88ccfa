"""Evaluation plots (matplotlib Agg, PNG): PR curves of the best and worst classes and per-class
AP for tagging; the confusion matrix for single-label classification."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from lean.io import atomic_path

# Curves per panel: more than this and the legend hides the curves.
CURVES_PER_PANEL = 5


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def plot_pr_curves(y_true: np.ndarray, y_score: np.ndarray, per_class: Sequence[dict],
                   path: str | Path, count: int = CURVES_PER_PANEL, title: str = "") -> Path:
    """Precision-recall curves of the `count` best and `count` worst classes by AP, side by side.

    Args:
        y_true: {0, 1} clip targets [N, C].
        y_score: clip scores [N, C].
        per_class: `multilabel_metrics(...)["per_class"]`, in class order.
        path: the PNG to write.

    Returns:
        The path written.
    """
    from sklearn.metrics import precision_recall_curve

    plt = _pyplot()
    scored = sorted((entry["ap"], index) for index, entry in enumerate(per_class)
                    if entry["ap"] is not None)
    # With few classes, best and worst share nothing: split the classes in halves instead.
    count = max(1, min(count, len(scored) // 2))
    figure, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    panels = (("best", scored[::-1][:count]), ("worst", scored[:count]))
    for axis, (name, chosen) in zip(axes, panels):
        for ap, index in chosen:
            precision, recall, _ = precision_recall_curve(y_true[:, index], y_score[:, index])
            label = f"{per_class[index]['label']} (AP {ap:.3f})"
            axis.plot(recall, precision, drawstyle="steps-post", label=label)
        axis.set(title=f"{len(chosen)} {name} classes by AP", xlabel="recall",
                 xlim=(0, 1), ylim=(0, 1.02))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower left")
    axes[0].set_ylabel("precision")
    if title:
        figure.suptitle(title)
    try:
        return _save(figure, Path(path))
    finally:
        plt.close(figure)


def plot_per_class_ap(per_class: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Horizontal bars of every scored class's AP, sorted, with the mAP as a line.

    Args:
        per_class: `multilabel_metrics(...)["per_class"]`.
        path: the PNG to write.

    Returns:
        The path written.
    """
    plt = _pyplot()
    scored = sorted((entry["ap"], entry["label"]) for entry in per_class if entry["ap"] is not None)
    height = max(3.0, 0.18 * len(scored) + 1.0)
    figure, axis = plt.subplots(figsize=(8, height))
    positions = np.arange(len(scored))
    axis.barh(positions, [ap for ap, _ in scored], color="tab:blue")
    axis.set_yticks(positions, [label for _, label in scored], fontsize=7)
    if scored:
        mean_ap = float(np.mean([ap for ap, _ in scored]))
        axis.axvline(mean_ap, color="tab:red", linestyle="--", label=f"mAP {mean_ap:.3f}")
        axis.legend(loc="lower right")
    axis.set(xlabel="average precision", xlim=(0, 1), ylim=(-0.6, len(scored) - 0.4),
             title=title or "per-class AP")
    axis.grid(axis="x", alpha=0.3)
    try:
        return _save(figure, Path(path))
    finally:
        plt.close(figure)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str],
                          path: str | Path, title: str = "") -> Path:
    """The confusion matrix as a heat map: rows true class, columns predicted, each cell its
    count, colour its share of the row (recall on the diagonal).

    Args:
        matrix: counts [C, C] (`single_label_metrics(...)["confusion_matrix"]`).
        labels: the C class names.
        path: the PNG to write.

    Returns:
        The path written.
    """
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    size = max(4.0, 0.45 * len(labels) + 2.0)
    figure, axis = plt.subplots(figsize=(size + 1.0, size))
    image = axis.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(len(labels))
    axis.set_xticks(ticks, labels, rotation=60, ha="right", fontsize=8)
    axis.set_yticks(ticks, labels, fontsize=8)
    if len(labels) <= 30:  # beyond that the numbers no longer fit their cells
        for row, column in np.ndindex(counts.shape):
            if counts[row, column]:
                axis.text(column, row, str(counts[row, column]), ha="center", va="center",
                          fontsize=7, color="white" if shares[row, column] > 0.5 else "black")
    accuracy = np.trace(counts) / max(1, counts.sum())
    axis.set(xlabel="predicted class", ylabel="true class",
             title=f"{title or 'confusion matrix'} (accuracy {accuracy:.3f})")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the true class")
    try:
        return _save(figure, Path(path))
    finally:
        plt.close(figure)


def write_evaluation_plots(task: str, y_true: np.ndarray, y_score: np.ndarray, metrics: dict,
                           out_dir: str | Path, title: str = "") -> list[Path]:
    """The task's evaluation plots into `out_dir`: pr_curves.png and per_class_ap.png
    (multilabel), confusion_matrix.png (single_label)."""
    out_dir = Path(out_dir)
    if task == "single_label":
        labels = [entry["label"] for entry in metrics["per_class"]]
        return [plot_confusion_matrix(metrics["confusion_matrix"], labels,
                                      out_dir / "confusion_matrix.png", title=title)]
    per_class = metrics["per_class"]
    return [
        plot_pr_curves(y_true, y_score, per_class, out_dir / "pr_curves.png", title=title),
        plot_per_class_ap(per_class, out_dir / "per_class_ap.png", title=title),
    ]
