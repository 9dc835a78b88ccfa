"""MediaPipe Tasks AudioClassifier runs the int8 export, scoring exactly as the LiteRT interpreter."""

from __future__ import annotations

import numpy as np
import pytest

import test_export_support as support
from mediapipe_support import (
    TOLERANCE,
    assert_mediapipe_matches_litert,
    classify_clip,
    litert_scores,
    options,
    padded_windows,
    score_rows,
)

WINDOW = 16000


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    return support.int8_export(tmp_path_factory)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> np.ndarray:
    """A 3.5 s demo clip: three full windows and a half one that MediaPipe zero-pads."""
    from lean.data.audio import load_audio
    from lean.data import load_dataset

    dataset = load_dataset(support.demo_data(tmp_path_factory))
    audio = np.concatenate([load_audio(c.path) for c in dataset.clips("val")[:3]])
    return audio[: 3 * WINDOW + WINDOW // 2].astype(np.float32)


@pytest.mark.slow
def test_clips_mode_matches_litert(int8_export, clip):
    from lean_export.metadata import read_metadata

    path, _ = int8_export
    labels = read_metadata(path)["labels"]
    # Windows without overlap (hop = the model's input length); the last one zero-padded.
    assert [r.timestamp_ms for r in classify_clip(path, clip, 16000)] == [0, 1000, 2000, 3000]
    expected = assert_mediapipe_matches_litert(path, clip, 16000, WINDOW, labels)
    # Different windows get different scores: the comparison is not between constants.
    assert np.ptp(expected, axis=0).max() > 0.01


@pytest.mark.slow
def test_stream_mode_matches_litert(int8_export, clip):
    from mediapipe.tasks.python.audio import audio_classifier
    from mediapipe.tasks.python.audio.core import audio_task_running_mode
    from mediapipe.tasks.python.components.containers.audio_data import AudioData

    from lean_export.metadata import read_metadata

    path, _ = int8_export
    labels = read_metadata(path)["labels"]
    received = []
    stream = options(path, running_mode=audio_task_running_mode.AudioTaskRunningMode.AUDIO_STREAM,
                     result_callback=lambda result, timestamp_ms: received.append((timestamp_ms,
                                                                                   result)))
    block = 4000  # 250 ms blocks, as a microphone would deliver them
    with audio_classifier.AudioClassifier.create_from_options(stream) as classifier:
        for start in range(0, len(clip) - block + 1, block):
            classifier.classify_async(AudioData.create_from_array(clip[start:start + block], 16000),
                                      start * 1000 // 16000)
    # One result per full window as the stream fills it; closing the classifier flushes the
    # trailing half window, zero-padded (stamped with the maximum timestamp).
    expected = litert_scores(path, padded_windows(clip, WINDOW))
    assert [t for t, _ in received][:3] == [0, 1000, 2000] and len(received) == 4
    assert np.abs(score_rows([r for _, r in received], labels) - expected).max() <= TOLERANCE
