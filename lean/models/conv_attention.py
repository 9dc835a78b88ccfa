"""Attention modules for CNN feature maps: squeeze-and-excitation, CBAM, coordinate attention.

Each is a Keras layer that maps a feature map [B, T, F, C] (channels last; axis 1 is time,
axis 2 frequency) to a re-weighted map of the same shape, so a residual block can insert it
after its last batch norm, before the addition (Hu et al. 2018, Fig. 3; Woo et al. 2018,
Fig. 3; Hou et al. 2021, as used in ResNets). Paper 000 (Zhou et al., bag of refinements)
writes X in R^{C x H x W} with H = frequency and W = time; the docstrings use that notation.

Where an equation leaves out a detail, the authors' released implementations decide: SE and
CBAM's MLPs and the 1x1 convolutions of coordinate attention carry biases; CBAM's 7x7 spatial
convolution has no bias and is followed by a batch norm; coordinate attention's non-linearity
F_1 is batch norm + h-swish. All ops are TFLite builtins (MEAN, REDUCE_MAX, FULLY_CONNECTED,
CONV_2D, CONCATENATION, LOGISTIC, HARD_SWISH, MUL) with int8 kernels.
"""

from __future__ import annotations

import keras
from keras import ops

from lean.errors import LeanError

def reduced_channels(channels: int, reduction: int, minimum: int = 1) -> int:
    """Hidden width of a reduction-r bottleneck: max(minimum, channels // reduction)."""
    hidden = max(minimum, channels // reduction)
    if hidden < 1:
        raise LeanError(f"attention over {channels} channels with reduction {reduction} leaves "
                        "no hidden channel")
    return hidden


class _ChannelMlp:
    """Weights of the two-layer bottleneck MLP C -> C/r -> C that SE and CBAM share the form of."""

    def _build_mlp(self, channels: int, hidden: int) -> None:
        self.reduce_kernel = self.add_weight((channels, hidden), name="reduce_kernel")
        self.reduce_bias = self.add_weight((hidden,), initializer="zeros", name="reduce_bias")
        self.expand_kernel = self.add_weight((hidden, channels), name="expand_kernel")
        self.expand_bias = self.add_weight((channels,), initializer="zeros", name="expand_bias")

    def _mlp(self, z):
        """z [B, C] -> W_1 delta(W_0 z) [B, C] (delta = ReLU), before any sigmoid."""
        hidden = ops.relu(ops.matmul(z, self.reduce_kernel) + self.reduce_bias)
        return ops.matmul(hidden, self.expand_kernel) + self.expand_bias


@keras.saving.register_keras_serializable(package="lean")
class SqueezeExcitation(_ChannelMlp, keras.layers.Layer):
    """Squeeze-and-excitation (Hu et al. 2018; paper 000 eqs. 1-3), [B, T, F, C] -> same shape.

    z_c = mean over H x W of X_c; s = sigmoid(W_2 ReLU(W_1 z)); X^_c = X_c * s_c, with
    W_1 in R^{C/r x C}, W_2 in R^{C x C/r} (and biases). Parameters: 2 C^2/r + C/r + C.
    """

    def __init__(self, reduction: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.reduction = int(reduction)

    def build(self, input_shape):
        channels = input_shape[-1]
        self._build_mlp(channels, reduced_channels(channels, self.reduction))

    def call(self, x):
        # z has shape [B, C]: the squeeze, a global mean over time and frequency.
        z = ops.mean(x, axis=(1, 2))
        # s has shape [B, C]: the excitation, one gate per channel.
        s = ops.sigmoid(self._mlp(z))
        return x * s[:, None, None, :]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="lean")
class ConvBlockAttention(_ChannelMlp, keras.layers.Layer):
    """CBAM (Woo et al. 2018; paper 000 eqs. 4-6), [B, T, F, C] -> same shape.

    Channel attention, then spatial attention on its output, as in the original:
      M_c = sigmoid(MLP(AvgPool_HW(X)) + MLP(MaxPool_HW(X))), MLP = W_1 ReLU(W_0 .) shared,
      X' = M_c * X;
      M_s = sigmoid(BN(conv_kxk([mean_C(X'); max_C(X')]))), X^ = M_s * X'.
    (Paper 000's eq. 5 misplaces its parentheses and drops the ReLU; its "pooling on channel
    dimension" for M_c pools over the spatial dimensions, as in Woo et al.)
    Parameters: 2 C^2/r + C/r + C + 2 k^2, plus the spatial batch norm's 2 (and 2 moving stats).
    """

    def __init__(self, reduction: int = 16, kernel_size: int = 7, **kwargs):
        super().__init__(**kwargs)
        self.reduction = int(reduction)
        self.kernel_size = int(kernel_size)
        # Woo et al.'s code: BatchNorm2d(eps=1e-5, momentum=0.01), i.e. Keras momentum 0.99.
        self.spatial_norm = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.99,
                                                            name="spatial_norm")

    def build(self, input_shape):
        channels = input_shape[-1]
        self._build_mlp(channels, reduced_channels(channels, self.reduction))
        # Input channels of the spatial conv: [mean over C; max over C].
        self.spatial_kernel = self.add_weight(
            (self.kernel_size, self.kernel_size, 2, 1), name="spatial_kernel",
            initializer=keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal"))
        self.spatial_norm.build((*input_shape[:-1], 1))

    def call(self, x, training=None):
        # channel_gate has shape [B, C].
        channel_gate = ops.sigmoid(self._mlp(ops.mean(x, axis=(1, 2)))
                                   + self._mlp(ops.max(x, axis=(1, 2))))
        x = x * channel_gate[:, None, None, :]
        # pooled has shape [B, T, F, 2]: mean and max across channels.
        pooled = ops.concatenate([ops.mean(x, axis=-1, keepdims=True),
                                  ops.max(x, axis=-1, keepdims=True)], axis=-1)
        # spatial_gate has shape [B, T, F, 1]; "same" padding of an odd kernel at stride 1 is
        # the symmetric (k - 1) / 2 of the original.
        spatial_gate = ops.sigmoid(self.spatial_norm(
            ops.conv(pooled, self.spatial_kernel, padding="same"), training=training))
        return x * spatial_gate

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction,
                "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable(package="lean")
class CoordinateAttention(keras.layers.Layer):
    """Coordinate attention (Hou et al. 2021; paper 000 eqs. 7-10), [B, T, F, C] -> same shape.

    z^h_c(f) = mean over time of x_c(f, .) and z^w_c(t) = mean over frequency of x_c(., t);
    u = h-swish(BN(conv_1x1([z^h; z^w]))) with C -> mip = max(min_channels, C / r) channels,
    concatenated along the spatial axis (F + T positions); u split back into u^h [F], u^w [T];
    s^h = sigmoid(conv_1x1(u^h)), s^w = sigmoid(conv_1x1(u^w)), mip -> C each;
    x^_c(f, t) = x_c(f, t) * s^h_c(f) * s^w_c(t).
    Parameters: C mip + mip (+ BN's 2 mip trainable, 2 mip moving) + 2 (mip C + C).
    The frequency axis must be static (the split needs F); time may be dynamic.
    """

    def __init__(self, reduction: int = 32, min_channels: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.reduction = int(reduction)
        self.min_channels = int(min_channels)
        # Hou et al.'s code: BatchNorm2d with PyTorch defaults (eps 1e-5, momentum 0.1).
        self.norm = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="norm")

    def build(self, input_shape):
        frequencies, channels = input_shape[2], input_shape[-1]
        if frequencies is None:
            raise LeanError(f"{self.name}: coordinate attention needs a static frequency axis, "
                            f"got shape {tuple(input_shape)}")
        hidden = reduced_channels(channels, self.reduction, self.min_channels)
        self.reduce_kernel = self.add_weight((channels, hidden), name="reduce_kernel")
        self.reduce_bias = self.add_weight((hidden,), initializer="zeros", name="reduce_bias")
        self.frequency_kernel = self.add_weight((hidden, channels), name="frequency_kernel")
        self.frequency_bias = self.add_weight((channels,), initializer="zeros",
                                              name="frequency_bias")
        self.time_kernel = self.add_weight((hidden, channels), name="time_kernel")
        self.time_bias = self.add_weight((channels,), initializer="zeros", name="time_bias")
        self.norm.build((input_shape[0], None, hidden))

    def call(self, x, training=None):
        frequencies = x.shape[2]
        # z_frequency (z^h) has shape [B, F, C]; z_time (z^w) [B, T, C].
        z_frequency = ops.mean(x, axis=1)
        z_time = ops.mean(x, axis=2)
        # u has shape [B, F + T, mip].
        u = ops.concatenate([z_frequency, z_time], axis=1)
        u = ops.matmul(u, self.reduce_kernel) + self.reduce_bias
        u = ops.hard_swish(self.norm(u, training=training))
        # s_frequency (s^h) has shape [B, F, C]; s_time (s^w) [B, T, C].
        s_frequency = ops.sigmoid(ops.matmul(u[:, :frequencies], self.frequency_kernel)
                                  + self.frequency_bias)
        s_time = ops.sigmoid(ops.matmul(u[:, frequencies:], self.time_kernel) + self.time_bias)
        return x * s_time[:, :, None, :] * s_frequency[:, None, :, :]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction,
                "min_channels": self.min_channels}


__all__ = [
    "ConvBlockAttention",
    "CoordinateAttention",
    "SqueezeExcitation",
    "reduced_channels",
]
