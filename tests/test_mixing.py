"""Mixup and between-class mixing: outputs against NumPy, the different-class rule, the
normalisation, and mixtures that a resumed run sees again."""

import numpy as np
import pytest

from lean.errors import LeanError


def _seed(value):
    import tensorflow as tf

    return tf.constant([value, 7], tf.int64)


def test_mix_matches_numpy_with_and_without_normalisation():
    from lean.training.mixing import mix

    rng = np.random.default_rng(0)
    waveforms = rng.normal(size=(4, 6)).astype(np.float32)
    targets = np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]
    partner = np.array([2, 0, 1, 3], np.int32)
    weight = np.array([0.25, 0.5, 0.9, 1.0], np.float32)
    mixed, mixed_targets = mix(waveforms, targets, partner, weight)
    w = weight[:, None]
    np.testing.assert_allclose(mixed, w * waveforms + (1 - w) * waveforms[partner], rtol=1e-6)
    np.testing.assert_allclose(mixed_targets, w * targets + (1 - w) * targets[partner], rtol=1e-6)
    normalised, _ = mix(waveforms, targets, partner, weight, normalize=True)
    expected = (w * waveforms + (1 - w) * waveforms[partner]) / np.sqrt(w ** 2 + (1 - w) ** 2)
    np.testing.assert_allclose(normalised, expected, rtol=1e-6)
    # Row 0: r = 0.25, partner 2: divided by sqrt(0.0625 + 0.5625) = 0.790569.
    np.testing.assert_allclose(normalised[0],
                               (0.25 * waveforms[0] + 0.75 * waveforms[2]) / 0.790569, rtol=1e-5)
    # Stereo windows [B, N, C] are weighted per example alike.
    stereo = rng.normal(size=(4, 6, 2)).astype(np.float32)
    mixed_stereo, _ = mix(stereo, targets, partner, weight)
    np.testing.assert_allclose(mixed_stereo, w[:, :, None] * stereo
                               + (1 - w[:, :, None]) * stereo[partner], rtol=1e-6)


def test_mixup_plan_is_a_permutation_with_beta_weights():
    from lean.training.mixing import mixup_plan

    partner, weight = mixup_plan(20000, 0.4, _seed(1))
    partner, weight = np.asarray(partner), np.asarray(weight)
    assert sorted(partner) == list(range(20000))
    assert weight.min() >= 0 and weight.max() <= 1
    # Beta(0.4, 0.4): mean 1/2, variance 1 / (4 (2 alpha + 1)) = 0.1389.
    assert abs(weight.mean() - 0.5) < 0.01
    assert abs(weight.var() - 1 / (4 * 1.8)) < 0.005
    again = np.asarray(mixup_plan(20000, 0.4, _seed(1))[1])
    other = np.asarray(mixup_plan(20000, 0.4, _seed(2))[1])
    assert np.array_equal(weight, again) and not np.array_equal(weight, other)


def test_between_class_partners_are_of_another_class():
    from lean.training.mixing import between_class_plan

    classes = np.array([0, 0, 1, 2, 2, 2, 1, 0], np.int32)
    counts = np.zeros((8, 8))
    for value in range(300):
        partner, ratio = map(np.asarray, between_class_plan(classes, _seed(value)))
        assert np.all(classes[partner] != classes)
        assert np.all((ratio >= 0) & (ratio < 1))
        counts[np.arange(8), partner] += 1
    # Uniform among the other-class examples: example 0 (class 0) has 5 candidates.
    candidates = counts[0][classes != 0]
    assert candidates.min() > 30 and counts[0][classes == 0].sum() == 0
    # A batch of one class has nobody to mix with: it stays clean.
    partner, ratio = map(np.asarray, between_class_plan(np.array([3, 3, 3], np.int32), _seed(0)))
    assert list(partner) == [0, 1, 2] and list(ratio) == [1.0, 1.0, 1.0]


def test_between_class_batch_matches_numpy():
    from lean.training.mixing import between_class, between_class_plan

    rng = np.random.default_rng(4)
    waveforms = rng.normal(size=(6, 5)).astype(np.float32)
    hard = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    # Distillation: the teacher's soft targets follow the hard ones and are mixed alike.
    teacher = rng.dirichlet(np.ones(3), size=6).astype(np.float32)
    targets = np.concatenate([hard, teacher], axis=1)
    mixed, mixed_targets = map(np.asarray, between_class(waveforms, targets, 3, _seed(9)))
    partner, r = map(np.asarray, between_class_plan(np.argmax(hard, axis=1).astype(np.int32),
                                                    _seed(9)))
    r = r[:, None]
    np.testing.assert_allclose(
        mixed, (r * waveforms + (1 - r) * waveforms[partner]) / np.sqrt(r ** 2 + (1 - r) ** 2),
        rtol=1e-5)
    np.testing.assert_allclose(mixed_targets, r * targets + (1 - r) * targets[partner], rtol=1e-6)
    # Each mixed hard target holds exactly two classes, r and 1 - r.
    assert np.all(np.sum(mixed_targets[:, :3] > 0, axis=1) == 2)
    np.testing.assert_allclose(mixed_targets[:, :3].sum(axis=1), 1.0, rtol=1e-6)


def _training_batches(first_epoch, epochs, steps, batch=4):
    """A stand-in pipeline: batch b of epoch e holds windows filled with 100 e + 10 b + row."""
    import tensorflow as tf

    def batch_of(index):
        epoch, position = first_epoch + index // steps, index % steps
        rows = tf.cast(tf.range(batch), tf.float32)
        base = tf.cast(100 * epoch + 10 * position, tf.float32)
        waveforms = tf.tile((base + rows)[:, None], [1, 3])
        targets = tf.one_hot(tf.range(batch) % 2, 2)
        return waveforms, targets

    return tf.data.Dataset.range((epochs - first_epoch) * steps).map(batch_of)


@pytest.mark.parametrize("kind", ["mixup", "between_class"])
def test_a_resumed_run_sees_the_same_mixtures(kind):
    from lean.config import TrainConfig
    from lean.training.mixing import build_mixer, mix_batches

    train = TrainConfig(mixup_alpha=0.3) if kind == "mixup" else TrainConfig(between_class=True)
    mixer = build_mixer(train, "single_label", 2)
    steps, epochs = 2, 3
    full = [tuple(map(np.asarray, item)) for item in
            mix_batches(_training_batches(0, epochs, steps), mixer, 5, 0, steps)]
    resumed = [tuple(map(np.asarray, item)) for item in
               mix_batches(_training_batches(1, epochs, steps), mixer, 5, 1, steps)]
    assert len(full) == 6 and len(resumed) == 4
    for (waves, targets), (again_waves, again_targets) in zip(full[2:], resumed):
        np.testing.assert_array_equal(waves, again_waves)
        np.testing.assert_array_equal(targets, again_targets)
    # The mixtures differ from batch to batch and from the clean input.
    clean = [np.asarray(item[0]) for item in _training_batches(0, epochs, steps)]
    assert not np.allclose(full[0][0], clean[0])
    weights = [np.asarray(item[1])[:, 0] for item in full]
    assert not np.allclose(weights[0], weights[2])


def test_build_mixer_refuses_between_class_on_multilabel_and_is_off_by_default():
    from lean.config import TrainConfig
    from lean.training.mixing import build_mixer

    assert build_mixer(TrainConfig(), "multilabel", 4) is None
    with pytest.raises(LeanError, match="--between-class needs single-label data"):
        build_mixer(TrainConfig(between_class=True), "multilabel", 4)
