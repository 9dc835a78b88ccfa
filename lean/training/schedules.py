"""Optimizers and learning-rate schedules: constant, step or cosine decay, after a constant or
gradual warmup, computed per optimizer step, and logged per epoch.

The schedule is a function of the optimizer's step counter alone, which the resume checkpoint
stores with the optimizer, so a resumed run continues at exactly the step it stopped at.
"""

from __future__ import annotations

import math
from typing import Optional

import keras
from keras import ops

from lean.training.options import parse_lr_schedule, parse_warmup


@keras.saving.register_keras_serializable(package="lean")
class RefinedSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) for `epochs` epochs of `steps_per_epoch` optimizer steps.

    Schedules, from `learning_rate` at the schedule's start: `constant`; `step:EVERY:FACTOR`,
    times FACTOR after every EVERY epochs; `cosine`, 0.5 (1 + cos(pi s / S)) over the
    schedule's S steps. Warmup over its first W epochs: `constant:W:LR`, or `gradual:W:START`,
    START + (learning_rate - START) * step / (W steps), linear per step (Goyal et al. 2017).

    `warmup_mode="replace"` (paper 000 read literally): the schedule runs over all epochs and
    the warmup takes the place of its first W, so after warmup it resumes where it would be
    anyway (step:5:0.1 over 20 epochs with a 5-epoch warmup continues at lr/10).
    `"prepend"`: the schedule starts after the warmup and spans the remaining epochs.
    """

    def __init__(self, learning_rate: float, steps_per_epoch: int, epochs: int,
                 schedule: str = "constant", warmup: str | None = None,
                 warmup_mode: str = "replace"):
        self.learning_rate = float(learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.epochs = int(epochs)
        self.schedule = parse_lr_schedule(schedule)
        self.warmup = parse_warmup(warmup)
        if warmup_mode not in ("replace", "prepend"):
            raise ValueError(f"warmup_mode must be replace or prepend, not {warmup_mode!r}")
        self.warmup_mode = warmup_mode
        if self.steps_per_epoch < 1 or self.epochs < 1:
            raise ValueError("steps_per_epoch and epochs must be positive")

    @property
    def warmup_steps(self) -> int:
        return self.warmup.epochs * self.steps_per_epoch if self.warmup else 0

    def _decayed(self, step, total_steps: int):
        """The schedule alone, `step` float32 steps after its start, over `total_steps`."""
        kind = self.schedule.kind
        if kind == "constant":
            return ops.full_like(step, self.learning_rate)
        if kind == "step":
            decays = ops.floor(step / float(self.schedule.every * self.steps_per_epoch))
            return self.learning_rate * ops.power(self.schedule.factor, decays)
        progress = ops.minimum(step, float(total_steps)) / float(total_steps)
        return self.learning_rate * 0.5 * (1.0 + ops.cos(math.pi * progress))

    def __call__(self, step):
        step = ops.cast(step, "float32")
        total = self.epochs * self.steps_per_epoch
        warmup_steps = self.warmup_steps
        if not warmup_steps:
            return self._decayed(step, total)
        if self.warmup_mode == "replace":
            after = self._decayed(step, total)
        else:
            after = self._decayed(ops.maximum(step - warmup_steps, 0.0), total - warmup_steps)
        if self.warmup.kind == "constant":
            during = ops.full_like(step, self.warmup.lr)
        else:
            start = self.warmup.lr
            during = start + (self.learning_rate - start) * step / float(warmup_steps)
        return ops.where(step < warmup_steps, during, after)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "steps_per_epoch": self.steps_per_epoch,
                "epochs": self.epochs, "schedule": self.schedule.text,
                "warmup": self.warmup.text if self.warmup else None,
                "warmup_mode": self.warmup_mode}


def build_learning_rate(train, steps_per_epoch: Optional[int]):
    """A TrainConfig's learning rate: the plain float when constant without warmup (today's
    behaviour, exactly), else a `RefinedSchedule` over `steps_per_epoch` steps per epoch."""
    if train.lr_schedule == "constant" and train.warmup is None:
        return train.learning_rate
    if steps_per_epoch is None:
        raise ValueError("a learning-rate schedule needs the number of steps per epoch")
    return RefinedSchedule(train.learning_rate, steps_per_epoch, train.epochs,
                           train.lr_schedule, train.warmup, train.warmup_mode)


def build_optimizer(train, steps_per_epoch: Optional[int] = None):
    """Adam, or SGD with momentum, at the TrainConfig's learning rate (schedule); weight decay
    decoupled as Keras applies it (each step subtracts lr * W * weight)."""
    learning_rate = build_learning_rate(train, steps_per_epoch)
    weight_decay = train.weight_decay or None
    if train.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=train.momentum,
                                    weight_decay=weight_decay)
    return keras.optimizers.Adam(learning_rate=learning_rate, weight_decay=weight_decay)


def learning_rate_at(learning_rate, step: int) -> float:
    """The value of a float or a schedule at optimizer step `step` (0 = the first step)."""
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        return float(ops.convert_to_numpy(learning_rate(step)))
    return float(learning_rate)


class ScheduleLog(keras.callbacks.Callback):
    """Adds `lr_start` and `lr_end`, the learning rates of each epoch's first and last optimizer
    steps, to the epoch logs (so to history.csv and TensorBoard, which read those logs)."""

    def __init__(self, learning_rate):
        super().__init__()
        self.learning_rate = learning_rate
        self.first_step = 0

    def _step(self) -> int:
        return int(ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_epoch_begin(self, epoch, logs=None):
        self.first_step = self._step()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        last_step = max(self.first_step, self._step() - 1)
        logs["lr_start"] = learning_rate_at(self.learning_rate, self.first_step)
        logs["lr_end"] = learning_rate_at(self.learning_rate, last_step)


__all__ = [
    "RefinedSchedule",
    "ScheduleLog",
    "build_learning_rate",
    "build_optimizer",
    "learning_rate_at",
]
