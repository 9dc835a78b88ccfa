"""How steady a model's scores are over retrainings: the same config trained with N seeds.

Each seed is one `lean train` run and one `lean eval` of its best checkpoint on the eval split,
each in a child process, exactly as a user would run them. The report gives every run, the best
run (by the task's headline score: accuracy for single_label, mAP for multilabel; its other
scores beside it, as CAB-CNN's Table 3 lists "the result having the highest accuracy") and the
mean, standard deviation and minimum over the runs (Table 7's means, with their spread).

    python benchmarks/suite/stability.py --model cab_cnn --runs 8 --data DIR \
        [--param seconds=5 ...] [--epochs 30] [--batch-size 128] [--lr 1e-3] [--fold K] \
        [--first-seed 0] [--out DIR] [--json OUT.json|-] [-- MORE LEAN TRAIN OPTIONS]

Options after `--` go to every `lean train` unchanged (e.g. `-- --trainable-backbone`).

Runs live in `--out/seed-S/` (default: a folder under the system's temporary directory); a
finished run is not trained again, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# The scores reported per task, the first is the one that picks the best run.
SCORES = {
    "single_label": ("accuracy", "macro_recall", "macro_f1"),
    "multilabel": ("mAP", "mAUC", "d_prime"),
}


def _lean(arguments: list[str]) -> None:
    """Runs `lean ARGUMENTS` in a child process; a failure stops the benchmark with its output."""
    command = [sys.executable, "-m", "lean.cli", *arguments]
    completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    if completed.returncode != 0:
        tail = "\n".join(completed.stdout.strip().splitlines()[-5:])
        raise SystemExit(f"stability: `lean {' '.join(arguments)}` failed "
                         f"(exit {completed.returncode}):\n{tail}")


def run_seed(args, seed: int) -> dict:
    """Trains and evaluates one seed (or reads what an earlier invocation left); its eval JSON."""
    run_dir = args.out / f"seed-{seed}"
    result_path = run_dir / "stability_eval.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    folds = ["--fold", str(args.fold)] if args.fold is not None else []
    train = ["train", "--data", str(args.data), "--out", str(run_dir), "--model", args.model,
             "--seed", str(seed), "--no-progress", *folds]
    for option in ("epochs", "batch_size", "lr"):
        value = getattr(args, option)
        if value is not None:
            train += [f"--{option.replace('_', '-')}", str(value)]
    for assignment in args.param:
        train += ["--param", assignment]
    train += args.train_options
    print(f"stability: seed {seed}: training {run_dir}", file=sys.stderr, flush=True)
    _lean(train)
    partial = run_dir / "eval.json.partial"
    _lean(["eval", str(run_dir), "--data", str(args.data), "--split", "eval", "--json",
           str(partial), "--no-progress"])
    partial.replace(result_path)  # only a finished evaluation counts as done
    return json.loads(result_path.read_text())


def summarize(results: dict[int, dict]) -> dict:
    """Per-run scores, the best run by the headline score, and mean / sd / min over the runs."""
    tasks = {result["task"] for result in results.values()}
    if len(tasks) != 1:
        raise SystemExit(f"stability: the runs have different tasks: {sorted(tasks)}")
    task = tasks.pop()
    names = SCORES[task]
    runs = [{"seed": seed, **{name: results[seed].get(name) for name in names}}
            for seed in sorted(results)]
    headline = names[0]
    best = max(runs, key=lambda run: run[headline])
    columns = {name: np.array([run[name] for run in runs], dtype=np.float64) for name in names}
    return {
        "task": task,
        "scores": list(names),
        "runs": runs,
        "best": best,
        "mean": {name: float(values.mean()) for name, values in columns.items()},
        "sd": {name: float(values.std(ddof=1)) if len(values) > 1 else 0.0
               for name, values in columns.items()},
        "min": {name: float(values.min()) for name, values in columns.items()},
        "num_clips": results[best["seed"]].get("num_clips"),
    }


def markdown_table(summary: dict, title: str) -> str:
    """The summary as a Markdown table: one row per run, then best, mean +- sd and min."""
    names = summary["scores"]
    lines = [f"### {title}", "", "| run | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for run in summary["runs"]:
        lines.append(f"| seed {run['seed']} | " + " | ".join(f"{run[n]:.4f}" for n in names) + " |")
    best = summary["best"]
    lines.append(f"| **best (seed {best['seed']})** | "
                 + " | ".join(f"{best[n]:.4f}" for n in names) + " |")
    lines.append("| **mean +- sd** | " + " | ".join(
        f"{summary['mean'][n]:.4f} +- {summary['sd'][n]:.4f}" for n in names) + " |")
    lines.append("| min | " + " | ".join(f"{summary['min'][n]:.4f}" for n in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="registered model name (`lean models`)")
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (any layout)")
    parser.add_argument("--runs", type=int, default=8, help="seeds to train (default 8)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first..first+runs-1 (default 0)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="family parameter for every run (repeatable)")
    parser.add_argument("--epochs", type=int, default=None, help="(default: lean train's)")
    parser.add_argument("--batch-size", type=int, default=None, help="(default: lean train's)")
    parser.add_argument("--lr", type=float, default=None, help="(default: lean train's)")
    parser.add_argument("--fold", type=int, default=None,
                        help="folds layouts: the eval fold (default: lean train's)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the runs live (default: a temporary folder)")
    parser.add_argument("--json", default=None, help="write the summary as JSON ('-': stdout)")
    parser.add_argument("train_options", nargs=argparse.REMAINDER,
                        help="after --: more `lean train` options for every run")
    args = parser.parse_args(argv)
    args.train_options = [option for option in args.train_options if option != "--"]
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix=f"lean-stability-{args.model}-"))
    args.data = args.data.absolute()

    results = {seed: run_seed(args, seed)
               for seed in range(args.first_seed, args.first_seed + args.runs)}
    summary = {"model": args.model, "params": args.param, "train_options": args.train_options,
               "data": str(args.data),
               "runs_dir": str(args.out), **summarize(results)}
    title = " ".join([args.model, *args.param, *args.train_options]) + f", {args.runs} seeds"
    text = json.dumps(summary, indent=2) + "\n"
    if args.json == "-":
        sys.stdout.write(text)
    else:
        if args.json:
            from lean.io import atomic_write_text

            atomic_write_text(args.json, text)
        sys.stdout.write(markdown_table(summary, title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
