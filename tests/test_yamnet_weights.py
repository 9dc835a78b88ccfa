"""Loading YAMNet weights from a file in the official yamnet.h5 layout (Keras 2 save_weights)."""

import logging

import h5py
import numpy as np
import pytest
from scipy.special import expit

from lean.config import ModelConfig
from lean.errors import LeanError
from lean.models import registry
from lean.models.yamnet import build_audioset_classifier, build_yamnet_trunk, load_yamnet_weights

# YAMNet's layer table, written out independently of lean.models.yamnet: (stride, filters).
TABLE = [(2, 32), (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
         (1, 512), (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024)]


def official_layers(rng, num_classes=521):
    """[(layer name, [(weight name, array)])] in Keras 2 model.layers order, as in yamnet.h5."""
    layers = [("input_1", []), ("tf_op_layer_reshape", [])]

    def bn(name, channels):
        return (name, [(f"{name}/beta:0", rng.standard_normal(channels)),
                       (f"{name}/moving_mean:0", rng.standard_normal(channels)),
                       (f"{name}/moving_variance:0", rng.uniform(0.5, 2.0, channels))])

    channels = 1
    for index, (_, filters) in enumerate(TABLE, start=1):
        name = f"layer{index}"
        if index == 1:
            layers.append((f"{name}/conv", [(f"{name}/conv/kernel:0",
                                             rng.standard_normal((3, 3, channels, filters)))]))
            layers.append(bn(f"{name}/conv/bn", filters))
            layers.append((f"{name}/relu", []))
        else:
            layers.append((f"{name}/depthwise_conv", [(f"{name}/depthwise_conv/depthwise_kernel:0",
                                                       rng.standard_normal((3, 3, channels, 1)))]))
            layers.append(bn(f"{name}/depthwise_conv/bn", channels))
            layers.append((f"{name}/depthwise_conv/relu", []))
            layers.append((f"{name}/pointwise_conv", [(f"{name}/pointwise_conv/kernel:0",
                                                       rng.standard_normal((1, 1, channels, filters)))]))
            layers.append(bn(f"{name}/pointwise_conv/bn", filters))
            layers.append((f"{name}/pointwise_conv/relu", []))
        channels = filters
    layers.append(("global_average_pooling2d", []))
    layers.append(("logits", [("logits/kernel:0", rng.standard_normal((1024, num_classes))),
                              ("logits/bias:0", rng.standard_normal(num_classes))]))
    layers.append(("activation", []))
    return [(name, [(w, a.astype(np.float32)) for w, a in weights]) for name, weights in layers]


def write_keras2_h5(path, layers):
    """The layout Keras 2 `save_weights` writes: root attr layer_names, per-layer weight_names."""
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [name.encode() for name, _ in layers]
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.3.0"
        for name, weights in layers:
            group = handle.create_group(name) if name not in handle else handle[name]
            group.attrs["weight_names"] = [w.encode() for w, _ in weights]
            for weight_name, array in weights:
                group.create_dataset(weight_name, data=array)


def file_tensors(layers):
    return [array for _, weights in layers for _, array in weights]


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    layers = official_layers(np.random.default_rng(11))
    path = tmp_path_factory.mktemp("yamnet") / "yamnet.h5"
    write_keras2_h5(path, layers)
    return path, layers


def test_classifier_round_trip_maps_every_tensor(official):
    path, layers = official
    classifier = build_audioset_classifier(build_yamnet_trunk())
    load_yamnet_weights(classifier, path)
    loaded = [v.numpy() for v in classifier.weights]
    expected = file_tensors(layers)
    # layer1: conv + 3 BatchNorm tensors; layers 2-14: two such pairs; then kernel and bias.
    assert len(loaded) == len(expected) == 4 + 13 * 8 + 2
    for actual, want in zip(loaded, expected):
        np.testing.assert_array_equal(actual, want)


def test_family_model_loads_trunk_from_config(official):
    path, layers = official
    params = registry.parse_param_overrides("lean", [f"yamnet_weights={path}"])
    model = registry.build_model(ModelConfig(name="lean", num_classes=5, params=params))
    trunk = model.get_layer("yamnet_trunk")
    expected = file_tensors(layers)[:-2]  # the file's AudioSet classifier is not part of a trunk
    assert len(trunk.weights) == len(expected)
    for variable, want in zip(trunk.weights, expected):
        np.testing.assert_array_equal(variable.numpy(), want)
    assert not trunk.trainable


def test_loaded_yamnet_scores_match_numpy_head(official):
    """End to end: the loaded embedding through the file's logistic head is what the classifier
    outputs, so the head weights are not transposed or swapped."""
    path, layers = official
    trunk = build_yamnet_trunk()
    classifier = build_audioset_classifier(trunk)
    load_yamnet_weights(classifier, path)
    patch = np.random.default_rng(0).standard_normal((2, 96, 64)).astype(np.float32)
    embedding = trunk(patch).numpy()
    kernel, bias = layers[-2][1][0][1], layers[-2][1][1][1]
    expected = expit(embedding @ kernel + bias)
    np.testing.assert_allclose(classifier(patch).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_misshaped_tensor_is_named_and_nothing_is_assigned(tmp_path):
    layers = official_layers(np.random.default_rng(1))
    index = next(i for i, (n, _) in enumerate(layers) if n == "layer7/pointwise_conv")
    layers[index] = (layers[index][0], [(layers[index][1][0][0], np.zeros((1, 1, 256, 500), np.float32))])
    path = tmp_path / "bad.h5"
    write_keras2_h5(path, layers)
    trunk = build_yamnet_trunk()
    before = [v.numpy().copy() for v in trunk.weights]
    with pytest.raises(LeanError, match=r"layer7/pointwise_conv/kernel:0.*\(1, 1, 256, 500\).*\(1, 1, 256, 512\)"):
        load_yamnet_weights(trunk, path)
    for variable, value in zip(trunk.weights, before):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_missing_layer_is_reported(tmp_path):
    layers = [l for l in official_layers(np.random.default_rng(2)) if l[0] != "layer14/pointwise_conv/bn"]
    path = tmp_path / "short.h5"
    write_keras2_h5(path, layers)
    with pytest.raises(LeanError, match="layers with weights in the file"):
        load_yamnet_weights(build_yamnet_trunk(), path)


def test_renamed_layer_is_reported(tmp_path):
    layers = official_layers(np.random.default_rng(3))
    layers = [("layer3/pointwise" if n == "layer3/pointwise_conv" else n, w) for n, w in layers]
    path = tmp_path / "renamed.h5"
    write_keras2_h5(path, layers)
    with pytest.raises(LeanError, match="'layer3/pointwise' where 'layer3/pointwise_conv' was expected"):
        load_yamnet_weights(build_yamnet_trunk(), path)


def test_not_a_weights_file(tmp_path):
    path = tmp_path / "yamnet.h5"
    path.write_bytes(b"not hdf5")
    with pytest.raises(LeanError, match="not a readable HDF5"):
        load_yamnet_weights(build_yamnet_trunk(), path)
    with pytest.raises(LeanError, match="not found"):
        load_yamnet_weights(build_yamnet_trunk(), tmp_path / "missing.h5")


def test_random_init_warns_once(caplog, monkeypatch):
    import lean.models.yamnet as yamnet

    monkeypatch.setattr(yamnet, "_warned_random_init", False)
    with caplog.at_level(logging.WARNING, logger="lean.models.yamnet"):
        registry.build_model(ModelConfig(name="yamnet", num_classes=3))
        registry.build_model(ModelConfig(name="yamnet", num_classes=3))
    warnings = [r for r in caplog.records if "random weights" in r.getMessage()]
    assert len(warnings) == 1


def test_saved_model_directory_with_official_variable_names(tmp_path):
    """A TF Hub-style SavedModel whose variables carry YAMNet's Keras 2 names, saved in a
    shuffled order: loading goes by name, so the order of `variables` does not matter."""
    import tensorflow as tf

    layers = official_layers(np.random.default_rng(5))
    module = tf.Module()
    named = [(w, a) for _, weights in layers for w, a in weights]
    order = np.random.default_rng(0).permutation(len(named))
    module.tensors = [tf.Variable(named[i][1], name=named[i][0].split(":")[0]) for i in order]
    tf.saved_model.save(module, str(tmp_path / "yamnet_savedmodel"))
    classifier = build_audioset_classifier(build_yamnet_trunk())
    load_yamnet_weights(classifier, tmp_path / "yamnet_savedmodel")
    for variable, want in zip(classifier.weights, file_tensors(layers)):
        np.testing.assert_array_equal(variable.numpy(), want)


def test_random_trunk_embedding_neither_vanishes_nor_explodes():
    """Without official weights the frozen trunk must still pass a usable signal to the head."""
    from lean.frontends import YamnetLogMel
    from lean.models.yamnet import build_yamnet_trunk

    rng = np.random.default_rng(3)
    t = np.arange(16000) / 16000.0
    waveforms = np.stack([
        0.3 * np.sin(2 * np.pi * 440.0 * t),
        0.1 * rng.standard_normal(16000),
        0.3 * np.sign(np.sin(2 * np.pi * 3.0 * t)) * rng.standard_normal(16000),
        0.2 * np.sin(2 * np.pi * (200.0 + 3000.0 * t) * t),
    ]).astype(np.float32)
    log_mel = YamnetLogMel(ModelConfig().params.frontend)(waveforms)
    embedding = np.asarray(build_yamnet_trunk()(log_mel))
    # Keras's default initialisers shrank this to ~1e-17 through the 14 layers.
    assert 1e-2 < np.abs(embedding).mean() < 1e2
    assert embedding.std(axis=0).mean() > 1e-2 * np.abs(embedding).mean()
