"""The ResNet family (paper 000): layer table, parameter counts, shapes, torchvision's padding,
registry contract, both tasks, .keras round trip and export-ready parity."""

import dataclasses
import json
import typing

import keras
import numpy as np
import pytest

from lean.config import InputSpec, ModelConfig, RunConfig, from_dict, to_dict
from lean.errors import LeanError
from lean.models import registry
from lean.models.pooling import TEMPORAL_POOLINGS
from lean.models.resnet import (RESNET_LAYER_TABLE, STAGE_STRIDES, STAGE_WIDTHS, ResNetParams,
                                layout_of, resnet_features)

# torchvision resnet18/34/50 with a 1-channel stem conv and a 2-class fc: their 1000-class
# counts (11,689,512 / 21,797,672 / 25,557,032) less 6,272 stem weights and 511,974 or
# 2,044,902 fc weights.
TORCHVISION_TRAINABLE = {"resnet18": 11_171_266, "resnet34": 21_279_426, "resnet50": 23_505_858}
BANDS = 80
# Short windows keep the forward passes cheap: 1 s is 99 fbank frames.
SHORT = InputSpec(16000, 1, 1.0)


def _config(name="resnet18", num_classes=2, input=None, **params):
    return ModelConfig(name=name, num_classes=num_classes, input=input,
                       params=ResNetParams(**params))


def _build(name="resnet18", **kwargs):
    return registry.build_model(_config(name, **kwargs))


def _features_model(name, frames, **params):
    """The body alone on fbank features [B, frames, 80] (no frontend), for structural tests."""
    features = keras.Input((frames, BANDS), name="features")
    pooled = resnet_features(features, layout_of(name), ResNetParams(**params))
    return keras.Model(features, keras.layers.Dense(2, name="logits")(pooled))


def _trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _block_names(name):
    layout = layout_of(name)
    return [f"stage{stage}_block{block}" for stage, blocks in enumerate(layout.blocks, start=1)
            for block in range(1, blocks + 1)]


def _batch_norm_channels(name) -> int:
    """Channels of every batch norm, counted from the layer table by hand."""
    layout, channels, total = layout_of(name), 64, 64  # the stem's
    for blocks, width, stride in zip(layout.blocks, STAGE_WIDTHS, STAGE_STRIDES):
        out = width * layout.expansion
        inner = 2 * width if layout.block == "basic" else 2 * width + out
        for block in range(blocks):
            # A shortcut conv + batch norm where the block changes the shape.
            total += inner + (out if block == 0 and (stride != 1 or channels != out) else 0)
            channels = out
    return total


def _randomize(model, rng):
    """Random weights everywhere (moving variances positive), so a misplaced one would show."""
    for weight in model.weights:
        values = 0.1 * rng.standard_normal(weight.shape)
        if "moving_variance" in weight.path:
            values = rng.uniform(0.5, 1.5, weight.shape)
        elif "gamma" in weight.path:
            values = 1.0 + values
        weight.assign(values.astype(np.float32))


@pytest.fixture(scope="module")
def waveforms():
    return (0.1 * np.random.default_rng(0).standard_normal((2, 16000))).astype(np.float32)


def test_registry_entries_declare_the_papers_input_and_task():
    for name in RESNET_LAYER_TABLE:
        config = ModelConfig(name=name)
        assert config.task == "single_label"
        assert config.input == InputSpec(16000, 1, 10.0)
        assert config.params == ResNetParams()
        assert config.params.frontend.bands == 80
        framing = config.params.frontend.framing(16000)
        assert (framing.window, framing.hop) == (320, 160)


@pytest.mark.parametrize("name", list(TORCHVISION_TRAINABLE))
def test_parameter_counts_equal_torchvision(name):
    model = registry.build_model(ModelConfig(name=name, num_classes=2))
    assert _trainable(model) == TORCHVISION_TRAINABLE[name]
    # Keras also counts batch norm's moving mean and variance (non-trainable).
    assert model.count_params() == TORCHVISION_TRAINABLE[name] + 2 * _batch_norm_channels(name)


@pytest.mark.parametrize("attention", ["se", "cbam", "ca"])
def test_attention_sits_in_every_block_after_the_last_batch_norm(attention):
    name = "resnet18"
    plain, model = _features_model(name, 64), _features_model(name, 64, attention=attention)
    added = 0
    for block in _block_names(name):
        layer = model.get_layer(f"{block}_attention")
        assert layer.input._keras_history.operation.name == f"{block}_bn2"
        add_inputs = model.get_layer(f"{block}_add").input
        assert add_inputs[0]._keras_history.operation is layer
        added += layer.count_params()
    # test_conv_attention checks each module's count against its equations.
    assert model.count_params() - plain.count_params() == added


def test_bottleneck_attention_follows_the_third_batch_norm():
    model = _features_model("resnet50", 64, attention="se")
    layer = model.get_layer("stage3_block6_attention")
    assert layer.input._keras_history.operation.name == "stage3_block6_bn3"
    assert layer.input.shape[-1] == 1024


def _expected_shapes(name):
    """Output shapes [T, F, C] for a 10 s window: 999 fbank frames x 80 bands."""
    expansion = layout_of(name).expansion
    shapes = {"spectrogram": (999, 80), "stem_relu": (500, 40, 64), "stem_pool": (250, 20, 64)}
    sizes = [(250, 20), (125, 10), (63, 5), (32, 3)]
    for block in _block_names(name):
        stage = int(block[5]) - 1
        shapes[f"{block}_out"] = (*sizes[stage], STAGE_WIDTHS[stage] * expansion)
    channels = 512 * expansion
    shapes.update({"frames": (32, channels), "temporal_pooling": (channels,)})
    return shapes


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_shapes_of_every_block_and_the_pooled_feature_for_10_s(name):
    model = registry.build_model(ModelConfig(name=name, num_classes=2))
    assert tuple(model.input.shape) == (None, 160_000)
    for layer, shape in _expected_shapes(name).items():
        assert tuple(model.get_layer(layer).output.shape) == (None, *shape), layer


def test_flattened_frequency_widens_the_frame_feature():
    model = _build(frequency="flatten", pooling="max", input=InputSpec(16000, 1, 10.0))
    # d = C F' = 512 x 3.
    assert tuple(model.get_layer("frames").output.shape) == (None, 32, 1536)
    assert tuple(model.get_layer("temporal_pooling").output.shape) == (None, 1536)
    assert _trainable(model) == TORCHVISION_TRAINABLE["resnet18"] + 2 * 1024


def _numpy_conv(x, kernel, stride, pad):
    """Zero-padded cross-correlation as torchvision computes it: x [H, W, Cin], k [k, k, Cin, Cout]."""
    k = kernel.shape[0]
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    rows, cols = (x.shape[0] - k) // stride + 1, (x.shape[1] - k) // stride + 1
    out = np.zeros((rows, cols, kernel.shape[-1]))
    for i in range(k):
        for j in range(k):
            out += x[i:i + stride * rows:stride, j:j + stride * cols:stride] @ kernel[i, j]
    return out


def test_strided_convs_pad_symmetrically_like_torchvision():
    # Even sizes, where Keras "same" would pad differently.
    model = _features_model("resnet18", 32)
    image = np.random.default_rng(0).standard_normal((1, 32, BANDS)).astype(np.float32)
    taps = ["stem_conv", "stage1_block2_out", "stage2_block1_conv1", "stage2_block1_shortcut_conv"]
    outputs = dict(zip(taps, keras.Model(model.input, [model.get_layer(t).output
                                                        for t in taps])(image)))
    stem_kernel = model.get_layer("stem_conv").kernel.numpy()
    np.testing.assert_allclose(outputs["stem_conv"][0],
                               _numpy_conv(image[0, :, :, None], stem_kernel, 2, 3),
                               rtol=1e-4, atol=1e-4)
    stage_input = outputs["stage1_block2_out"].numpy()[0]
    for layer, pad in (("stage2_block1_conv1", 1), ("stage2_block1_shortcut_conv", 0)):
        kernel = model.get_layer(layer).kernel.numpy()
        np.testing.assert_allclose(outputs[layer][0], _numpy_conv(stage_input, kernel, 2, pad),
                                   rtol=1e-4, atol=1e-4)


def test_layer_table_rows():
    assert RESNET_LAYER_TABLE["resnet18"].blocks == (2, 2, 2, 2)
    assert RESNET_LAYER_TABLE["resnet50"].block == "bottleneck"
    assert RESNET_LAYER_TABLE["resnet50"].blocks == RESNET_LAYER_TABLE["resnet34"].blocks


@pytest.mark.parametrize("task, activation", [("single_label", "softmax"),
                                              ("multilabel", "sigmoid")])
def test_both_tasks(task, activation, waveforms):
    config = dataclasses.replace(_config(num_classes=3, input=SHORT, attention="se"), task=task)
    model = registry.build_model(config)
    probabilities = model(waveforms).numpy()
    assert probabilities.shape == (2, 3) and probabilities.dtype == np.float32
    assert model.get_layer("probabilities").get_config()["activation"] == activation
    if task == "single_label":
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    else:
        assert ((probabilities > 0) & (probabilities < 1)).all()


def test_stereo_input_is_a_two_channel_image():
    model = _build(input=InputSpec(16000, 2, 1.0))
    assert tuple(model.input.shape) == (None, 16000, 2)
    assert tuple(model.get_layer("stem_conv").kernel.shape) == (7, 7, 2, 64)
    assert _trainable(model) == TORCHVISION_TRAINABLE["resnet18"] + 49 * 64


@pytest.mark.parametrize("attention, pooling", [("cbam", "attentive"), ("ca", "max")])
def test_keras_round_trip_and_export_ready_parity(attention, pooling, waveforms, tmp_path):
    config = _config(num_classes=4, input=SHORT, attention=attention, pooling=pooling,
                     frequency="flatten")
    model = registry.build_model(config)
    _randomize(model, np.random.default_rng(1))
    expected = model(waveforms).numpy()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = registry.load_model(path)
    np.testing.assert_array_equal(loaded(waveforms).numpy(), expected)
    exported = registry.export_ready_copy(model, config)
    assert tuple(exported.input.shape) == (1, 16000)
    for row in range(2):
        np.testing.assert_allclose(exported(waveforms[row:row + 1]).numpy()[0], expected[row],
                                   rtol=1e-5, atol=1e-6)


def test_params_from_the_command_line_and_config_json():
    params = registry.parse_param_overrides("resnet18", ["attention=ca", "pooling=max",
                                                         "frequency=flatten",
                                                         "frontend.bands=64"])
    assert (params.attention, params.pooling, params.frequency) == ("ca", "max", "flatten")
    assert params.frontend.bands == 64 and params.frontend.window == "povey"
    run = RunConfig(model=ModelConfig(name="resnet50", params=params))
    again = from_dict(RunConfig, json.loads(json.dumps(to_dict(run))))
    assert again == run and isinstance(again.model.params, ResNetParams)
    with pytest.raises(LeanError, match="attention=eca: expected one of none, se, cbam, ca"):
        registry.parse_param_overrides("resnet18", ["attention=eca"])
    with pytest.raises(LeanError, match="cbam_kernel_size=4 must be odd"):
        ResNetParams(cbam_kernel_size=4)
    with pytest.raises(LeanError, match="pooling='median'; expected one of average, max, "
                                        "attentive"):
        from_dict(ResNetParams, {"pooling": "median"})
    # The params' choices are the pooling module's.
    assert typing.get_args(typing.get_type_hints(ResNetParams)["pooling"]) == TEMPORAL_POOLINGS


def test_every_conv_starts_from_its_own_random_weights():
    model = _features_model("resnet18", 32)
    kernels = [layer.kernel.numpy() for layer in model.layers
               if isinstance(layer, keras.layers.Conv2D)]
    by_shape = {}
    for kernel in kernels:
        by_shape.setdefault(kernel.shape, []).append(kernel)
    # Stage 1 has four 3x3 64 -> 64 convs; no two may be equal.
    assert len(by_shape[(3, 3, 64, 64)]) == 4
    for same_shape in by_shape.values():
        for i, first in enumerate(same_shape):
            for second in same_shape[i + 1:]:
                assert not np.allclose(first, second)
    # Kaiming normal, fan_out: sd sqrt(2 / (k k C_out)).
    assert np.std(by_shape[(3, 3, 512, 512)][0]) == pytest.approx(np.sqrt(2 / (9 * 512)), rel=0.02)
