"""Windowing of clips (training and evaluation) and pooling of window scores into clip scores."""

from __future__ import annotations

import numpy as np
import pytest

from lean.data.windows import (
    aggregate_clip_scores,
    eval_window_starts,
    eval_windows,
    training_window_starts,
    training_windows,
)

W = 100  # a small window keeps the hand-worked examples readable


def ramp(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float32)


def test_short_clips_are_repeated_to_one_window():
    windows = training_windows(ramp(30), W)
    expected = np.concatenate([ramp(30), ramp(30), ramp(30), ramp(10)])
    np.testing.assert_array_equal(windows, expected[None])
    np.testing.assert_array_equal(eval_windows(ramp(30), W), expected[None])


@pytest.mark.parametrize(
    "length,expected_starts",
    [
        (30, [0]),  # short: one window, of the clip repeated
        (100, [0]),
        (149, [0]),
        (199, [0, 99]),  # remainder 99 >= half: the last full window, overlapping the first
        (250, [0, 100, 150]),  # remainder 50 == half: kept
        (249, [0, 100]),  # remainder 49 < half: dropped
        (300, [0, 100, 200]),
    ],
)
def test_training_windows_do_not_overlap_except_the_kept_tail(length, expected_starts):
    np.testing.assert_array_equal(training_window_starts(length, W), expected_starts)
    audio = ramp(length)
    windows = training_windows(audio, W)
    assert windows.shape == (len(expected_starts), W) and windows.dtype == np.float32
    if length < W:
        return  # covered by test_short_clips_are_repeated_to_one_window
    for window, start in zip(windows, expected_starts):
        np.testing.assert_array_equal(window, audio[start:start + W])


@pytest.mark.parametrize(
    "length,hop_fraction,expected_starts",
    [
        (100, 0.5, [0]),
        (40, 0.5, [0]),
        (150, 0.5, [0, 50]),
        (260, 0.5, [0, 50, 100, 150, 160]),  # a last window ends exactly at the clip's end
        (300, 0.5, [0, 50, 100, 150, 200]),
        (300, 1.0, [0, 100, 200]),
        (230, 0.25, [0, 25, 50, 75, 100, 125, 130]),
    ],
)
def test_eval_windows_cover_the_whole_clip(length, hop_fraction, expected_starts):
    np.testing.assert_array_equal(eval_window_starts(length, W, hop_fraction), expected_starts)
    audio = ramp(length)
    windows = eval_windows(audio, W, hop_fraction)
    assert windows.shape == (len(expected_starts), W)
    if length >= W:
        for window, start in zip(windows, expected_starts):
            np.testing.assert_array_equal(window, audio[start:start + W])
        covered = np.unique(np.concatenate(windows)).astype(int)
        np.testing.assert_array_equal(covered, np.arange(length))


def test_window_arguments_are_checked():
    with pytest.raises(ValueError, match="empty clip"):
        training_windows(np.zeros(0, np.float32), W)
    with pytest.raises(ValueError, match="hop_fraction"):
        eval_window_starts(500, W, 0.0)


def test_aggregation_matches_per_clip_loops_with_windows_in_any_order():
    rng = np.random.default_rng(0)
    clip_of_window = np.array([2, 0, 1, 2, 0, 2, 1])
    scores = rng.uniform(0.01, 0.99, (7, 3))
    for method, pool in [
        ("mean", lambda s: s.mean(axis=0)),
        ("max", lambda s: s.max(axis=0)),
        ("mean_logits", lambda s: 1 / (1 + np.exp(-np.log(s / (1 - s)).mean(axis=0)))),
        ("log_sum", lambda s: s.prod(axis=0) / s.prod(axis=0).sum()),
    ]:
        expected = np.stack([pool(scores[clip_of_window == clip]) for clip in range(3)])
        np.testing.assert_allclose(aggregate_clip_scores(scores, clip_of_window, method), expected, rtol=1e-12)


def test_mean_logits_differs_from_mean_and_stays_finite_at_saturation():
    scores = np.array([[0.5, 1.0], [0.9, 0.0], [0.99, 1.0]])
    clips = np.zeros(3, dtype=int)
    mean_logits = aggregate_clip_scores(scores, clips, "mean_logits")[0]
    # logit(.5)=0, logit(.9)=2.1972, logit(.99)=4.5951: mean 2.2641 -> sigmoid 0.9059
    assert mean_logits[0] == pytest.approx(0.9059, abs=1e-4)
    assert aggregate_clip_scores(scores, clips, "mean")[0, 0] == pytest.approx(0.7967, abs=1e-4)
    assert np.isfinite(mean_logits[1]) and 0.0 < mean_logits[1] < 1.0


def test_log_sum_is_the_renormalised_product_of_window_posteriors():
    scores = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.25, 0.25, 0.5]])
    # products 0.6*0.2 = 0.12, 0.3*0.5 = 0.15, 0.1*0.3 = 0.03 (sum 0.30) for clip 0
    pooled = aggregate_clip_scores(scores, np.array([0, 0, 1]), "log_sum")
    np.testing.assert_allclose(pooled, [[0.4, 0.5, 0.1], [0.25, 0.25, 0.5]], rtol=1e-12)
    # The mean ties classes 0 and 1 (0.4 each); the product prefers class 1, which neither
    # window makes unlikely.
    np.testing.assert_allclose(aggregate_clip_scores(scores[:2], np.array([0, 0]), "mean")[0],
                               [0.4, 0.4, 0.2])
    # A zero is clipped to 1e-7, not -inf: it lowers a class without vetoing it outright.
    pooled = aggregate_clip_scores(np.array([[1.0, 0.0], [0.5, 0.5]]), np.zeros(2, int), "log_sum")
    np.testing.assert_allclose(pooled[0], [1 / (1 + 1e-7), 1e-7 / (1 + 1e-7)], rtol=1e-9)
    # Thousands of windows underflow a plain product; the shifted softmax stays exact.
    many = np.tile([[0.3, 0.7]], (5000, 1))
    pooled = aggregate_clip_scores(many, np.zeros(5000, int), "log_sum")[0]
    assert np.isfinite(pooled).all() and pooled[1] == pytest.approx(1.0) and pooled.sum() == pytest.approx(1.0)


def test_multi_channel_windows_cut_every_channel_alike():
    left, right = ramp(260), -ramp(260) - 1000
    stereo = np.stack([left, right], axis=1)
    for cut in (training_windows, eval_windows):
        windows = cut(stereo, W)
        assert windows.shape == (len(cut(left, W)), W, 2) and windows.flags.c_contiguous
        np.testing.assert_array_equal(windows[..., 0], cut(left, W))
        np.testing.assert_array_equal(windows[..., 1], cut(right, W))
    short = training_windows(stereo[:30], W)  # repeated along time, channels kept apart
    np.testing.assert_array_equal(short[0, :, 0], training_windows(left[:30], W)[0])
    np.testing.assert_array_equal(short[0, :, 1], training_windows(right[:30], W)[0])


@pytest.mark.parametrize("seconds,rate,clip_seconds,expected", [
    (1.0, 16000, 5.0, 5), (2.0, 22050, 5.0, 3), (10.0, 16000, 5.0, 1), (30.0, 4000, 61.0, 2)])
def test_windows_of_any_length(seconds, rate, clip_seconds, expected):
    window_samples = int(seconds * rate)
    audio = np.zeros(int(clip_seconds * rate), dtype=np.float32)
    assert training_windows(audio, window_samples).shape == (expected, window_samples)


def test_aggregation_errors():
    scores = np.full((2, 3), 0.5)
    with pytest.raises(ValueError, match="clip 1 has no windows"):
        aggregate_clip_scores(scores, np.array([0, 2]))
    with pytest.raises(ValueError, match="must lie in 0..1"):
        aggregate_clip_scores(scores, np.array([0, 2]), num_clips=2)
    with pytest.raises(ValueError, match="unknown aggregation 'median'"):
        aggregate_clip_scores(scores, np.array([0, 1]), "median")
