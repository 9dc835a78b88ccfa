"""The LEAN model family: paper parameter counts, contracts, save/load, export-ready parity."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from lean.config import InputSpec, ModelConfig
from lean.errors import LeanError
from lean.models import registry
from lean.models.wave_encoder import UnrolledBiLSTM

# Table III of arXiv 2305.12712, 200 classes.
PAPER_PARAMS = {
    "yamnet": 3.42e6,
    "yamnet_proj": 3.53e6,
    "joint": 4.51e6,
    "joint_affinity": 4.51e6,
    "lean": 4.58e6,
}
# Trunk parameters: 3,217,344 (BatchNorm moving statistics included, as Keras counts them).
TRUNK_PARAMS = 3_217_344


def _trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.fixture(autouse=True)
def family_only(monkeypatch):
    """Hide what other test modules registered (the export tests' tiny model) from these tests."""
    import lean.models  # noqa: F401  (registers the family)

    for name in [name for name in registry._REGISTRY if name not in PAPER_PARAMS]:
        monkeypatch.delitem(registry._REGISTRY, name)


@pytest.fixture(scope="module")
def waveforms():
    rng = np.random.default_rng(0)
    return (0.2 * rng.standard_normal((2, 16000))).astype(np.float32)


def test_registry_lists_the_family():
    assert registry.model_names() == list(PAPER_PARAMS)
    with pytest.raises(LeanError, match="unknown model 'nope'"):
        registry.build_model(ModelConfig(name="nope"))


@pytest.mark.parametrize("name", list(PAPER_PARAMS))
def test_parameter_counts_match_the_paper(name):
    model = registry.build_model(ModelConfig(name=name), load_pretrained=False)
    assert abs(model.count_params() - PAPER_PARAMS[name]) / PAPER_PARAMS[name] < 0.01
    # Frozen trunk by default: everything but YAMNet trains.
    assert _trainable(model) == model.count_params() - TRUNK_PARAMS
    tuned = registry.build_model(ModelConfig(name=name, trainable_backbone=True),
                                 load_pretrained=False)
    # Fine-tuning trains the trunk except BatchNorm's moving mean and variance.
    moving_stats = sum(int(np.prod(w.shape)) for w in tuned.non_trainable_weights)
    assert _trainable(tuned) == tuned.count_params() - moving_stats
    # BatchNorm channels: layer1 32; each separable layer its input and output channels.
    filters = [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    bn_channels = filters[0] + sum(c_in + c_out for c_in, c_out in zip(filters, filters[1:]))
    assert moving_stats == 2 * bn_channels


def test_lean_has_the_reimplementations_exact_count():
    assert registry.build_model(ModelConfig(), load_pretrained=False).count_params() == 4_584_201


@pytest.mark.parametrize("name", list(PAPER_PARAMS))
def test_contract_and_export_ready_parity(name, waveforms):
    config = ModelConfig(name=name, num_classes=7)
    model = registry.build_model(config, load_pretrained=False)
    assert [t.name for t in model.inputs] == ["waveform"]
    assert tuple(model.inputs[0].shape) == (None, 16000)
    assert tuple(model.outputs[0].shape) == (None, 7)
    # Non-zero biases everywhere, so a bias copied to the wrong place would show.
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if layer.name != "yamnet_trunk" and layer.weights:
            layer.set_weights([0.1 * rng.standard_normal(w.shape) for w in layer.weights])
    probabilities = model(waveforms).numpy()
    assert probabilities.shape == (2, 7)
    assert ((probabilities > 0) & (probabilities < 1)).all()
    exported = registry.export_ready_copy(model, config)
    assert tuple(exported.inputs[0].shape) == (1, 16000)
    assert exported.inputs[0].name == "waveform"
    for row in range(2):
        np.testing.assert_allclose(exported(waveforms[row : row + 1]).numpy()[0], probabilities[row], atol=2e-5)


def test_unrolled_bilstm_equals_keras_bidirectional():
    rng = np.random.default_rng(4)
    inputs = rng.standard_normal((3, 6, 5)).astype(np.float32)
    reference = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))
    reference(inputs)
    reference.set_weights([rng.standard_normal(w.shape) for w in reference.weights])
    unrolled = UnrolledBiLSTM(4)
    unrolled(inputs)
    unrolled.set_weights(reference.get_weights())
    np.testing.assert_allclose(unrolled(inputs).numpy(), reference(inputs).numpy(), atol=1e-5)


def test_keras_file_round_trip(tmp_path, waveforms):
    model = registry.build_model(ModelConfig(name="lean", num_classes=5), load_pretrained=False)
    path = tmp_path / "lean.keras"
    model.save(path)
    loaded = registry.load_model(path)
    np.testing.assert_array_equal(loaded(waveforms).numpy(), model(waveforms).numpy())
    assert not loaded.get_layer("yamnet_trunk").trainable
    with pytest.raises(LeanError, match="not found"):
        registry.load_model(tmp_path / "missing.keras")
    (tmp_path / "broken.keras").write_bytes(b"junk")
    with pytest.raises(LeanError, match="cannot load Keras model"):
        registry.load_model(tmp_path / "broken.keras")


def test_models_command_json(capsys):
    from lean.cli import main

    assert main(["models", "--num-classes", "200", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == list(PAPER_PARAMS)
    lean = rows[-1]
    assert set(lean) == {"name", "task", "input", "family_params", "params", "trainable_params",
                         "description"}
    assert lean["task"] == "multilabel"
    assert lean["input"] == {"sample_rate": 16000, "channels": 1, "window_seconds": 1.0}
    assert lean["family_params"]["lstm_units"] == 128
    assert lean["family_params"]["frontend"]["mel_bands"] == 64
    assert lean["family_params"]["yamnet_weights"] is None
    assert lean["params"] == 4_584_201
    assert lean["trainable_params"] == 4_584_201 - TRUNK_PARAMS
    assert main(["models", "--num-classes", "0"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PAPER_PARAMS))
def test_float32_tflite_builtin_ops_only(name, tmp_path, waveforms):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    config = ModelConfig(name=name, export_ready=True)
    if name in ("joint", "joint_affinity"):
        # Same graph as lean's wave encoder with fewer unrolled steps: converting 40-step
        # BiLSTMs takes ~30 s each on 2 cores, and lean's test covers the full size.
        config = dataclasses.replace(
            config, params=dataclasses.replace(config.params, wave_frames=10))
    model = registry.build_model(config, load_pretrained=False)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(converter.convert())
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert list(inp["shape"]) == [1, 16000] and list(out["shape"]) == [1, 200]
    op_names = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not any(op.startswith("Flex") or op == "WHILE" for op in op_names)
    interpreter.set_tensor(inp["index"], waveforms[:1])
    interpreter.invoke()
    np.testing.assert_allclose(
        interpreter.get_tensor(out["index"]), model(waveforms[:1]).numpy(), atol=1e-5
    )


def _lean_params(**values):
    return registry.parse_param_overrides("lean", [f"{key}={value}" for key, value in values.items()])


def test_inconsistent_config_is_a_clear_error():
    with pytest.raises(LeanError, match=r"projection_units \(256\) == 2 \* lstm_units \(64\)"):
        registry.build_model(ModelConfig(name="joint_affinity", params=_lean_params(lstm_units=32)),
                             load_pretrained=False)
    with pytest.raises(LeanError, match="wave_frames=7"):
        registry.build_model(ModelConfig(name="lean", params=_lean_params(wave_frames=7)),
                             load_pretrained=False)
    with pytest.raises(LeanError, match="takes mono audio, not 2 channels"):
        registry.build_model(ModelConfig(input=InputSpec(channels=2)), load_pretrained=False)


def test_family_params_are_typed_defaulted_and_round_trip():
    from lean.config import RunConfig, from_dict, to_dict
    from lean.models.lean import LeanParams

    config = ModelConfig(name="joint")
    assert isinstance(config.params, LeanParams) and config.params == LeanParams()
    assert (config.task, config.input) == ("multilabel", InputSpec(16000, 1, 1.0))
    params = _lean_params(**{"lstm_units": 64, "frontend.mel_bands": 32, "yamnet_weights": "none"})
    assert (params.lstm_units, params.frontend.mel_bands, params.yamnet_weights) == (64, 32, None)
    run = RunConfig(model=ModelConfig(name="joint", params=params, task="single_label"))
    again = from_dict(RunConfig, json.loads(json.dumps(to_dict(run))))
    assert again == run and isinstance(again.model.params, LeanParams)


@pytest.mark.parametrize("assignment, message", [
    ("nope=1", r"--param nope: model 'lean' has no such parameter; valid keys: frontend\.stft_"),
    ("lstm_units=many", r"--param lstm_units=many: not a valid int"),
    ("lstm_units", r"--param 'lstm_units': expected KEY=VALUE"),
    ("frontend.nope=3", r"--param frontend\.nope: model 'lean' has no such parameter"),
])
def test_bad_params_are_one_line_errors(assignment, message):
    with pytest.raises(LeanError, match=message):
        registry.parse_param_overrides("lean", [assignment])
    with pytest.raises(LeanError, match=r"model 'lean': invalid params .*valid keys"):
        ModelConfig(name="lean", params={"nope": 1})


def test_single_label_task_gives_a_softmax_head(waveforms):
    model = registry.build_model(ModelConfig(name="lean", num_classes=4, task="single_label"),
                                 load_pretrained=False)
    probabilities = model(waveforms).numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert model.get_layer("probabilities").activation.__name__ == "softmax"
    with pytest.raises(LeanError, match="unknown task 'regression'"):
        ModelConfig(task="regression")
