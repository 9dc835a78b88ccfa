"""The SVM back-end (papers 002 and 003): an SVM on a trained network's penultimate features,
with Platt-scaled probabilities, and the fold of a linear one into a Keras head.

Features are standardised (paper 003's pooled features are tiny), then a linear SVM
(LinearSVC, one-vs-rest, C = 0.1 as in paper 003) or an RBF SVM (SVC) is trained. Linear:
each class's decision value d_c gets Platt's sigmoid p_c = 1 / (1 + exp(A_c d_c + B_c)), fitted
on cross-validated decision values (scikit-learn's CalibratedClassifierCV, ensemble=False, so
one SVM fitted on all windows remains); single-label probabilities are the p_c normalised to
sum 1 (two classes: p_1 and 1 - p_1), multi-label ones the p_c themselves. All of that is a
Dense layer (standardisation folded into it) and an elementwise `PlattScaling` layer, so the
folded model equals scikit-learn's probabilities and exports like any head. An RBF SVM is
calibrated the same way but needs its support vectors: it stays on the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from lean.errors import LeanError
from lean.tasks import SINGLE_LABEL, task as task_named

KERNELS = ("linear", "rbf")
PAPER_C = 0.1  # paper 003's linear SVM
CALIBRATION_FOLDS = 5  # scikit-learn's default for the Platt fit
DECISION_LAYER = "svm_decision"
PROBABILITY_LAYER = "probabilities"
# Platt modes: how per-class sigmoids become the model's output.
BINARY, NORMALIZED, INDEPENDENT = "binary", "normalized", "independent"


@dataclass(frozen=True)
class LinearHead:
    """A folded linear SVM: decision = features @ kernel + bias, then Platt scaling."""

    kernel: np.ndarray  # [D, M] (M = 1 for two single-label classes, else K)
    bias: np.ndarray  # [M]
    platt_a: np.ndarray  # [M]
    platt_b: np.ndarray  # [M]
    mode: str  # binary | normalized | independent


def _calibrated_svm(kernel: str, C: float, folds: int, seed: int):
    """A linear or RBF SVM with Platt's sigmoid per class on cross-validated decision values;
    ensemble=False keeps one SVM fitted on all windows (what a fold needs)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import SVC, LinearSVC

    svm = (LinearSVC(C=C, random_state=seed, max_iter=10000) if kernel == "linear"
           else SVC(kernel="rbf", C=C, gamma="scale", random_state=seed))
    return CalibratedClassifierCV(svm, method="sigmoid",
                                  cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                                  ensemble=False)


def _folds_for(labels: np.ndarray, what: str) -> int:
    """Calibration folds: scikit-learn's 5, fewer when a class has fewer examples than that."""
    counts = np.bincount(labels)
    if counts.min() < 2:
        raise LeanError(f"{what} has only {int(counts.min())} training window(s): the Platt "
                        "calibration needs at least 2 per class")
    return int(min(CALIBRATION_FOLDS, counts.min()))


def fit_svm(features: np.ndarray, targets: np.ndarray, task: str, kernel: str = "linear",
            C: float = PAPER_C, seed: int = 0, labels=None):
    """Trains the SVM back-end on penultimate features.

    Args:
        features: float [N, D], the network's penultimate features of un-augmented windows.
        targets: [N, K] one-hot (single-label) or multi-hot (multilabel).
        task: "single_label" or "multilabel".
        kernel: "linear" (foldable into Keras) or "rbf" (host only).
        C: the SVM's C (paper 003: 0.1).
        seed: seeds the SVM solver and the calibration folds.
        labels: class names for error messages (default: indices).
    Returns:
        A fitted scikit-learn Pipeline (StandardScaler, then the SVM) whose `predict_proba`
        gives [N, K] probabilities in the targets' class order.
    """
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if kernel not in KERNELS:
        raise LeanError(f"--kernel {kernel}: accepted: {' | '.join(KERNELS)}")
    if not C > 0:
        raise LeanError(f"--C {C}: must be positive")
    features = np.asarray(features, dtype=np.float64)
    targets = np.asarray(targets)
    num_classes = targets.shape[1]
    names = list(labels) if labels is not None else [str(index) for index in range(num_classes)]
    if task_named(task).name == SINGLE_LABEL:
        classes = np.argmax(targets, axis=1)
        missing = [names[index] for index in range(num_classes) if not np.any(classes == index)]
        if missing:
            raise LeanError(f"class {missing[0]} has no training windows: the SVM cannot learn "
                            f"it ({len(missing)} such classes)")
        folds = _folds_for(classes, f"class {names[int(np.argmin(np.bincount(classes)))]}")
        svm = _calibrated_svm(kernel, C, folds, seed)
        fit_targets = classes
    else:
        fit_targets = (targets > 0.5).astype(np.int64)
        for column, name in zip(fit_targets.T, names):
            if column.min() == column.max():
                raise LeanError(f"class {name} is in {'every' if column[0] else 'no'} training "
                                "window: a per-class SVM needs positives and negatives")
        folds = min(_folds_for(fit_targets[:, c], f"class {names[c]}")
                    for c in range(num_classes))
        svm = OneVsRestClassifier(_calibrated_svm(kernel, C, folds, seed))
    pipeline = Pipeline([("scale", StandardScaler()), ("svm", svm)])
    pipeline.fit(features, fit_targets)
    return pipeline


def linear_head(pipeline) -> LinearHead:
    """The Dense kernel, bias and Platt parameters of a linear `fit_svm` pipeline; the
    standardisation is folded into the kernel and bias."""
    scaler, svm = pipeline.named_steps["scale"], pipeline.named_steps["svm"]
    if hasattr(svm, "estimators_"):  # multilabel: one binary calibrated SVM per class
        parts = [_calibrated_parts(estimator) for estimator in svm.estimators_]
        coef = np.concatenate([part[0] for part in parts])
        intercept = np.concatenate([part[1] for part in parts])
        platt_a = np.concatenate([part[2] for part in parts])
        platt_b = np.concatenate([part[3] for part in parts])
        mode = INDEPENDENT
    else:
        coef, intercept, platt_a, platt_b = _calibrated_parts(svm)
        mode = BINARY if len(svm.classes_) == 2 else NORMALIZED
    # decision = coef @ ((x - mean) / scale) + intercept = x @ kernel + bias.
    kernel = (coef / scaler.scale_[None, :]).T
    bias = intercept - coef @ (scaler.mean_ / scaler.scale_)
    return LinearHead(kernel.astype(np.float32), bias.astype(np.float32),
                      platt_a.astype(np.float32), platt_b.astype(np.float32), mode)


def _calibrated_parts(calibrated):
    """(coef [M, D], intercept [M], A [M], B [M]) of a CalibratedClassifierCV(LinearSVC)."""
    (single,) = calibrated.calibrated_classifiers_
    svm = single.estimator
    if not hasattr(svm, "coef_") or getattr(svm, "kernel", "linear") != "linear":
        raise LeanError("only a linear SVM folds into a Keras head; an RBF SVM runs on the host")
    coef = np.atleast_2d(svm.coef_)
    intercept = np.atleast_1d(svm.intercept_)
    platt_a = np.array([calibrator.a_ for calibrator in single.calibrators], dtype=np.float64)
    platt_b = np.array([calibrator.b_ for calibrator in single.calibrators], dtype=np.float64)
    return coef, intercept, platt_a, platt_b


def decision_function(pipeline, features: np.ndarray) -> np.ndarray:
    """The raw SVM decision values [N, M] of a linear `fit_svm` pipeline (what the folded
    Dense layer computes)."""
    scaled = pipeline.named_steps["scale"].transform(np.asarray(features, dtype=np.float64))
    svm = pipeline.named_steps["svm"]
    calibrated = svm.estimators_ if hasattr(svm, "estimators_") else [svm]
    columns = [c.calibrated_classifiers_[0].estimator.decision_function(scaled).reshape(
        len(scaled), -1) for c in calibrated]
    return np.concatenate(columns, axis=1)


@keras.saving.register_keras_serializable(package="lean")
class PlattScaling(keras.layers.Layer):
    """Platt's sigmoid per decision value, p = 1 / (1 + exp(A d + B)), then the probabilities:
    `binary` [p0, p1] = [1 - p, p]; `normalized` p / sum(p) (uniform if every p is 0);
    `independent` p. A and B are fixed weights (not trained). float32, [B, M] -> [B, K]."""

    def __init__(self, mode: str = NORMALIZED, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if mode not in (BINARY, NORMALIZED, INDEPENDENT):
            raise ValueError(f"unknown Platt mode {mode!r}")
        self.mode = mode

    def build(self, input_shape):
        units = input_shape[-1]
        self.platt_a = self.add_weight(name="platt_a", shape=(units,), initializer="ones",
                                       trainable=False)
        self.platt_b = self.add_weight(name="platt_b", shape=(units,), initializer="zeros",
                                       trainable=False)

    def call(self, decision):
        probability = ops.sigmoid(-(self.platt_a * decision + self.platt_b))
        if self.mode == BINARY:
            return ops.concatenate([1.0 - probability, probability], axis=-1)
        if self.mode == INDEPENDENT:
            return probability
        total = ops.sum(probability, axis=-1, keepdims=True)
        uniform = ops.ones_like(probability) / probability.shape[-1]
        return ops.where(total > 0, probability / ops.maximum(total, 1e-30), uniform)

    def compute_output_shape(self, input_shape):
        units = 2 if self.mode == BINARY else input_shape[-1]
        return (*input_shape[:-1], units)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def svm_head(features, head: LinearHead):
    """features [B, D] -> probabilities [B, K] through the folded SVM (layers named
    `svm_decision` and `probabilities`)."""
    dense = keras.layers.Dense(head.kernel.shape[1], name=DECISION_LAYER, dtype="float32")
    platt = PlattScaling(head.mode, name=PROBABILITY_LAYER)
    probabilities = platt(dense(features))
    dense.set_weights([head.kernel, head.bias])
    platt.set_weights([head.platt_a, head.platt_b])
    return probabilities


def penultimate_model(model):
    """The network up to its head: waveform -> the features its `logits` Dense layer reads."""
    try:
        head = model.get_layer("logits")
    except ValueError:
        raise LeanError(f"model {model.name!r} has no `logits` layer: not a family member's "
                        "head") from None
    return keras.Model(model.input, head.input, name=f"{model.name}_features")


def fold_linear_svm(model, pipeline):
    """`model` with its head replaced by the folded linear SVM of `pipeline`: same input,
    outputs equal to `pipeline.predict_proba` of its penultimate features."""
    features = penultimate_model(model)
    return keras.Model(features.input, svm_head(features.outputs[0], linear_head(pipeline)),
                       name=f"{model.name}_svm")


__all__ = [
    "KERNELS",
    "LinearHead",
    "PAPER_C",
    "PlattScaling",
    "decision_function",
    "fit_svm",
    "fold_linear_svm",
    "linear_head",
    "penultimate_model",
    "svm_head",
]
