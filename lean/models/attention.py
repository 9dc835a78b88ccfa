"""Cross attention of the YAMNet embedding over the wave encoder's frames (paper eqs. 4-11)."""

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


__all__ = ["AffinityAttention", "BahdanauAttention", "CrossAttention", "MeanPooling"]
