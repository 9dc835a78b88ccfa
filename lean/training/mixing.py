"""Mixing training batches: mixup and between-class learning, as tf.data transformations.

They act on training batches of (waveforms [B, N] or [B, N, C], targets [B, K'] ) in the data
pipeline, never in a model graph, so validation, test and the exported model see clean audio.
Each example is mixed with a partner from its own batch. The draws of batch b of epoch e come
from stateless random ops seeded by (seed, e, b) alone: a run resumed at epoch e sees exactly
the mixtures an uninterrupted run would have seen.

Targets may be wider than the classes (under distillation the teacher's tempered probabilities
follow the K hard targets); every column is mixed with the same weights, the teacher's too,
which approximates the teacher's view of a mixture it never saw by the mixture of its views.
"""

from __future__ import annotations

from typing import Callable, Optional

from lean.errors import LeanError


def batch_seed(seed: int, epoch, batch):
    """The stateless seed [2] of one batch: `seed` folded with its epoch, then its batch."""
    import tensorflow as tf

    base = tf.constant([seed, 0x6d6978], dtype=tf.int64)  # a fixed second word: "mix"
    by_epoch = tf.random.experimental.stateless_fold_in(base, tf.cast(epoch, tf.int64))
    return tf.random.experimental.stateless_fold_in(by_epoch, tf.cast(batch, tf.int64))


def _split_seed(seed, count: int):
    import tensorflow as tf

    return tf.unstack(tf.random.experimental.stateless_split(seed, count))


def mixup_plan(batch_size, alpha: float, seed):
    """Partners and weights of mixup (Zhang et al. 2018): partner = a random permutation of
    the batch, weight lambda ~ Beta(alpha, alpha) per example.

    Returns:
        (partner int32 [B], weight float32 [B]).
    """
    import tensorflow as tf

    order_seed, first_seed, second_seed = _split_seed(seed, 3)
    partner = tf.random.experimental.stateless_shuffle(tf.range(batch_size), seed=order_seed)
    # Beta(a, a) = G1 / (G1 + G2) with G1, G2 ~ Gamma(a, 1).
    first = tf.random.stateless_gamma([batch_size], first_seed, alpha=alpha)
    second = tf.random.stateless_gamma([batch_size], second_seed, alpha=alpha)
    total = first + second
    # Both draws underflow to 0 with probability ~1e-15 at alpha 0.2: an even mixture then.
    weight = tf.where(total > 0, first / tf.maximum(total, 1e-30), 0.5)
    return partner, weight


def between_class_plan(classes, seed):
    """Partners and weights of between-class learning (Tokozume et al. 2018; paper 003): each
    example's partner is drawn uniformly among the batch's examples of a different class,
    r ~ U(0, 1). An example whose batch holds no other class stays clean (r = 1).

    Args:
        classes: int [B], each example's class.
    Returns:
        (partner int32 [B], weight r float32 [B]).
    """
    import tensorflow as tf

    scores_seed, ratio_seed = _split_seed(seed, 2)
    size = tf.shape(classes)[0]
    different = tf.not_equal(classes[:, None], classes[None, :])
    # Uniform scores in [0, 1), -1 on same-class pairs: the argmax is a uniform different-class
    # partner whenever there is one.
    scores = tf.random.stateless_uniform(tf.stack([size, size]), scores_seed)
    partner = tf.argmax(tf.where(different, scores, -1.0), axis=1, output_type=tf.int32)
    has_partner = tf.reduce_any(different, axis=1)
    ratio = tf.random.stateless_uniform(tf.reshape(size, [1]), ratio_seed)
    return tf.where(has_partner, partner, tf.range(size)), tf.where(has_partner, ratio, 1.0)


def mix(waveforms, targets, partner, weight, normalize: bool = False):
    """w x + (1 - w) x[partner] and the same for the targets; with `normalize` the waveform
    mixture is divided by sqrt(w^2 + (1 - w)^2), which keeps the power of two uncorrelated
    signals of equal power (Tokozume et al.'s between-class normalisation).

    Args:
        waveforms: [B, N] or [B, N, C]. targets: [B, K'].
        partner: int [B]. weight: float32 [B].
    """
    import tensorflow as tf

    def broadcast(values, like):
        return tf.reshape(values, tf.concat([tf.shape(values), tf.ones(tf.rank(like) - 1,
                                                                       tf.int32)], axis=0))

    wave_weight = broadcast(weight, waveforms)
    mixed = wave_weight * waveforms + (1.0 - wave_weight) * tf.gather(waveforms, partner)
    if normalize:
        mixed = mixed / tf.sqrt(wave_weight ** 2 + (1.0 - wave_weight) ** 2)
    target_weight = broadcast(weight, targets)
    mixed_targets = target_weight * targets + (1.0 - target_weight) * tf.gather(targets, partner)
    return mixed, mixed_targets


def mixup(waveforms, targets, alpha: float, seed):
    """One mixup batch: (mixed waveforms, mixed targets)."""
    import tensorflow as tf

    partner, weight = mixup_plan(tf.shape(waveforms)[0], alpha, seed)
    return mix(waveforms, targets, partner, weight)


def between_class(waveforms, targets, num_classes: int, seed):
    """One between-class batch: pairs of different classes (the argmax of the first
    `num_classes` target columns), normalised waveform mixtures, mixed targets."""
    import tensorflow as tf

    classes = tf.argmax(targets[:, :num_classes], axis=1, output_type=tf.int32)
    partner, ratio = between_class_plan(classes, seed)
    return mix(waveforms, targets, partner, ratio, normalize=True)


def build_mixer(train, task: str, num_classes: int) -> Optional[Callable]:
    """The TrainConfig's mixing as `mixer(waveforms, targets, seed)`, or None when off."""
    if train.between_class:
        if task != "single_label":
            raise LeanError("--between-class needs single-label data, not " + task)
        return lambda waveforms, targets, seed: between_class(waveforms, targets, num_classes,
                                                              seed)
    if train.mixup_alpha > 0:
        alpha = float(train.mixup_alpha)
        return lambda waveforms, targets, seed: mixup(waveforms, targets, alpha, seed)
    return None


def mix_batches(batches, mixer: Callable, seed: int, first_epoch: int, steps_per_epoch: int):
    """Applies `mixer` to a tf.data pipeline of training batches (waveforms, targets, ...).

    Args:
        batches: the training batches in order, starting with batch 0 of `first_epoch`, exactly
            `steps_per_epoch` batches per epoch.
        mixer: from `build_mixer`.
        seed: the run's seed.
        first_epoch: the epoch the pipeline starts at (a resumed run's first epoch).
        steps_per_epoch: batches per epoch.
    Returns:
        The same pipeline with batch b of epoch e mixed under `batch_seed(seed, e, b)`.
    """
    import tensorflow as tf

    def mix_one(position, batch):
        epoch = first_epoch + position // steps_per_epoch
        waveforms, targets, *rest = batch
        mixed = mixer(waveforms, targets, batch_seed(seed, epoch, position % steps_per_epoch))
        return (*mixed, *rest)

    options = tf.data.Options()
    options.deterministic = True
    return (batches.enumerate()
            .map(mix_one, num_parallel_calls=tf.data.AUTOTUNE)
            .with_options(options))


__all__ = [
    "batch_seed",
    "between_class",
    "between_class_plan",
    "build_mixer",
    "mix",
    "mix_batches",
    "mixup",
    "mixup_plan",
]
