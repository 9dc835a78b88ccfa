"""ResNet audio classifiers with SE, CBAM or coordinate attention and average, max or attentive
pooling over time: the bag-of-refinements paper (Zhou et al., paper 000).

Pipeline (paper 000, Fig. 1): 80-band log filterbank X [T, 80] -> ResNet on the 1-channel
time-frequency image -> frame-level features H [T', d] -> pooling over time -> h_utt [d] ->
fully-connected layer -> softmax. The ResNet is the ImageNet one (He et al. 2016, Table 1) in
torchvision's layout: 7x7/2 stem conv with 64 channels, batch norm, ReLU, 3x3/2 max pool; four
stages of BasicBlocks (two 3x3 convs) or Bottlenecks (1x1, 3x3, 1x1 with 4x expansion, the
stride on the 3x3: "ResNet v1.5"); a 1x1 conv + batch norm on the shortcut where the shape
changes; no conv biases. Feature maps are [B, T, F, C] (time, frequency, channels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import keras

from lean.config import InputSpec, ModelConfig, check_literal_fields
from lean.errors import LeanError
from lean.frontends import Spectrogram, SpectrogramConfig
from lean.models.common import classifier_head, waveform_input
from lean.models.conv_attention import ConvBlockAttention, CoordinateAttention, SqueezeExcitation
from lean.models.pooling import temporal_pooling
from lean.models.registry import register

# Paper 000's input: 16 kHz mono, clips of 10 s on average; one 10 s window per decision.
RESNET_INPUT = InputSpec(sample_rate=16000, channels=1, window_seconds=10.0)


@dataclass(frozen=True)
class ResNetLayout:
    """One row of the layer table: the residual block type and the blocks in each stage."""

    block: Literal["basic", "bottleneck"]
    blocks: tuple[int, int, int, int]
    description: str = ""

    @property
    def expansion(self) -> int:
        """Output channels of a block per unit of its stage width."""
        return 4 if self.block == "bottleneck" else 1


# The layer table: He et al. 2016, Table 1 (conv2_x .. conv5_x). The paper's numbers beside
# each row are for 224 x 224 RGB and 1000 classes: parameters (torchvision's exact counts) and
# multiply-adds (Table 1's "FLOPs"). Paper 000 uses resnet18 (student) and resnet50 (teacher).
RESNET_LAYER_TABLE = {
    #                       block         blocks        params (1000 cls)  mult-adds
    "resnet18": ResNetLayout("basic", (2, 2, 2, 2),       # 11,689,512         1.8e9
                             "paper 000's student"),
    "resnet34": ResNetLayout("basic", (3, 4, 6, 3)),      # 21,797,672         3.6e9
    "resnet50": ResNetLayout("bottleneck", (3, 4, 6, 3),  # 25,557,032         3.8e9
                             "paper 000's distillation teacher"),
}
# Stem: conv 7x7, stride 2, 64 channels; max pool 3x3, stride 2.
STEM_CHANNELS, STEM_KERNEL, STEM_POOL = 64, 7, 3
# Stages (He et al. conv2_x .. conv5_x): width and the stride of each stage's first block.
STAGE_WIDTHS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)

# torchvision's batch norm (PyTorch defaults: eps 1e-5, momentum 0.1 = Keras 0.9).
_BN = {"epsilon": 1e-5, "momentum": 0.9}


def conv_initializer():
    """torchvision's conv initialisation: Kaiming normal, fan_out, ReLU gain. A new instance per
    layer: one unseeded Keras initializer called again returns the same values, which gave
    every conv of one shape identical initial weights (and the int8 file shared their buffers)."""
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


@dataclass(frozen=True)
class ResNetParams:
    """The ResNet family's params; defaults are paper 000's baseline (ResNet + average pooling)."""

    # Paper 000: 80-band log filterbank, 20 ms window, 10 ms hop (Kaldi-style, kept float).
    frontend: SpectrogramConfig = field(default_factory=SpectrogramConfig.kaldi_fbank)
    # Attention in every residual block, after its last batch norm and before the addition.
    attention: Literal["none", "se", "cbam", "ca"] = "none"
    # Pooling of the frame-level features over time (paper 000, Table I).
    pooling: Literal["average", "max", "attentive"] = "average"
    # How the last stage's frequency axis becomes the frame feature h_t: "mean" gives d = C
    # (with average pooling exactly torchvision's global average pool), "flatten" d = C F'.
    frequency: Literal["mean", "flatten"] = "mean"
    # Reductions r (paper 000 gives none): Hu et al. and Woo et al. use 16; Hou et al. 32 with
    # at least 8 hidden channels.
    se_reduction: int = 16
    cbam_reduction: int = 16
    cbam_kernel_size: int = 7
    ca_reduction: int = 32
    ca_min_channels: int = 8
    # d of attentive pooling's tanh(W h_t + b).
    attentive_units: int = 128

    def __post_init__(self):
        check_literal_fields(self, "resnet params")
        for key in ("se_reduction", "cbam_reduction", "cbam_kernel_size", "ca_reduction",
                    "ca_min_channels", "attentive_units"):
            if getattr(self, key) < 1:
                raise LeanError(f"resnet params: {key}={getattr(self, key)} must be at least 1")
        if self.cbam_kernel_size % 2 == 0:
            raise LeanError(f"resnet params: cbam_kernel_size={self.cbam_kernel_size} must be odd")


def _attention(params: ResNetParams, name: str):
    """The block attention layer that `params.attention` names, or None."""
    if params.attention == "se":
        return SqueezeExcitation(params.se_reduction, name=name)
    if params.attention == "cbam":
        return ConvBlockAttention(params.cbam_reduction, params.cbam_kernel_size, name=name)
    if params.attention == "ca":
        return CoordinateAttention(params.ca_reduction, params.ca_min_channels, name=name)
    return None


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, suffix: str = "",
             relu: bool = True):
    """Conv (no bias) -> batch norm (-> ReLU), layers `<name>_conv<suffix>`, `<name>_bn<suffix>`.

    A strided conv with a kernel wider than 1 pads (k - 1) / 2 on every side, as torchvision
    does; Keras's "same" would pad only after for even sizes and shift the sampling grid by one
    against the 1x1 strided shortcut. The output size is ceil(n / stride) either way.
    """
    padding = "same"
    if stride > 1 and kernel > 1:
        x = keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad{suffix}")(x)
        padding = "valid"
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False,
                            kernel_initializer=conv_initializer(), name=f"{name}_conv{suffix}")(x)
    x = keras.layers.BatchNormalization(**_BN, name=f"{name}_bn{suffix}")(x)
    if relu:
        x = keras.layers.ReLU(name=f"{name}_relu{suffix}")(x)
    return x


def _residual_block(x, layout: ResNetLayout, width: int, stride: int, params: ResNetParams,
                    name: str):
    """One BasicBlock or Bottleneck: [B, T, F, C_in] -> [B, ceil(T/s), ceil(F/s), width * exp]."""
    out_channels = width * layout.expansion
    if layout.block == "basic":
        y = _conv_bn(x, width, 3, stride, name, "1")
        y = _conv_bn(y, width, 3, 1, name, "2", relu=False)
    else:
        y = _conv_bn(x, width, 1, 1, name, "1")
        y = _conv_bn(y, width, 3, stride, name, "2")
        y = _conv_bn(y, out_channels, 1, 1, name, "3", relu=False)
    attention = _attention(params, f"{name}_attention")
    if attention is not None:
        y = attention(y)
    shortcut = x
    if stride != 1 or x.shape[-1] != out_channels:
        shortcut = _conv_bn(x, out_channels, 1, stride, f"{name}_shortcut", relu=False)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def resnet_frames(features, layout: ResNetLayout, params: ResNetParams):
    """The ResNet trunk and the frequency collapse: features -> frame-level features H.

    Args:
        features: log filterbank tensor [B, T, F], or [B, T, F, channels] for multi-channel
            audio (F static).
        layout: a row of RESNET_LAYER_TABLE.
        params: the family params (attention, frequency).
    Returns:
        Tensor [B, T', d] with T' = ceil(T / 32) and d = 512 * expansion ("mean") or that times
        F' = ceil(F / 32) ("flatten"); e.g. 999 x 80 (10 s) -> [32, 512] for resnet18.
    """
    image = features
    if len(features.shape) == 3:
        # image has shape [B, T, F, 1]: a 1-channel time-frequency image.
        image = keras.layers.Reshape((-1, features.shape[2], 1), name="image")(features)
    # x has shape [B, T/2, F/2, 64] after the stem conv, [B, T/4, F/4, 64] after its pool.
    x = _conv_bn(image, STEM_CHANNELS, STEM_KERNEL, 2, "stem")
    # Zero padding equals torchvision's -inf padding here: the input is a ReLU output.
    x = keras.layers.ZeroPadding2D(STEM_POOL // 2, name="stem_pool_pad")(x)
    x = keras.layers.MaxPooling2D(STEM_POOL, strides=2, name="stem_pool")(x)
    for stage, (blocks, width, stride) in enumerate(
            zip(layout.blocks, STAGE_WIDTHS, STAGE_STRIDES), start=1):
        for block in range(1, blocks + 1):
            # x has shape [B, T/(4 s), F/(4 s), width * expansion], s the strides so far.
            x = _residual_block(x, layout, width, stride if block == 1 else 1, params,
                                f"stage{stage}_block{block}")
    channels, last_frequencies = x.shape[-1], x.shape[2]
    if params.frequency == "mean":
        # frames has shape [B, T', C]: mean over the F' frequency rows.
        x = keras.layers.AveragePooling2D((1, last_frequencies), name="frequency_mean")(x)
        return keras.layers.Reshape((-1, channels), name="frames")(x)
    # frames has shape [B, T', F' C].
    return keras.layers.Reshape((-1, last_frequencies * channels), name="frames")(x)


def resnet_features(features, layout: ResNetLayout, params: ResNetParams):
    """Features [B, T, F] -> clip-level feature h_utt [B, d]: the trunk, then pooling over time.

    Args:
        features: log filterbank tensor [B, T, F] or [B, T, F, channels] (F static).
        layout: a row of RESNET_LAYER_TABLE.
        params: the family params.
    Returns:
        Tensor [B, d] (see `resnet_frames` for d), the input of the classifier head.
    """
    frames = resnet_frames(features, layout, params)
    return temporal_pooling(frames, params.pooling, params.attentive_units,
                            name="temporal_pooling")


def layout_of(name: str) -> ResNetLayout:
    """The layer-table row of model `name`."""
    if name not in RESNET_LAYER_TABLE:
        raise LeanError(f"no ResNet layout {name!r}; known: {', '.join(RESNET_LAYER_TABLE)}")
    return RESNET_LAYER_TABLE[name]


def build_resnet(config: ModelConfig, load_pretrained: bool = True) -> keras.Model:
    """Builds the ResNet family member `config.name` (a row of RESNET_LAYER_TABLE).

    Args:
        config: the model config; `config.params` a ResNetParams.
        load_pretrained: unused (nothing is pretrained: paper 000 trains from scratch).
    Returns:
        keras.Model: waveform [B, samples] (or [B, samples, channels]) -> the float32
        fbank frontend [B, T, 80(, channels)] -> ResNet -> pooling -> probabilities
        [B, num_classes]. The export-ready build differs only in its static batch of 1.
    """
    del load_pretrained
    waveform = waveform_input(config)
    # features has shape [B, T, F(, channels)]: [B, 999, 80] for 10 s of 16 kHz mono.
    features = Spectrogram(config.params.frontend, config.input.sample_rate)(waveform)
    pooled = resnet_features(features, layout_of(config.name), config.params)
    return keras.Model(waveform, classifier_head(pooled, config), name=config.name)


for _name, _layout in RESNET_LAYER_TABLE.items():
    register(
        _name,
        description=(f"{_name.replace('resnet', 'ResNet')} on an 80-band fbank; attention "
                     f"none|se|cbam|ca, pooling average|max|attentive"
                     + (f" ({_layout.description})" if _layout.description else "")),
        params=ResNetParams, input=RESNET_INPUT, task="single_label",
    )(build_resnet)


__all__ = [
    "RESNET_INPUT",
    "RESNET_LAYER_TABLE",
    "ResNetLayout",
    "ResNetParams",
    "STAGE_STRIDES",
    "STAGE_WIDTHS",
    "build_resnet",
    "layout_of",
    "resnet_features",
    "resnet_frames",
]
