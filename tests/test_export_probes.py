"""The export report's layer probes: float vs exported outputs of named layers, for any family."""

import numpy as np
import pytest

import test_export_support as support
from lean_export.verify import _dequantized, in_layer_scope, layer_output_tensor, render_markdown


def test_layer_scopes_match_whole_path_parts():
    assert in_layer_scope("serving_1/att_crnn_1/attention_pooling_1/Tanh", "attention_pooling")
    assert in_layer_scope("serving/model/conv1/Relu", "conv1")
    # Another layer whose name merely starts the same is not inside.
    assert not in_layer_scope("serving_1/model_1/conv1_bn_1/mul", "conv1")
    # Fused op names: any of the fused parts counts.
    assert in_layer_scope("m/logits_1/MatMul;m/attention_pooling_1/Sum", "attention_pooling")


def _op(op, name, inputs, outputs, shape):
    return {"op": op, "output_name": name, "input_indices": inputs, "output_indices": outputs,
            "output_shape": shape}


def test_the_layer_output_is_the_tensor_leaving_the_layer():
    ops = [
        _op("SOFTMAX", "m/pool_1/Softmax", [0], [1], [1, 4]),
        _op("MUL", "m/pool_1/mul", [1, 0], [2], [1, 4, 3]),
        _op("SUM", "m/pool_1/Sum", [2], [3], [1, 3]),
        # The int8 copy made for the next layer is passed over for the value it copies.
        _op("QUANTIZE", "m/pool_1/Sum1", [3], [4], [1, 3]),
        _op("FULLY_CONNECTED", "m/logits_1/MatMul", [4], [5], [1, 2]),
    ]
    assert layer_output_tensor(ops, "pool", (1, 3)) == 3
    assert layer_output_tensor(ops, "pool", (1, 7)) is None  # no tensor of that shape
    assert layer_output_tensor(ops, "missing", (1, 3)) is None


def test_int8_values_are_dequantized():
    detail = {"quantization_parameters": {"scales": np.array([0.5]),
                                          "zero_points": np.array([-128])}}
    np.testing.assert_allclose(_dequantized(np.array([-128, -126], np.int8), detail), [0.0, 1.0])
    np.testing.assert_allclose(_dequantized(np.array([0.25], np.float32), detail), [0.25])


@pytest.mark.slow
def test_every_int8_export_reports_its_frontend_probe(tmp_path_factory):
    path, report = support.int8_export(tmp_path_factory)
    rows = report["layer_probes"]
    assert [row["layer"] for row in rows] == report["float_layers"][:1]
    frontend = rows[0]
    assert frontend["dtype"] == "float32" and not frontend["flagged"]
    assert frontend["relative"] < 1e-3 and frontend["float_max_abs"] > 0
    assert report["warnings"] == []
    assert "## Layers float vs exported" in render_markdown(report)
