"""SVM back-end: a linear SVM with Platt scaling folded into a Keras head equals scikit-learn."""

import numpy as np
import pytest

from lean.errors import LeanError


def _network(num_inputs, num_classes, task):
    """A tiny family-style network: hidden features, then the `logits` + `probabilities` head."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((num_inputs,), name="waveform")
    features = keras.layers.Dense(12, activation="relu", name="hidden")(inputs)
    logits = keras.layers.Dense(num_classes, name="logits")(features)
    activation = "softmax" if task == "single_label" else "sigmoid"
    return keras.Model(inputs, keras.layers.Activation(activation, name="probabilities")(logits))


def _blobs(num_classes, task, per_class=30, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, size=(num_classes, 6))
    classes = np.repeat(np.arange(num_classes), per_class)
    inputs = (centres[classes] + rng.normal(0, 1.0, size=(len(classes), 6))).astype(np.float32)
    targets = np.eye(num_classes, dtype=np.float32)[classes]
    if task == "multilabel":
        extra = rng.integers(num_classes, size=len(classes))
        targets[np.arange(len(classes)), extra] = 1.0
        inputs += centres[extra].astype(np.float32) * 0.5
    return inputs, targets


@pytest.mark.parametrize("num_classes,task", [(4, "single_label"), (2, "single_label"),
                                              (3, "multilabel")])
def test_folded_linear_svm_equals_scikit_learn(num_classes, task):
    import keras

    from lean.training.svm import (DECISION_LAYER, decision_function, fit_svm, fold_linear_svm,
                                   penultimate_model)

    model = _network(6, num_classes, task)
    inputs, targets = _blobs(num_classes, task)
    features = penultimate_model(model).predict(inputs, verbose=0)
    assert features.shape == (len(inputs), 12)
    pipeline = fit_svm(features, targets, task, kernel="linear", C=0.1, seed=0)
    folded = fold_linear_svm(model, pipeline)
    probabilities = folded.predict(inputs, verbose=0)
    expected = pipeline.predict_proba(features.astype(np.float64))
    assert probabilities.shape == (len(inputs), num_classes)
    np.testing.assert_allclose(probabilities, expected, atol=2e-6)
    decision = keras.Model(folded.inputs, folded.get_layer(DECISION_LAYER).output)
    raw = decision_function(pipeline, features)
    np.testing.assert_allclose(decision.predict(inputs, verbose=0), raw,
                               atol=1e-5 * max(1.0, np.abs(raw).max()))
    if task == "single_label":
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    # The SVM learnt the blobs (it is not a constant head).
    accuracy = np.mean(np.argmax(probabilities, 1) == np.argmax(targets, 1))
    assert accuracy > 1.5 / num_classes


def test_folded_model_round_trips_through_a_keras_file(tmp_path):
    import keras

    from lean.training.svm import fit_svm, fold_linear_svm, penultimate_model

    model = _network(6, 3, "single_label")
    inputs, targets = _blobs(3, "single_label")
    features = penultimate_model(model).predict(inputs, verbose=0)
    folded = fold_linear_svm(model, fit_svm(features, targets, "single_label"))
    folded.save(tmp_path / "svm.keras")
    loaded = keras.saving.load_model(tmp_path / "svm.keras")
    np.testing.assert_allclose(loaded.predict(inputs, verbose=0),
                               folded.predict(inputs, verbose=0), rtol=1e-6)


def test_rbf_svm_has_probabilities_but_does_not_fold():
    from lean.training.svm import fit_svm, linear_head

    inputs, targets = _blobs(3, "single_label")
    pipeline = fit_svm(inputs, targets, "single_label", kernel="rbf", C=1.0)
    probabilities = pipeline.predict_proba(inputs)
    assert probabilities.shape == (90, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    with pytest.raises(LeanError, match="only a linear SVM folds into a Keras head"):
        linear_head(pipeline)


def test_unlearnable_classes_are_named():
    from lean.training.svm import fit_svm

    inputs, targets = _blobs(3, "single_label", per_class=4)
    with pytest.raises(LeanError, match=r"^class cow has no training windows"):
        fit_svm(inputs[:8], targets[:8], "single_label", labels=["dog", "cat", "cow"])
    with pytest.raises(LeanError, match=r"^class cow has only 1 training window"):
        fit_svm(inputs[:9], targets[:9], "single_label", labels=["dog", "cat", "cow"])
    multi = np.zeros((12, 2), np.float32)
    multi[:6, 0] = 1
    with pytest.raises(LeanError, match=r"^class b is in no training window"):
        fit_svm(inputs, multi, "multilabel", labels=["a", "b"])
    with pytest.raises(LeanError, match=r"^--kernel poly: accepted: linear \| rbf$"):
        fit_svm(inputs, targets, "single_label", kernel="poly")
