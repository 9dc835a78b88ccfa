"""Acoustic scene classification with audio-tagging vectors (Jung et al., Interspeech 2020):
the raw-waveform residual CNN of Table 1 and the tag-vector conditioning of Sec. 3 (Fig. 2).

The tagger is any multi-label `lean` run. It runs inside the scene model on the same clip
(float downmix, polyphase resampling to its rate, its windows averaged into one tag vector
T in [0, 1]^c), frozen, and its layers live in the scene model's `.keras` file, so a trained
scene run needs nothing of the tagger's directory: its config and labels are recorded in the
scene run's params (`tagger_record`), its weights in the model.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import keras
from keras import ops

from lean.config import InputSpec, ModelConfig, to_dict
from lean.errors import LeanError
from lean.frontends import Downmix, PolyphaseResample, PreEmphasis, WaveformWindows
from lean.models.common import classifier_head, waveform_input
from lean.models.registry import build_model, copy_weights_by_name, register

NAME = "scene_cnn"
# Sec. 4.1-4.2: DCASE 2019 task 1a, 10 s stereo clips at 48 kHz.
SCENE_INPUT = InputSpec(sample_rate=48000, channels=2, window_seconds=10.0)
# Table 1's output lengths for that input: pre-emphasis (479,999), the strided conv, then each
# of the seven residual blocks (same-padded convs, floor max pooling by 3).
TABLE_1_LENGTHS = (39999, 13333, 4444, 1481, 493, 164, 54, 18)
TAG_CONCAT = ("none", "codecat", "before_code")
BLOCK_ORDERS = ("post_activation", "pre_activation")
# Table 2 explores 0-5 tag layers before the code; Table 3 0-3 layers for the attention map.
MAX_TAG_LAYERS = 5
# Table 3: 2 to 32 heads over f = 128 filters.
MIN_HEADS, MAX_HEADS = 2, 32
TAGGER_LAYER = "tagger"


def _error(message: str) -> LeanError:
    return LeanError(f"model {NAME!r}: {message}")


@dataclass(frozen=True)
class SceneCnnParams:
    """The scene CNN's params; defaults are Table 1 and Sec. 4.2, choices where the paper is
    silent are marked.

    Tag conditioning (Sec. 3) is off by default (the baseline); `tagger` names a multi-label
    run directory and turns it on together with `tag_concat` and/or `tag_attention_heads`.
    """

    # Sec. 4.2: "stereo raw waveforms ... with pre-emphasis applied"; the coefficient is not
    # given, 0.97 is the usual one. y[n] = x[n] - 0.97 x[n - 1] drops the first sample.
    pre_emphasis: float = 0.97
    # Table 1: Conv(12, 12, 128), then residual blocks of Conv(3, 1, 128) and MaxPool(3).
    filters: int = 128
    stem_kernel: int = 12
    blocks: int = 7
    kernel_size: int = 3
    pool_size: int = 3
    # Not drawn in the paper. post_activation: x -> Conv-BN-LReLU-Conv-BN -> (+x) -> LReLU ->
    # MaxPool (He et al. 2016, their ref. [23]); pre_activation: x -> BN-LReLU-Conv-BN-LReLU-Conv
    # -> (+x) -> MaxPool (their ref. [24]).
    block_order: Literal["post_activation", "pre_activation"] = "post_activation"
    # Not given: 0.3 is Keras's LeakyReLU default (the authors' code is Keras), PyTorch's 0.01.
    leaky_relu_slope: float = 0.3
    # Table 1: Code FC(64), linear (the SVM back-end reads it).
    code_units: int = 64
    # BatchNorm's moving-average momentum (Keras's default; small datasets with few steps per
    # epoch need less, e.g. 0.9, for the inference statistics to catch up).
    batch_norm_momentum: float = 0.99
    # A multi-label `lean` run directory whose tag vector conditions the scene model.
    tagger: Optional[str] = None
    # Sec. 3.1: codecat = [code ; T]; before_code = FC(64)([pooled ; T']) (Table 2).
    tag_concat: Literal["none", "codecat", "before_code"] = "none"
    # FC + LeakyReLU layers on the tag vector before it is concatenated (Table 2: 0-5).
    tag_layers: int = 0
    # Width of those layers (not given in the paper).
    tag_units: int = 128
    # Sec. 3.2: heads of the tag-driven attention over the filters (0: off; Table 3: 2-32).
    tag_attention_heads: int = 0
    # FC + LeakyReLU layers on T before the FC(filters) attention map (Table 3: 0-3).
    attention_layers: int = 0
    # Multiply the per-head softmax by filters/heads, so a head's weights average 1; the paper
    # does not rescale (its weights average heads/filters).
    attention_rescale: bool = False
    # Sec. 3.3 / Table 5: one stack of `tag_layers` feeds both the concatenation and the
    # attention map (needs tag_concat=before_code, heads > 0, attention_layers == tag_layers).
    shared_transform: bool = False
    # Hop between the tagger's windows, as a fraction of its window (1.0: the clip is tiled).
    tagger_hop: float = 1.0
    # Filled in from `tagger` when the config is made (do not set): the tagger's model config
    # and labels as JSON, so the run rebuilds and exports after the tagger directory is gone.
    tagger_record: Optional[str] = None

    def __post_init__(self):
        _check_params(self)
        record = tagger_record(self) if self.tagger_record is not None else None
        # A record of another tagger (an override of `tagger`) is read again; a config.json
        # read back keeps its record and never looks at the tagger directory.
        if self.tagger is not None and (record is None or record.run != self.tagger):
            object.__setattr__(self, "tagger_record", read_tagger_record(self.tagger))

    @property
    def uses_tags(self) -> bool:
        return self.tag_concat != "none" or self.tag_attention_heads > 0


def _check_params(params: SceneCnnParams) -> None:
    """The one-line errors of settings that cannot work, before anything is built."""
    if not 0.0 <= params.pre_emphasis < 1.0:
        raise _error(f"pre_emphasis={params.pre_emphasis} must be in [0, 1)")
    if not 0.0 <= params.batch_norm_momentum < 1.0:
        raise _error(f"batch_norm_momentum={params.batch_norm_momentum} must be in [0, 1)")
    for key in ("filters", "stem_kernel", "blocks", "kernel_size", "pool_size", "code_units",
                "tag_units"):
        if getattr(params, key) < 1:
            raise _error(f"{key}={getattr(params, key)} must be at least 1")
    if params.block_order not in BLOCK_ORDERS:
        raise _error(f"block_order={params.block_order!r}; expected one of "
                     f"{', '.join(BLOCK_ORDERS)}")
    if params.tag_concat not in TAG_CONCAT:
        raise _error(f"tag_concat={params.tag_concat!r}; expected one of {', '.join(TAG_CONCAT)}")
    for key in ("tag_layers", "attention_layers"):
        if not 0 <= getattr(params, key) <= MAX_TAG_LAYERS:
            raise _error(f"{key}={getattr(params, key)} must be 0 to {MAX_TAG_LAYERS}")
    heads = params.tag_attention_heads
    if heads and not (MIN_HEADS <= heads <= MAX_HEADS and params.filters % heads == 0):
        raise _error(f"tag_attention_heads={heads} must be 0 (off) or {MIN_HEADS}-{MAX_HEADS} "
                     f"and divide filters={params.filters}")
    if heads and params.filters // heads < 2:
        # A head of one filter: its softmax is 1 whatever the tags say (Keras warns, trains on).
        raise _error(f"tag_attention_heads={heads} leaves one of filters={params.filters} per "
                     "head, whose softmax is always 1; use fewer heads or more filters")
    if params.shared_transform and (params.tag_concat != "before_code" or not heads
                                    or params.attention_layers != params.tag_layers):
        raise _error("shared_transform needs tag_concat=before_code, tag_attention_heads > 0 "
                     f"and attention_layers == tag_layers (got {params.tag_concat}, {heads}, "
                     f"{params.attention_layers} vs {params.tag_layers})")
    if not 0.0 < params.tagger_hop <= 1.0:
        raise _error(f"tagger_hop={params.tagger_hop} must be in (0, 1]")
    if params.uses_tags and params.tagger is None:
        raise _error("tag_concat/tag_attention_heads need a tagger run: --param tagger=RUN_DIR")
    if params.tagger is None and params.tagger_record is not None:
        raise _error("tagger_record is filled in from tagger; without a tagger leave it unset")
    if params.tagger is not None and not params.uses_tags:
        raise _error(f"tagger={params.tagger} is unused: set tag_concat=codecat|before_code "
                     "and/or tag_attention_heads")


# --- The tagger ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaggerRecord:
    """What a scene run keeps of its tagger: the directory as given and resolved, its model
    config and its labels."""

    run: str
    path: str
    model: ModelConfig
    labels: tuple[str, ...]


def read_tagger_record(run_dir: str) -> str:
    """The `tagger_record` JSON of a tagger run directory, checked to be a usable tagger.

    A run that is missing files, is not multi-label, or whose labels do not match its classes
    is a one-line LeanError naming the run.
    """
    from lean.run import LABELS_FILE, read_labels_file, read_run_config
    from lean.tasks import MULTILABEL

    try:
        model = read_run_config(run_dir).model
    except LeanError as error:
        raise LeanError(f"tagger run {error}") from None
    if model.task != MULTILABEL:
        raise LeanError(f"tagger run {run_dir}: trained for {model.task}, the tag vector needs a "
                        "multi-label (sigmoid) run")
    if model.input.channels != 1:
        raise LeanError(f"tagger run {run_dir}: takes {model.input.channels}-channel audio; the "
                        "scene model feeds its tagger a mono downmix")
    labels = read_labels_file(Path(run_dir) / LABELS_FILE)
    if len(labels) != model.num_classes:
        raise LeanError(f"tagger run {run_dir}: {LABELS_FILE} has {len(labels)} labels for "
                        f"{model.num_classes} classes")
    model_dict = to_dict(dataclasses.replace(model, export_ready=False))
    return json.dumps({"run": str(run_dir), "path": str(Path(run_dir).resolve()),
                       "model": model_dict, "labels": labels}, sort_keys=True)


def tagger_record(params: SceneCnnParams) -> TaggerRecord:
    """The tagger recorded in `params` (None-safe callers check `params.tagger_record`)."""
    try:
        values = json.loads(params.tagger_record)
        return TaggerRecord(values["run"], values["path"], ModelConfig(**values["model"]),
                            tuple(values["labels"]))
    except (TypeError, ValueError, KeyError) as error:
        raise _error(f"tagger_record is not a recorded tagger ({type(error).__name__}: "
                     f"{error}); leave it unset, it is filled from tagger") from None


def _check_tagger_model(model, record: TaggerRecord) -> None:
    """The saved tagger must take the window and sample rate its config declares."""
    spec = record.model.input
    if tuple(model.input.shape[1:]) != spec.shape:
        raise LeanError(f"tagger run {record.run}: its model takes {tuple(model.input.shape[1:])} "
                        f"samples, its config declares {spec.shape} ({spec.sample_rate} Hz, "
                        f"{spec.window_seconds} s)")
    for layer in _all_layers(model):
        rate = getattr(layer, "sample_rate", None)
        if rate is not None and int(rate) != spec.sample_rate:
            raise LeanError(f"tagger run {record.run}: layer {layer.name!r} runs at {rate} Hz, "
                            f"its config declares {spec.sample_rate} Hz")


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _build_tagger(config: ModelConfig, record: TaggerRecord, load_pretrained: bool):
    """The tagger as one nested model named `tagger` (frozen unless trainable_backbone).

    Built from the recorded config (the export-ready build when the scene build is one), so the
    training and export builds have the same layer names; `load_pretrained` copies the weights
    of the tagger run's best.keras into it.
    """
    from lean.models.registry import load_model
    from lean.run import BEST_MODEL

    source = None
    if load_pretrained:
        weights_file = Path(record.path) / BEST_MODEL
        if not weights_file.is_file():
            raise LeanError(f"tagger run {record.run}: no {BEST_MODEL} to start from (only a "
                            "new scene run needs it; a trained one keeps the tagger inside)")
        source = load_model(weights_file)
        _check_tagger_model(source, record)
    tagger_config = dataclasses.replace(record.model, export_ready=config.export_ready)
    inner = build_model(tagger_config, load_pretrained=False)
    if source is not None:
        try:
            copy_weights_by_name(source, inner)
        except LeanError as error:
            raise LeanError(f"tagger run {record.run}: {error}") from None
    tagger = keras.Model(inner.input, inner.output, name=TAGGER_LAYER)
    tagger.trainable = config.trainable_backbone
    return tagger


@keras.saving.register_keras_serializable(package="lean")
class WindowMean(keras.layers.Layer):
    """[B * windows, C] -> [B, C]: the mean of each clip's consecutive window scores."""

    def __init__(self, windows: int, **kwargs):
        super().__init__(**kwargs)
        self.windows = int(windows)

    def call(self, scores):
        # per_clip has shape [B, windows, C].
        per_clip = ops.reshape(scores, (-1, self.windows, scores.shape[-1]))
        return ops.mean(per_clip, axis=1)

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        return (None if batch is None else batch // self.windows, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "windows": self.windows}


def _tag_vector(waveform, config: ModelConfig, load_pretrained: bool):
    """waveform [B, samples(, channels)] -> tag vector T [B, c], the tagger's mean over windows.

    The clip is downmixed, resampled to the tagger's rate and cut into its windows in float
    front ops; Sec. 2.2: T holds sigmoid posteriors in [0, 1].
    """
    from lean.data.windows import eval_window_starts

    record = tagger_record(config.params)
    tagger_input = record.model.input
    # mono has shape [B, samples].
    mono = Downmix(name="tagger_downmix")(waveform)
    samples = config.window_samples
    if tagger_input.sample_rate != config.input.sample_rate:
        mono = PolyphaseResample(config.input.sample_rate, tagger_input.sample_rate,
                                 name="tagger_resample")(mono)
        samples = mono.shape[-1]
    window = tagger_input.window_samples
    if samples < window:
        raise _error(f"its {config.input.window_seconds} s window is shorter than the tagger's "
                     f"{tagger_input.window_seconds} s window")
    starts = eval_window_starts(samples, window, config.params.tagger_hop)
    # windows has shape [B * len(starts), window] at the tagger's rate.
    windows = WaveformWindows(window, starts, name="tagger_windows")(mono)
    tagger = _build_tagger(config, record, load_pretrained)
    # scores has shape [B * len(starts), c].
    scores = tagger(windows)
    return WindowMean(len(starts), name="tag_vector")(scores)


# --- The scene CNN (Table 1) -----------------------------------------------------------------


@keras.saving.register_keras_serializable(package="lean")
class HeadSoftmax(keras.layers.Layer):
    """Eq. 2's attention map: am [B, f] split into `heads` groups of f/heads filters, a softmax
    within each, concatenated again: [B, f] -> [B, f], each head's weights summing to 1
    (to f/heads with `rescale`). Its own layer so int8 export keeps the softmax float."""

    def __init__(self, heads: int, rescale: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.rescale = int(heads), bool(rescale)

    def call(self, attention_map):
        filters = attention_map.shape[-1]
        # per_head has shape [B, heads, filters / heads].
        per_head = ops.reshape(attention_map, (-1, self.heads, filters // self.heads))
        weights = ops.reshape(ops.softmax(per_head, axis=-1), (-1, filters))
        return weights * (filters / self.heads) if self.rescale else weights

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "rescale": self.rescale}


def feature_lengths(window_samples: int, params: SceneCnnParams) -> list[int]:
    """Time steps after the strided conv and after each residual block (Table 1's shapes):
    valid strided conv on the pre-emphasised samples, then floor division by the pool size."""
    lengths = [(window_samples - 1 - params.stem_kernel) // params.stem_kernel + 1]
    for _ in range(params.blocks):
        lengths.append(lengths[-1] // params.pool_size)
    return lengths


def _leaky_relu(params: SceneCnnParams, name: str):
    return keras.layers.LeakyReLU(negative_slope=params.leaky_relu_slope, name=name)


def _batch_norm(params: SceneCnnParams, name: str):
    return keras.layers.BatchNormalization(momentum=params.batch_norm_momentum, name=name)


def _conv(params: SceneCnnParams, name: str):
    # Same padding keeps the length for the identity shortcut; Table 1's lengths need it.
    return keras.layers.Conv1D(params.filters, params.kernel_size, padding="same", name=name)


def _residual_block(x, params: SceneCnnParams, index: int):
    """[B, T, f] -> [B, floor(T / pool), f]: two convs with an identity shortcut, max pooling."""
    name = f"block{index}"
    shortcut = x
    if params.block_order == "post_activation":
        x = _conv(params, f"{name}_conv1")(x)
        x = _batch_norm(params, f"{name}_bn1")(x)
        x = _leaky_relu(params, f"{name}_lrelu1")(x)
        x = _conv(params, f"{name}_conv2")(x)
        x = _batch_norm(params, f"{name}_bn2")(x)
        x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
        x = _leaky_relu(params, f"{name}_lrelu2")(x)
    else:
        x = _batch_norm(params, f"{name}_bn1")(x)
        x = _leaky_relu(params, f"{name}_lrelu1")(x)
        x = _conv(params, f"{name}_conv1")(x)
        x = _batch_norm(params, f"{name}_bn2")(x)
        x = _leaky_relu(params, f"{name}_lrelu2")(x)
        x = _conv(params, f"{name}_conv2")(x)
        x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.MaxPooling1D(params.pool_size, name=f"{name}_pool")(x)


def _tag_transform(tags, layers: int, params: SceneCnnParams, prefix: str):
    """T [B, c] -> [B, tag_units] through `layers` FC + LeakyReLU layers (T itself for 0)."""
    for index in range(1, layers + 1):
        tags = keras.layers.Dense(params.tag_units, name=f"{prefix}_dense{index}")(tags)
        tags = _leaky_relu(params, f"{prefix}_lrelu{index}")(tags)
    return tags


def _filter_attention(feature_map, tag_features, params: SceneCnnParams):
    """Eq. 2: M' = M (.) am, am [B, f] from the tag features, per-head softmax, the same am
    for every time step: [B, t, f] -> [B, t, f]."""
    # attention_map has shape [B, f].
    attention_map = keras.layers.Dense(params.filters, name="tag_attention_map")(tag_features)
    weights = HeadSoftmax(params.tag_attention_heads, params.attention_rescale,
                          name="tag_attention_softmax")(attention_map)
    # weights has shape [B, 1, f]: broadcast over time.
    weights = keras.layers.Reshape((1, params.filters), name="tag_attention_weights")(weights)
    return keras.layers.Multiply(name="tag_attention")([feature_map, weights])


def _check_input(config: ModelConfig) -> None:
    params = config.params
    last = feature_lengths(config.window_samples, params)[-1]
    if last < 1:
        needed = params.stem_kernel * params.pool_size ** params.blocks + 1
        raise _error(f"{config.window_samples} samples per window leave no time step after "
                     f"{params.blocks} blocks; it needs at least {needed} "
                     f"({needed / config.input.sample_rate:.3f} s at {config.input.sample_rate} Hz)")


def tagger_part(config: ModelConfig) -> dict:
    """The tagger run a new scene run keeps a copy of (RUN_DIR/parts/tagger)."""
    if config.params.tagger_record is None:
        return {}
    return {TAGGER_LAYER: tagger_record(config.params).path}


@register(NAME, description="raw-waveform residual CNN for acoustic scenes, optionally "
          "conditioned on a tagger run's tag vector (Jung et al. 2020; 717,898 params at 10 "
          "classes without tags, paper: 676k)", params=SceneCnnParams, input=SCENE_INPUT,
          task="single_label", parts=tagger_part)
def build_scene_cnn(config: ModelConfig, load_pretrained: bool = True) -> keras.Model:
    """The scene CNN of Table 1, with the tag conditioning its params ask for.

    Args:
        config: `scene_cnn` config; input 48 kHz stereo 10 s by default (any rate, mono too).
        load_pretrained: copy the tagger run's weights into the tagger; False builds the
            architecture only from `tagger_record` (export_ready_copy copies every weight).
    Returns:
        keras.Model: waveform [B, samples(, channels)] -> probabilities [B, num_classes].
    """
    params = config.params
    _check_input(config)
    waveform = waveform_input(config)
    tags = _tag_vector(waveform, config, load_pretrained) if params.uses_tags else None
    x = waveform
    if config.input.channels == 1:
        # x has shape [B, samples, 1]: Conv1D needs a channel axis.
        x = keras.layers.Reshape((config.window_samples, 1), name="channel_axis")(x)
    # x has shape [B, samples - 1, channels] (479,999 x 2 in the paper).
    x = PreEmphasis(params.pre_emphasis, name="pre_emphasis")(x)
    # x has shape [B, 39999, 128] in the paper: strided conv, stride = filter length.
    x = keras.layers.Conv1D(params.filters, params.stem_kernel, strides=params.stem_kernel,
                            padding="valid", name="stem_conv")(x)
    x = _batch_norm(params, "stem_bn")(x)
    x = _leaky_relu(params, "stem_lrelu")(x)
    for index in range(1, params.blocks + 1):
        # x has shape [B, TABLE_1_LENGTHS[index], 128] in the paper.
        x = _residual_block(x, params, index)

    concat_tags = attention_tags = tags
    if params.shared_transform:
        concat_tags = attention_tags = _tag_transform(tags, params.tag_layers, params,
                                                      "tag_shared")
    elif tags is not None:
        if params.tag_concat != "none":
            concat_tags = _tag_transform(tags, params.tag_layers, params, "tag_concat")
        if params.tag_attention_heads:
            attention_tags = _tag_transform(tags, params.attention_layers, params,
                                            "tag_attention")
    if params.tag_attention_heads:
        # x has shape [B, 18, 128]: the last block's output, attended over its filters.
        x = _filter_attention(x, attention_tags, params)
    # pooled has shape [B, 2 f] (256): global average and max over time.
    pooled = keras.layers.Concatenate(name="pooled")([
        keras.layers.GlobalAveragePooling1D(name="global_average")(x),
        keras.layers.GlobalMaxPooling1D(name="global_max")(x),
    ])
    if params.tag_concat == "before_code":
        # pooled has shape [B, 2 f + tag width]: the code is a transform of both.
        pooled = keras.layers.Concatenate(name="pooled_tags")([pooled, concat_tags])
    # code has shape [B, 64].
    code = keras.layers.Dense(params.code_units, name="code")(pooled)
    if params.tag_concat == "codecat":
        # code has shape [B, 64 + tag width] (144 with 80 tags): the SVM's code.
        code = keras.layers.Concatenate(name="code_tags")([code, concat_tags])
    return keras.Model(waveform, classifier_head(code, config), name=config.name)


__all__ = [
    "HeadSoftmax",
    "SCENE_INPUT",
    "SceneCnnParams",
    "TABLE_1_LENGTHS",
    "TaggerRecord",
    "WindowMean",
    "build_scene_cnn",
    "feature_lengths",
    "read_tagger_record",
    "tagger_record",
]
