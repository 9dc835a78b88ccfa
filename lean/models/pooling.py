"""Pooling of frame-level features over time into one clip-level vector: average, max, attentive.

Paper 000 (Zhou et al., bag of refinements), Table I, with H = [h_1 .. h_T'] in R^{d x T'}:
  average:   h_utt = (1/T') sum_t h_t
  max:       h_utt[n] = max_t h_t[n]
  attentive: h_utt = sum_t a_t h_t, with a_t = softmax_t(v^T tanh(W h_t + b)) (self-attentive
             pooling; the paper only says "a learnable weighting factor", and free per-frame
             weights cannot serve clips of another length).
The attentive weights' softmax is a layer of its own (`<name>_softmax`), so the int8 exporter,
which keeps float every layer that holds a SOFTMAX op, keeps only it float: an int8 softmax
output moves in steps of 1/256, about 8 steps per weight over the 32 frames of a 10 s window.
Everything is built from Keras layers, TFLite builtins (MEAN, REDUCE_MAX, FULLY_CONNECTED, TANH,
SOFTMAX, BATCH_MATMUL) in export.
"""

from __future__ import annotations

import keras

from lean.errors import LeanError

TEMPORAL_POOLINGS = ("average", "max", "attentive")


def temporal_pooling(frames, method: str, attention_units: int = 128,
                     name: str = "temporal_pooling"):
    """Pools frame-level features over time.

    Args:
        frames: tensor [B, T, D] (T may be dynamic for average and max).
        method: "average", "max" or "attentive".
        attention_units: d of the attentive pooling's hidden layer W h_t + b (paper 000: not
            given; 128).
        name: prefix of the layers' names.
    Returns:
        Tensor [B, D]. Attentive pooling adds D d + d + d weights (W, b, v).
    """
    if method == "average":
        return keras.layers.GlobalAveragePooling1D(name=name)(frames)
    if method == "max":
        return keras.layers.GlobalMaxPooling1D(name=name)(frames)
    if method != "attentive":
        raise LeanError(f"unknown temporal pooling {method!r}; expected one of "
                        f"{', '.join(TEMPORAL_POOLINGS)}")
    # hidden has shape [B, T, d]: tanh(W h_t + b).
    hidden = keras.layers.Dense(attention_units, activation="tanh",
                                name=f"{name}_projection")(frames)
    # scores has shape [B, T, 1]: v^T tanh(W h_t + b); no bias, a softmax ignores it.
    scores = keras.layers.Dense(1, use_bias=False, name=f"{name}_score")(hidden)
    # weights has shape [B, T]: a_t, summing to 1 over time (softmax on the last axis).
    scores = keras.layers.Reshape((-1,), name=f"{name}_scores")(scores)
    weights = keras.layers.Softmax(axis=-1, name=f"{name}_softmax")(scores)
    # pooled has shape [B, D]: sum_t a_t h_t.
    return keras.layers.Dot(axes=(1, 1), name=name)([weights, frames])


__all__ = ["TEMPORAL_POOLINGS", "temporal_pooling"]
