"""Attention layers: LEAN's cross attention and Att-CRNN's spatio-temporal attention pooling."""

from __future__ import annotations

import keras
from keras import ops


class CrossAttention(keras.layers.Layer):
    """Base of the cross attentions: subclasses define `scores`; softmax over T and the weighted
    sum are shared. Inputs: query [B, Dq], values h [B, T, D]. Output: context C [B, D]."""

    def scores(self, query, values):
        """Unnormalised attention scores [B, T]."""
        raise NotImplementedError

    def attention(self, query, values):
        """(context [B, D], weights [B, T]); the weights are a softmax over T."""
        weights = ops.softmax(self.scores(query, values), axis=-1)
        context = ops.sum(ops.expand_dims(weights, -1) * values, axis=1)
        return context, weights

    def call(self, inputs):
        query, values = inputs
        return self.attention(query, values)[0]

    def compute_output_shape(self, input_shape):
        query_shape, values_shape = input_shape
        return (query_shape[0], values_shape[-1])


@keras.saving.register_keras_serializable(package="lean")
class MeanPooling(keras.layers.Layer):
    """The joint model's context without attention: the mean of h over time, [B, T, D] -> [B, D]."""

    def call(self, values):
        return ops.mean(values, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="lean")
class AffinityAttention(CrossAttention):
    """Parameter-free affinity attention: A = softmax_t(tanh(q . h_t)), C = sum_t A_t h_t.

    Inputs: query q [B, D] (E_yam), values h [B, T, D] (wave encoder). Output: C [B, D].
    """

    def scores(self, query, values):
        """Unnormalised attention scores [B, T]."""
        return ops.tanh(ops.sum(ops.expand_dims(query, 1) * values, axis=-1))



@keras.saving.register_keras_serializable(package="lean")
class BahdanauAttention(CrossAttention):
    """Additive (Bahdanau) cross attention, LEAN's: Q = q Wq + bq, K = h Wk + bk (width d),
    V = tanh(Q + K) Wv + bv, A = softmax over t of V, C = sum_t A_t h_t.

    Inputs: query q [B, Dq] (E_yam), values h [B, T, Dk] (wave encoder). Output: C [B, Dk].
    """

    def __init__(self, units: int = 128, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        query_shape, values_shape = input_shape
        self.query_kernel = self.add_weight((query_shape[-1], self.units), name="query_kernel")
        self.query_bias = self.add_weight((self.units,), initializer="zeros", name="query_bias")
        self.key_kernel = self.add_weight((values_shape[-1], self.units), name="key_kernel")
        self.key_bias = self.add_weight((self.units,), initializer="zeros", name="key_bias")
        self.score_kernel = self.add_weight((self.units, 1), name="score_kernel")
        self.score_bias = self.add_weight((1,), initializer="zeros", name="score_bias")

    def scores(self, query, values):
        """Unnormalised attention scores V [B, T]."""
        # q_proj has shape [B, 1, d]; k_proj [B, T, d].
        q_proj = ops.expand_dims(ops.matmul(query, self.query_kernel) + self.query_bias, 1)
        k_proj = ops.matmul(values, self.key_kernel) + self.key_bias
        energy = ops.matmul(ops.tanh(q_proj + k_proj), self.score_kernel) + self.score_bias
        return ops.squeeze(energy, -1)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="lean")
class AdditiveAttentionScore(keras.layers.Layer):
    """Additive attention scores of a sequence: e_n = u^T tanh(W x_n + b), [B, N, D] -> [B, N].

    Phan et al. 2019 eqs. 6-7 write the scoring function as tanh(x^T W + b) with an "attention
    layer size" of 64; a size-64 layer gives a score only after a projection to a scalar, here
    the context vector u of their attention layers (as in their SeqSleepNet): W [D, units],
    b [units], u [units, 1]. The softmax over n is not here: it belongs to the pooling layer,
    which the int8 exporter keeps float, while these matmuls quantize well (tanh output).
    """

    def __init__(self, units: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight((input_shape[-1], self.units), name="kernel")
        self.bias = self.add_weight((self.units,), initializer="zeros", name="bias")
        self.context = self.add_weight((self.units, 1), name="context")

    def call(self, inputs):
        # hidden has shape [B, N, units].
        hidden = ops.tanh(ops.matmul(inputs, self.kernel) + self.bias)
        # scores has shape [B, N].
        return ops.squeeze(ops.matmul(hidden, self.context), -1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="lean")
class SpatioTemporalPooling(keras.layers.Layer):
    """Spatio-temporal attention pooling (Phan et al. 2019 eqs. 4, 5, 8, 9).

    Inputs: Z [B, T, S] (T time steps of S = 2H features), temporal scores [B, T] and spatial
    scores [B, S] (`AdditiveAttentionScore` of Z's columns z_t and of its rows z~_s).
    a_tem = softmax over t, a_spa = softmax over s, mask A_st = a_spa_s * a_tem_t (the outer
    product, eq. 8; it sums to 1 over s and t), pooled x_s = sum_t tanh(A_st Z_st) (eq. 9).
    Output: x [B, S].

    Every op of the pooling (both softmaxes, the outer product, the product with Z, the tanh
    and the sum) lives in this one layer, so the int8 exporter's softmax-layer rule keeps all
    of it float. It must: A averages 1 / (S T) (4.9e-5 for 256 x 80), a softmax over 256
    entries averages one int8 step (1/256), and an int8 TANH output moves in steps of 1/128,
    so int8 would round nearly every tanh(A_st Z_st) to zero. For the same reason the layer
    computes in float32 under mixed precision (float16 is subnormal below 6.1e-5).
    """

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def attention(self, inputs):
        """(pooled x [B, S], mask A [B, T, S])."""
        values, temporal_scores, spatial_scores = inputs
        # temporal has shape [B, T, 1], spatial [B, 1, S].
        temporal = ops.expand_dims(ops.softmax(temporal_scores, axis=-1), -1)
        spatial = ops.expand_dims(ops.softmax(spatial_scores, axis=-1), 1)
        # mask has shape [B, T, S].
        mask = temporal * spatial
        return ops.sum(ops.tanh(mask * values), axis=1), mask

    def call(self, inputs):
        return self.attention(inputs)[0]

    def compute_output_shape(self, input_shape):
        values_shape = input_shape[0]
        return (values_shape[0], values_shape[2])


__all__ = [
    "AdditiveAttentionScore",
    "AffinityAttention",
    "BahdanauAttention",
    "CrossAttention",
    "MeanPooling",
    "SpatioTemporalPooling",
]
