"""Which layers an int8 export should keep float: the same run exported several ways, side by side.

Variants (each through `lean_export.export.export_run`, so the files are what `lean-export`
writes): float32; int8 as `lean-export --int8` does it (frontends, softmax layers and output
head float); int8 with only the frontends float; one variant per `--only-float LAYERS`
(frontends plus those comma-separated layer names float, nothing else) and one per
`--also-float LAYERS` (the default plus those layers float). For each: file size,
the task's score on val and eval (float Keras -> exported), the mean and max difference of the
probabilities to Keras, and host latency (LiteRT + XNNPACK, 1 thread) measured in interleaved
rounds, a fresh process per measurement, the median of the per-round medians (this host is
shared, so rounds see the same load).

    python benchmarks/suite/float_layers.py RUN_DIR [--only-float attention_weights] \
        [--also-float conv1] \
        [--data DIR] [--out DIR] [--rounds 5] [--runs 100] [--json OUT.json|-]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from lean.command_line import quiet_tensorflow

quiet_tensorflow()


def _names(layers: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in layers.split(",") if name.strip())


def variants(only_float: list[str], also_float: list[str] = ()) -> dict:
    """Variant name -> QuantizationConfig."""
    from lean_export.convert import QuantizationConfig

    chosen = {
        "float32": QuantizationConfig.create_float32(),
        "int8 (lean-export default)": QuantizationConfig.create_full_integer(),
        "int8, frontends only float": QuantizationConfig.create_full_integer(
            float_softmax_layers=False, float_output_head=False),
    }
    for layers in only_float:
        chosen[f"int8, frontends + {' + '.join(_names(layers))} float"] = (
            QuantizationConfig.create_full_integer(float_scopes=_names(layers),
                                                   float_softmax_layers=False,
                                                   float_output_head=False))
    for layers in also_float:
        chosen[f"int8 default + {' + '.join(_names(layers))} float"] = (
            QuantizationConfig.create_full_integer(float_scopes=_names(layers)))
    return chosen


def interleaved_latency(paths: dict[str, Path], rounds: int, runs: int) -> dict[str, float]:
    """Median over rounds of each file's median latency (ms), the files taking turns."""
    from lean_bench.host import measure_in_subprocess

    medians = {name: [] for name in paths}
    for _ in range(rounds):
        for name, path in paths.items():
            medians[name].append(measure_in_subprocess(str(path), 1, runs, 10)["median_ms"])
    return {name: float(np.median(values)) for name, values in medians.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a `lean train` run directory")
    parser.add_argument("--only-float", action="append", default=[], metavar="LAYERS",
                        help="a variant keeping the frontends and these comma-separated layers "
                        "float (repeatable)")
    parser.add_argument("--also-float", action="append", default=[], metavar="LAYERS",
                        help="a variant keeping these comma-separated layers float besides the "
                        "default's (repeatable)")
    parser.add_argument("--data", type=Path, default=None, help="dataset (default: the run's)")
    parser.add_argument("--out", type=Path, default=None, help="where the files go")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds")
    parser.add_argument("--runs", type=int, default=100, help="timed invocations per round")
    parser.add_argument("--json", default=None, help="write the result as JSON ('-': stdout)")
    args = parser.parse_args(argv)

    from lean_export.export import export_run

    out = args.out or Path(tempfile.mkdtemp(prefix="lean-float-layers-"))
    out.mkdir(parents=True, exist_ok=True)
    rows, paths = [], {}
    for index, (name, quantization) in enumerate(variants(args.only_float, args.also_float).items()):
        path = out / f"variant{index}.tflite"
        # max_drop 1: every variant is scored and kept, whatever it loses.
        report = export_run(args.run, path, quantization, data_dir=args.data, max_drop=1.0,
                            progress=False)
        quality = report["quality"]
        rows.append({
            "variant": name, "file": str(path), "size_bytes": report["file_size_bytes"],
            "metric": quality["val"]["metric"],
            "float_layers": report["float_layers"], "float_head_ops": len(report["float_head"]),
            **{f"{split}_{kind}": quality[split][kind] for split in ("val", "eval")
               for kind in ("float", "exported")},
            "eval_clips": quality["eval"]["num_clips"],
            "mean_abs_diff": report["output_difference"]["mean_abs_diff"],
            "max_abs_diff": report["output_difference"]["max_abs_diff"],
        })
        paths[name] = path
    latency = interleaved_latency(paths, args.rounds, args.runs)
    reference = rows[1]["variant"]
    for row in rows:
        row["median_ms"] = latency[row["variant"]]
        row["latency_ratio_to_default"] = latency[row["variant"]] / latency[reference]

    result = {"run": str(args.run), "rounds": args.rounds, "runs": args.runs, "rows": rows}
    if args.json == "-":
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return 0
    if args.json:
        from lean.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    metric = rows[0]["metric"]
    print(f"| variant | bytes | val {metric} | eval {metric} ({rows[0]['eval_clips']} clips) "
          "| mean / max abs diff to Keras | median ms (ratio) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['variant']} | {row['size_bytes']:,} | {row['val_float']:.4f} -> "
              f"{row['val_exported']:.4f} | {row['eval_float']:.4f} -> {row['eval_exported']:.4f} "
              f"| {row['mean_abs_diff']:.4f} / {row['max_abs_diff']:.4f} "
              f"| {row['median_ms']:.3f} ({row['latency_ratio_to_default']:.2f}x) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
