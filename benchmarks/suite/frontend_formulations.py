"""Measures exact formulations of the frontends as float32 TFLite, side by side.

YAMNet's log-mel: each candidate maps a [1, 16000] waveform to the [1, 96, 64] log-mel patch.
`lean.frontends.Spectrogram`: its three formulations (dft_matmul, rfft, fft_matmul) for each named config
(Kaldi fbank on 1 s at 16 kHz; log-mel and log-Gammatone on 2 s at 22.05 kHz). For each:
whether it converts with TFLite builtin ops only, its op count, its file size, its max abs
difference from the Keras layer, and its median LiteRT latency (XNNPACK, 1 thread).

    python benchmarks/suite/frontend_formulations.py [--runs 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections import Counter

import numpy as np

from lean.command_line import quiet_tensorflow

quiet_tensorflow()


def _candidates(config):
    """name -> (description, function of a [1, 16000] tensor returning [1, 96, 64])."""
    import tensorflow as tf

    from lean.frontends import (
        _log_mel_from_frames, _patch_frames, frontend_matrices, mel_weight_matrix,
    )

    framing = config.framing(16000)
    window, hop, fft = framing.window, framing.hop, framing.fft_length
    frames_needed = (config.patch_frames - 1) * hop + window
    full_mel = tf.constant(mel_weight_matrix(config).astype(np.float32))
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)

    def log_mel_of_magnitude(magnitude, mel=full_mel):
        return tf.math.log(tf.matmul(magnitude, mel) + config.log_offset)

    def stft_rfft(waveform):
        # tf.signal.stft: frame + periodic Hann + RFFT (-> RFFT2D) + abs (-> COMPLEX_ABS).
        spectrum = tf.signal.stft(waveform[:, :frames_needed], window, hop, fft)
        return log_mel_of_magnitude(tf.abs(spectrum))

    def yamnet_tflite_dft(waveform):
        # YAMNet's own tflite_compatible path: frame, window, pad to 512, two [512, 257] matmuls.
        k = np.arange(fft // 2 + 1)
        phase = 2 * np.pi * np.outer(np.arange(fft), k) / fft
        frames = tf.signal.frame(waveform[:, :frames_needed], window, hop) * hann.astype(np.float32)
        pad = (fft - window) // 2
        padded = tf.pad(frames, [[0, 0], [0, 0], [pad, fft - window - pad]])
        real = tf.matmul(padded, tf.constant(np.cos(phase).astype(np.float32)))
        imag = tf.matmul(padded, tf.constant(-np.sin(phase).astype(np.float32)))
        return log_mel_of_magnitude(tf.sqrt(real * real + imag * imag))

    def folded_full(waveform):
        # Window folded into one [400, 514] matrix, all 257 bins, frames by tf.signal.frame.
        n = np.arange(window)
        phase = 2 * np.pi * np.outer(n, np.arange(fft // 2 + 1)) / fft
        dft = (np.concatenate([np.cos(phase), -np.sin(phase)], 1) * hann[:, None]).astype(np.float32)
        spectrum = tf.matmul(tf.signal.frame(waveform[:, :frames_needed], window, hop), dft)
        power = tf.square(spectrum)
        return log_mel_of_magnitude(tf.sqrt(power[..., : fft // 2 + 1] + power[..., fft // 2 + 1 :]))

    def folded_used_bins_frame_op(waveform):
        # The shipped matrices ([400, 470], bins 5..239), frames by tf.signal.frame.
        return _log_mel_from_frames(tf.signal.frame(waveform[:, :frames_needed], window, hop),
                                    config, 16000)

    def folded_used_bins_conv(waveform):
        # Framing and DFT as one strided 1-D convolution (kernel 400, stride 160, 470 filters).
        dft, mel = frontend_matrices(config)
        spectrum = tf.nn.conv1d(waveform[:, :frames_needed, None], dft[:, None, :], hop, "VALID")
        power = tf.square(spectrum)
        bins = mel.shape[0]
        return log_mel_of_magnitude(tf.sqrt(power[..., :bins] + power[..., bins:]), tf.constant(mel))

    def folded_used_bins_static_slices(waveform):
        # Frames as three static slices of the waveform viewed as [98, 160] hop blocks (no
        # GATHER); as fast, but it kept the wave encoder's input projection float in int8 LEAN.
        blocks = tf.reshape(waveform[:, : 98 * hop], [-1, 98, hop])
        pieces = [blocks[:, 0:96], blocks[:, 1:97], blocks[:, 2:98, : window - 2 * hop]]
        return _log_mel_from_frames(tf.concat(pieces, axis=-1), config, 16000)

    def shipped(waveform):
        # lean.frontends.YamnetLogMel as it is.
        return _log_mel_from_frames(_patch_frames(waveform, config, 16000), config, 16000)

    from lean.frontends import YamnetLogMel

    shipped_rfft = YamnetLogMel(dataclasses.replace(config, formulation="rfft"))
    shipped_fft_matmul = YamnetLogMel(dataclasses.replace(config, formulation="fft_matmul"))
    return {
        "stft_rfft": ("tf.signal.stft + abs (RFFT2D, COMPLEX_ABS)", stft_rfft),
        "yamnet_tflite_dft": ("YAMNet tflite_compatible: 512-pad, 2 x [512,257] matmuls, 25.8M MACs", yamnet_tflite_dft),
        "folded_full": ("Hann folded into [400,514], all bins, 20.1M MACs", folded_full),
        "folded_used_bins_frame_op": ("folded [400,470], bins 5..239, tf.signal.frame, 18.0M MACs", folded_used_bins_frame_op),
        "folded_used_bins_conv": ("folded [400,470] as strided CONV_2D", folded_used_bins_conv),
        "folded_used_bins_static_slices": ("folded [400,470], frames from static slices", folded_used_bins_static_slices),
        "shipped": ("lean.frontends.YamnetLogMel", shipped),
        "shipped_rfft": ("YamnetLogMel formulation=rfft (RFFT2D, COMPLEX_ABS)", shipped_rfft),
        "shipped_fft_matmul": ("YamnetLogMel formulation=fft_matmul (32 x 16 Cooley-Tukey, "
                               "4.7M MACs)", shipped_fft_matmul),
    }


def _convert(function, samples: int = 16000):
    import tensorflow as tf

    concrete = tf.function(function).get_concrete_function(tf.TensorSpec([1, samples], tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], function)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def _measure_one(flatbuffer: bytes, waveform: np.ndarray, expected: np.ndarray, runs: int) -> dict:
    """Runs one converted candidate: its latency, op counts, size and difference."""
    from lean.inference import open_interpreter

    with tempfile.NamedTemporaryFile(suffix=".tflite") as handle:
        handle.write(flatbuffer)
        handle.flush()
        interpreter = open_interpreter(handle.name, 1)
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    interpreter.set_tensor(input_index, waveform)
    interpreter.invoke()
    output = interpreter.get_tensor(output_index)
    for _ in range(20):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    ops = Counter(op["op_name"] for op in interpreter._get_ops_details())
    return dict(
        median_ms=round(1000 * float(np.median(times)), 3),
        max_abs_diff=float(np.abs(output.reshape(expected.shape) - expected).max()),
        ops=dict(ops),
        size_bytes=len(flatbuffer),
    )


def measure_yamnet(runs: int) -> list[dict]:
    from lean.frontends import YamnetLogMel, YamnetLogMelConfig

    config = YamnetLogMelConfig()
    rng = np.random.default_rng(0)
    waveform = (0.1 * rng.standard_normal((1, 16000))).astype(np.float32)
    expected = YamnetLogMel(config)(waveform).numpy()
    rows = []
    for name, (description, function) in _candidates(config).items():
        row = {"name": name, "description": description}
        try:
            flatbuffer = _convert(function)
        except Exception as error:  # report, keep measuring the others
            row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            rows.append(row)
            continue
        row.update(_measure_one(flatbuffer, waveform, expected, runs))
        rows.append(row)
    return rows


def measure_spectrograms(runs: int) -> list[dict]:
    from lean.frontends import Spectrogram, SpectrogramConfig

    configs = {
        "kaldi_fbank": (SpectrogramConfig.kaldi_fbank(), 16000, 16000),
        "log_mel": (SpectrogramConfig.log_mel(), 22050, 44100),
        "log_gammatone": (SpectrogramConfig.log_gammatone(), 22050, 44100),
    }
    rng = np.random.default_rng(0)
    rows = []
    for config_name, (base, rate, samples) in configs.items():
        waveform = (0.1 * rng.standard_normal((1, samples))).astype(np.float32)
        for formulation in ("dft_matmul", "rfft", "fft_matmul"):
            layer = Spectrogram(dataclasses.replace(base, formulation=formulation), rate)
            expected = layer(waveform).numpy()
            row = {"name": f"{config_name}/{formulation}",
                   "description": f"Spectrogram {config_name}, {samples} samples at {rate} Hz "
                                  f"-> {list(expected.shape)}"}
            row.update(_measure_one(_convert(layer, samples), waveform, expected, runs))
            rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="timed invocations per candidate")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    rows = measure_yamnet(args.runs) + measure_spectrograms(args.runs)
    for row in rows:
        if "error" in row:
            print(f"{row['name']:<31} FAILED {row['error']}")
        else:
            print(
                f"{row['name']:<31} {row['median_ms']:7.3f} ms  diff {row['max_abs_diff']:.1e}  "
                f"{sum(row['ops'].values()):3d} ops  {row['size_bytes'] / 1e6:5.2f} MB  "
                f"{row['description']}"
            )
    if args.json:
        from lean.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
