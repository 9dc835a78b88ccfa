"""Att-CRNN and its CNN baseline (Phan et al. 2019): shapes, parameter counts, the attention
pooling against NumPy, the export build's parity and the .keras round trip."""

import keras
import numpy as np
import pytest

from lean.config import InputSpec, ModelConfig
from lean.errors import LeanError
from lean.models import registry
from lean.models.att_crnn import spectrogram_config
from lean.models.attention import AdditiveAttentionScore, SpatioTemporalPooling

SEGMENT_SAMPLES = 44100  # 2 s at 22.05 kHz

# Every tensor through the Att-CRNN for one 2 s segment, 19 classes (batch axis left out).
ATT_CRNN_SHAPES = {
    "waveform": (44100,), "spectrogram": (80, 64, 2),
    "conv1": (80, 64, 64), "conv1_bn": (80, 64, 64), "conv1_pool": (80, 16, 64),
    "conv2": (80, 16, 128), "conv2_pool": (80, 4, 128),
    "conv3": (80, 4, 256), "conv3_pool": (80, 1, 256),
    "sequence": (80, 256), "bigru1": (80, 256), "bigru2": (80, 256), "projection": (80, 256),
    "temporal_attention": (80,), "spatial_rows": (256, 80), "spatial_attention": (256,),
    "attention_pooling": (256,), "logits": (19,), "probabilities": (19,),
}

# The parameter count by part, derived from the layer sizes (reset_after GRUs, 19 classes).
ATT_CRNN_PARTS = {
    # (5*5*2 + 1) * 64 + (3*3*64 + 1) * 128 + (2*2*128 + 1) * 256
    "conv": 3_264 + 73_856 + 131_328,
    # gamma, beta, moving mean and variance of 64 + 128 + 256 channels
    "batch_norm": 4 * (64 + 128 + 256),
    # per layer and direction: 3 gates x 128 x (256 inputs + 128 recurrent) + 2 x 3 x 128 biases
    "bigru": 2 * 2 * (3 * 128 * (256 + 128) + 2 * 3 * 128),
    "projection": 256 * 256 + 256,
    "temporal_attention": 256 * 64 + 64 + 64,
    "spatial_attention": 80 * 64 + 64 + 64,
    "classifier": 256 * 19 + 19,
}


def _model(name="att_crnn", num_classes=19, **config):
    return registry.build_model(ModelConfig(name=name, num_classes=num_classes, **config))


def _part(layer_name: str) -> str:
    if layer_name.startswith("conv"):
        return "batch_norm" if layer_name.endswith("_bn") else "conv"
    if layer_name.startswith("bigru"):
        return "bigru"
    return "classifier" if layer_name == "logits" else layer_name


def _randomize(model, seed=1):
    """Non-zero weights everywhere (BN statistics too), so a misplaced copy would show."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if "variance" in w.path
                               else 0.1 * rng.standard_normal(w.shape) for w in layer.weights])


@pytest.fixture(scope="module")
def att_crnn():
    model = _model()
    _randomize(model)
    return model


@pytest.fixture(scope="module")
def waveforms():
    """Two 2 s segments: noise under a tone that starts half way."""
    rng = np.random.default_rng(0)
    t = np.arange(SEGMENT_SAMPLES) / 22050
    tone = np.where(t > 1.0, 0.3 * np.sin(2 * np.pi * 440 * t), 0.0)
    return (0.05 * rng.standard_normal((2, SEGMENT_SAMPLES)) + tone).astype(np.float32)


def test_registry_entries():
    for name in ("att_crnn", "crnn_baseline"):
        entry = registry.entry(name)
        assert entry.task == "single_label"
        assert entry.input == InputSpec(sample_rate=22050, channels=1, window_seconds=2.0)
    assert registry.entry("att_crnn").params().gru_units == 128
    params = registry.parse_param_overrides(
        "att_crnn", ["features=log_gammatone", "aux_channel=false", "background.alignment=causal",
                     "high_hz=8000"])
    assert (params.features, params.aux_channel, params.background.alignment, params.high_hz) \
        == ("log_gammatone", False, "causal", 8000.0)
    with pytest.raises(LeanError, match="gru_units"):
        registry.parse_param_overrides("crnn_baseline", ["gru_units=64"])


def test_the_framing_gives_exactly_80_frames():
    spectrogram = spectrogram_config(registry.entry("att_crnn").params())
    framing = spectrogram.framing(22050)
    assert (framing.window, framing.hop, framing.fft_length) == (1102, 551, 2048)
    # Centred frames without the last: N // hop = 80 (valid framing gives 79, centred 81).
    assert spectrogram.padding == "center_drop_last"
    assert spectrogram.frames(SEGMENT_SAMPLES, 22050) == 80


def test_bad_configs_are_one_line_errors():
    with pytest.raises(LeanError, match="bands=32"):
        _model(params={"bands": 32})
    with pytest.raises(LeanError, match="mono audio"):
        _model(input=InputSpec(22050, 2, 2.0))


def test_every_tensor_shape_of_a_2s_segment(att_crnn):
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in att_crnn.layers}
    for name, shape in ATT_CRNN_SHAPES.items():
        assert shapes[name] == shape, name


def test_parameter_count_exactly_and_by_part(att_crnn):
    parts = {}
    for layer in att_crnn.layers:
        if layer.count_params():
            parts[_part(layer.name)] = parts.get(_part(layer.name), 0) + layer.count_params()
    assert parts == ATT_CRNN_PARTS
    assert att_crnn.count_params() == sum(ATT_CRNN_PARTS.values()) == 895_571
    # BatchNorm's moving mean and variance do not train.
    trainable = sum(int(np.prod(w.shape)) for w in att_crnn.trainable_weights)
    assert trainable == 895_571 - 2 * (64 + 128 + 256)


def test_parameter_count_of_the_variants():
    def count(name="att_crnn", **config):
        return _model(name, **config).count_params()

    # The CNN baseline: the same conv block and batch norm, then the classifier on 256 maxima.
    baseline = count("crnn_baseline")
    assert baseline == ATT_CRNN_PARTS["conv"] + ATT_CRNN_PARTS["batch_norm"] + 256 * 19 + 19
    assert baseline == 215_123
    # A projection after each BiGRU adds one 256 x 256 + 256 Dense: 0.96 M.
    assert count(params={"projection": "each"}) == 895_571 + 65_792
    # One input channel (no background subtraction): conv1 has 5 x 5 x 64 fewer weights.
    assert count(params={"aux_channel": False}) == 895_571 - 5 * 5 * 64
    assert count(params={"features": "log_gammatone"}) == 895_571
    # Multi-label: the same layers, a sigmoid instead of the softmax.
    multilabel = _model(task="multilabel", num_classes=5)
    assert multilabel.count_params() == 895_571 - 14 * 257
    assert multilabel.get_layer("probabilities").activation.__name__ == "sigmoid"


def test_additive_scores_equal_numpy():
    rng = np.random.default_rng(2)
    inputs = rng.standard_normal((2, 5, 3)).astype(np.float32)
    layer = AdditiveAttentionScore(4)
    layer(inputs)
    kernel, bias, context = [rng.standard_normal(w.shape) for w in layer.weights]
    layer.set_weights([kernel, bias, context])
    expected = np.tanh(inputs @ kernel + bias) @ context[:, 0]
    np.testing.assert_allclose(layer(inputs).numpy(), expected, rtol=1e-5, atol=1e-6)


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_spatio_temporal_pooling_equals_numpy():
    rng = np.random.default_rng(3)
    values = rng.standard_normal((2, 5, 3)).astype(np.float32)  # Z as [B, T, S]
    temporal_scores = rng.standard_normal((2, 5)).astype(np.float32)
    spatial_scores = rng.standard_normal((2, 3)).astype(np.float32)
    pooled, mask = SpatioTemporalPooling().attention([values, temporal_scores, spatial_scores])
    for b in range(2):
        a_tem, a_spa = _softmax(temporal_scores[b]), _softmax(spatial_scores[b])
        # A_st = a_spa_s a_tem_t; x_s = sum_t tanh(A_st Z_st), loop by loop.
        expected_mask = np.array([[a_spa[s] * a_tem[t] for t in range(5)] for s in range(3)])
        expected = [sum(np.tanh(expected_mask[s, t] * values[b, t, s]) for t in range(5))
                    for s in range(3)]
        np.testing.assert_allclose(mask.numpy()[b].T, expected_mask, rtol=1e-5)
        np.testing.assert_allclose(pooled.numpy()[b], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(mask.numpy().sum(axis=(1, 2)), [1.0, 1.0], rtol=1e-6)
    # Each row of the mask sums to that time step's temporal weight.
    np.testing.assert_allclose(mask.numpy()[0].sum(axis=1), _softmax(temporal_scores[0]),
                               rtol=1e-5)


def test_the_network_pools_its_own_Z_like_numpy(att_crnn, waveforms):
    """Inside the full network: x from Z and the two scorers' weights, computed in NumPy."""
    probe = keras.Model(att_crnn.input, [att_crnn.get_layer("projection").output,
                                          att_crnn.get_layer("attention_pooling").output])
    z, pooled = (t.numpy() for t in probe(waveforms))
    w_t, b_t, u_t = att_crnn.get_layer("temporal_attention").get_weights()
    w_s, b_s, u_s = att_crnn.get_layer("spatial_attention").get_weights()
    for b in range(2):
        a_tem = _softmax(np.tanh(z[b] @ w_t + b_t) @ u_t[:, 0])  # over the 80 columns z_t
        a_spa = _softmax(np.tanh(z[b].T @ w_s + b_s) @ u_s[:, 0])  # over the 256 rows
        expected = np.tanh(np.outer(a_spa, a_tem) * z[b].T).sum(axis=1)
        np.testing.assert_allclose(pooled[b], expected, rtol=1e-4, atol=1e-7)
    # The pooled feature is tiny: A averages 1 / (256 * 80).
    assert np.abs(pooled).max() < 0.05


@pytest.mark.parametrize("name", ["att_crnn", "crnn_baseline"])
def test_export_build_equals_the_training_build(name, waveforms):
    config = ModelConfig(name=name, num_classes=7)
    model = registry.build_model(config)
    _randomize(model, seed=4)
    exported = registry.export_ready_copy(model, config)
    assert tuple(exported.input.shape) == (1, SEGMENT_SAMPLES)
    if name == "att_crnn":
        assert type(exported.get_layer("bigru1")).__name__ == "UnrolledBiGRU"
    expected = model(waveforms).numpy()
    assert expected.shape == (2, 7)
    np.testing.assert_allclose(expected.sum(axis=1), 1.0, rtol=1e-5)
    for row in range(2):
        np.testing.assert_allclose(exported(waveforms[row : row + 1]).numpy()[0], expected[row],
                                   atol=2e-6)


def test_keras_file_round_trip(tmp_path, att_crnn, waveforms):
    path = tmp_path / "att_crnn.keras"
    att_crnn.save(path)
    loaded = registry.load_model(path)
    np.testing.assert_array_equal(loaded(waveforms).numpy(), att_crnn(waveforms).numpy())
    assert isinstance(loaded.get_layer("attention_pooling"), SpatioTemporalPooling)
    assert loaded.get_layer("spectrogram").subtraction.config.alignment == "centred"


def _small_config(seconds=0.5) -> ModelConfig:
    """A small Att-CRNN for export tests: T = 20 frames (0.5 s), one BiGRU(32)."""
    return ModelConfig(name="att_crnn", num_classes=3, input=InputSpec(22050, 1, seconds),
                       params={"gru_units": 32, "gru_layers": 1, "attention_units": 8})


@pytest.mark.slow
def test_layer_probes_flag_a_fully_int8_attention_pooling(tmp_path):
    """The export report's layer probes: with the pooling float (the default) its output follows
    the float model; quantized as --int8-all does, its terms of about 1 / (64 x 20) round to 0
    under TANH's 1/128 output step and the probe flags it."""
    from lean_export.convert import QuantizationConfig, build_serving_model, convert_model
    from lean_export.verify import layer_differences, op_list, probe_layer_names

    config = _small_config()
    model = registry.build_model(config)
    _randomize(model, seed=5)
    serving = build_serving_model(registry.export_ready_copy(model, config), config.input)
    rng = np.random.default_rng(6)
    t = np.arange(config.window_samples) / 22050
    windows = (0.05 * rng.standard_normal((8, config.window_samples))
               + 0.3 * np.sin(2 * np.pi * rng.uniform(200, 4000, (8, 1)) * t)).astype(np.float32)
    default = QuantizationConfig.create_full_integer()
    int8_all = QuantizationConfig.create_full_integer(float_softmax_layers=False,
                                                      float_output_head=False)
    for name, quantization, flagged in (("default", default, False), ("all", int8_all, True)):
        model_bytes, _ = convert_model(serving, quantization, windows, progress=False)
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(model_bytes)
        ops = {op["op"] for op in op_list(model_bytes)}
        assert not any(op.startswith(("FLEX", "CUSTOM")) or op == "WHILE" for op in ops)
        names = probe_layer_names(model, model_bytes)
        assert names == ["spectrogram", "attention_pooling"]
        rows = {row["layer"]: row for row in layer_differences(model, path, windows, names)}
        assert not rows["spectrogram"]["flagged"] and rows["spectrogram"]["relative"] < 1e-4
        pooling = rows["attention_pooling"]
        assert pooling["flagged"] is flagged, pooling
        if flagged:
            assert pooling["zeroed_fraction"] > 0.9
        else:
            assert pooling["dtype"] == "float32" and pooling["zeroed_fraction"] == 0.0
            assert pooling["relative"] < 0.3


@pytest.fixture(scope="module")
def scene_run(tmp_path_factory):
    """`lean train` of a small Att-CRNN (2 s, one BiGRU(16)) on three easy classes of stereo
    44.1 kHz clips (downmixed and resampled at decoding): eval fold 2, val fold 3."""
    from lean.cli import main
    from test_family_contract import write_stereo_esc50

    root = tmp_path_factory.mktemp("att_crnn_e2e")
    data = write_stereo_esc50(root / "data")
    params = ["gru_units=16", "gru_layers=1", "attention_units=16", "batch_norm_momentum=0.9"]
    argv = ["train", "--data", str(data), "--out", str(root / "run"), "--model", "att_crnn",
            *[arg for param in params for arg in ("--param", param)], "--fold", "2",
            "--epochs", "4", "--batch-size", "8", "--lr", "3e-3", "--seed", "1",
            "--no-progress", "--cache-dir", str(root / "cache")]
    assert main(argv) == 0
    return root, data


@pytest.mark.slow
def test_training_int8_export_mediapipe_and_fusion(scene_run):
    import json

    from lean.cli import main
    from lean.data import load_dataset
    from lean.data.audio import load_audio
    from lean_export.export import export_run
    from mediapipe_support import assert_mediapipe_matches_litert

    root, data = scene_run
    run_dir, cache = root / "run", ["--cache-dir", str(root / "cache"), "--no-progress"]
    # Per recording (non-overlapping 2 s segments, log-sum) and per segment, beating chance.
    assert main(["eval", str(run_dir), "--data", str(data), "--aggregation", "log_sum",
                 "--window-hop", "1.0", "--json", str(root / "eval.json"), *cache]) == 0
    report = json.loads((root / "eval.json").read_text())
    assert report["aggregation"] == "log_sum" and report["window_hop_fraction"] == 1.0
    assert report["accuracy"] >= 0.6 and report["segments"]["accuracy"] >= 0.6, report
    assert {"macro_f1", "macro_precision"} <= set(report) and "macro_precision" in \
        report["segments"]

    # int8: builtin ops only, the frontend and the attention pooling float, the probes clean.
    output = root / "att_crnn_int8.tflite"
    export = export_run(run_dir, output, "int8", calibration_count=24, held_out_count=16,
                        max_drop=0.34, progress=False)
    assert export["passed"] and not export["warnings"]
    ops = {row["op"] for row in export["ops"]}
    assert not any(op.startswith(("FLEX", "CUSTOM")) or op == "WHILE" for op in ops)
    assert export["float_layers"][0] == "spectrogram"
    assert any("attention_pooling" in layer for layer in export["float_layers"])
    assert any(row["op"] == "FULLY_CONNECTED" and row["outputs"] == "int8"
               for row in export["ops"])  # the GRUs' matmuls
    pooling = {row["layer"]: row for row in export["layer_probes"]}["attention_pooling"]
    assert pooling["dtype"] == "float32" and not pooling["flagged"]

    # MediaPipe's AudioClassifier scores an eval clip exactly as LiteRT does.
    clip = load_dataset(data, fold=2).clips("eval")[0]
    audio = load_audio(clip.path, 22050)
    probabilities = assert_mediapipe_matches_litert(output, audio, 22050, SEGMENT_SAMPLES,
                                                    load_dataset(data, fold=2).labels)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.02)

    # Two models on the same data, posteriors multiplied: the Keras run and its int8 export.
    assert main(["eval", "--fuse", str(run_dir), str(output), "--data", str(data),
                 "--aggregation", "log_sum", "--json", str(root / "fused.json"), *cache]) == 0
    fused = json.loads((root / "fused.json").read_text())
    assert [member["model"] for member in fused["fused"]] == [str(run_dir), str(output)]
    assert fused["accuracy"] >= 0.6
