"""SpecAugment (Park et al. 2019): frequency and time masks on a spectrogram, training only.

`SpecAugment` is a Keras layer that masks in training and is the identity at inference.
`with_spec_augment` puts it after every spectrogram frontend of any built model (a frontend
declares `spectrogram_axes = (time_axis, freq_axis)`), in a training copy that shares every
layer and weight with the model; `without_spec_augment` takes it out again. So builders need
no change, and the model that is evaluated, saved as best.keras and exported never holds it.
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops

from lean.errors import LeanError
from lean.training.options import (SPECAUGMENT_MASKS, SPECAUGMENT_MAX_TIME_FRACTION,
                                   SpecAugmentSpec, parse_specaugment)

LAYER_NAME = "specaugment"


@keras.saving.register_keras_serializable(package="lean")
class SpecAugment(keras.layers.Layer):
    """Masks `freq_masks` bands of up to `freq_width` bins and `time_masks` spans of up to
    `time_width` frames (and at most `max_time_fraction` of the frames, Park et al.'s p) per
    example, each width drawn uniformly from 0 to its maximum and each position uniformly.

    Masked values become the example's mean over time and frequency: Park et al. mask with 0 on
    mean-normalised features, and these log spectrograms are not normalised (0 would be a loud
    value in a log-mel). Input [B, ...] with the time and frequency axes at `time_axis` and
    `freq_axis`; any further axis (channels) is masked alike. float32, like the frontends.

    The masks of the n-th training batch come from stateless random ops seeded by (seed, n),
    with n a counter saved with the layer's weights: a run resumed from a checkpoint draws the
    masks an uninterrupted run would have drawn (a Keras SeedGenerator's state is not saved).
    """

    def __init__(self, freq_width: int = 15, time_width: int = 70,
                 freq_masks: int = SPECAUGMENT_MASKS, time_masks: int = SPECAUGMENT_MASKS,
                 max_time_fraction: float = SPECAUGMENT_MAX_TIME_FRACTION, time_axis: int = 1,
                 freq_axis: int = 2, seed: Optional[int] = None, **kwargs):
        kwargs.setdefault("name", LAYER_NAME)
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.freq_width, self.time_width = int(freq_width), int(time_width)
        self.freq_masks, self.time_masks = int(freq_masks), int(time_masks)
        self.max_time_fraction = float(max_time_fraction)
        self.time_axis, self.freq_axis = int(time_axis), int(freq_axis)
        self.seed = seed

    @classmethod
    def from_spec(cls, spec: SpecAugmentSpec, **kwargs) -> "SpecAugment":
        return cls(spec.freq_width, spec.time_width, spec.freq_masks, spec.time_masks,
                   spec.max_time_fraction, **kwargs)

    def build(self, input_shape):
        # One replica counts for all under MirroredStrategy; each replica then draws alike.
        self.batches = self.add_weight(name="batches", shape=(), dtype="int64",
                                       initializer="zeros", trainable=False,
                                       aggregation="only_first_replica")
        super().build(input_shape)

    def _axis_mask(self, batch, rank: int, axis: int, length: int, width: int, masks: int,
                   seed):
        """bool [B, 1.., length, 1..]: the union of `masks` spans of width in [0, width]."""
        import tensorflow as tf

        if masks == 0 or width == 0:
            return None
        width = min(width, length)
        width_seed, start_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        widths = ops.floor(tf.random.stateless_uniform((batch, masks), width_seed) * (width + 1))
        starts = ops.floor(tf.random.stateless_uniform((batch, masks), start_seed)
                           * (length - widths + 1))
        positions = ops.arange(length, dtype="float32")[None, None, :]
        inside = (positions >= starts[..., None]) & (positions < (starts + widths)[..., None])
        # mask has shape [B, length], then broadcastable to the input.
        mask = ops.any(inside, axis=1)
        shape = [batch] + [length if index == axis % rank else 1 for index in range(1, rank)]
        return ops.reshape(mask, shape)

    def call(self, features, training=None):
        import tensorflow as tf

        if not training:
            return features
        rank = len(features.shape)
        batch = ops.shape(features)[0]
        frames = features.shape[self.time_axis]
        bins = features.shape[self.freq_axis]
        time_limit = min(self.time_width, int(self.max_time_fraction * frames))
        seed = tf.stack([tf.constant(self.seed or 0, tf.int64),
                         tf.cast(ops.convert_to_tensor(self.batches), tf.int64)])
        time_seed, freq_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        self.batches.assign_add(1)
        masks = [self._axis_mask(batch, rank, self.time_axis, frames, time_limit,
                                 self.time_masks, time_seed),
                 self._axis_mask(batch, rank, self.freq_axis, bins, self.freq_width,
                                 self.freq_masks, freq_seed)]
        masks = [mask for mask in masks if mask is not None]
        if not masks:
            return features
        masked = masks[0] if len(masks) == 1 else ops.logical_or(*masks)
        mean = ops.mean(features, axis=(self.time_axis, self.freq_axis), keepdims=True)
        return ops.where(masked, mean, features)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "freq_width": self.freq_width,
                "time_width": self.time_width, "freq_masks": self.freq_masks,
                "time_masks": self.time_masks, "max_time_fraction": self.max_time_fraction,
                "time_axis": self.time_axis, "freq_axis": self.freq_axis, "seed": self.seed}


def spectrogram_frontends(model) -> list:
    """The layers of `model` (nested models included) that declare `spectrogram_axes`."""
    found = []
    for layer in getattr(model, "layers", ()):
        if getattr(layer, "spectrogram_axes", None) is not None:
            found.append(layer)
        elif getattr(layer, "layers", None):
            found += spectrogram_frontends(layer)
    return found


def with_spec_augment(model, specaugment: str, seed: Optional[int] = None):
    """A training copy of `model` with a SpecAugment layer after each spectrogram frontend.

    Args:
        model: a built family member.
        specaugment: a `--specaugment` value ("FREQ:TIME").
        seed: seeds the masks (the run's seed).
    Returns:
        A keras.Model sharing every layer (and so every weight) with `model`.
    """
    spec = parse_specaugment(specaugment)
    frontends = spectrogram_frontends(model)
    if not frontends:
        raise LeanError(f"--specaugment {specaugment}: model {model.name!r} has no spectrogram "
                        "frontend to mask (SpecAugment masks frequency bins and time frames)")
    nested = any(layer not in model.layers for layer in frontends)

    def call(layer, *args, **kwargs):
        outputs = layer(*args, **kwargs)
        if layer in frontends:
            time_axis, freq_axis = layer.spectrogram_axes
            outputs = SpecAugment.from_spec(spec, time_axis=time_axis, freq_axis=freq_axis,
                                            seed=seed, name=f"{layer.name}_{LAYER_NAME}")(outputs)
        return outputs

    return keras.models.clone_model(model, clone_function=lambda layer: layer,
                                    call_function=call, recursive=nested)


def without_spec_augment(model):
    """`model` without its SpecAugment layers (the same layers and weights otherwise)."""
    if not any(isinstance(layer, SpecAugment) for layer in _all_layers(model)):
        return model

    def call(layer, *args, **kwargs):
        return args[0] if isinstance(layer, SpecAugment) else layer(*args, **kwargs)

    nested = any(isinstance(layer, SpecAugment) and layer not in model.layers
                 for layer in _all_layers(model))
    return keras.models.clone_model(model, clone_function=lambda layer: layer,
                                    call_function=call, recursive=nested)


def _all_layers(model) -> list:
    layers = []
    for layer in getattr(model, "layers", ()):
        layers += [layer, *_all_layers(layer)]
    return layers


__all__ = [
    "LAYER_NAME",
    "SpecAugment",
    "spectrogram_frontends",
    "with_spec_augment",
    "without_spec_augment",
]
