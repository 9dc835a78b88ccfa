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

import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import ops

from lean.errors import LeanError
from lean.tasks import SINGLE_LABEL, task as task_named

KERNELS = ("linear", "rbf")
PAPER_C = 0.1  # paper 003's linear SVM
CALIBRATION_FOLDS = 5  # scikit-learn's default for the Platt fit
# The folded head keeps the names of every family member's head (lean.models.common), so the
# export-ready rebuild copies the SVM's Dense by name like any head's.
DECISION_LAYER = "logits"
PROBABILITY_LAYER = "probabilities"
# Platt modes: how per-class sigmoids become the model's output.
BINARY, NORMALIZED, INDEPENDENT = "binary", "normalized", "independent"


@dataclass(frozen=True)
class LinearHead:
    """A folded linear SVM: decision = features @ kernel + bias [K], then Platt scaling. With
    two single-label classes the SVM has one decision value, for class 1: column 1 holds it
    and column 0 is unused (zero)."""

    kernel: np.ndarray  # [D, K]
    bias: np.ndarray  # [K]
    platt_a: np.ndarray  # [K]
    platt_b: np.ndarray  # [K]
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
    if mode == BINARY:
        coef, intercept = np.concatenate([np.zeros_like(coef), coef]), np.r_[0.0, intercept]
        platt_a, platt_b = np.r_[0.0, platt_a], np.r_[0.0, platt_b]
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
    """The raw SVM decision values [N, K] of a linear `fit_svm` pipeline, as the folded Dense
    layer computes them (two single-label classes: 0, then the SVM's value for class 1)."""
    scaled = pipeline.named_steps["scale"].transform(np.asarray(features, dtype=np.float64))
    svm = pipeline.named_steps["svm"]
    calibrated = svm.estimators_ if hasattr(svm, "estimators_") else [svm]
    columns = [c.calibrated_classifiers_[0].estimator.decision_function(scaled).reshape(
        len(scaled), -1) for c in calibrated]
    values = np.concatenate(columns, axis=1)
    if not hasattr(svm, "estimators_") and len(svm.classes_) == 2:
        values = np.concatenate([np.zeros_like(values), values], axis=1)
    return values


@keras.saving.register_keras_serializable(package="lean")
class PlattScaling(keras.layers.Layer):
    """Platt's sigmoid per decision value, p = 1 / (1 + exp(A d + B)), then the probabilities:
    `binary` [1 - p_1, p_1] from column 1; `normalized` p / sum(p); `independent` p. A and B
    are fixed weights (not trained). float32, [B, K] -> [B, K]."""

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
        # Every op takes the previous one's output as its first input, so that the exporter's
        # walk from the output back to the Dense (which keeps the head float) sees them all.
        scaled = decision * self.platt_a + self.platt_b
        probability = ops.sigmoid(-scaled)
        if self.mode == BINARY:
            positive = probability[..., 1:]
            return ops.concatenate([(positive - 1.0) * -1.0, positive], axis=-1)
        if self.mode == INDEPENDENT:
            return probability
        # scikit-learn gives the uniform distribution where every p is 0, which float32
        # sigmoids reach only for decision values beyond 88 in A d + B: here 0 / 1e-30 = 0.
        return probability / ops.maximum(ops.sum(probability, axis=-1, keepdims=True), 1e-30)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def svm_head(features, head: LinearHead):
    """features [B, D] -> probabilities [B, K] through the folded SVM (layers named `logits`
    and `probabilities`, as every family member's head)."""
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


def export_ready_svm_copy(model, config):
    """The export-ready build of a folded linear-SVM model: the network's own export build
    with every weight copied by name (the SVM's Dense is its `logits` layer), its activation
    replaced by the model's Platt scaling."""
    from lean.models.registry import export_ready_copy

    exported = export_ready_copy(model, config)
    platt = model.get_layer(PROBABILITY_LAYER)
    if not isinstance(platt, PlattScaling):
        raise LeanError(f"model {model.name!r} has no folded SVM head")
    head = PlattScaling(platt.mode, name=PROBABILITY_LAYER)
    outputs = head(exported.get_layer(DECISION_LAYER).output)
    head.set_weights(platt.get_weights())
    return keras.Model(exported.input, outputs, name=exported.name)


def save_svm(pipeline, path: Path) -> None:
    """Writes a fitted pipeline with joblib, atomically."""
    import joblib

    from lean.io import atomic_path

    with atomic_path(path) as tmp:
        joblib.dump(pipeline, tmp)


def load_svm(path: Path):
    """A pipeline written by `save_svm` (a pickle: load only run directories you trust)."""
    import joblib

    if not Path(path).is_file():
        raise LeanError(f"{path}: no SVM file (written by lean svm)")
    return joblib.load(path)


def _network_features(model, index, cache, window_samples: int, progress: bool) -> np.ndarray:
    from tqdm import tqdm

    from lean.data.pipeline import iter_window_batches

    features_model = penultimate_model(model)
    rows = []
    with tqdm(total=index.num_windows, desc="network features", unit="window",
              disable=not progress, leave=False) as bar:
        for windows in iter_window_batches(index, cache, window_samples):
            rows.append(np.asarray(features_model(windows, training=False), dtype=np.float32))
            bar.update(len(windows))
    return np.concatenate(rows)


def train_svm_run(run_dir: str | Path, out_dir: str | Path | None = None,
                  kernel: str = "linear", C: float = PAPER_C, data_dir: str | Path | None = None,
                  cache_dir: str | Path | None = None, progress: bool = True) -> dict:
    """`lean svm`: an SVM on a trained run's penultimate features of its un-augmented training
    windows, written as a run directory that `lean eval`, `lean tag` (and, linear, lean-export)
    use like any other.

    Args:
        run_dir: a finished `lean train` run.
        out_dir: the SVM run's directory (default: RUN_DIR_svm_KERNEL beside it).
        kernel: linear (folded into the Keras head) or rbf (host only).
        C: the SVM's C (paper 003: 0.1).
        data_dir: the dataset (default: the run's).
        cache_dir: decoded-audio cache (default: `lean.data.pipeline.default_cache_dir()`).
    Returns:
        The report written as OUT/svm.json: the SVM's settings, the training windows, and the
        validation score of the network's own head and of the SVM (the task's metric).
    """
    import dataclasses

    from lean.config import EvalConfig, SvmConfig, save_json
    from lean.data.audio import AudioCache
    from lean.data.pipeline import build_window_index, default_cache_dir
    from lean.evaluate import evaluate
    from lean.inference import load_predictor
    from lean.io import atomic_write_text
    from lean.run import (BEST_MODEL, CONFIG_FILE, LABELS_FILE, SVM_FILE, SVM_REPORT_FILE,
                          load_run, read_run_config, save_keras_atomic, write_labels_file)
    from lean.train import resolve_dataset

    run_dir = Path(run_dir)
    if kernel not in KERNELS:
        raise LeanError(f"--kernel {kernel}: accepted: {' | '.join(KERNELS)}")
    if not C > 0:
        raise LeanError(f"--C {C}: must be positive")
    config = read_run_config(run_dir)
    if config.svm is not None:
        raise LeanError(f"{run_dir}: already an SVM run (of {config.svm.source_run}); give the "
                        "network's own run")
    out_dir = Path(out_dir) if out_dir else run_dir.with_name(f"{run_dir.name}_svm_{kernel}")
    _check_out_dir(out_dir, run_dir)
    data = config.data if data_dir is None else dataclasses.replace(
        config.data, dir=str(Path(data_dir).absolute()))
    config = dataclasses.replace(config, data=data)
    dataset = resolve_dataset(config)
    source = load_run(run_dir)
    if tuple(dataset.labels) != tuple(source.labels):
        raise LeanError(f"{dataset.root}: its labels differ from {run_dir / LABELS_FILE}")
    model_config = config.model
    cache = AudioCache(cache_dir or default_cache_dir(), model_config.input.sample_rate,
                       channels=model_config.input.channels)
    index = build_window_index(dataset.clips("train"), cache, model_config.window_samples,
                               config.train.on_bad_audio, desc="reading train audio",
                               progress=progress)
    if index.num_windows == 0:
        raise LeanError(f"{dataset.root}: no usable training windows")
    features = _network_features(source.model, index, cache, model_config.window_samples,
                                 progress)
    targets = dataset.label_matrix(index.clips)[index.clip_of_window]
    pipeline = fit_svm(features, targets, model_config.task, kernel, C, seed=config.train.seed,
                       labels=dataset.labels)
    model = fold_linear_svm(source.model, pipeline) if kernel == "linear" else source.model

    out_dir.mkdir(parents=True, exist_ok=True)
    save_svm(pipeline, out_dir / SVM_FILE)
    save_keras_atomic(model, out_dir / BEST_MODEL)
    write_labels_file(out_dir / LABELS_FILE, dataset.labels)
    svm_config = SvmConfig(kernel=kernel, C=float(C), source_run=str(run_dir.absolute()))
    # config.json last: only a complete SVM run directory has one.
    save_json(dataclasses.replace(config, svm=svm_config), out_dir / CONFIG_FILE)
    metric = "accuracy" if model_config.task == "single_label" else "mAP"
    scores = {}
    for name, path in (("network", run_dir), ("svm", out_dir)):
        evaluation = evaluate(load_predictor(path), dataset, "val", EvalConfig(), cache=cache,
                              progress=progress)
        scores[name] = evaluation[metric]
    report = {"source_run": str(run_dir.absolute()), "kernel": kernel, "C": float(C),
              "task": model_config.task, "train_windows": int(index.num_windows),
              "feature_dim": int(features.shape[1]), "metric": metric,
              "val": {"clips": evaluation["num_clips"], **scores},
              "exportable": kernel == "linear"}
    atomic_write_text(out_dir / SVM_REPORT_FILE, json.dumps(report, indent=2) + "\n")
    return report


def _check_out_dir(out_dir: Path, run_dir: Path) -> None:
    """An SVM run may replace an earlier SVM run of the same network, nothing else."""
    from lean.run import read_run_config

    if out_dir.resolve() == run_dir.resolve():
        raise LeanError(f"--out {out_dir}: is the source run itself; choose another folder")
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise LeanError(f"--out {out_dir}: is a file")
    if not any(out_dir.iterdir()):
        return
    try:
        earlier = read_run_config(out_dir).svm
    except LeanError:
        earlier = None
    if earlier is None or Path(earlier.source_run or "").resolve() != run_dir.resolve():
        raise LeanError(f"--out {out_dir}: exists and is not an SVM run of {run_dir}; choose "
                        "another folder")


__all__ = [
    "KERNELS",
    "LinearHead",
    "PAPER_C",
    "PlattScaling",
    "decision_function",
    "export_ready_svm_copy",
    "fit_svm",
    "fold_linear_svm",
    "load_svm",
    "linear_head",
    "penultimate_model",
    "save_svm",
    "svm_head",
    "train_svm_run",
]
