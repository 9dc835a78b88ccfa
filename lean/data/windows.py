"""Cutting clips into windows of a model's length and pooling window scores into clip scores.

Audio is [samples] (mono) or [samples, channels]; windows are [N, window_samples] or
[N, window_samples, channels], whatever the window length (1 s, 2 s, 10 s, 30 s).
"""

from __future__ import annotations

import numpy as np

AGGREGATIONS = ("mean", "max", "mean_logits", "log_sum")
# Probabilities are clipped to [eps, 1 - eps] before the logit so a saturated 0 or 1 stays finite.
LOGIT_EPSILON = 1e-7


def repeat_to_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Tiles a clip shorter than `length` samples along time until it fills it (the paper
    repeats short clips); every channel is tiled alike."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.shape[0] == 0:
        raise ValueError("cannot window an empty clip")
    if audio.shape[0] >= length:
        return audio
    repeats = -(-length // audio.shape[0])  # ceil division
    return np.tile(audio, (repeats,) + (1,) * (audio.ndim - 1))[:length]


def training_window_starts(num_samples: int, window_samples: int) -> np.ndarray:
    """Start sample of each training window (see training_windows); [0] for a short clip."""
    full, remainder = divmod(max(num_samples, window_samples), window_samples)
    starts = np.arange(full, dtype=np.int64) * window_samples
    if remainder * 2 >= window_samples:
        starts = np.append(starts, num_samples - window_samples)
    return starts


def training_windows(audio: np.ndarray, window_samples: int) -> np.ndarray:
    """Non-overlapping windows float32 [N, window_samples(, channels)] covering the clip.

    A clip shorter than one window is repeated to fill it. A trailing remainder of at least half
    a window adds one more window, the clip's last full `window_samples` (it overlaps the window
    before it); a shorter remainder is dropped, so no window is mostly borrowed audio.
    """
    audio = repeat_to_length(audio, window_samples)
    starts = training_window_starts(audio.shape[0], window_samples)
    return _windows_at(audio, starts, window_samples)


def _windows_at(audio: np.ndarray, starts: np.ndarray, window_samples: int) -> np.ndarray:
    # all_windows has shape [samples - window_samples + 1, (channels,) window_samples].
    all_windows = np.lib.stride_tricks.sliding_window_view(audio, window_samples, axis=0)
    if audio.ndim == 2:
        all_windows = all_windows.transpose(0, 2, 1)  # -> [..., window_samples, channels]
    return np.ascontiguousarray(all_windows[starts])


def eval_window_starts(num_samples: int, window_samples: int, hop_fraction: float = 0.5) -> np.ndarray:
    """Start sample of each evaluation window; the last window ends exactly at the clip's end.

    Args:
        num_samples: clip length in samples (a clip shorter than a window gives one window at 0).
        window_samples: window length in samples.
        hop_fraction: hop as a fraction of the window (0.5 = the paper's 50 % overlap).

    Returns:
        int64 array of window starts, increasing.
    """
    if not 0.0 < hop_fraction <= 1.0:
        raise ValueError(f"hop_fraction must be in (0, 1], got {hop_fraction}")
    if num_samples <= window_samples:
        return np.zeros(1, dtype=np.int64)
    hop = max(1, int(round(window_samples * hop_fraction)))
    last_start = num_samples - window_samples
    starts = np.arange(0, last_start + 1, hop, dtype=np.int64)
    if starts[-1] != last_start:  # cover the tail with one more window ending at the clip's end
        starts = np.append(starts, last_start)
    return starts


def eval_windows(audio: np.ndarray, window_samples: int, hop_fraction: float = 0.5) -> np.ndarray:
    """Overlapping windows float32 [N, window_samples(, channels)] covering the whole clip (see
    eval_window_starts)."""
    audio = repeat_to_length(audio, window_samples)
    starts = eval_window_starts(audio.shape[0], window_samples, hop_fraction)
    return _windows_at(audio, starts, window_samples)


def aggregate_clip_scores(
    window_scores: np.ndarray,
    clip_of_window: np.ndarray,
    method: str = "mean",
    num_clips: int | None = None,
) -> np.ndarray:
    """Pools window probabilities [N, C] into clip scores [num_clips, C].

    Args:
        window_scores: probabilities of each window, [N, C].
        clip_of_window: int [N], the clip index (0..num_clips-1) each window belongs to; windows
            may come in any order.
        method: "mean" (the paper), "max", "mean_logits" (mean of logit(p), then sigmoid), or
            "log_sum" for softmax outputs: the sum of log p over the clip's windows, normalised
            back to a distribution over classes (softmax of the sum), i.e. the product of the
            window posteriors renormalised. Its argmax is the "probabilistic multiplicative
            fusion, followed by likelihood maximization" over 2 s segments of Phan et al.'s
            Att-CRNN (spatio-temporal attention pooling, LITIS Rouen); clipping p at
            LOGIT_EPSILON keeps one window's zero from vetoing a class outright.
        num_clips: number of clips; defaults to max(clip_of_window) + 1. Every clip needs at
            least one window.

    Returns:
        float64 [num_clips, C].
    """
    if method not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation '{method}': expected one of {', '.join(AGGREGATIONS)}")
    scores = np.asarray(window_scores, dtype=np.float64)
    clips = np.asarray(clip_of_window, dtype=np.int64)
    if scores.ndim != 2 or clips.shape != (scores.shape[0],):
        raise ValueError(f"window_scores {scores.shape} and clip_of_window {clips.shape} disagree")
    if num_clips is None:
        num_clips = int(clips.max()) + 1 if clips.size else 0
    if clips.size and (clips.min() < 0 or clips.max() >= num_clips):
        raise ValueError(f"clip_of_window must lie in 0..{num_clips - 1}")
    counts = np.bincount(clips, minlength=num_clips)
    if (counts == 0).any():
        raise ValueError(f"clip {int(np.argmin(counts))} has no windows")
    if num_clips == 0:
        return np.zeros((0, scores.shape[1]))
    order = np.argsort(clips, kind="stable")
    sorted_scores = scores[order]
    group_starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if method == "max":
        return np.maximum.reduceat(sorted_scores, group_starts, axis=0)
    if method == "mean":
        return np.add.reduceat(sorted_scores, group_starts, axis=0) / counts[:, None]
    if method == "log_sum":
        log_sum = np.add.reduceat(np.log(np.clip(sorted_scores, LOGIT_EPSILON, 1.0)),
                                  group_starts, axis=0)
        # log_sum has shape [num_clips, C]; shifting by the row maximum keeps exp() finite.
        shifted = np.exp(log_sum - log_sum.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    clipped = np.clip(sorted_scores, LOGIT_EPSILON, 1.0 - LOGIT_EPSILON)
    logits = np.log(clipped) - np.log1p(-clipped)
    mean_logits = np.add.reduceat(logits, group_starts, axis=0) / counts[:, None]
    return 1.0 / (1.0 + np.exp(-mean_logits))


__all__ = [
    "AGGREGATIONS",
    "repeat_to_length",
    "training_window_starts",
    "training_windows",
    "eval_window_starts",
    "eval_windows",
    "aggregate_clip_scores",
]
