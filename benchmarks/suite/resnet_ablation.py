"""The bag-of-refinements ResNet (paper 000) on any single-label dataset: its attention and
pooling ablations (Tables II, III and the CA + MP row of Table VII), and what each variant costs.

ablation: trains each variant for every seed with `lean.train.train` (the code of `lean train`)
on windows of --window-seconds, scores the eval split with `lean.evaluate.evaluate` (the code of
`lean eval`) and prints clip accuracy as mean and standard deviation over seeds, beside the
paper's numbers. The paper trains 20 epochs with Adam at lr 0.1 on 349k clips; the defaults here
(Adam 1e-3, a few epochs) are for small data.

costs: exports each variant int8 with `lean_export.export.export_run` (the code of
`lean-export --int8`) at the model's own 10 s window, weights as initialised, calibrated on
the dataset, and reports trainable parameters, multiply-accumulates per window (counted from
the .tflite's ops), the file size against one byte per trainable parameter plus the float
frontend's constants, and host latency (LiteRT + XNNPACK, 1 thread) measured in interleaved
rounds beside the YAMNet-only float32 export (fresh process per measurement; the ratio uses the
median of the per-round medians).

    python benchmarks/suite/resnet_ablation.py ablation --data DIR [--model resnet18] \
        [--variants none:average,se:average,...] [--seeds 0,1,2] [--window-seconds 1] \
        [--epochs 4] [--batch-size 16] [--lr 1e-3] [--out DIR] [--json results.json]
    python benchmarks/suite/resnet_ablation.py costs --data DIR [--models resnet18,resnet50] \
        [--variants ...] [--rounds 3] [--runs 50] [--out DIR] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lean.command_line import quiet_tensorflow

quiet_tensorflow()

# (attention, pooling) and the paper's test accuracy (%) of that ResNet18 variant.
PAPER_ACCURACY = {
    ("none", "average"): 92.46,
    ("se", "average"): 94.36,
    ("cbam", "average"): 94.93,
    ("ca", "average"): 95.63,
    ("none", "attentive"): 93.07,
    ("none", "max"): 93.64,
    ("ca", "max"): 96.25,
}
REFERENCE = "yamnet"  # the YAMNet-only float32 export: latency ratio 1.0


def _variants(text: str) -> list[tuple[str, str]]:
    variants = []
    for item in text.split(","):
        attention, _, pooling = item.partition(":")
        variants.append((attention.strip(), pooling.strip() or "average"))
    return variants


def _tag(name: str, variant: tuple[str, str]) -> str:
    return f"{name}_{variant[0]}_{variant[1]}"


def _run_config(data: Path, name: str, variant, window_seconds=None, train=None):
    from lean.config import DataConfig, InputSpec, ModelConfig, RunConfig, TrainConfig
    from lean.models.resnet import ResNetParams

    model_input = None if window_seconds is None else InputSpec(16000, 1, window_seconds)
    return RunConfig(model=ModelConfig(name=name, input=model_input,
                                       params=ResNetParams(attention=variant[0],
                                                           pooling=variant[1])),
                     train=train or TrainConfig(), data=DataConfig(dir=str(data.absolute())))


def ablation(args) -> dict:
    """Trains and scores every variant and seed; returns the per-variant accuracies."""
    from lean.config import TrainConfig
    from lean.evaluate import evaluate
    from lean.inference import load_predictor
    from lean.run import read_run_config
    from lean.train import resolve_dataset, train

    rows = []
    for variant in _variants(args.variants):
        accuracies = []
        for seed in args.seeds:
            run_dir = args.out / f"{_tag(args.model, variant)}_seed{seed}"
            settings = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                                   learning_rate=args.lr, seed=seed)
            train(_run_config(args.data, args.model, variant, args.window_seconds, settings),
                  run_dir, progress=False)
            dataset = resolve_dataset(read_run_config(run_dir))
            result = evaluate(load_predictor(run_dir), dataset, "eval", progress=False)
            accuracies.append(result["accuracy"])
            print(f"{_tag(args.model, variant)} seed {seed}: eval accuracy "
                  f"{result['accuracy']:.4f} ({result['num_clips']} clips)", file=sys.stderr)
        rows.append({"model": args.model, "attention": variant[0], "pooling": variant[1],
                     "accuracies": accuracies, "mean": float(np.mean(accuracies)),
                     "sd": float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else None,
                     "num_clips": result["num_clips"],
                     "paper_accuracy": PAPER_ACCURACY.get(variant)})
    return {"kind": "ablation", "data": str(args.data), "window_seconds": args.window_seconds,
            "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "seeds": args.seeds, "rows": rows}


def _untrained_run(config, labels, run_dir: Path) -> Path:
    """A run directory holding the model as initialised (what export needs of a run)."""
    import dataclasses

    from lean.config import save_json
    from lean.models.registry import build_model
    from lean.run import BEST_MODEL, CONFIG_FILE, LABELS_FILE, save_keras_atomic, write_labels_file

    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, num_classes=len(labels)))
    run_dir.mkdir(parents=True, exist_ok=True)
    save_keras_atomic(build_model(config.model), run_dir / BEST_MODEL)
    save_json(config, run_dir / CONFIG_FILE)
    write_labels_file(run_dir / LABELS_FILE, labels)
    return run_dir


def _trainable_params(run_dir: Path) -> int:
    from lean.run import load_run

    return int(sum(np.prod(w.shape) for w in load_run(run_dir).model.trainable_weights))


def costs(args) -> dict:
    """int8 exports of every model x variant at 10 s; parameters, MACs, size, latency."""
    import dataclasses

    from lean.config import ModelConfig
    from lean.frontends import spectrogram_constants
    from lean.train import resolve_dataset
    from lean_export.export import export_run
    from lean_export.verify import measure_latency, multiply_accumulates, size_breakdown

    config = _run_config(args.data, "resnet18", ("none", "average"))
    labels = resolve_dataset(config).labels
    exports, rows = {}, []
    for name in args.models:
        for variant in _variants(args.variants):
            tag = _tag(name, variant)
            run_dir = _untrained_run(_run_config(args.data, name, variant), labels,
                                     args.out / tag)
            path = args.out / f"{tag}_int8.tflite"
            export_run(run_dir, path, "int8", calibration_count=args.calibration_windows,
                       max_drop=None, progress=False)
            model_bytes = path.read_bytes()
            params = _trainable_params(run_dir)
            frontend = spectrogram_constants(config.model.params.frontend, 16000)
            frontend_bytes = frontend.analysis.nbytes + frontend.filterbank.nbytes
            sizes = size_breakdown(model_bytes)
            rows.append({"model": name, "attention": variant[0], "pooling": variant[1],
                         "trainable_params": params,
                         "macs": multiply_accumulates(model_bytes)["total"],
                         "file_bytes": len(model_bytes), "frontend_float_bytes": frontend_bytes,
                         "size_vs_one_byte_per_param": len(model_bytes) / (params
                                                                           + frontend_bytes),
                         "size_breakdown": sizes})
            exports[tag] = path
            print(f"{tag}: {len(model_bytes):,} bytes, {rows[-1]['macs'] / 1e9:.3f} GMAC",
                  file=sys.stderr)
    reference = ModelConfig(name=REFERENCE)
    reference_run = _untrained_run(dataclasses.replace(config, model=dataclasses.replace(
        reference, task="single_label")), labels, args.out / REFERENCE)
    exports[REFERENCE] = args.out / f"{REFERENCE}_float32.tflite"
    export_run(reference_run, exports[REFERENCE], "float32", max_drop=None, progress=False)
    medians = {tag: [] for tag in exports}
    for round_index in range(args.rounds):
        for tag, path in exports.items():
            medians[tag].append(measure_latency(path, threads=1, runs=args.runs)["median_ms"])
        print(f"latency round {round_index + 1}/{args.rounds} done", file=sys.stderr)
    reference_ms = float(np.median(medians[REFERENCE]))
    for row in rows:
        row["latency_ms"] = float(np.median(medians[_tag(row["model"], (row["attention"],
                                                                           row["pooling"]))]))
        row["latency_ratio_to_yamnet_float32"] = row["latency_ms"] / reference_ms
    from lean.host import host_cpu_model

    return {"kind": "costs", "data": str(args.data), "window_seconds": 10.0,
            "threads": 1, "rounds": args.rounds, "runs": args.runs, "host_cpu": host_cpu_model(),
            "reference": f"{REFERENCE} float32 (1 s window)", "reference_ms": reference_ms,
            "round_medians_ms": medians, "rows": rows}


def format_report(report: dict) -> str:
    if report["kind"] == "ablation":
        lines = [f"eval clip accuracy over seeds {report['seeds']} ({report['epochs']} epochs, "
                 f"{report['window_seconds']} s windows)",
                 f"{'model':<10} {'attention':<9} {'pooling':<9} {'mean':>7} {'sd':>7} "
                 f"{'paper %':>8}"]
        for row in report["rows"]:
            sd = "-" if row["sd"] is None else f"{row['sd']:.4f}"
            paper = "-" if row["paper_accuracy"] is None else f"{row['paper_accuracy']:.2f}"
            lines.append(f"{row['model']:<10} {row['attention']:<9} {row['pooling']:<9} "
                         f"{row['mean']:>7.4f} {sd:>7} {paper:>8}")
        return "\n".join(lines)
    lines = [f"int8 exports, 10 s windows, 1 thread, host {report['host_cpu']} (not a phone); "
             f"reference {report['reference']}: {report['reference_ms']:.2f} ms",
             f"{'model':<10} {'attention':<9} {'pooling':<9} {'params':>11} {'GMAC':>7} "
             f"{'MB':>7} {'x(1 B/param+fe)':>15} {'ms':>8} {'x yamnet':>8}"]
    for row in report["rows"]:
        lines.append(f"{row['model']:<10} {row['attention']:<9} {row['pooling']:<9} "
                     f"{row['trainable_params']:>11,} {row['macs'] / 1e9:>7.3f} "
                     f"{row['file_bytes'] / 1e6:>7.2f} {row['size_vs_one_byte_per_param']:>15.3f} "
                     f"{row['latency_ms']:>8.1f} {row['latency_ratio_to_yamnet_float32']:>8.1f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("ablation", "costs"):
        sub = commands.add_parser(command)
        sub.add_argument("--data", type=Path, required=True, help="single-label dataset folder")
        sub.add_argument("--variants", default=",".join(f"{a}:{p}" for a, p in PAPER_ACCURACY),
                         help="comma-separated attention:pooling pairs")
        sub.add_argument("--out", type=Path, default=Path("resnet_ablation"),
                         help="folder for runs and exports")
        sub.add_argument("--json", type=Path, default=None, help="write the report as JSON")
    ablation_parser = commands.choices["ablation"]
    ablation_parser.add_argument("--model", default="resnet18")
    ablation_parser.add_argument("--seeds", type=lambda t: [int(s) for s in t.split(",")],
                                 default=[0, 1, 2])
    ablation_parser.add_argument("--window-seconds", type=float, default=1.0)
    ablation_parser.add_argument("--epochs", type=int, default=4)
    ablation_parser.add_argument("--batch-size", type=int, default=16)
    ablation_parser.add_argument("--lr", type=float, default=1e-3)
    costs_parser = commands.choices["costs"]
    costs_parser.add_argument("--models", type=lambda t: t.split(","),
                              default=["resnet18", "resnet34", "resnet50"])
    costs_parser.add_argument("--calibration-windows", type=int, default=16)
    costs_parser.add_argument("--rounds", type=int, default=3)
    costs_parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = ablation(args) if args.command == "ablation" else costs(args)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
