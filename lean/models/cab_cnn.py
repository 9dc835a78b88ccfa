"""CAB-CNN (Lu, Zhang, Nayak): a raw-waveform CNN with a classifier-attention block (ACB).

The waveform, z-normalised and max-decimated to 4 kHz (float front ops), goes through four Conv1D + MaxPool stages (Table 2) that
divide its length by 100, so the "distilled" representation a = [a_1 .. a_p] (eq. 1) has 40
steps of 128 features per second of input. At every step the ACB runs n = 40 tiny classifiers,
Dense(8, relu) - Dense(4, relu) - Dense(C, softmax), giving c_ti, and an attention unit,
Dense(160, relu) - Dense(80, relu) - Dense(n, softmax), giving alpha_t; the step's output is
c_t = sum_i alpha_ti c_ti, and the model's output is the unweighted average of c_t over time.

The paper writes Pr(y) = sum_t c_t while calling it an "unweighted average"; the mean is what
makes the output a distribution, so the mean it is. The 40 classifiers are one Dense(128 -> 40 x 8)
and two grouped matmuls (`GroupedDense`, TFLite BATCH_MATMUL), not 40 separate layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import keras
from keras import ops

from lean.config import InputSpec, ModelConfig
from lean.errors import LeanError
from lean.frontends import MaxDecimation, ZNormalization
from lean.models.attention import MeanPooling
from lean.models.common import OUTPUT_NAME, waveform_input
from lean.models.registry import register
from lean.tasks import task

# "For every second of the audio, we partition the audio into 4,000 sub-intervals and pick the
# maximum element of each sub-interval" (Sec. 4, preprocessing).
DECIMATED_RATE = 4000
# The paper does not state its recordings' rate; 16 kHz is what phones and MediaPipe deliver.
DEFAULT_SAMPLE_RATE = 16000


@dataclass(frozen=True)
class ConvStage:
    """One row pair of Table 2: Conv1D(filters, kernel, same, relu) -> MaxPool(size, stride, same)
    -> Dropout(dropout) (0: none)."""

    filters: int
    kernel: int
    pool: int
    stride: int
    dropout: float


# Table 2.
CONV_STAGES = (
    ConvStage(filters=16, kernel=4, pool=4, stride=2, dropout=0.15),
    ConvStage(filters=32, kernel=4, pool=4, stride=2, dropout=0.15),
    ConvStage(filters=32, kernel=10, pool=10, stride=5, dropout=0.1),
    ConvStage(filters=128, kernel=10, pool=10, stride=5, dropout=0.0),
)
# Sec. 4, model configurations: each classifier Dense(8, relu) - Dense(4, relu) - Dense(C);
# the attention unit Dense(160, relu) - Dense(80, relu) - Dense(n, softmax).
CLASSIFIER_UNITS = (8, 4)
ATTENTION_UNITS = (160, 80)


def steps_per_second() -> int:
    """Time steps of the representation a per second of input: 4000 / (2 * 2 * 5 * 5) = 40."""
    downsampling = 1
    for stage in CONV_STAGES:
        downsampling *= stage.stride
    return DECIMATED_RATE // downsampling


@dataclass(frozen=True)
class CabCnnParams:
    """CAB-CNN's params (paper values).

    `seconds` is the model's window: the default input spec's `window_seconds` follows it (the
    paper's CAB-CNN-5s/10s/30s/60s; 30 s was its best), and a config whose input window differs
    is an error, so the two never disagree. `batch_length` is how `lean train` cuts training
    examples: `shortest` takes each clip's first `seconds` (the whole clip when shorter) and cuts
    each batch to its shortest member (the paper's rule, Sec. 4); `window` trains on fixed
    windows of `seconds` like every other model. Evaluation and export always use fixed windows.
    """

    seconds: float = 30.0
    classifiers: int = 40
    batch_length: Literal["shortest", "window"] = "shortest"


def default_input(params: CabCnnParams) -> InputSpec:
    """The input spec `params` imply: `seconds` of mono audio at DEFAULT_SAMPLE_RATE."""
    if not params.seconds > 0:
        raise LeanError(f"model 'cab_cnn': seconds must be positive, not {params.seconds}")
    return InputSpec(sample_rate=DEFAULT_SAMPLE_RATE, channels=1, window_seconds=params.seconds)


@keras.saving.register_keras_serializable(package="lean")
class GroupedDense(keras.layers.Layer):
    """G independent Dense layers applied side by side: [..., G, D] -> [..., G, units].

    y[..., g, :] = activation(x[..., g, :] @ kernel[g] + bias[g]) with kernel [G, D, units] and
    bias [G, units]; one einsum, which TFLite runs as TRANSPOSE + BATCH_MATMUL. Each group's
    kernel starts as Keras' Dense would (Glorot uniform with that group's fan-in and fan-out).
    """

    def __init__(self, units: int, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        groups, width = int(input_shape[-2]), int(input_shape[-1])
        # Glorot over [G, D, U] counts fans as G * D and G * U; scale G gives one Dense's.
        initializer = keras.initializers.VarianceScaling(scale=groups, mode="fan_avg",
                                                         distribution="uniform")
        self.kernel = self.add_weight((groups, width, self.units), initializer=initializer,
                                      name="kernel")
        self.bias = self.add_weight((groups, self.units), initializer="zeros", name="bias")

    def call(self, inputs):
        # outputs has shape [..., G, units].
        outputs = ops.einsum("...gd,gdu->...gu", inputs, self.kernel) + self.bias
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": keras.activations.serialize(self.activation)}


@keras.saving.register_keras_serializable(package="lean")
class ClassifierAttention(keras.layers.Layer):
    """The ACB's output at every step (Fig. 2): c_t = sum_i alpha_ti c_ti.

    Inputs: alpha [B, T, n] (attention weights, a distribution over the n classifiers) and
    c [B, T, n, C] (each classifier's class probabilities). Output: c_t [B, T, C].
    """

    def build(self, input_shape):
        alpha_shape, classifier_shape = input_shape
        if alpha_shape[-1] != classifier_shape[-2]:
            raise ValueError(f"{self.name}: {alpha_shape[-1]} attention weights for "
                             f"{classifier_shape[-2]} classifiers")

    def call(self, inputs):
        alpha, classifier_probabilities = inputs
        # weighted has shape [B, T, n, C]; its sum over n is c_t [B, T, C].
        weighted = ops.expand_dims(alpha, -1) * classifier_probabilities
        return ops.sum(weighted, axis=-2)

    def compute_output_shape(self, input_shape):
        _, classifier_shape = input_shape
        return (*classifier_shape[:-2], classifier_shape[-1])


def _check_config(config: ModelConfig) -> None:
    params = config.params
    name = config.name
    if params.classifiers < 1:
        raise LeanError(f"model {name!r}: classifiers must be at least 1, not {params.classifiers}")
    if config.input.window_seconds != params.seconds:
        raise LeanError(
            f"model {name!r}: the input window is {config.input.window_seconds} s but "
            f"seconds={params.seconds}; set the window with --param seconds=... only"
        )
    if config.input.channels != 1:
        raise LeanError(f"model {name!r} takes mono audio, not {config.input.channels} channels "
                        "(the data pipeline downmixes for a mono model)")
    rate = config.input.sample_rate
    if rate < DECIMATED_RATE:
        raise LeanError(f"model {name!r}: input at {rate} Hz; it max-decimates to "
                        f"{DECIMATED_RATE} Hz, so it needs at least that")
    if params.batch_length == "shortest" and rate % DECIMATED_RATE:
        # MaxDecimation needs a fixed length for a non-integer ratio (np.array_split's blocks).
        raise LeanError(f"model {name!r}: batch_length=shortest trains on any length, which needs "
                        f"an input rate that is a multiple of {DECIMATED_RATE} Hz, not {rate} Hz; "
                        "use --param batch_length=window")


def front_ops(waveform, sample_rate: int):
    """Sec. 4's preprocessing as float layers: per-window z-normalisation, then the signed
    maximum of each of 4,000 sub-intervals per second. waveform [B, samples] at `sample_rate`
    -> [B, samples * 4000 / sample_rate] (whole sub-intervals)."""
    # normalized has shape [B, samples].
    normalized = ZNormalization(name="z_normalization")(waveform)
    if sample_rate == DECIMATED_RATE:
        return normalized
    # decimated has shape [B, samples'] at 4 kHz.
    return MaxDecimation(input_rate=sample_rate, output_rate=DECIMATED_RATE,
                         name="max_decimation")(normalized)


def conv_stack(samples):
    """Table 2's convolutions: decimated waveform [B, L] -> a [B, ceil(L / 100), 128]."""
    # x has shape [B, L, 1].
    x = keras.layers.Reshape((-1, 1), name="channel_axis")(samples)
    for index, stage in enumerate(CONV_STAGES, start=1):
        # x has shape [B, L_k, filters] with L_k = ceil(L_{k-1} / stride) ("same" pooling).
        x = keras.layers.Conv1D(stage.filters, stage.kernel, padding="same", activation="relu",
                                name=f"conv{index}")(x)
        x = keras.layers.MaxPooling1D(stage.pool, stage.stride, padding="same",
                                      name=f"pool{index}")(x)
        if stage.dropout:
            x = keras.layers.Dropout(stage.dropout, name=f"dropout{index}")(x)
    return keras.layers.BatchNormalization(name="batch_norm")(x)


def classifier_attention_block(a, config: ModelConfig):
    """The ACB at every step: a [B, T, 128] -> c_t [B, T, num_classes] (Fig. 2).

    Classifier outputs use the task's activation: a softmax over the classes (single_label, the
    paper's), or per-class sigmoids (multilabel), so that c_t, a convex combination of them,
    is a distribution or per-class probabilities respectively.
    """
    n = config.params.classifiers
    first, second = CLASSIFIER_UNITS
    # hidden has shape [B, T, n * 8]: every classifier's first layer in one Dense.
    hidden = keras.layers.Dense(n * first, activation="relu", name="classifier_dense1")(a)
    # hidden has shape [B, T, n, 8].
    hidden = keras.layers.Reshape((-1, n, first), name="classifier_groups")(hidden)
    # hidden has shape [B, T, n, 4].
    hidden = GroupedDense(second, activation="relu", name="classifier_dense2")(hidden)
    # c_ti has shape [B, T, n, C].
    classifier_probabilities = GroupedDense(
        config.num_classes, activation=task(config.task).activation,
        name="classifier_probabilities")(hidden)
    attention = a
    for index, units in enumerate(ATTENTION_UNITS, start=1):
        # attention has shape [B, T, 160], then [B, T, 80].
        attention = keras.layers.Dense(units, activation="relu",
                                       name=f"attention_dense{index}")(attention)
    # alpha has shape [B, T, n]: a layer of its own, so the exporter keeps its softmax float.
    alpha = keras.layers.Dense(n, activation="softmax", name="attention_weights")(attention)
    # c_t has shape [B, T, C].
    return ClassifierAttention(name="classifier_attention")([alpha, classifier_probabilities])


@register(
    "cab_cnn",
    description="CAB-CNN: raw-waveform CNN + 40 classifiers weighed by attention at 40 steps/s, "
                "averaged over time (134,112 params at the paper's 3 classes)",
    params=CabCnnParams,
    input=default_input,
    task="single_label",
)
def build_cab_cnn(config: ModelConfig, load_pretrained: bool = True) -> keras.Model:
    """Builds CAB-CNN.

    Args:
        config: `params` a CabCnnParams; `input` mono, its window `params.seconds`.
        load_pretrained: unused (nothing pretrained).
    Returns:
        keras.Model: waveform [B, samples] (time axis open in the training build when
        `batch_length` is `shortest`) -> probabilities float32 [B, num_classes], the mean of
        c_t over the 40 steps per second.
    """
    del load_pretrained
    _check_config(config)
    waveform = waveform_input(config, variable_length=config.params.batch_length == "shortest")
    # decimated has shape [B, 4000 * seconds].
    decimated = front_ops(waveform, config.input.sample_rate)
    # a has shape [B, 40 * seconds, 128].
    a = conv_stack(decimated)
    # c_t has shape [B, 40 * seconds, C].
    step_probabilities = classifier_attention_block(a, config)
    # probabilities has shape [B, C]: the unweighted average over t (float32, the contract's).
    probabilities = MeanPooling(name=OUTPUT_NAME, dtype="float32")(step_probabilities)
    return keras.Model(waveform, probabilities, name=config.name)


__all__ = [
    "ATTENTION_UNITS",
    "CLASSIFIER_UNITS",
    "CONV_STAGES",
    "CabCnnParams",
    "ClassifierAttention",
    "ConvStage",
    "DECIMATED_RATE",
    "GroupedDense",
    "build_cab_cnn",
    "classifier_attention_block",
    "conv_stack",
    "default_input",
    "front_ops",
    "steps_per_second",
]
