"""Metrics against values worked out by hand on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lean.metrics import (
    d_prime,
    multilabel_metrics,
    paired_bootstrap_difference,
    single_label_metrics,
)

LABELS = ["ranked", "perfect", "absent", "everywhere"]
# Columns: "ranked" (scores .9 .8 .3 .1 for targets 1 0 1 0), "perfect" (positives on top),
# "absent" (no positives: AP and AUC undefined), "everywhere" (no negatives: AUC undefined).
Y_TRUE = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [1, 0, 0, 1], [0, 0, 0, 1]])
Y_SCORE = np.array([[0.9, 0.2, 0.5, 0.3], [0.8, 0.7, 0.1, 0.6], [0.3, 0.1, 0.2, 0.2], [0.1, 0.3, 0.9, 0.1]])


def test_per_class_values_and_means_match_hand_computation():
    result = multilabel_metrics(Y_TRUE, Y_SCORE, LABELS)
    per_class = {entry["label"]: entry for entry in result["per_class"]}
    # "ranked": precision at the two positives is 1/1 and 2/3 -> AP 5/6; 3 of 4 pos-neg pairs
    # are ordered correctly -> AUC 0.75.
    assert per_class["ranked"]["ap"] == pytest.approx(5 / 6)
    assert per_class["ranked"]["auc"] == pytest.approx(0.75)
    assert per_class["perfect"]["ap"] == pytest.approx(1.0)
    assert per_class["perfect"]["auc"] == pytest.approx(1.0)
    assert per_class["absent"] == {"label": "absent", "ap": None, "auc": None, "positives": 0}
    assert per_class["everywhere"] == {"label": "everywhere", "ap": 1.0, "auc": None, "positives": 4}
    assert result["mAP"] == pytest.approx((5 / 6 + 1.0 + 1.0) / 3)
    assert result["mAUC"] == pytest.approx((0.75 + 1.0) / 2)
    # Phi^-1(0.875) = 1.150349; times sqrt(2) = 1.626840.
    assert result["d_prime"] == pytest.approx(1.626840, abs=1e-5)
    assert result["classes_without_positives"] == ["absent"]
    assert result["classes_without_negatives"] == ["everywhere"]
    assert (result["num_classes"], result["num_classes_ap"], result["num_classes_auc"]) == (4, 3, 2)


def test_chance_and_perfect_d_prime():
    assert d_prime(0.5) == pytest.approx(0.0)
    assert d_prime(1.0) == math.inf


def test_multilabel_input_checks():
    with pytest.raises(ValueError, match=r"must both be \[N, 4\]"):
        multilabel_metrics(Y_TRUE[:, :3], Y_SCORE, LABELS)
    with pytest.raises(ValueError, match="only 0 and 1"):
        multilabel_metrics(Y_TRUE * 2, Y_SCORE, LABELS)
    with pytest.raises(ValueError, match="NaN"):
        multilabel_metrics(Y_TRUE, Y_SCORE * np.nan, LABELS)


def test_single_label_metrics_match_hand_computation():
    labels = ["a", "b", "c", "d"]
    y_true = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 0])
    y_score = np.eye(4)[predicted] * 0.8 + 0.05
    result = single_label_metrics(y_true, y_score, labels)
    assert result["accuracy"] == pytest.approx(4 / 6)
    # Recall a 1/2, b 2/2, c 1/2. F1 a 2*.5*.5/1 = .5, b 2*(2/3)*1/(5/3) = .8, c 2*1*.5/1.5 = 2/3.
    assert result["macro_recall"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert result["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # Precision a 1/2 (a predicted for clips 0 and 5), b 2/3, c 1/1.
    assert result["macro_precision"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert result["per_class"][1]["precision"] == pytest.approx(2 / 3)
    assert result["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert result["classes_without_examples"] == ["d"]
    assert result["per_class"][3] == {"label": "d", "recall": None, "precision": None, "f1": None,
                                      "support": 0}
    one_hot = single_label_metrics(np.eye(4)[y_true], y_score, labels)
    assert one_hot["macro_f1"] == result["macro_f1"]


def test_paired_bootstrap_spread_of_a_map_difference():
    rng = np.random.default_rng(1)
    labels = [f"c{index}" for index in range(6)]
    y_true = (rng.random((60, 6)) < 0.3).astype(int)
    scores_a = y_true * 0.6 + rng.random((60, 6))
    scores_b = scores_a + rng.normal(0, 0.2, scores_a.shape)
    spread = paired_bootstrap_difference(y_true, scores_a, scores_b, rounds=200)
    expected = multilabel_metrics(y_true, scores_a, labels)["mAP"] - multilabel_metrics(y_true, scores_b, labels)["mAP"]
    assert spread["difference"] == pytest.approx(expected, abs=1e-12)
    assert spread["rounds"] == 200 and spread["low"] < spread["difference"] < spread["high"]
    assert spread["metric"] == "mAP"
    # Independent check of the spread: the same resamples through multilabel_metrics.
    resampled = []
    generator = np.random.default_rng(0)
    for _ in range(200):
        rows = generator.integers(0, 60, 60)
        resampled.append(multilabel_metrics(y_true[rows], scores_a[rows], labels)["mAP"]
                         - multilabel_metrics(y_true[rows], scores_b[rows], labels)["mAP"])
    assert spread["sd"] == pytest.approx(np.std(resampled), rel=1e-9)
    # A model against itself differs by exactly nothing on every resample.
    same = paired_bootstrap_difference(y_true, scores_a, scores_a, rounds=20)
    assert same["sd"] == same["low"] == same["high"] == same["difference"] == 0


def test_paired_bootstrap_of_an_accuracy_difference():
    rng = np.random.default_rng(2)
    labels = [f"c{index}" for index in range(4)]
    classes = rng.integers(0, 4, 80)
    y_true = np.eye(4)[classes]
    scores_a = y_true + rng.random((80, 4))
    scores_b = y_true + 1.5 * rng.random((80, 4))
    spread = paired_bootstrap_difference(y_true, scores_a, scores_b, task="single_label",
                                         rounds=100)
    accuracy = [single_label_metrics(classes, scores, labels)["accuracy"]
                for scores in (scores_a, scores_b)]
    assert spread["metric"] == "accuracy"
    assert spread["difference"] == pytest.approx(accuracy[0] - accuracy[1], abs=1e-12)
    resampled = []
    generator = np.random.default_rng(0)
    for _ in range(100):
        rows = generator.integers(0, 80, 80)
        resampled.append(np.mean(scores_a[rows].argmax(1) == classes[rows])
                         - np.mean(scores_b[rows].argmax(1) == classes[rows]))
    assert spread["sd"] == pytest.approx(np.std(resampled), rel=1e-9)
