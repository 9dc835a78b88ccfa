"""MediaPipe Tasks AudioClassifier runs the int8 export, scoring exactly as the LiteRT interpreter."""

from __future__ import annotations

import numpy as np
import pytest

import test_export_support as support

WINDOW = 16000
# MediaPipe reports the model's float32 output unchanged; allow only float printing noise.
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    return support.int8_export(tmp_path_factory)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> np.ndarray:
    """A 3.5 s demo clip: three full windows and a half one that MediaPipe zero-pads."""
    from lean.data.audio import load_audio
    from lean.data.fsd50k import load_dataset

    dataset = load_dataset(support.demo_data(tmp_path_factory))
    audio = np.concatenate([load_audio(c.path) for c in dataset.clips("val")[:3]])
    return audio[: 3 * WINDOW + WINDOW // 2].astype(np.float32)


def _litert_scores(path, windows: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (waveform,), (scores,) = interpreter.get_input_details(), interpreter.get_output_details()
    rows = []
    for window in windows:
        interpreter.set_tensor(waveform["index"], window[np.newaxis].astype(np.float32))
        interpreter.invoke()
        rows.append(interpreter.get_tensor(scores["index"])[0].copy())
    return np.stack(rows)


def _score_rows(results, labels) -> np.ndarray:
    """MediaPipe results -> [windows, classes] in label order; every class must be reported."""
    rows = []
    for result in results:
        categories = result.classifications[0].categories
        assert sorted(c.index for c in categories) == list(range(len(labels)))
        assert all(c.category_name == labels[c.index] for c in categories)
        row = np.zeros(len(labels), np.float32)
        for category in categories:
            row[category.index] = category.score
        rows.append(row)
    return np.stack(rows)


def _options(path, **kwargs):
    from mediapipe.tasks.python.audio import audio_classifier
    from mediapipe.tasks.python.core.base_options import BaseOptions

    return audio_classifier.AudioClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                                   **kwargs)


@pytest.mark.slow
def test_clips_mode_matches_litert(int8_export, clip):
    from mediapipe.tasks.python.audio import audio_classifier
    from mediapipe.tasks.python.components.containers.audio_data import AudioData

    from lean_export.metadata import read_metadata

    path, _ = int8_export
    labels = read_metadata(path)["labels"]
    with audio_classifier.AudioClassifier.create_from_options(_options(path)) as classifier:
        results = classifier.classify(AudioData.create_from_array(clip, 16000))
    # Windows without overlap (hop = the model's input length); the last one zero-padded.
    padded = np.zeros(4 * WINDOW, np.float32)
    padded[: len(clip)] = clip
    expected = _litert_scores(path, padded.reshape(4, WINDOW))
    assert [r.timestamp_ms for r in results] == [0, 1000, 2000, 3000]
    mediapipe_scores = _score_rows(results, labels)
    assert np.abs(mediapipe_scores - expected).max() <= TOLERANCE
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
    options = _options(path, running_mode=audio_task_running_mode.AudioTaskRunningMode.AUDIO_STREAM,
                       result_callback=lambda result, timestamp_ms: received.append((timestamp_ms, result)))
    block = 4000  # 250 ms blocks, as a microphone would deliver them
    with audio_classifier.AudioClassifier.create_from_options(options) as classifier:
        for start in range(0, len(clip) - block + 1, block):
            classifier.classify_async(AudioData.create_from_array(clip[start:start + block], 16000),
                                      start * 1000 // 16000)
    # One result per full window as the stream fills it; closing the classifier flushes the
    # trailing half window, zero-padded (stamped with the maximum timestamp).
    padded = np.zeros(4 * WINDOW, np.float32)
    padded[: len(clip)] = clip
    expected = _litert_scores(path, padded.reshape(4, WINDOW))
    assert [t for t, _ in received][:3] == [0, 1000, 2000] and len(received) == 4
    assert np.abs(_score_rows([r for _, r in received], labels) - expected).max() <= TOLERANCE
