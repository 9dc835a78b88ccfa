"""The scene CNN (Jung et al. 2020): Table 1 shapes and parameters, the tag conditioning
against NumPy, tagger checks, `.keras` round trips and export-ready parity."""

import dataclasses
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from lean.config import InputSpec, ModelConfig, RunConfig, save_json
from lean.errors import LeanError
from lean.frontends import polyphase_filter
from lean.models import registry
from lean.models.scene_cnn import (SCENE_INPUT, TABLE_1_LENGTHS, SceneCnnParams,
                                   feature_lengths)
from lean.run import save_keras_atomic, write_labels_file

# Short scene windows keep the tests fast: 2 s at 24 kHz (48,000 samples, 1 time step after
# 7 blocks) is resampled 2:3 to the tagger's 16 kHz and cut into its two 1 s windows.
SHORT_INPUT = InputSpec(sample_rate=24000, channels=2, window_seconds=2.0)
TAGS = 5


def _tiny_tagger_config(name: str = "scene_cnn", task: str = "multilabel") -> ModelConfig:
    """A small multi-label tagger at 16 kHz mono 1 s: this family with 3 blocks of 8 filters,
    or a LEAN-family member (YAMNet trunk, random weights)."""
    spec = InputSpec(16000, 1, 1.0)
    if name == "scene_cnn":
        return ModelConfig(name, num_classes=TAGS, task=task, input=spec,
                           params=SceneCnnParams(filters=8, blocks=3))
    return ModelConfig(name, num_classes=TAGS, task=task, input=spec)


def make_tagger_run(run_dir, config: ModelConfig, seed: int = 0, saved_config=None):
    """A finished run directory (config.json, labels.txt, best.keras) with random weights
    whose biases are non-zero, so weights copied to the wrong place would show."""
    model = registry.build_model(config, load_pretrained=False)
    _randomize(model, seed)
    run_dir.mkdir(parents=True)
    save_keras_atomic(model, run_dir / "best.keras")
    save_json(RunConfig(model=saved_config or config), run_dir / "config.json")
    write_labels_file(run_dir / "labels.txt", [f"tag{i}" for i in range(config.num_classes)])
    return run_dir


def _randomize(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        values = rng.uniform(0.5, 1.5, weight.shape) if "variance" in weight.path else \
            0.2 * rng.standard_normal(weight.shape)
        weight.assign(values.astype(np.float32))


@pytest.fixture(scope="module")
def tagger_run(tmp_path_factory):
    return make_tagger_run(tmp_path_factory.mktemp("tagger") / "run", _tiny_tagger_config())


def _scene_config(tagger=None, num_classes=4, input_spec=SHORT_INPUT, **params) -> ModelConfig:
    if tagger is not None:
        params["tagger"] = str(tagger)
    return ModelConfig("scene_cnn", num_classes=num_classes, input=input_spec,
                       params=SceneCnnParams(**params))


def _clips(count: int, spec: InputSpec = SHORT_INPUT, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal((count, *spec.shape))).astype(np.float32)


def _outputs(model, names, inputs):
    probe = keras.Model(model.input, [model.get_layer(name).output for name in names])
    values = probe(inputs)
    return [np.asarray(value) for value in (values if len(names) > 1 else [values])]


# --- Table 1 ---------------------------------------------------------------------------------


def test_table_1_output_shapes_for_10_s_stereo_at_48_khz():
    model = registry.build_model(ModelConfig("scene_cnn", num_classes=10), load_pretrained=False)
    assert registry.entry("scene_cnn").input == SCENE_INPUT
    assert registry.entry("scene_cnn").task == "single_label"
    assert tuple(model.input.shape) == (None, 480000, 2)
    assert tuple(model.get_layer("pre_emphasis").output.shape) == (None, 479999, 2)
    stages = ["stem_lrelu"] + [f"block{i}_pool" for i in range(1, 8)]
    lengths = [model.get_layer(name).output.shape[1] for name in stages]
    assert lengths == list(TABLE_1_LENGTHS) == feature_lengths(480000, SceneCnnParams())
    assert {model.get_layer(name).output.shape[2] for name in stages} == {128}
    assert tuple(model.get_layer("pooled").output.shape) == (None, 256)
    assert tuple(model.get_layer("code").output.shape) == (None, 64)
    assert tuple(model.output.shape) == (None, 10)


def _independent_count(params: SceneCnnParams, channels: int, classes: int, tags: int = 0) -> int:
    """Table 1's parameters from the layer sizes: conv/dense weights and biases, and
    BatchNorm's four vectors (gamma, beta, moving mean and variance) per channel."""
    f, k = params.filters, params.kernel_size

    def dense(inputs, units):
        return inputs * units + units

    def stack(layers):
        widths = [tags] + [params.tag_units] * layers
        return sum(dense(a, b) for a, b in zip(widths, widths[1:]))

    total = params.stem_kernel * channels * f + f + 4 * f
    total += params.blocks * (2 * (k * f * f + f) + 2 * 4 * f)
    concat_width = params.tag_units if params.tag_layers else tags
    pooled = 2 * f + (concat_width if params.tag_concat == "before_code" else 0)
    total += dense(pooled, params.code_units)
    code = params.code_units + (concat_width if params.tag_concat == "codecat" else 0)
    total += dense(code, classes)
    if params.tag_concat != "none":
        total += stack(params.tag_layers)
    if params.tag_attention_heads:
        if not params.shared_transform:
            total += stack(params.attention_layers)
        total += dense(params.tag_units if params.attention_layers else tags, f)
    return total


def test_parameter_count_is_the_table_1_arithmetic():
    params = SceneCnnParams()
    model = registry.build_model(ModelConfig("scene_cnn", num_classes=10), load_pretrained=False)
    assert model.count_params() == _independent_count(params, 2, 10) == 717_898
    # BatchNorm's moving statistics (15 layers x 2 x 128) are the only non-trainable weights.
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 717_898 - 15 * 2 * 128
    pre = registry.build_model(ModelConfig("scene_cnn", num_classes=10, params=SceneCnnParams(
        block_order="pre_activation")), load_pretrained=False)
    assert pre.count_params() == 717_898
    mono = registry.build_model(ModelConfig("scene_cnn", num_classes=10,
                                            input=InputSpec(48000, 1, 10.0)),
                                load_pretrained=False)
    assert mono.count_params() == _independent_count(params, 1, 10) == 717_898 - 12 * 128


@pytest.mark.parametrize("variant", [
    dict(tag_concat="codecat"),
    dict(tag_concat="before_code"),
    dict(tag_concat="before_code", tag_layers=3),
    dict(tag_attention_heads=2, attention_layers=1),
    dict(tag_attention_heads=32),
    dict(tag_concat="before_code", tag_layers=3, tag_attention_heads=4, attention_layers=4),
    dict(tag_concat="before_code", tag_layers=3, tag_attention_heads=4, attention_layers=3,
         shared_transform=True),
])
def test_tag_variants_add_the_expected_parameters(tagger_run, variant):
    config = _scene_config(tagger_run, num_classes=10, **variant)
    model = registry.build_model(config, load_pretrained=False)
    scene_only = model.count_params() - model.get_layer("tagger").count_params()
    assert scene_only == _independent_count(config.params, 2, 10, tags=TAGS)
    assert not model.get_layer("tagger").trainable


def test_input_spec_can_say_mono_or_another_rate():
    spec = InputSpec(16000, 1, 2.0)
    model = registry.build_model(_scene_config(input_spec=spec), load_pretrained=False)
    assert tuple(model.input.shape) == (None, 32000)
    assert model.get_layer("block7_pool").output.shape[1] == feature_lengths(32000,
                                                                             SceneCnnParams())[-1]
    assert model(_clips(2, spec)).shape == (2, 4)
    too_short = InputSpec(16000, 1, 1.0)
    with pytest.raises(LeanError, match="leave no time step after 7 blocks; it needs at least "
                                        "26245"):
        registry.build_model(_scene_config(input_spec=too_short), load_pretrained=False)


def test_builds_for_both_tasks():
    for task, activation_sum in (("single_label", True), ("multilabel", False)):
        config = dataclasses.replace(_scene_config(), task=task)
        probabilities = registry.build_model(config, load_pretrained=False)(_clips(2)).numpy()
        assert probabilities.shape == (2, 4)
        assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5) == activation_sum


def test_pre_emphasis_and_residual_block_against_numpy():
    config = _scene_config(blocks=1)
    model = registry.build_model(config, load_pretrained=False)
    _randomize(model, 5)
    clips = _clips(1)
    emphasised, stem, block = _outputs(model, ["pre_emphasis", "stem_lrelu", "block1_pool"],
                                       clips)
    np.testing.assert_allclose(emphasised, clips[:, 1:] - 0.97 * clips[:, :-1], atol=1e-6)

    def conv_same(x, layer):
        kernel, bias = layer.get_weights()
        padded = np.pad(x, ((1, 1), (0, 0)))
        windows = np.stack([padded[i:i + 3] for i in range(x.shape[0])])
        return np.einsum("tkc,kcf->tf", windows, kernel) + bias

    def batch_norm(x, layer):
        gamma, beta, mean, variance = layer.get_weights()
        return gamma * (x - mean) / np.sqrt(variance + layer.epsilon) + beta

    def leaky(x):
        return np.where(x > 0, x, 0.3 * x)

    y = leaky(batch_norm(conv_same(stem[0], model.get_layer("block1_conv1")),
                         model.get_layer("block1_bn1")))
    y = batch_norm(conv_same(y, model.get_layer("block1_conv2")), model.get_layer("block1_bn2"))
    y = leaky(stem[0] + y)
    pooled = y[: y.shape[0] // 3 * 3].reshape(-1, 3, y.shape[1]).max(axis=1)
    np.testing.assert_allclose(block[0], pooled, rtol=1e-4, atol=1e-4)


# --- Tag conditioning ------------------------------------------------------------------------


def test_tag_attention_against_numpy(tagger_run):
    heads = 4
    config = _scene_config(tagger_run, tag_attention_heads=heads, attention_layers=1)
    model = registry.build_model(config, load_pretrained=False)
    _randomize(model, 6)
    feature_map, tags_in, attention_map, weights, attended = _outputs(
        model, ["block7_pool", "tag_attention_lrelu1", "tag_attention_map",
                "tag_attention_softmax", "tag_attention"], _clips(2))
    kernel, bias = model.get_layer("tag_attention_map").get_weights()
    np.testing.assert_allclose(attention_map, tags_in @ kernel + bias, rtol=1e-5, atol=1e-5)
    per_head = attention_map.reshape(2, heads, -1)
    expected = np.exp(per_head - per_head.max(axis=-1, keepdims=True))
    expected /= expected.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(weights, expected.reshape(2, -1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(weights.reshape(2, heads, -1).sum(axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(attended, feature_map * weights[:, None, :], rtol=1e-5, atol=1e-7)


def test_attention_broadcasts_over_time(tagger_run):
    spec = InputSpec(24000, 2, 3.0)  # 5,999 stem steps -> 2 steps after 7 blocks
    config = _scene_config(tagger_run, input_spec=spec, tag_attention_heads=2,
                           attention_rescale=True)
    model = registry.build_model(config, load_pretrained=False)
    feature_map, weights, attended = _outputs(
        model, ["block7_pool", "tag_attention_softmax", "tag_attention"], _clips(1, spec))
    assert feature_map.shape == (1, 2, 128)
    # Rescaled: each head of 64 filters sums to 64.
    np.testing.assert_allclose(weights.reshape(2, 64).sum(axis=-1), 64.0, rtol=1e-5)
    for step in range(2):
        np.testing.assert_allclose(attended[:, step], feature_map[:, step] * weights,
                                   rtol=1e-5, atol=1e-7)


def test_tag_vector_is_the_tagger_mean_over_its_windows(tagger_run):
    from scipy import signal

    from lean.run import load_run

    config = _scene_config(tagger_run, tag_concat="codecat", tagger_hop=0.5)
    model = registry.build_model(config)
    clips = _clips(2)
    (tags,) = _outputs(model, ["tag_vector"], clips)
    resampler = polyphase_filter(24000, 16000)
    mono = clips.mean(axis=-1)
    resampled = signal.resample_poly(mono, resampler.up, resampler.down, axis=1,
                                     window=resampler.taps / resampler.up)
    assert resampled.shape == (2, 32000)
    # 50 % hop: windows at 0, 0.5 s and 1 s of the 2 s clip.
    windows = np.stack([resampled[:, s:s + 16000] for s in (0, 8000, 16000)], axis=1)
    tagger = load_run(tagger_run).model
    scores = tagger.predict(windows.reshape(-1, 16000).astype(np.float32), verbose=0)
    np.testing.assert_allclose(tags, scores.reshape(2, 3, TAGS).mean(axis=1), atol=2e-5)
    # codecat: the code the SVM reads is [code ; T].
    (code,) = _outputs(model, ["code_tags"], clips)
    np.testing.assert_allclose(code[:, 64:], tags, atol=1e-6)


def test_tagger_weights_come_from_its_run_and_stay_frozen(tagger_run):
    from lean.run import load_run

    model = registry.build_model(_scene_config(tagger_run, tag_concat="before_code"))
    tagger = load_run(tagger_run).model
    for ours, theirs in zip(model.get_layer("tagger").weights, tagger.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert model.get_layer("tagger").trainable_weights == []
    tuned = registry.build_model(dataclasses.replace(
        _scene_config(tagger_run, tag_concat="before_code"), trainable_backbone=True))
    assert tuned.get_layer("tagger").trainable_weights


# --- Tagger runs that cannot be used ---------------------------------------------------------


def test_unusable_tagger_runs_are_one_line_errors(tmp_path, tagger_run):
    single = make_tagger_run(tmp_path / "single", _tiny_tagger_config(task="single_label"))
    with pytest.raises(LeanError, match=r"tagger run .*single: trained for single_label, the "
                                        r"tag vector needs a multi-label"):
        SceneCnnParams(tagger=str(single), tag_concat="codecat")
    partial = tmp_path / "partial"
    shutil.copytree(tagger_run, partial)
    (partial / "best.keras").unlink()
    with pytest.raises(LeanError, match=r"tagger run .*partial: not a finished run directory "
                                        r"\(no best.keras\)"):
        SceneCnnParams(tagger=str(partial), tag_concat="codecat")
    with pytest.raises(LeanError, match=r"tagger run .*nowhere: no such run directory"):
        SceneCnnParams(tagger=str(tmp_path / "nowhere"), tag_concat="codecat")
    (partial / "best.keras").write_bytes((tagger_run / "best.keras").read_bytes())
    (partial / "labels.txt").write_text("one\ntwo\n")
    with pytest.raises(LeanError, match="labels.txt has 2 labels for 5 classes"):
        SceneCnnParams(tagger=str(partial), tag_concat="codecat")


def test_tagger_with_another_sample_rate_than_declared(tmp_path):
    # A YAMNet tagger built (and so trained) at 16 kHz whose config declares 32 kHz, 0.5 s:
    # the same 16,000 samples per window, so only the frontend's rate tells.
    trained = _tiny_tagger_config("yamnet")
    declared = dataclasses.replace(trained, input=InputSpec(32000, 1, 0.5))
    run = make_tagger_run(tmp_path / "liar", trained, saved_config=declared)
    config = _scene_config(run, input_spec=InputSpec(32000, 2, 1.0), tag_concat="codecat")
    with pytest.raises(LeanError, match=r"tagger run .*liar: layer 'yamnet_log_mel' runs at "
                                        r"16000 Hz, its config declares 32000 Hz"):
        registry.build_model(config)
    shorter = dataclasses.replace(trained, input=InputSpec(16000, 1, 0.5))
    run = make_tagger_run(tmp_path / "short", trained, saved_config=shorter)
    with pytest.raises(LeanError, match=r"tagger run .*short: its model takes \(16000,\) "
                                        r"samples, its config declares \(8000,\)"):
        registry.build_model(_scene_config(run, tag_concat="codecat"))


def test_bad_params_are_one_line_errors(tagger_run):
    cases = [
        (dict(tag_concat="codecat"), "need a tagger run: --param tagger=RUN_DIR"),
        (dict(tagger=str(tagger_run)), "is unused: set tag_concat"),
        (dict(tagger=str(tagger_run), tag_attention_heads=3), "must be 0 \\(off\\) or 2-32"),
        (dict(tagger=str(tagger_run), tag_attention_heads=64), "must be 0 \\(off\\) or 2-32"),
        (dict(tagger=str(tagger_run), tag_attention_heads=32, filters=32),
         "leaves one of filters=32 per head, whose softmax is always 1"),
        (dict(tagger=str(tagger_run), tag_concat="codecat", tag_layers=6), "must be 0 to 5"),
        (dict(tagger=str(tagger_run), tag_concat="codecat", tag_attention_heads=2,
              shared_transform=True), "shared_transform needs tag_concat=before_code"),
        (dict(tag_concat="sideways"), "expected one of none, codecat, before_code"),
        (dict(tagger=str(tagger_run), tag_concat="codecat", tagger_hop=0), "must be in"),
        (dict(tagger=str(tagger_run), tagger_record="{not json", tag_concat="codecat"),
         "tagger_record is not"),
        (dict(tagger_record="{}"), "without a tagger leave it unset"),
    ]
    for values, message in cases:
        with pytest.raises(LeanError, match=f"model 'scene_cnn': .*{message}"):
            SceneCnnParams(**values)
    with pytest.raises(LeanError, match="shorter than the tagger's 1.0 s window"):
        registry.build_model(_scene_config(tagger_run, input_spec=InputSpec(48000, 2, 0.6),
                                           tag_concat="codecat"), load_pretrained=False)


def test_param_overrides_from_the_command_line(tagger_run):
    params = registry.parse_param_overrides("scene_cnn", [
        f"tagger={tagger_run}", "tag_concat=before_code", "tag_layers=3",
        "tag_attention_heads=4", "attention_layers=3", "shared_transform=true"])
    assert (params.tag_layers, params.tag_attention_heads, params.shared_transform) == (3, 4, True)
    record = json.loads(params.tagger_record)
    assert record["labels"] == [f"tag{i}" for i in range(TAGS)]
    assert record["model"]["name"] == "scene_cnn" and record["model"]["task"] == "multilabel"
    assert record["run"] == str(tagger_run)
    assert record["model"]["input"] == {"sample_rate": 16000, "channels": 1, "window_seconds": 1.0}


def test_lean_train_takes_another_input_spec():
    import argparse

    from lean.cli import build_parser
    from lean.command_line import input_spec
    from lean.commands.train import model_config_from_args

    assert input_spec("16000:1:2.5") == InputSpec(16000, 1, 2.5)
    for text in ("16000:2", "16000:0:1", "a:b:c"):
        with pytest.raises(argparse.ArgumentTypeError, match="RATE:CHANNELS:SECONDS"):
            input_spec(text)
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--model",
                                      "scene_cnn", "--input", "16000:1:2.0"])
    config = model_config_from_args(args, "single_label")
    assert config.input == InputSpec(16000, 1, 2.0)
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--model",
                                      "scene_cnn"])
    assert model_config_from_args(args, "single_label").input == SCENE_INPUT


def test_another_tagger_is_recorded_again(tmp_path, tagger_run):
    other = make_tagger_run(tmp_path / "other", dataclasses.replace(
        _tiny_tagger_config(), num_classes=3))
    base = SceneCnnParams(tagger=str(tagger_run), tag_concat="codecat")
    params = registry.parse_param_overrides("scene_cnn", [f"tagger={other}"], base=base)
    assert len(json.loads(params.tagger_record)["labels"]) == 3


# --- Saving, loading, export-ready builds ----------------------------------------------------


def test_a_new_run_keeps_a_copy_of_its_tagger_run(tmp_path, tagger_run):
    from lean.run import PARTS_DIR, copy_parts

    source = tmp_path / "tagger"
    shutil.copytree(tagger_run, source)
    config = _scene_config(source, tag_concat="codecat")
    assert copy_parts(tmp_path / "run", config) == [tmp_path / "run" / PARTS_DIR / "tagger"]
    part = tmp_path / "run" / PARTS_DIR / "tagger"
    for name in ("config.json", "labels.txt", "best.keras"):
        assert (part / name).read_bytes() == (source / name).read_bytes()
    # A resumed run keeps the copy it started from.
    (source / "labels.txt").write_text("changed\n")
    copy_parts(tmp_path / "run", config)
    assert (part / "labels.txt").read_bytes() == (tagger_run / "labels.txt").read_bytes()
    assert copy_parts(tmp_path / "plain", _scene_config()) == []
    assert not (tmp_path / "plain").exists()


def test_keras_round_trip_and_a_vanished_tagger(tmp_path, tagger_run):
    from lean.config import from_dict, to_dict

    tagger = tmp_path / "tagger"
    shutil.copytree(tagger_run, tagger)
    config = _scene_config(tagger, tag_concat="before_code", tag_layers=2,
                           tag_attention_heads=2, attention_layers=2, shared_transform=True)
    model = registry.build_model(config)
    _randomize(model, 8)
    clips = _clips(2)
    expected = model(clips).numpy()
    save_keras_atomic(model, tmp_path / "best.keras")
    saved_config = json.dumps(to_dict(RunConfig(model=config)))
    shutil.rmtree(tagger)
    # The run's config and model need nothing of the tagger directory any more.
    reloaded_config = from_dict(RunConfig, json.loads(saved_config)).model
    assert reloaded_config == config
    loaded = registry.load_model(tmp_path / "best.keras")
    np.testing.assert_array_equal(loaded(clips).numpy(), expected)
    exported = registry.export_ready_copy(loaded, reloaded_config)
    assert tuple(exported.input.shape) == (1, 48000, 2)
    for row in range(2):
        np.testing.assert_allclose(exported(clips[row:row + 1]).numpy()[0], expected[row],
                                   atol=1e-6)
    with pytest.raises(LeanError, match="no best.keras to start from"):
        registry.build_model(reloaded_config)


def test_export_ready_parity_with_a_lean_tagger(tmp_path):
    # LEAN's export build swaps its BiLSTMs for UnrolledBiLSTM: the nested tagger's weights
    # are copied layer by layer by name into it.
    run = make_tagger_run(tmp_path / "lean", _tiny_tagger_config("lean"), seed=2)
    config = _scene_config(run, tag_concat="before_code", tag_layers=1)
    model = registry.build_model(config)
    clips = _clips(2)
    expected = model(clips).numpy()
    exported = registry.export_ready_copy(model, config)
    assert type(exported.get_layer("tagger").get_layer("wave_bilstm_1")).__name__ == "UnrolledBiLSTM"
    np.testing.assert_allclose(exported(clips[:1]).numpy()[0], expected[0], atol=1e-5)


# --- End to end: a tagger run from `lean train`, then train, eval, export, MediaPipe, bench ---

E2E_INPUT = InputSpec(sample_rate=24000, channels=2, window_seconds=2.0)


@pytest.fixture(scope="module")
def scene_run(tmp_path_factory):
    """A YAMNet tagger trained by `lean train` on FSD50K-layout tones, then a tag-conditioned
    scene run (before-code concat + 2-head attention, 32 filters) on stereo 44.1 kHz clips of
    3 classes (ESC-50 layout), trained at 24 kHz (resampled 2:3 for the tagger inside)."""
    from test_family_contract import write_stereo_esc50
    from test_train import make_tone_dataset

    from lean.cli import main
    from lean.config import DataConfig, TrainConfig
    from lean.train import train

    root = tmp_path_factory.mktemp("scene_e2e")
    cache = root / "cache"
    tones = make_tone_dataset(root / "tones", clips_per_split=(16, 8, 4))
    tagger = root / "tagger"
    assert main(["train", "--data", str(tones), "--out", str(tagger), "--model", "yamnet",
                 "--epochs", "1", "--batch-size", "16", "--no-progress",
                 "--cache-dir", str(cache)]) == 0
    data = write_stereo_esc50(root / "scenes")
    # 8 steps per epoch: BatchNorm's inference statistics need a low momentum to catch up
    # (at Keras's 0.99, val accuracy stayed at chance for 6 of 8 epochs; at 0.5 it was 0.94
    # after one).
    params = SceneCnnParams(filters=32, batch_norm_momentum=0.5, tagger=str(tagger),
                            tag_concat="before_code", tag_layers=1, tag_attention_heads=2,
                            attention_layers=1)
    config = RunConfig(
        model=ModelConfig("scene_cnn", input=E2E_INPUT, params=params),
        train=TrainConfig(epochs=3, batch_size=8, learning_rate=3e-3, seed=1),
        data=DataConfig(dir=str(data), fold=2))
    run_dir = root / "run"
    train(config, run_dir, cache_dir=cache, progress=False)
    return {"root": root, "run": run_dir, "data": data, "tagger": tagger, "cache": cache}


@pytest.mark.slow
def test_scene_run_trains_evaluates_and_exports_without_its_tagger(scene_run):
    from mediapipe_support import assert_mediapipe_matches_litert
    from test_family_contract import CLASSES, CLIPS_PER_CLASS_AND_FOLD

    from lean.cli import main
    from lean.data import load_dataset
    from lean.data.audio import load_audio
    from lean.run import PARTS_DIR
    from lean_bench.host import run_host_benchmarks
    from lean_export.export import export_run
    from lean_export.metadata import read_metadata

    root, run_dir, data = scene_run["root"], scene_run["run"], scene_run["data"]
    # The tagger run was copied into the scene run; then it disappears.
    part = run_dir / PARTS_DIR / "tagger"
    for name in ("config.json", "labels.txt", "best.keras"):
        assert (part / name).read_bytes() == (scene_run["tagger"] / name).read_bytes()
    shutil.rmtree(scene_run["tagger"])

    report_path = root / "eval.json"
    assert main(["eval", str(run_dir), "--data", str(data), "--json", str(report_path),
                 "--no-progress", "--cache-dir", str(scene_run["cache"])]) == 0
    report = json.loads(report_path.read_text())
    assert report["task"] == "single_label"
    assert report["num_clips"] == len(CLASSES) * CLIPS_PER_CLASS_AND_FOLD
    # Three classes: a short real training beats chance (1/3) clearly.
    assert report["accuracy"] >= 0.6, report["confusion_matrix"]

    output = root / "scene_int8.tflite"
    export = export_run(run_dir, output, "int8", calibration_count=12, held_out_count=16,
                        max_drop=0.34, latency_runs=50, progress=False)
    assert export["passed"]
    ops = export["ops"]
    assert not any(row["op"].startswith("FLEX") or row["op"] in ("WHILE", "CUSTOM")
                   for row in ops)
    # Both frontends, the tagger's window cutting and the attention softmax stay float ...
    floats = export["float_layers"]
    for layer in ("pre_emphasis", "tagger_downmix", "tagger_resample", "tagger_windows",
                  "yamnet_log_mel"):
        assert layer in floats
    assert any("tag_attention_softmax" in layer for layer in floats)
    assert [row["outputs"] for row in ops if row["op"] == "SOFTMAX"] == ["float32"]
    # ... and the convolutions (the scene CNN's and YAMNet's) run in int8.
    int8_convs = sum(row["count"] for row in ops
                     if row["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D") and row["outputs"] == "int8")
    assert int8_convs >= 15 + 14  # 1 + 2 x 7 scene convs, 14 YAMNet layers
    metadata = read_metadata(output)
    assert (metadata["input"]["sample_rate"], metadata["input"]["channels"]) == (24000, 2)

    # MediaPipe takes the stereo clip as [samples, 2] and feeds the model interleaved frames:
    # its scores equal LiteRT's on the same interleaved windows. A mono clip is refused.
    clip = load_dataset(data, fold=2).clips("eval")[0]
    audio = load_audio(clip.path, 24000, channels=2)
    assert audio.shape[1] == 2
    probabilities = assert_mediapipe_matches_litert(output, audio, 24000,
                                                    E2E_INPUT.window_samples, list(CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.02)

    bench = run_host_benchmarks([str(output)], threads=[1], runs=5, warmup=1,
                                data_dir=str(data))
    row = bench["rows"][0]
    assert row["task"] == "single_label" and row["median_ms"] > 0
    assert row["accuracy"] == pytest.approx(export["quality"]["eval"]["exported"], abs=1e-12)
    _assert_mediapipe_refuses_mono(output, audio.mean(axis=1))


MONO_TO_STEREO_MODEL = """
import os, sys
import numpy as np
from mediapipe.tasks.python.audio import audio_classifier
from mediapipe.tasks.python.components.containers.audio_data import AudioData
from mediapipe.tasks.python.core.base_options import BaseOptions
options = audio_classifier.AudioClassifierOptions(
    base_options=BaseOptions(model_asset_path=sys.argv[1]))
classifier = audio_classifier.AudioClassifier.create_from_options(options)
try:
    classifier.classify(AudioData.create_from_array(np.load(sys.argv[2]), 24000))
    print("classified")
except Exception as error:
    print("refused:", error)
sys.stdout.flush()
os._exit(0)  # the classifier's close after this error is not what is tested
"""


def _assert_mediapipe_refuses_mono(path, mono: np.ndarray) -> None:
    """MediaPipe does not upmix: a mono clip for a 2-channel model is an error. Run in a child
    process: closing a classifier after that error raised again ("Task runner is currently not
    running") or hung, and its finaliser, run by a later garbage collection inside np.load's
    header parse, broke CPython 3.11.7's AST constructor ("recursion depth mismatch")."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "mono.npy"
        np.save(clip, mono.astype(np.float32))
        result = subprocess.run([sys.executable, "-c", MONO_TO_STEREO_MODEL, str(path),
                                 str(clip)], capture_output=True, text=True, timeout=300)
    assert "refused:" in result.stdout, result.stdout + result.stderr[-2000:]
    assert "1 channel(s) but the model requires 2" in result.stdout + result.stderr
