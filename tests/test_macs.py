"""Multiply-accumulates counted from a .tflite's ops, against a hand count."""

import keras
import numpy as np

from lean_export.verify import multiply_accumulates


def test_each_weighted_op_counts_output_elements_times_accumulation_length():
    import tensorflow as tf

    frames = keras.Input((8, 6, 3), batch_size=1)
    # conv: [1, 4, 3, 5] outputs x 3 x 3 x 3 taps.
    x = keras.layers.Conv2D(5, 3, strides=2, padding="same")(frames)
    # depthwise: [1, 4, 3, 5] outputs x 3 x 3 taps.
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    # dense over the last axis: [1, 4, 3, 7] outputs x 5 inputs.
    x = keras.layers.Dense(7)(x)
    x = keras.layers.Reshape((12, 7))(x)
    # batch matmul of [1, 12, 7] with its transpose: [1, 12, 12] outputs x 7.
    x = keras.layers.Dot(axes=(2, 2))([x, x])
    model = keras.Model(frames, x)
    counts = multiply_accumulates(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    expected = {"CONV_2D": 60 * 27, "DEPTHWISE_CONV_2D": 60 * 9, "FULLY_CONNECTED": 84 * 5,
                "BATCH_MATMUL": 144 * 7}
    assert counts == {**expected, "total": int(np.sum(list(expected.values())))}
