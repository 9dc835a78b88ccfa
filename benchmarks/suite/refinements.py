"""The bag-of-refinements ablation (paper 000, Table VII) for any model on any dataset.

Trains the baseline, each refinement alone, then the refinements stacked in paper 000's order
(label smoothing, then gradual warmup, then knowledge distillation), `--seeds` times each,
evaluates every run on the eval split with `lean eval`, and reports per row the mean and
standard deviation over seeds and the gain over the baseline with the standard deviation of the
per-seed (paired) gains. Also rows for the other refinements alone (mixup, between-class
learning on single-label data, SpecAugment for spectrogram models, a linear SVM head on the
baseline runs). The distillation teacher is one run of `--teacher-model` (default: the same
model) with the baseline recipe and its own seed; its accuracy is reported too.

Every run is a `lean train` run directory under --work, so an interrupted benchmark picks up
where it stopped (finished runs are reused, a killed one resumes).

    python benchmarks/suite/refinements.py --data DIR --model NAME [--seeds 3] [--epochs 8]
        [--batch-size 32] [--lr 1e-3] [--teacher-model NAME] [--work DIR] [--json OUT.json]
        [--plot OUT.png] [--train-arg ARG ...] [--max-windows-per-epoch N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lean.command_line import quiet_tensorflow

quiet_tensorflow()

# Paper 000's values (Table VII): LS eps 0.1; KD T 10, lambda 0.5. Its gradual warmup is 5 of
# 20 epochs; here a quarter of --epochs.
LABEL_SMOOTHING = "0.1"
KD_TEMPERATURE, KD_LAMBDA = "10", "0.5"
MIXUP_ALPHA = "0.2"
TEACHER_SEED = 1000


@dataclass(frozen=True)
class Row:
    name: str
    args: tuple  # extra `lean train` arguments
    kind: str  # baseline | alone | stacked
    svm: bool = False  # a linear SVM head on the baseline runs instead of training


def _rows(epochs: int, single_label: bool, spectrogram: bool, teacher: Path) -> list[Row]:
    warmup = ("--warmup", f"gradual:{max(1, epochs // 4)}")
    smoothing = ("--label-smoothing", LABEL_SMOOTHING)
    distillation = ("--teacher", str(teacher), "--kd-temperature", KD_TEMPERATURE,
                    "--kd-lambda", KD_LAMBDA)
    rows = [Row("baseline", (), "baseline"),
            Row("LS (eps 0.1)", smoothing, "alone"),
            Row(f"GW ({warmup[1]})", warmup, "alone"),
            Row("KD (T 10, lambda 0.5)", distillation, "alone"),
            Row(f"mixup (alpha {MIXUP_ALPHA})", ("--mixup", MIXUP_ALPHA), "alone")]
    if single_label:
        rows.append(Row("between-class", ("--between-class",), "alone"))
    if spectrogram:
        rows.append(Row("SpecAugment (15:70)", ("--specaugment",), "alone"))
    rows.append(Row("linear SVM head (C 0.1)", (), "alone", svm=True))
    rows += [Row("+LS", smoothing, "stacked"),
             Row("+LS +GW", smoothing + warmup, "stacked"),
             Row("+LS +GW +KD", smoothing + warmup + distillation, "stacked")]
    return rows


def _lean(*args) -> list[str]:
    return [sys.executable, "-m", "lean.cli", *map(str, args)]


def _run(command: list[str], what: str) -> subprocess.CompletedProcess:
    print(f"refinements: {what}", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"refinements: {what} failed:\n{tail}")
    return done


def _evaluate(run_dir: Path, data: Path, metric: str) -> float:
    report_path = run_dir / "refinements_eval.json"
    if not report_path.is_file():
        _run(_lean("eval", run_dir, "--data", data, "--split", "eval", "--json", report_path,
                   "--no-progress"), f"evaluating {run_dir.name}")
    return float(json.loads(report_path.read_text())[metric])


def _summary(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}


def _dataset_facts(data: Path, model: str) -> tuple[str, bool]:
    """(task, whether the model has a spectrogram frontend)."""
    from lean.config import ModelConfig
    from lean.data import load_dataset
    from lean.models.registry import build_model
    from lean.training.specaugment import spectrogram_frontends

    dataset = load_dataset(data)
    config = ModelConfig(name=model, num_classes=dataset.num_classes, task=dataset.task)
    return dataset.task, bool(spectrogram_frontends(build_model(config, load_pretrained=False)))


def _run_name(model: str, args: tuple, seed: int) -> str:
    """One run directory per configuration and seed: a row stacking nothing new (+LS is LS
    alone) reuses the run of the row it repeats."""
    import hashlib

    key = hashlib.sha1("\0".join(map(str, args)).encode()).hexdigest()[:10] if args else "base"
    return f"{model}_{key}_seed{seed}"


def _plot(results: dict, path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lean.io import atomic_path

    rows = results["rows"]
    names = [row["name"] for row in rows]
    means = [row["mean"] for row in rows]
    sds = [row["sd"] for row in rows]
    colors = {"baseline": "0.5", "alone": "tab:blue", "stacked": "tab:orange"}
    figure, axis = plt.subplots(figsize=(max(6.0, 0.7 * len(rows)), 4.0))
    axis.bar(range(len(rows)), means, yerr=sds, capsize=3,
             color=[colors[row["kind"]] for row in rows])
    for index, row in enumerate(rows):
        axis.plot([index] * len(row["values"]), row["values"], "k.", markersize=4)
    axis.axhline(results["rows"][0]["mean"], color="0.3", linewidth=0.8, linestyle="--")
    axis.set_xticks(range(len(rows)), names, rotation=35, ha="right")
    axis.set_ylabel(f"eval {metric} (mean and sd over {results['seeds']} seeds)")
    axis.set_title(f"{results['model']} on {Path(results['data']).name}: refinements alone "
                   "(blue) and stacked (orange)", fontsize=9)
    low = min(min(row["values"]) for row in rows)
    axis.set_ylim(max(0.0, low - 0.1), min(1.0, max(max(row["values"]) for row in rows) + 0.05))
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)


def _table(results: dict, metric: str) -> str:
    lines = [f"| configuration | eval {metric}, mean +- sd over {results['seeds']} seeds | gain "
             "over baseline (paired sd) |", "|---|---|---|"]
    for row in results["rows"]:
        gain = ("" if row["kind"] == "baseline" else
                f"{row['gain']['mean']:+.4f} ({row['gain']['sd']:.4f})")
        lines.append(f"| {row['name']} | {row['mean']:.4f} +- {row['sd']:.4f} | {gain} |")
    teacher = results["teacher"]
    lines.append(f"\nteacher ({teacher['model']}, seed {TEACHER_SEED}): eval {metric} "
                 f"{teacher['score']:.4f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (any layout)")
    parser.add_argument("--model", required=True, help="family member (see `lean models`)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per configuration")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="the baseline's learning rate")
    parser.add_argument("--teacher-model", default=None,
                        help="the distillation teacher's model (default: --model)")
    parser.add_argument("--train-arg", action="append", default=[],
                        help="one more `lean train` argument for every run (repeatable), e.g. "
                        "--train-arg=--lr-schedule=step:4:0.1")
    parser.add_argument("--max-windows-per-epoch", type=int, default=None)
    parser.add_argument("--work", type=Path, default=Path("refinements_runs"),
                        help="where the run directories go (reused when rerun)")
    parser.add_argument("--json", type=Path, default=Path("refinements.json"))
    parser.add_argument("--plot", type=Path, default=Path("refinements.png"))
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")

    from lean.io import atomic_write_text

    task, spectrogram = _dataset_facts(args.data, args.model)
    metric = "accuracy" if task == "single_label" else "mAP"
    common = ["--data", args.data, "--epochs", args.epochs, "--batch-size", args.batch_size,
              "--lr", args.lr, "--no-progress", *args.train_arg]
    if args.max_windows_per_epoch:
        common += ["--max-windows-per-epoch", args.max_windows_per_epoch]
    args.work.mkdir(parents=True, exist_ok=True)

    teacher_model = args.teacher_model or args.model
    teacher = args.work / f"teacher_{teacher_model}"
    _run(_lean("train", "--model", teacher_model, "--out", teacher, "--seed", TEACHER_SEED,
               *common), f"training the teacher {teacher.name}")
    results = {"data": str(args.data.absolute()), "model": args.model, "task": task,
               "metric": metric, "seeds": args.seeds, "epochs": args.epochs,
               "batch_size": args.batch_size, "lr": args.lr, "train_args": args.train_arg,
               "teacher": {"model": teacher_model, "run": str(teacher),
                           "score": _evaluate(teacher, args.data, metric)},
               "rows": []}
    baseline_scores = None
    for row in _rows(args.epochs, task == "single_label", spectrogram, teacher):
        scores = []
        for seed in range(args.seeds):
            base_dir = args.work / _run_name(args.model, (), seed)
            if row.svm:
                run_dir = args.work / f"{base_dir.name}_svm_linear"
                if not (run_dir / "config.json").is_file():
                    _run(_lean("svm", base_dir, "--kernel", "linear", "--out", run_dir,
                               "--no-progress"), f"{row.name}, seed {seed}")
            else:
                run_dir = args.work / _run_name(args.model, row.args, seed)
                _run(_lean("train", "--model", args.model, "--out", run_dir, "--seed", seed,
                           *common, *row.args), f"{row.name}, seed {seed}")
            scores.append(_evaluate(run_dir, args.data, metric))
        entry = {"name": row.name, "kind": row.kind, "args": list(row.args), **_summary(scores)}
        if baseline_scores is None:
            baseline_scores = scores
        else:
            entry["gain"] = _summary([a - b for a, b in zip(scores, baseline_scores)])
        results["rows"].append(entry)
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    stacked = results["rows"][-1]
    results["stacked_gain"] = stacked["gain"]
    atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    _plot(results, args.plot, metric)
    print(_table(results, metric))
    print(f"stacked gain ({stacked['name']} over baseline): {stacked['gain']['mean']:+.4f} "
          f"(paired sd {stacked['gain']['sd']:.4f} over {args.seeds} seeds); "
          f"JSON {args.json}, plot {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
