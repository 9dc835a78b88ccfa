"""Checks the int8 export targets in one run, on one machine, and shows where the time goes.

Targets (issue 18): each `--int8` LEAN file, written by the exporter itself with its gate at
--max-drop 0.005 and the float fallback on (as a user runs `lean-export`), loses at most 0.005
mAP on val and on eval (bootstrap intervals reported), runs on the host (LiteRT + XNNPACK,
1 thread) within 1.3x the float32 export of the `yamnet` model, and is at most 5.5 MB with a
small frontend (--frontend-formulation: rfft, the builtin RFFT2D, by default; fft, the FFT as
two small matmuls, is as small and faster). Every file is made by `lean_export.export.export_run`, so the numbers are those
of `lean-export`. Latency is measured in interleaved rounds (fresh process per measurement, the
same fixed window) because this host is shared: the ratio uses the median of the per-round
medians.

--lean-run may be given several times (e.g. models trained with different settings); the first
one is also exported with the other frontend formulations (the size and latency of all three
side by side) and, with --methods, with each int8 method of `lean-export` alone
(fallback off): output difference to float and val/eval drop per method.

With --breakdown, every family member is also exported int8 (weights as built, calibrated on
the same data) and timed in the same rounds.

    python benchmarks/suite/export_targets.py --lean-run runs/lean_a --lean-run runs/lean_b \
        --yamnet-run runs/yamnet [--data DIR] [--out DIR] [--rounds 5] [--runs 100] \
        [--frontend-formulation F] [--weight-granularity G] [--methods] [--breakdown] [--json results.json] [--strict]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lean.command_line import quiet_tensorflow

quiet_tensorflow()

MAX_SIZE_BYTES = 5_500_000  # 5.5 MB (10^6 bytes) with the RFFT frontend
MAX_MAP_DROP = 0.005
MAX_LATENCY_RATIO = 1.3
BREAKDOWN_MEMBERS = ("yamnet", "yamnet_proj", "joint", "lean")
# Each int8 method of lean-export alone, on the first LEAN run (fallback off, so the method's
# own effect is measured): name -> export_run arguments besides the defaults.
METHODS = {
    "mse": {},
    "minmax": {"activation_ranges": "minmax"},
    "percentile": {"activation_ranges": "percentile"},
    "entropy": {"activation_ranges": "entropy"},
    "stratified400": {"calibration_sampling": "stratified", "calibration_count": 400},
    "per_tensor": {"weight_granularity": "per_tensor"},
    "dense_per_tensor": {"weight_granularity": "dense_per_tensor"},
    "bias_correction": {"bias_correction": True},
    "float_cell": {"float_groups": ("[elementwise]",)},
}


def _ops_by_group(report: dict) -> list[tuple[str, int]]:
    """Op count per quantizable layer group (the report's sensitivity rows), most first."""
    rows = report.get("sensitivity", [])
    return sorted(((row["group"], row["ops"]) for row in rows), key=lambda item: -item[1])


def _export(run_dir: Path, path: Path, quantization, **kwargs) -> dict:
    """export_run's report; a file refused by the gate still has its report (no file)."""
    from lean.errors import LeanError
    from lean_export.export import export_run

    try:
        return export_run(run_dir, path, quantization, **kwargs)
    except LeanError as error:
        report = json.loads(path.with_suffix(".report.json").read_text())
        report["refused"] = str(error)
        return report


def _quality_rows(report: dict) -> dict:
    return {split: {key: values[key] for key in ("float", "exported", "drop", "drop_bootstrap",
                                                  "num_clips")}
            for split, values in report.get("quality", {}).items()}


def _member_exports(lean_run: Path, data_dir, out: Path) -> dict[str, Path]:
    """int8 exports of every breakdown member, built as the LEAN run's config says (weights random)."""
    import dataclasses

    from lean.config import RunConfig, load_json
    from lean.data import load_dataset
    from lean.data.audio import AudioCache
    from lean.data.pipeline import default_cache_dir
    from lean.models.registry import build_model
    from lean_export.convert import QuantizationConfig, build_serving_model, convert_model
    from lean_export.export import calibration_windows

    config = load_json(RunConfig, lean_run / "config.json")
    dataset = load_dataset(data_dir or config.data.dir)
    windows = calibration_windows(dataset, config.model.window_samples, 100,
                                  AudioCache(default_cache_dir(), config.model.input.sample_rate))
    paths = {}
    for name in BREAKDOWN_MEMBERS:
        member = dataclasses.replace(config.model, name=name, export_ready=True)
        serving = build_serving_model(build_model(member, load_pretrained=False), member.input)
        model_bytes, _ = convert_model(serving, QuantizationConfig.create_full_integer(), windows)
        paths[f"{name} int8 (as built)"] = out / f"member_{name}_int8.tflite"
        paths[f"{name} int8 (as built)"].write_bytes(model_bytes)
    return paths


def _interleaved_latency(models: dict[str, Path], rounds: int, runs: int) -> dict[str, dict]:
    from lean_export.verify import measure_latency

    medians = {name: [] for name in models}
    for _ in range(rounds):
        for name, path in models.items():
            medians[name].append(measure_latency(path, threads=1, runs=runs)["median_ms"])
    return {name: {"median_of_rounds_ms": float(np.median(values)), "round_medians_ms": values}
            for name, values in medians.items()}


def main(argv=None) -> int:
    from lean_export.convert import WEIGHT_GRANULARITIES
    from lean_export.export import FRONTEND_FORMULATIONS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lean-run", type=Path, required=True, action="append",
                        help="trained `lean` run directory (repeatable)")
    parser.add_argument("--yamnet-run", type=Path, required=True, help="trained `yamnet` run directory")
    parser.add_argument("--data", default=None, help="dataset (default: each run's data_dir)")
    parser.add_argument("--out", type=Path, default=Path("export_targets"), help="where the files go")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds")
    parser.add_argument("--runs", type=int, default=100, help="timed invocations per round (>= 50)")
    parser.add_argument("--frontend-formulation", default="rfft",
                        choices=tuple(FRONTEND_FORMULATIONS),
                        help="lean-export --frontend-formulation of the LEAN files (default "
                             "rfft, the issue's size target; the first run is also exported "
                             "with the others)")
    parser.add_argument("--weight-granularity", default="per_channel",
                        choices=WEIGHT_GRANULARITIES,
                        help="lean-export --weight-granularity of the LEAN files (default "
                             "per_channel)")
    parser.add_argument("--breakdown", action="store_true", help="also time every family member int8")
    parser.add_argument("--methods", default=None, metavar="all|NAME,NAME",
                        help="also export the first LEAN run with each int8 method alone "
                             f"(names: {', '.join(METHODS)})")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    from lean.host import host_description
    from lean_bench.report import host_place
    from lean_export.convert import QuantizationConfig

    args.out.mkdir(parents=True, exist_ok=True)
    common = {"data_dir": args.data, "latency_runs": args.runs}
    yamnet_path = args.out / "yamnet_float32.tflite"
    # Only its latency and size are compared: no evaluation.
    yamnet_report = _export(args.yamnet_run, yamnet_path, "float32", max_drop=None, **common)
    models = {"yamnet float32": yamnet_path}
    exports = {}
    # The float model of each run is evaluated once for all of its exports.
    float_reports = {run: {} for run in args.lean_run}
    for number, run in enumerate(args.lean_run, 1):
        name = f"lean {number} int8 {args.frontend_formulation}"
        path = args.out / f"lean{number}_int8_{args.frontend_formulation}.tflite"
        exports[name] = (run, path, _export(run, path, QuantizationConfig.create_full_integer(
                                                weight_granularity=args.weight_granularity),
                                            max_drop=MAX_MAP_DROP,
                                            frontend_formulation=args.frontend_formulation,
                                            float_reports=float_reports[run], **common))
        if number == 1:
            # The same int8 file with the other frontend formulations: the groups the fallback
            # kept float above stay float, so only the formulation differs.
            kept = tuple(exports[name][2].get("float_groups", []))
            for other in FRONTEND_FORMULATIONS:
                if other == args.frontend_formulation:
                    continue
                other_path = args.out / f"lean1_int8_{other}.tflite"
                exports[f"lean 1 int8 {other}"] = (run, other_path, _export(
                    run, other_path, QuantizationConfig.create_full_integer(
                        float_groups=kept, weight_granularity=args.weight_granularity),
                    max_drop=MAX_MAP_DROP, frontend_formulation=other, fallback="none",
                    sensitivity=False, float_reports=float_reports[run], **common))
    models.update({name: path for name, (_, path, report) in exports.items()
                   if "refused" not in report})
    methods = {}
    if args.methods:
        first = args.lean_run[0]
        chosen = list(METHODS) if args.methods == "all" else args.methods.split(",")
        unknown = [method for method in chosen if method not in METHODS]
        if unknown:
            parser.error(f"--methods: unknown {unknown[0]!r}; choose from {', '.join(METHODS)}")
        for method in chosen:
            kwargs = METHODS[method]
            path = args.out / f"method_{len(methods)}.tflite"
            quantization = QuantizationConfig.create_full_integer(**{
                key: value for key, value in kwargs.items()
                if key in ("activation_ranges", "weight_granularity", "bias_correction",
                           "float_groups")})
            extra = {key: value for key, value in kwargs.items()
                     if key in ("calibration_sampling", "calibration_count")}
            report = _export(first, path, quantization, max_drop=1.0, fallback="none",
                             sensitivity=False, frontend_formulation=args.frontend_formulation,
                             float_reports=float_reports[first], **common, **extra)
            methods[method] = {"output_difference": report["output_difference"],
                               "quality": _quality_rows(report),
                               "file_size_bytes": report["file_size_bytes"],
                               "latency_median_ms": report["latency"]["median_ms"],
                               "bias_correction": report.get("bias_correction")}
    if args.breakdown:
        models.update(_member_exports(args.lean_run[0], args.data, args.out))
    latency = _interleaved_latency(models, args.rounds, args.runs)
    yamnet_ms = latency["yamnet float32"]["median_of_rounds_ms"]

    targets, summaries = {}, {}
    for name, (run, path, report) in exports.items():
        quality = _quality_rows(report)
        size = report["file_size_bytes"]
        ms = latency.get(name, {}).get("median_of_rounds_ms")
        drops_met = bool(quality) and all(q["drop"] <= MAX_MAP_DROP for q in quality.values())
        targets[name] = {
            "written": "refused" not in report,
            "drops_met": drops_met and "refused" not in report,
            "size_bytes": size, "size_met": size <= MAX_SIZE_BYTES,
            "latency_ms": ms, "latency_ratio": ms / yamnet_ms if ms else None,
            "latency_met": bool(ms) and ms / yamnet_ms <= MAX_LATENCY_RATIO,
        }
        fallback = report.get("fallback", {})
        summaries[name] = {
            "run": str(run), "quality": quality, "refused": report.get("refused"),
            "float_groups": report.get("float_groups", []),
            "fallback_steps": fallback.get("steps", []), "fallback_initial": fallback.get("initial"),
            "size_breakdown": report["size_breakdown"],
            "output_difference": report["output_difference"],
            "sensitivity_top": report.get("sensitivity", [])[:8],
            "ops_by_group": _ops_by_group(report)[:12],
        }
    results = {
        "targets": targets,
        "limits": {"size_bytes": MAX_SIZE_BYTES, "drop": MAX_MAP_DROP,
                   "latency_ratio": MAX_LATENCY_RATIO},
        "exports": summaries,
        "methods": methods,
        "latency": latency,
        "yamnet_float32_file_size_bytes": yamnet_report["file_size_bytes"],
        "host": host_description(),
        "weight_granularity": args.weight_granularity,
        "rounds": args.rounds,
        "runs_per_round": args.runs,
    }

    print(f"\n{host_place()}, {args.rounds} rounds x {args.runs} runs, 1 thread; limits: drop "
          f"<= {MAX_MAP_DROP} on val and eval, latency <= {MAX_LATENCY_RATIO}x yamnet float32 "
          f"({yamnet_ms:.3f} ms), size <= {MAX_SIZE_BYTES / 1e6} MB")
    for name, summary in summaries.items():
        target = targets[name]
        print(f"\n{name} ({summary['run']}): "
              + (f"REFUSED: {summary['refused']}" if summary["refused"] else "written"))
        for split, values in summary["quality"].items():
            spread = values["drop_bootstrap"]
            print(f"  {split:<5} mAP {values['float']:.4f} -> {values['exported']:.4f}, drop "
                  f"{values['drop']:+.4f} (95% {spread['low']:+.4f} to {spread['high']:+.4f}, "
                  f"{values['num_clips']} clips)")
        if summary["float_groups"]:
            print(f"  kept float: {', '.join(summary['float_groups'])}")
        for number, step in enumerate(summary["fallback_steps"], 1):
            print(f"  fallback step {number}: {step['kept_float'][-1]}: val drop "
                  f"{step['drop']:+.4f}, {step['file_size_bytes']:,} B, "
                  f"{step['latency_median_ms']} ms")
        ratio = f"{target['latency_ratio']:.2f}x" if target["latency_ratio"] else "-"
        print(f"  size {target['size_bytes']:,} B ({target['size_bytes'] / 1e6:.3f} MB), latency "
              f"{target['latency_ms']} ms = {ratio} yamnet; met: drops {target['drops_met']}, "
              f"size {target['size_met']}, latency {target['latency_met']}")
        print("  bytes: " + ", ".join(f"{part} {value:,}" for part, value in
                                      summary["size_breakdown"].items()))
    if methods:
        print(f"\nint8 methods alone on the first LEAN run ({args.frontend_formulation} "
              "frontend, fallback off):")
        for method, values in methods.items():
            quality = values["quality"]
            drops = ", ".join(f"{split} drop {q['drop']:+.4f} (95% {q['drop_bootstrap']['low']:+.4f}"
                              f" to {q['drop_bootstrap']['high']:+.4f})"
                              for split, q in quality.items())
            print(f"  {method:<28} mean abs diff {values['output_difference']['mean_abs_diff']:.4f}"
                  f", max {values['output_difference']['max_abs_diff']:.3f}; {drops}")
    print("\nlatency, median of round medians (ms):")
    for name, values in latency.items():
        print(f"  {name:<32}{values['median_of_rounds_ms']:8.3f}   rounds: {values['round_medians_ms']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    missed = [name for name, target in targets.items()
              if not (target["drops_met"] and target["latency_met"]
                      and (target["size_met"] or "dft" in name))]
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
