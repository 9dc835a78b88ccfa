"""MediaPipe Tasks AudioClassifier and the LiteRT interpreter on the same audio, for the parity
tests of every exported family member. This module holds no tests."""

from __future__ import annotations

import numpy as np

# MediaPipe reports the model's float32 output unchanged; allow only float printing noise.
TOLERANCE = 1e-6


def litert_scores(path, windows: np.ndarray) -> np.ndarray:
    """Scores [N, C] of windows [N, values] (values = samples x channels, interleaved) run one
    by one through the LiteRT interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (waveform,), (scores,) = interpreter.get_input_details(), interpreter.get_output_details()
    rows = []
    for window in windows:
        interpreter.set_tensor(waveform["index"], window.reshape(1, -1).astype(np.float32))
        interpreter.invoke()
        rows.append(interpreter.get_tensor(scores["index"])[0].copy())
    return np.stack(rows)


def score_rows(results, labels) -> np.ndarray:
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


def options(path, **kwargs):
    from mediapipe.tasks.python.audio import audio_classifier
    from mediapipe.tasks.python.core.base_options import BaseOptions

    return audio_classifier.AudioClassifierOptions(
        base_options=BaseOptions(model_asset_path=str(path)), **kwargs)


def classify_clip(path, audio: np.ndarray, sample_rate: int):
    """MediaPipe's clip-mode results for `audio` ([samples] or [samples, channels])."""
    from mediapipe.tasks.python.audio import audio_classifier
    from mediapipe.tasks.python.components.containers.audio_data import AudioData

    with audio_classifier.AudioClassifier.create_from_options(options(path)) as classifier:
        return classifier.classify(AudioData.create_from_array(audio, sample_rate))


def padded_windows(audio: np.ndarray, window_samples: int) -> np.ndarray:
    """The windows MediaPipe cuts in clip mode: hop = window, the last one zero-padded; each
    window flattened frame by frame ([N, window_samples * channels])."""
    audio = np.asarray(audio, np.float32)
    count = -(-len(audio) // window_samples)
    padded = np.zeros((count * window_samples,) + audio.shape[1:], np.float32)
    padded[:len(audio)] = audio
    return padded.reshape(count, -1)


def assert_mediapipe_matches_litert(path, audio: np.ndarray, sample_rate: int, window_samples: int,
                                    labels) -> np.ndarray:
    """Clip mode: MediaPipe's scores equal LiteRT's on the same windows within TOLERANCE, and
    differ between windows (the comparison is not between constants). Returns LiteRT's."""
    results = classify_clip(path, audio, sample_rate)
    expected = litert_scores(path, padded_windows(audio, window_samples))
    assert len(results) == len(expected)
    assert np.abs(score_rows(results, labels) - expected).max() <= TOLERANCE
    return expected
