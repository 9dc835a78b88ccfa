"""int8 activation ranges: the converter's min/max, narrowed where that lowers the int8 error.

The converter quantizes each activation tensor over the min..max it saw on the calibration
windows, so a few extreme values set the step of all the others: in the quickstart's LEAN the
BiLSTM gate inputs span +-3.5 while 98 % of their values lie within +-0.6, and the second BiLSTM's
cell state spans +-13 with 98 % within +-3.5. Here the calibrated float model runs once more over
the same windows, every tensor with a recorded range gets a histogram inside it, and its range
becomes the one with the least expected squared error from int8 rounding plus clipping (the
histogram-MSE calibration of TensorRT and of TensorFlow's own quantizer). Min/max is among the
candidates, so no tensor's error gets larger.

Measured on the quickstart's LEAN (all 614 val and eval windows, probabilities against Keras
float): mean abs difference 0.0148 with min/max ranges, 0.0125 with these; p99 0.121 -> 0.092,
max 0.282 -> 0.241.
"""

from __future__ import annotations

import numpy as np

HISTOGRAM_BINS = 4096
INT8_STEPS = 255
# Candidate fractions of the values to clip at each end; 0 keeps the calibrated min or max.
TAIL_FRACTIONS = (0.0, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
METHODS = ("mse", "minmax")


def int8_error_range(counts: np.ndarray, low: float, high: float) -> tuple[float, float, float]:
    """The range with the least int8 squared error for a histogram of values in [low, high].

    Args:
      counts: value counts in equal bins spanning [low, high].
    Returns:
      (range low, range high, its mean squared error); the range always contains 0, as int8's
      zero point needs.
    """
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.linspace(low, high, len(counts) + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    cumulative = np.cumsum(counts) / counts.sum()
    last = len(centers) - 1
    lows = [low if tail == 0 else centers[min(np.searchsorted(cumulative, tail), last)]
            for tail in TAIL_FRACTIONS]
    highs = [high if tail == 0 else centers[min(np.searchsorted(cumulative, 1 - tail), last)]
             for tail in TAIL_FRACTIONS]
    best = None
    for candidate_low in sorted(set(min(value, 0.0) for value in lows)):
        for candidate_high in sorted(set(max(value, 0.0) for value in highs)):
            if candidate_high <= candidate_low:
                continue
            step = (candidate_high - candidate_low) / INT8_STEPS
            squared = np.where(centers < candidate_low, (centers - candidate_low) ** 2,
                               np.where(centers > candidate_high, (centers - candidate_high) ** 2,
                                        step ** 2 / 12))
            error = float((counts * squared).sum() / counts.sum())
            if best is None or error < best[2]:
                best = (float(candidate_low), float(candidate_high), error)
    return best


def narrow_activation_ranges(calibrated: bytes, windows: np.ndarray, progress) -> tuple[bytes, dict]:
    """Replaces the recorded min/max of every activation of a calibrated model by its MSE range.

    Args:
      calibrated: the converter's calibrate-only output (float ops, min/max per tensor).
      windows: the calibration windows float32 [N, window_samples] that recorded the ranges.
      progress: wraps an iterable with a progress bar.
    Returns:
      (calibrated model bytes with the new ranges, a summary for the report).
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from lean_export.metadata import pack_model

    model = schema.ModelT.InitFromPackedBuf(bytearray(calibrated), 0)
    tensors = model.subgraphs[0].tensors
    recorded = {}
    for index, tensor in enumerate(tensors):
        quantization = tensor.quantization
        if quantization is None or quantization.min is None or len(quantization.min) != 1:
            continue
        low, high = float(quantization.min[0]), float(quantization.max[0])
        if high > low:
            recorded[index] = (low, high)
    # The reference kernels keep every intermediate tensor readable (XNNPACK would fuse them).
    interpreter = Interpreter(model_content=bytes(calibrated), experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    waveform = interpreter.get_input_details()[0]["index"]
    histograms = {index: np.zeros(HISTOGRAM_BINS) for index in recorded}
    for window in progress(windows, "activation histograms"):
        interpreter.set_tensor(waveform, np.asarray(window, np.float32)[np.newaxis, :])
        interpreter.invoke()
        for index, (low, high) in recorded.items():
            values = interpreter.get_tensor(index).ravel()
            bins = ((values - low) * (HISTOGRAM_BINS / (high - low))).astype(np.int64)
            histograms[index] += np.bincount(np.clip(bins, 0, HISTOGRAM_BINS - 1), minlength=HISTOGRAM_BINS)
    narrowing = []
    for index, (low, high) in recorded.items():
        new_low, new_high, _ = int8_error_range(histograms[index], low, high)
        tensors[index].quantization.min = [new_low]
        tensors[index].quantization.max = [new_high]
        narrowing.append((max(high, 0.0) - min(low, 0.0)) / (new_high - new_low))
    narrowing = np.asarray(narrowing)
    summary = {
        "method": "mse",
        "tensors": len(recorded),
        "narrowed": int((narrowing > 1.001).sum()),
        "median_narrowing": round(float(np.median(narrowing)), 3) if len(narrowing) else 1.0,
        "max_narrowing": round(float(narrowing.max()), 2) if len(narrowing) else 1.0,
    }
    return pack_model(model), summary
