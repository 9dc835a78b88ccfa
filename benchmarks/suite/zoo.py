"""The zoo table: every requested family member on one dataset, measured in one run.

For each model: trainable and total parameters, multiply-accumulates per window (counted from
the exported graph), its window, the task's score (mAP or accuracy) of the float model and of
the int8 export on the eval split (the folds the run held out), the int8 file size and bytes per
parameter, and host latency at 1 thread as a ratio to the float32 export of `yamnet` (YAMNet
alone, LEAN's baseline), all latencies timed in interleaved rounds so that every model sees the
same machine load.

    python benchmarks/suite/zoo.py --data DIR --model resnet18 --model cab_cnn:seconds=5 \\
        [--model att_crnn ...] [--epochs 3] [--batch-size 16] [--lr 1e-3] [--out zoo/] \\
        [--rounds 3] [--runs 50] [--reuse-exports] [--json zoo.json] [--markdown zoo.md]

A model is `NAME` or `NAME:KEY=VALUE,KEY=VALUE` (family params, as `lean train --param`;
`input=RATE:CHANNELS:SECONDS` is `lean train --input`, e.g. `scene_cnn:input=16000:2:2.0`). Runs
are trained with `lean train` into OUT/runs/ (a rerun reuses finished runs), exported with
`lean-export`'s defaults into OUT/models/ (the val gate with the float fallback; a model the
gate still refuses is exported plain int8, timed, and marked so); every model is trained with `--trainable-backbone`, since no
pretrained weights can be downloaded here (models without a backbone ignore it). The scores of
such short trainings on small data say little about the papers' numbers; sizes, MACs and latency
ratios do not depend on training.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lean.command_line import quiet_tensorflow

quiet_tensorflow()

REFERENCE = "yamnet"


@dataclass(frozen=True)
class ModelSpec:
    """One row of the table: a family member and its --param assignments."""

    name: str
    params: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        name, _, assignments = text.partition(":")
        params = tuple(part.strip() for part in assignments.split(",") if part.strip())
        return cls(name.strip(), params)

    @property
    def label(self) -> str:
        return self.name + (f" ({', '.join(self.params)})" if self.params else "")

    @property
    def slug(self) -> str:
        text = "_".join([self.name, *self.params])
        return "".join(char if char.isalnum() or char in "-_." else "-" for char in text)


def train(spec: ModelSpec, args, runs_dir: Path) -> Path:
    """`lean train` in a child process (its progress on our stderr); a finished run is reused."""
    run_dir = runs_dir / spec.slug
    command = [sys.executable, "-m", "lean.cli", "train", "--data", str(args.data),
               "--out", str(run_dir), "--model", spec.name, "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed",
               str(args.seed), "--trainable-backbone", "--no-progress"]
    for param in spec.params:
        key, _, value = param.partition("=")
        # input=RATE:CHANNELS:SECONDS is lean train's --input, not a family param.
        command += ["--input", value] if key == "input" else ["--param", param]
    if args.fold is not None:
        command += ["--fold", str(args.fold)]
    if args.max_windows_per_epoch:
        command += ["--max-windows-per-epoch", str(args.max_windows_per_epoch)]
    completed = subprocess.run(command)
    if completed.returncode != 0:
        raise SystemExit(f"zoo: lean train failed for {spec.label} (exit {completed.returncode})")
    return run_dir


def parameter_counts(run_dir: Path) -> tuple[int, int]:
    """(total, trainable) parameters of a run's model."""
    from lean.run import load_run

    model = load_run(run_dir).model
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    return int(model.count_params()), trainable


def interleaved_latency(paths: dict[str, Path], rounds: int, runs: int) -> dict[str, float]:
    """Median over `rounds` interleaved rounds of each model's median latency (1 thread)."""
    from lean_export.verify import measure_latency

    medians = {name: [] for name in paths}
    for _ in range(rounds):
        for name, path in paths.items():
            medians[name].append(measure_latency(path, threads=1, runs=runs)["median_ms"])
    return {name: float(np.median(values)) for name, values in medians.items()}


def export_with_defaults(spec: ModelSpec, run_dir: Path, path: Path, mode: str,
                         latency_runs: int) -> tuple[dict, str]:
    """(report, "passed" | "refused"): lean-export's defaults, as a user gets them (the val gate
    with the float fallback); a model the gate still refuses is exported plain with the gate
    open, so that its file is timed and its drop shown."""
    from lean.errors import LeanError
    from lean_export.export import export_run

    try:
        return export_run(run_dir, path, mode, latency_runs=latency_runs, progress=False), "passed"
    except LeanError as refusal:
        print(f"zoo: {spec.label}: {refusal}", file=sys.stderr)
        return export_run(run_dir, path, mode, max_drop=1.0, fallback="none",
                          latency_runs=latency_runs, progress=False), "refused"


def measure(args) -> dict:
    from lean.config import RunConfig, load_json
    from lean_export.verify import multiply_accumulates

    out = Path(args.out)
    runs_dir, models_dir = out / "runs", out / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    specs = [ModelSpec.parse(text) for text in args.model]
    reference = ModelSpec(REFERENCE)
    rows, files = [], {}
    for spec in [reference] + [s for s in specs if s != reference]:
        run_dir = train(spec, args, runs_dir)
        config = load_json(RunConfig, run_dir / "config.json")
        is_reference = spec == reference
        mode = "float32" if is_reference else "int8"
        path = models_dir / f"{spec.slug}_{mode}.tflite"
        report_path = path.with_suffix(".report.json")
        if args.reuse_exports and path.is_file() and report_path.is_file():
            # A file an earlier zoo run wrote (a gate-refused one was re-exported with the gate
            # open, max_drop 1.0).
            report = json.loads(report_path.read_text())
            gate = "refused" if report.get("max_drop") == 1.0 else "passed"
        else:
            report, gate = export_with_defaults(spec, run_dir, path, mode, args.runs)
        quality = report["quality"].get("eval") or report["quality"]["val"]
        total, trainable = parameter_counts(run_dir)
        spec_input = config.model.input
        rows.append({
            "model": spec.label,
            "name": spec.name,
            "params": list(spec.params),
            "task": config.model.task,
            "input": {"sample_rate": spec_input.sample_rate, "channels": spec_input.channels,
                      "window_seconds": spec_input.window_seconds},
            "parameters": total,
            "trainable_parameters": trainable,
            "macs_per_window": multiply_accumulates(path.read_bytes())["total"],
            "metric": quality["metric"],
            "split": "eval" if "eval" in report["quality"] else "val",
            "float_score": quality["float"],
            "export_score": quality["exported"],
            "drop": quality["drop"],
            "drop_bootstrap": quality["drop_bootstrap"],
            "export": mode,
            "gate": gate,
            "float_groups": report.get("float_groups", []),
            "file_bytes": report["file_size_bytes"],
            "bytes_per_parameter": report["file_size_bytes"] / total,
            "float_layers": report["float_layers"],
            "run_dir": str(run_dir),
            "file": str(path),
        })
        files[spec.label] = path
    latency = interleaved_latency(files, args.rounds, args.runs)
    base = latency[reference.label]
    for row in rows:
        row["latency_ms"] = latency[row["model"]]
        row["latency_ratio_to_yamnet_float32"] = latency[row["model"]] / base
    from lean.host import host_description

    return {"data": str(args.data), "fold": args.fold, "epochs": args.epochs,
            "latency": {"threads": 1, "rounds": args.rounds, "runs_per_round": args.runs,
                        "reference": f"{REFERENCE} float32"},
            "host": host_description(), "rows": rows}


def markdown_table(result: dict) -> str:
    lines = [
        "| model | task | window | params | MACs / window | float | int8 | int8 file | "
        "bytes / param | latency, x yamnet f32 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        spec = row["input"]
        window = (f"{spec['window_seconds']:g} s {spec['sample_rate'] / 1000:g} kHz"
                  + ("" if spec["channels"] == 1 else f" x{spec['channels']}"))
        spread = row["drop_bootstrap"]
        groups = row.get("float_groups", [])
        kept = f", {len(groups)} group(s) kept float" if groups else ""
        refused = "; gate refused it" if row.get("gate") == "refused" else ""
        lines.append(
            f"| {row['model']} | {row['task']} | {window} | {row['parameters']:,} | "
            f"{row['macs_per_window'] / 1e6:,.1f} M | {row['metric']} {row['float_score']:.3f} | "
            f"{row['export_score']:.3f} ({row['export']}{kept}, drop {row['drop']:+.3f}, 95 % "
            f"{spread['low']:+.3f} to {spread['high']:+.3f}{refused}) | "
            f"{row['file_bytes'] / 1e6:.2f} MB | {row['bytes_per_parameter']:.2f} | "
            f"{row['latency_ms']:.2f} ms, {row['latency_ratio_to_yamnet_float32']:.2f}x |")
    host = result["host"]
    lines += ["", f"Host: {host['cpu']} ({host['cpu_count']} logical cores, int8 dot product: "
              f"{', '.join(host['cpu_int8_dot_product']) or 'none'}); LiteRT + XNNPACK, 1 "
              f"thread, median of {result['latency']['rounds']} interleaved rounds of "
              f"{result['latency']['runs_per_round']} runs. Scores on the {result['rows'][0]['split']} "
              f"split of {result['data']} after {result['epochs']} epochs."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (any layout)")
    parser.add_argument("--model", action="append", required=True, metavar="NAME[:K=V,...]",
                        help="a family member (repeatable); yamnet float32 is always added")
    parser.add_argument("--fold", type=int, default=None, help="folds layouts: the eval fold")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-windows-per-epoch", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("zoo"), help="runs and models go here")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved latency rounds")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per round (>= 50)")
    parser.add_argument("--reuse-exports", action="store_true",
                        help="use a model's .tflite and report that OUT/models already holds")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    args = parser.parse_args(argv)

    from lean.io import atomic_write_text

    result = measure(args)
    table = markdown_table(result)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    if args.markdown:
        atomic_write_text(args.markdown, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
