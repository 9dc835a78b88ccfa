"""SpecAugment (Park et al. 2019): frequency and time masks on a spectrogram, training only.

`SpecAugment` is a Keras layer placed right after a model's spectrogram frontend: it masks in
training and is the identity at inference (`training=False`, which evaluation and tagging
use). `augment_spectrogram` leaves it out of the export-ready build altogether, so no exported
file ever holds it. It has no weights, so copying weights into the export build is unaffected.
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops

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
        self.seed_generator = keras.random.SeedGenerator(seed)

    @classmethod
    def from_spec(cls, spec: SpecAugmentSpec, **kwargs) -> "SpecAugment":
        return cls(spec.freq_width, spec.time_width, spec.freq_masks, spec.time_masks,
                   spec.max_time_fraction, **kwargs)

    def _axis_mask(self, batch, rank: int, axis: int, length: int, width: int, masks: int):
        """bool [B, 1.., length, 1..]: the union of `masks` spans of width in [0, width]."""
        if masks == 0 or width == 0:
            return None
        width = min(width, length)
        widths = ops.floor(keras.random.uniform((batch, masks), seed=self.seed_generator)
                           * (width + 1))
        starts = ops.floor(keras.random.uniform((batch, masks), seed=self.seed_generator)
                           * (length - widths + 1))
        positions = ops.arange(length, dtype="float32")[None, None, :]
        inside = (positions >= starts[..., None]) & (positions < (starts + widths)[..., None])
        # mask has shape [B, length], then broadcastable to the input.
        mask = ops.any(inside, axis=1)
        shape = [batch] + [length if index == axis % rank else 1 for index in range(1, rank)]
        return ops.reshape(mask, shape)

    def call(self, features, training=None):
        if not training:
            return features
        rank = len(features.shape)
        batch = ops.shape(features)[0]
        frames = features.shape[self.time_axis]
        bins = features.shape[self.freq_axis]
        time_limit = min(self.time_width, int(self.max_time_fraction * frames))
        masks = [self._axis_mask(batch, rank, self.time_axis, frames, time_limit,
                                 self.time_masks),
                 self._axis_mask(batch, rank, self.freq_axis, bins, self.freq_width,
                                 self.freq_masks)]
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


def augment_spectrogram(features, specaugment: Optional[str], export_ready: bool,
                        time_axis: int = 1, freq_axis: int = 2):
    """`features` through a SpecAugment layer when `specaugment` (a `--specaugment` value) is
    set and the build is not the export-ready one; else `features` unchanged.

    Args:
        features: a frontend's spectrogram tensor, e.g. log-mel [B, frames, bands].
        specaugment: "FREQ:TIME", or None (off).
        export_ready: the export build, which never holds the layer.
        time_axis, freq_axis: where time and frequency lie in `features`.
    Returns:
        The (training-time masked) spectrogram, same shape and dtype.
    """
    spec = parse_specaugment(specaugment)
    if spec is None or export_ready:
        return features
    return SpecAugment.from_spec(spec, time_axis=time_axis, freq_axis=freq_axis)(features)


__all__ = ["LAYER_NAME", "SpecAugment", "augment_spectrogram"]
