"""The `lean-export` command: a trained run directory -> a verified, MediaPipe-ready .tflite."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lean.command_line import run_cli

DESCRIPTION = """\
Export a trained run (any model of the family) to one TFLite file that drops into Android:
float32 waveform input [1, samples * channels] at the model's sample rate (channels
interleaved), float32 probabilities [1, classes], the model's frontend inside and kept float,
TFLite Model Metadata for MediaPipe's AudioClassifier (labels, sample rate and channels, the
run's config.json, the code version). The model is verified before it is written:
MODEL.report.json and MODEL.report.md beside it list size, ops and dtypes, Keras-vs-TFLite
output differences, the task's score (mAP or accuracy) float vs exported on val (and eval),
host latency and memory.
"""

EPILOG = """\
examples:
  lean-export runs/lean -o lean_int8.tflite --int8
  lean-export runs/yamnet -o yamnet_f32.tflite --float32 --data data/FSD50K
exit status: 0 exported and verified; 2 a usage or data problem, or the verification failed
(the report is kept, no model is written).
"""


def build_parser() -> argparse.ArgumentParser:
    from lean_export.calibration import METHODS as ACTIVATION_RANGE_METHODS
    from lean_export.convert import WEIGHT_GRANULARITIES
    from lean_export.export import (
        CALIBRATION_SAMPLINGS,
        DEFAULT_CALIBRATION_WINDOWS,
        DEFAULT_FALLBACK_STEPS,
        DEFAULT_HELD_OUT_WINDOWS,
        DEFAULT_MAX_DROP,
        FALLBACK_MODES,
        FRONTEND_FORMULATIONS,
    )

    parser = argparse.ArgumentParser(
        prog="lean-export", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `lean train`")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL.tflite", help="the .tflite to write")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--int8", dest="mode", action="store_const", const="int8",
                       help="int8 weights and activations after the float frontend, calibrated "
                            "(default)")
    modes.add_argument("--dynamic-range", dest="mode", action="store_const", const="dynamic_range",
                       help="int8 weights, float activations; no calibration")
    modes.add_argument("--float16", dest="mode", action="store_const", const="float16",
                       help="float16 weights, float32 compute")
    modes.add_argument("--float32", dest="mode", action="store_const", const="float32",
                       help="no quantization")
    parser.set_defaults(mode="int8")
    parser.add_argument("--int8-all", action="store_true",
                        help="with --int8, quantize everything after the frontend; by default layers "
                             "with a softmax (attention) and the output head stay float, because "
                             "int8 steps of 1/256 there cost accuracy (see the report)")
    parser.add_argument("--activation-ranges", choices=ACTIVATION_RANGE_METHODS, default="mse",
                        help="with --int8, how each activation's int8 range is set: mse (default) "
                             "narrows the calibrated min/max to the range with the least int8 error, "
                             "percentile clips the rarest 0.01%% at each end, entropy takes the "
                             "least KL divergence, minmax keeps the converter's min/max")
    parser.add_argument("--fallback", choices=FALLBACK_MODES, default="auto",
                        help="with --int8: when the val score drops by more than --max-drop, "
                             "auto (default) keeps the layer groups that cost the most accuracy "
                             "per latency and size float, one more per step, until it does not "
                             "(the report shows each step); none fails")
    parser.add_argument("--fallback-steps", type=int, default=DEFAULT_FALLBACK_STEPS, metavar="N",
                        help=f"most layer groups the fallback keeps float (default "
                             f"{DEFAULT_FALLBACK_STEPS})")
    parser.add_argument("--no-sensitivity", action="store_true",
                        help="with --int8, skip the per-layer sensitivity analysis (faster; "
                             "needs --fallback none)")
    parser.add_argument("--keep-float", action="append", default=[], metavar="GROUP",
                        help="with --int8, keep the layer groups whose names contain GROUP "
                             "float (repeatable; the report's sensitivity table names them, e.g. "
                             "'wave_bilstm_1_1 [elementwise]' for a recurrent cell's state)")
    parser.add_argument("--weight-granularity", choices=WEIGHT_GRANULARITIES,
                        default="per_channel",
                        help="with --int8, int8 weight scales per output channel (default), "
                             "one per tensor, or one per tensor for dense layers only "
                             "(dense_per_tensor: convolutions keep theirs; 77 KB smaller for "
                             "LEAN)")
    parser.add_argument("--bias-correction", action="store_true",
                        help="with --int8, subtract from each bias the mean output shift its "
                             "layer's int8 weights cause on the calibration windows")
    parser.add_argument("--calibration-sampling", choices=CALIBRATION_SAMPLINGS,
                        default="random",
                        help="calibration windows from shuffled train clips (random, default) "
                             "or from each class in turn (stratified)")
    parser.add_argument("--frontend-formulation", choices=tuple(FRONTEND_FORMULATIONS),
                        default=None,
                        help="the spectrum op of the model's frontend: dft (one windowed-DFT "
                             "matmul), rfft (builtin RFFT2D: 0.75 MB smaller for LEAN, slower) "
                             "or fft (the FFT as two small matmuls: as small as rfft and the "
                             "fastest, 0.22 against 0.38 and 0.53 ms for YAMNet's frontend); "
                             "default: the run's")
    parser.add_argument("--keep-names", action="store_true",
                        help="keep every tensor name in the file (by default only the input "
                             "and output names stay: a smaller file)")
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="dataset for calibration and verification (default: the run's, with "
                             "its layout and folds)")
    parser.add_argument("--calibration-windows", type=int, default=DEFAULT_CALIBRATION_WINDOWS, metavar="N",
                        help=f"train windows that calibrate int8 (default {DEFAULT_CALIBRATION_WINDOWS})")
    parser.add_argument("--held-out-windows", type=int, default=DEFAULT_HELD_OUT_WINDOWS, metavar="N",
                        help=f"val windows for the Keras-vs-TFLite comparison (default {DEFAULT_HELD_OUT_WINDOWS})")
    parser.add_argument("--max-drop", "--max-map-drop", dest="max_drop", type=float,
                        default=DEFAULT_MAX_DROP, metavar="X",
                        help="fail when the task's val score drops by more than X: mAP for a "
                             "multilabel model, accuracy for a single_label one (default "
                             f"{DEFAULT_MAX_DROP})")
    parser.add_argument("--score-threshold", type=float, default=0.0, metavar="X",
                        help="default score threshold in the metadata (MediaPipe drops lower scores; default 0)")
    parser.add_argument("--author", default="lean contributors", help="metadata author")
    parser.add_argument("--license", default="Apache-2.0", help="metadata license")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    parser.set_defaults(func=_run)
    return parser


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from lean_export.convert import QuantizationConfig
    from lean.run import read_run_config
    from lean_export.export import export_run

    read_run_config(Path(args.run_dir))  # a missing or broken run is an error before conversion
    quantization = dataclasses.replace(
        QuantizationConfig.from_mode(args.mode), activation_ranges=args.activation_ranges,
        weight_granularity=args.weight_granularity, bias_correction=args.bias_correction,
        float_groups=tuple(args.keep_float))
    if args.int8_all:
        quantization = dataclasses.replace(quantization, float_softmax_layers=False, float_output_head=False)
    report = export_run(
        args.run_dir, args.output, quantization=quantization, data_dir=args.data,
        calibration_count=args.calibration_windows, max_drop=args.max_drop,
        held_out_count=args.held_out_windows, author=args.author, license_name=args.license,
        score_threshold=args.score_threshold, progress=not args.quiet,
        fallback=args.fallback, max_fallback_steps=args.fallback_steps,
        calibration_sampling=args.calibration_sampling,
        frontend_formulation=args.frontend_formulation, strip_names=not args.keep_names,
        sensitivity=not args.no_sensitivity,
    )
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        val = report.get("quality", {}).get("val")
        summary = (f"{args.output}: {report['file_size_bytes'] / 1e6:.2f} MB, "
                   f"{report['latency']['median_ms']} ms")
        if val:
            summary += f", val {val['metric']} {val['float']:.4f} -> {val['exported']:.4f}"
        if report.get("float_groups"):
            summary += f", {len(report['float_groups'])} layer groups kept float"
        print(summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
