"""Losses of the refinements: label-smoothed targets, the between-class KL divergence, and
knowledge distillation, for both tasks, on the probability outputs every family member has.

Targets arrive as `y_true` [B, K], or under distillation [B, 2K]: the hard targets, then the
teacher's tempered probabilities (both mixed alike by `lean.training.mixing`). Metrics must see
the hard targets only (`HardTargets` wraps them); validation batches carry [B, K] and are
scored with the hard loss alone.
"""

from __future__ import annotations

import keras
from keras import ops

from lean.errors import LeanError
from lean.tasks import SINGLE_LABEL, task as task_named

# Probabilities are clipped before a log only where Keras left no logits behind. A softmax's
# log needs only to avoid log(0) (float32 reaches 1e-38); a sigmoid's logit also needs 1-p > 0,
# and 1 - 1e-7 is the closest float32 step below 1 that Keras' own losses use.
_SOFTMAX_FLOOR = 1e-30
_SIGMOID_EPSILON = 1e-7


def smooth_targets(targets, epsilon: float, task: str):
    """Label smoothing as paper 000 defines it, on NumPy arrays or tensors [..., K].

    Single-label: the true class gets 1 - EPS and each other class EPS / (K - 1); on soft
    targets (mixtures) the same affine map, so the smoothed targets still sum to 1 and smoothing
    commutes with mixing. Multi-label: y (1 - EPS) + EPS / 2 per class.
    """
    if epsilon == 0:
        return targets
    if task_named(task).name == SINGLE_LABEL:
        num_classes = targets.shape[-1]
        other = epsilon / (num_classes - 1)
        return targets * (1.0 - epsilon - other) + other
    return targets * (1.0 - epsilon) + epsilon / 2.0


def tempered_probabilities(logits, temperature: float, task: str):
    """The teacher's soft targets: softmax(z / T) (single-label) or sigmoid(z / T) per class."""
    scaled = ops.convert_to_tensor(logits, "float32") / temperature
    if task_named(task).name == SINGLE_LABEL:
        return ops.softmax(scaled, axis=-1)
    return ops.sigmoid(scaled)


def student_logits(probabilities, task: str):
    """Logits of a model's probability output: the ones Keras' softmax/sigmoid kept on the
    tensor when there (inside `fit`), else recovered from the probabilities (log p for a
    softmax, which shifts every logit alike and so leaves softmax(z / T) unchanged)."""
    logits = getattr(probabilities, "_keras_logits", None)
    if logits is not None:
        return logits
    if task_named(task).name == SINGLE_LABEL:
        return ops.log(ops.maximum(probabilities, _SOFTMAX_FLOOR))
    clipped = ops.clip(probabilities, _SIGMOID_EPSILON, 1.0 - _SIGMOID_EPSILON)
    return ops.log(clipped) - ops.log1p(-clipped)


def _plogp(values):
    """p log p with 0 log 0 = 0, elementwise (for the targets' entropy)."""
    return ops.where(values > 0, values * ops.log(ops.maximum(values, _SOFTMAX_FLOOR)), 0.0)


def distillation_divergence(teacher_targets, student_probabilities, temperature: float,
                            task: str):
    """T^2 KL(teacher || student at T) per example [B] (paper 000 eq. 15; Hinton et al.).

    Single-label: T^2 sum_c q_c log(q_c / softmax(z_s / T)_c). Multi-label, per class the
    binary KL of sigmoid(z_t / T) and sigmoid(z_s / T), averaged over classes as binary
    cross-entropy averages them.

    Args:
        teacher_targets: the teacher's tempered probabilities [B, K] (`tempered_probabilities`).
        student_probabilities: the student's outputs [B, K].
    """
    scaled = student_logits(student_probabilities, task) / temperature
    teacher_targets = ops.convert_to_tensor(teacher_targets, scaled.dtype)
    if task_named(task).name == SINGLE_LABEL:
        cross = -ops.sum(teacher_targets * ops.log_softmax(scaled, axis=-1), axis=-1)
        return temperature ** 2 * (cross + ops.sum(_plogp(teacher_targets), axis=-1))
    # -[q log s + (1-q) log(1-s)] with log s = -softplus(-x), log(1-s) = -softplus(x).
    cross = teacher_targets * ops.softplus(-scaled) + (1.0 - teacher_targets) * ops.softplus(scaled)
    entropy = _plogp(teacher_targets) + _plogp(1.0 - teacher_targets)
    return temperature ** 2 * ops.mean(cross + entropy, axis=-1)


def hard_loss(targets, probabilities, task: str, divergence: bool = False):
    """Per-example loss on (smoothed, mixed) targets: categorical or binary cross-entropy as
    the task's Keras loss computes it, or with `divergence` KL(targets || outputs), which is the
    cross-entropy minus the targets' entropy (same gradient; zero for a perfect fit)."""
    if task_named(task).name == SINGLE_LABEL:
        loss = keras.losses.categorical_crossentropy(targets, probabilities)
        if divergence:
            loss = loss + ops.sum(_plogp(ops.convert_to_tensor(targets, loss.dtype)), axis=-1)
        return loss
    if divergence:
        raise LeanError("the between-class KL divergence is defined for single-label targets")
    return keras.losses.binary_crossentropy(targets, probabilities)


@keras.saving.register_keras_serializable(package="lean")
class RefinedLoss(keras.losses.Loss):
    """The training loss with the refinements: label smoothing, the between-class KL divergence
    and knowledge distillation, L = lambda L_hard + (1 - lambda) L_KD (paper 000 eq. 16).

    With distillation, training targets are [B, 2K] (hard, then teacher); targets [B, K]
    (validation) give L_hard alone, so val_loss stays the loss on the true labels.
    """

    def __init__(self, task: str, num_classes: int, label_smoothing: float = 0.0,
                 divergence: bool = False, kd_temperature: float | None = None,
                 kd_lambda: float | None = None, name: str = "refined_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.task = task_named(task).name
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        self.divergence = bool(divergence)
        self.kd_temperature = None if kd_temperature is None else float(kd_temperature)
        self.kd_lambda = None if kd_lambda is None else float(kd_lambda)

    def call(self, y_true, y_pred):
        classes = self.num_classes
        width = y_true.shape[-1]
        distilling = self.kd_temperature is not None
        if width not in (classes, 2 * classes if distilling else classes):
            raise LeanError(f"{self.name}: targets of width {width} for {classes} classes")
        hard = smooth_targets(y_true[..., :classes], self.label_smoothing, self.task)
        loss = hard_loss(hard, y_pred, self.task, self.divergence)
        if not distilling or width == classes:
            return loss
        teacher = y_true[..., classes:]
        kd = distillation_divergence(teacher, y_pred, self.kd_temperature, self.task)
        return self.kd_lambda * loss + (1.0 - self.kd_lambda) * kd

    def get_config(self):
        return {**super().get_config(), "task": self.task, "num_classes": self.num_classes,
                "label_smoothing": self.label_smoothing, "divergence": self.divergence,
                "kd_temperature": self.kd_temperature, "kd_lambda": self.kd_lambda}


@keras.saving.register_keras_serializable(package="lean")
class HardTargets(keras.metrics.Metric):
    """A metric scored on the first `num_classes` target columns: under distillation the
    rest are the teacher's. Keeps the wrapped metric's name (`accuracy`, `pr_auc`), so the
    task's monitor (`val_accuracy`, `val_pr_auc`) is unchanged."""

    def __init__(self, metric, num_classes: int, **kwargs):
        if isinstance(metric, dict):
            metric = keras.metrics.deserialize(metric)
        kwargs.setdefault("name", metric.name)
        super().__init__(**kwargs)
        self.metric = metric
        self.num_classes = int(num_classes)

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.metric.update_state(y_true[..., :self.num_classes], y_pred, sample_weight)

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "metric": keras.metrics.serialize(self.metric)}


def build_loss(train, task: str, num_classes: int):
    """The loss of a TrainConfig: the task's plain Keras loss when no refinement changes it.

    Args:
        train: `lean.config.TrainConfig` (label_smoothing, between_class, teacher, kd_*).
        task: the run's task.
        num_classes: K.
    """
    from lean.tasks import loss as task_loss

    distilling = train.teacher is not None
    if not (train.label_smoothing or train.between_class or distilling):
        return task_loss(task)
    return RefinedLoss(task, num_classes, label_smoothing=train.label_smoothing,
                       divergence=train.between_class,
                       kd_temperature=train.kd_temperature if distilling else None,
                       kd_lambda=train.kd_lambda if distilling else None)


def build_metrics(train, task: str, num_classes: int) -> list:
    """The task's metrics, scored on the hard targets when distillation widens them."""
    from lean.tasks import metrics as task_metrics

    metrics = task_metrics(task, num_classes)
    if train.teacher is None:
        return metrics
    return [HardTargets(metric, num_classes) for metric in metrics]


__all__ = [
    "HardTargets",
    "RefinedLoss",
    "build_loss",
    "build_metrics",
    "distillation_divergence",
    "hard_loss",
    "smooth_targets",
    "student_logits",
    "tempered_probabilities",
]
