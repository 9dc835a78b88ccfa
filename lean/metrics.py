"""Metrics as the field computes them: per-class AP and ROC-AUC, mAP, mAUC and d' for tagging;
accuracy, macro recall / precision / F1 and the confusion matrix for single-label tasks."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np


def d_prime(auc: float) -> float:
    """Sensitivity index d' = sqrt(2) * Phi^-1(AUC); +inf for AUC 1, -inf for AUC 0."""
    from scipy.stats import norm

    return float(math.sqrt(2.0) * norm.ppf(auc))


def multilabel_metrics(y_true: np.ndarray, y_score: np.ndarray, labels: Sequence[str]) -> dict:
    """Per-class AP and ROC-AUC and their unweighted means over the classes that can be scored.

    AP needs at least one positive; ROC-AUC needs at least one positive and one negative. A class
    that cannot be scored gets None and is listed, never averaged as 0 or 1.

    Args:
        y_true: {0, 1} targets [N, C].
        y_score: scores [N, C] (probabilities or any monotonic score).
        labels: the C class names.

    Returns:
        dict with `mAP`, `mAUC`, `d_prime` (None when no class can be scored), `num_classes`,
        `num_classes_ap`, `num_classes_auc`, `per_class` (list of label, ap, auc, positives),
        `classes_without_positives`, `classes_without_negatives`.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y_true, y_score = _check_pair(y_true, y_score, labels)
    positives = y_true.sum(axis=0).astype(int)
    num_examples = y_true.shape[0]
    per_class = []
    for index, label in enumerate(labels):
        targets, scores = y_true[:, index], y_score[:, index]
        has_positive = positives[index] > 0
        has_negative = positives[index] < num_examples
        ap = float(average_precision_score(targets, scores)) if has_positive else None
        auc = float(roc_auc_score(targets, scores)) if has_positive and has_negative else None
        per_class.append({"label": label, "ap": ap, "auc": auc, "positives": int(positives[index])})
    aps = [entry["ap"] for entry in per_class if entry["ap"] is not None]
    aucs = [entry["auc"] for entry in per_class if entry["auc"] is not None]
    mean_ap = float(np.mean(aps)) if aps else None
    mean_auc = float(np.mean(aucs)) if aucs else None
    return {
        "mAP": mean_ap,
        "mAUC": mean_auc,
        "d_prime": d_prime(mean_auc) if mean_auc is not None else None,
        "num_classes": len(labels),
        "num_classes_ap": len(aps),
        "num_classes_auc": len(aucs),
        "per_class": per_class,
        "classes_without_positives": [e["label"] for e in per_class if e["positives"] == 0],
        "classes_without_negatives": [
            e["label"] for e in per_class if e["positives"] == num_examples and num_examples > 0
        ],
    }


def primary_score(task: str, y_true: np.ndarray, y_score: np.ndarray) -> Optional[float]:
    """The task's headline number: mAP over the classes with a positive (multilabel), or
    accuracy of the argmax (single_label); None when no class can be scored."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    if task == "single_label":
        return float(np.mean(y_true.argmax(axis=1) == y_score.argmax(axis=1)))
    from sklearn.metrics import average_precision_score

    scored = y_true.sum(axis=0) > 0
    if not scored.any():
        return None
    return float(average_precision_score(y_true[:, scored], y_score[:, scored], average="macro"))


def paired_bootstrap_difference(y_true: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray,
                                task: str = "multilabel", rounds: int = 200,
                                seed: int = 0) -> dict:
    """How far score(a) - score(b) moves when the clips are drawn again with replacement.

    Both models are scored on the same resampled clips (paired) with the task's primary score
    (`primary_score`: mAP over the classes with a positive in the sample, or accuracy). On a
    small split this spread is often larger than the difference itself.

    Args:
        y_true: {0, 1} targets [N, C] (one-hot for single_label).
        scores_a, scores_b: the two models' clip scores [N, C].
        task: multilabel or single_label.
        rounds: resamples.
        seed: for the resampling.

    Returns:
        dict with `metric` (mAP or accuracy), `difference` (on the split as it is), `sd`
        (standard deviation over the resamples), `low` and `high` (their 2.5th and 97.5th
        percentiles) and `rounds`.
    """
    y_true, scores_a, scores_b = (np.asarray(array) for array in (y_true, scores_a, scores_b))

    def difference(rows):
        a = primary_score(task, y_true[rows], scores_a[rows])
        return None if a is None else a - primary_score(task, y_true[rows], scores_b[rows])

    rng = np.random.default_rng(seed)
    count = y_true.shape[0]
    samples = [difference(rng.integers(0, count, count)) for _ in range(rounds)]
    samples = np.array([value for value in samples if value is not None])
    low, high = np.percentile(samples, [2.5, 97.5])
    return {"metric": "accuracy" if task == "single_label" else "mAP",
            "difference": difference(np.arange(count)), "sd": float(samples.std()),
            "low": float(low), "high": float(high), "rounds": int(len(samples))}


def single_label_metrics(y_true: np.ndarray, y_score: np.ndarray, labels: Sequence[str]) -> dict:
    """Accuracy, macro (unweighted) recall, precision and F1 of argmax predictions, and the
    confusion matrix.

    Macro averages run over the classes with at least one true example (recall is undefined for
    the others); those classes are listed. Precision of a class never predicted is 0 (scikit-learn's
    zero_division=0), as is the F1 of a class with zero precision and recall.

    Args:
        y_true: class indices [N], or one-hot targets [N, C].
        y_score: scores [N, C]; the prediction is the argmax.
        labels: the C class names.

    Returns:
        dict with `accuracy`, `macro_recall`, `macro_precision`, `macro_f1`, `num_examples`,
        `confusion_matrix` (rows = true class, columns = predicted, in label order),
        `per_class` (label, recall, precision, f1, support) and `classes_without_examples`.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    y_score = np.asarray(y_score, dtype=np.float64)
    y_true = np.asarray(y_true)
    if y_true.ndim == 2:
        y_true = y_true.argmax(axis=1)
    if y_score.ndim != 2 or y_score.shape != (y_true.shape[0], len(labels)):
        raise ValueError(f"y_score {y_score.shape} does not match {y_true.shape[0]} examples x "
                         f"{len(labels)} labels")
    y_pred = y_score.argmax(axis=1)
    support = np.bincount(y_true.astype(int), minlength=len(labels))
    present = [int(index) for index in np.flatnonzero(support)]
    precisions, recalls, f1s, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=present, average=None, zero_division=0)
    by_class = {index: (float(r), float(p), float(f))
                for index, r, p, f in zip(present, recalls, precisions, f1s)}
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(len(labels))))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_recall": float(np.mean(recalls)),
        "macro_precision": float(np.mean(precisions)),
        "macro_f1": float(np.mean(f1s)),
        "num_examples": int(y_true.shape[0]),
        "confusion_matrix": matrix.astype(int).tolist(),
        "per_class": [
            {
                "label": label,
                "recall": by_class.get(index, (None, None, None))[0],
                "precision": by_class.get(index, (None, None, None))[1],
                "f1": by_class.get(index, (None, None, None))[2],
                "support": int(support[index]),
            }
            for index, label in enumerate(labels)
        ],
        "classes_without_examples": [labels[i] for i in range(len(labels)) if support[i] == 0],
    }


def _check_pair(y_true: np.ndarray, y_score: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    expected = (y_true.shape[0] if y_true.ndim else 0, len(labels))
    if y_true.ndim != 2 or y_true.shape != expected or y_score.shape != expected:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} must both be [N, {len(labels)}]")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("y_true must hold only 0 and 1")
    if not np.isfinite(y_score).all():
        raise ValueError("y_score contains NaN or Inf")
    return (y_true > 0.5).astype(np.int64), y_score


__all__ = ["d_prime", "multilabel_metrics", "paired_bootstrap_difference", "primary_score",
           "single_label_metrics"]
