"""Distillation's teacher side: logits of the training windows, computed once and cached."""

import os

import numpy as np
import pytest


def _teacher(tmp_path, task="single_label"):
    import keras

    from lean.run import save_keras_atomic

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,), name="waveform")
    logits = keras.layers.Dense(3, name="logits")(keras.layers.Dense(5, name="hidden")(inputs))
    activation = "softmax" if task == "single_label" else "sigmoid"
    model = keras.Model(inputs, keras.layers.Activation(activation, name="probabilities")(logits))
    run_dir = tmp_path / "teacher"
    save_keras_atomic(model, run_dir / "best.keras")
    return model, run_dir


@pytest.mark.parametrize("task", ["single_label", "multilabel"])
def test_teacher_logits_are_the_logits_layer(tmp_path, task):
    import keras

    from lean.training.distillation import logits_from_probabilities, logits_model, teacher_logits

    model, _ = _teacher(tmp_path, task)
    windows = np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32)
    logits_layer = keras.Model(model.input, model.get_layer("logits").output)
    expected = logits_layer.predict(windows, verbose=0)
    logits = teacher_logits(model, task, [windows[:4], windows[4:]], 10, progress=False)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    assert logits_model(model) is not None
    # Without a logits layer, logits recovered from the probabilities give them back.
    probabilities = model.predict(windows, verbose=0)
    recovered = logits_from_probabilities(probabilities, task)
    if task == "single_label":
        again = np.exp(recovered) / np.exp(recovered).sum(axis=1, keepdims=True)
    else:
        again = 1 / (1 + np.exp(-recovered.astype(np.float64)))
    np.testing.assert_allclose(again, probabilities, rtol=1e-5)


def test_cache_is_computed_once_and_renewed_for_another_teacher_or_windows(tmp_path):
    from lean.run import TEACHER_LOGITS_FILE
    from lean.training.distillation import cached_teacher_logits, windows_key

    _, teacher_dir = _teacher(tmp_path)
    run_dir = tmp_path / "student"
    run_dir.mkdir()
    calls = []

    def compute(value=1.0):
        calls.append(value)
        return np.full((6, 3), value, np.float32)

    key = windows_key(f"clip{index // 2}:{index % 2}" for index in range(6))
    first = cached_teacher_logits(run_dir, teacher_dir, key, 6, compute)
    second = cached_teacher_logits(run_dir, teacher_dir, key, 6, lambda: compute(2.0))
    assert calls == [1.0] and np.array_equal(first, second)
    assert (run_dir / TEACHER_LOGITS_FILE).is_file()
    # Other windows, or a retrained teacher file: computed again.
    cached_teacher_logits(run_dir, teacher_dir, windows_key(["other"]), 6, lambda: compute(3.0))
    best = teacher_dir / "best.keras"
    os.utime(best, ns=(best.stat().st_atime_ns, best.stat().st_mtime_ns + 10**9))
    renewed = cached_teacher_logits(run_dir, teacher_dir, windows_key(["other"]), 6,
                                    lambda: compute(4.0))
    assert calls == [1.0, 3.0, 4.0] and float(renewed[0, 0]) == 4.0
