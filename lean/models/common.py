"""What every family member shares at its two ends: the waveform input and the task's head."""

from __future__ import annotations

import keras

from lean.config import ModelConfig
from lean.errors import LeanError
from lean.tasks import task

INPUT_NAME = "waveform"
# The output layer's name: float32 probabilities [B, num_classes].
OUTPUT_NAME = "probabilities"


def waveform_input(config: ModelConfig, variable_length: bool = False):
    """The model input `waveform`: float32 [B, *config.input.shape], B static 1 when export_ready.

    `variable_length` leaves the time axis open ([B, None] mono) in the training build, for a
    model that trains on batches of any length; the export-ready build is always static.
    """
    batch_size = 1 if config.export_ready else None
    shape = config.input.shape
    if variable_length and not config.export_ready:
        shape = (None,) + shape[1:]
    return keras.Input(shape, batch_size=batch_size, name=INPUT_NAME)


def check_mono(config: ModelConfig) -> None:
    """A LeanError unless the config's input is mono (for models whose frontend takes one
    channel; the data pipeline downmixes for them)."""
    if config.input.channels != 1:
        raise LeanError(f"model {config.name!r} takes mono audio, not {config.input.channels} "
                        "channels (the data pipeline downmixes for a mono model)")


def classifier_head(features, config: ModelConfig):
    """features [B, D] -> probabilities float32 [B, num_classes]: sigmoid (multilabel) or
    softmax (single_label) inside the model, named `logits` and `probabilities`."""
    logits = keras.layers.Dense(config.num_classes, name="logits")(features)
    # float32 even under mixed precision: the contract's output dtype.
    return keras.layers.Activation(task(config.task).activation, name=OUTPUT_NAME,
                                   dtype="float32")(logits)


__all__ = ["INPUT_NAME", "OUTPUT_NAME", "check_mono", "classifier_head", "waveform_input"]
