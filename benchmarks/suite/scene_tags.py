"""The tag-vector ablation of Jung et al. (Interspeech 2020, Tables 2, 3 and 5) on any dataset.

Trains `scene_cnn` without tags (the baseline), with the tag vector of a tagger run
concatenated to its code (codecat; before-code with 0-5 tag layers), with tag-driven multi-head
filter attention (2/4/8/16/32 heads) and with both through one shared transform (Table 5's
best: 4 heads, 3 layers), each with several seeds on one fold, and reports the held-out fold's
accuracy (softmax head, the `lean eval` code) as mean and standard deviation over seeds beside
the paper's SVM-backed numbers, as a table, JSON and a plot.

    python benchmarks/suite/scene_tags.py --data DIR --tagger RUN_DIR [--out DIR] [--seeds 3]
        [--epochs 5] [--fold 1] [--input 16000:2:2.0] [--param filters=32 ...]
        [--variants baseline,codecat,...] [--json OUT.json|-] [--plot OUT.png]

`--tagger` is a multi-label run (`lean train` on FSD50K-layout data, e.g. `--model yamnet` on
`lean data demo`). `--input RATE:CHANNELS:SECONDS` trains at a shorter or lower-rate input than
the paper's 10 s of 48 kHz stereo; `--param` passes further scene_cnn params to every variant.
Runs live in OUT/VARIANT/seedN and are resumed or reused when the script runs again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lean.command_line import quiet_tensorflow

quiet_tensorflow()

# (name, scene_cnn params, the paper's fold-1 accuracy in %, SVM back-end).
ATTENTION_LAYERS = 1  # Table 3's best row for 2 heads; every head count uses it here
VARIANTS = (
    ("baseline", {}, 73.63),
    ("codecat", {"tag_concat": "codecat"}, 74.15),
    *((f"before_code_{layers}", {"tag_concat": "before_code", "tag_layers": layers}, paper)
      for layers, paper in zip(range(6), (74.36, 74.84, 74.22, 75.66, 75.22, 74.07))),
    *((f"attention_{heads}", {"tag_attention_heads": heads, "attention_layers": ATTENTION_LAYERS},
       paper) for heads, paper in zip((2, 4, 8, 16, 32), (76.58, 75.22, 74.36, 74.47, 75.57))),
    ("shared_4x3", {"tag_concat": "before_code", "tag_layers": 3, "tag_attention_heads": 4,
                    "attention_layers": 3, "shared_transform": True}, 76.75),
)


def _params(variant: dict, tagger: str, extra: list[str]):
    from lean.models.registry import parse_param_overrides

    assignments = list(extra) + [f"{key}={value}" for key, value in variant.items()]
    if variant:
        assignments.append(f"tagger={tagger}")
    return parse_param_overrides("scene_cnn", assignments)


def _train_and_score(name: str, params, seed: int, args, cache_dir: Path) -> float:
    """One run (resumed or reused when its directory holds it) and its held-out accuracy."""
    from lean.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from lean.evaluate import dataset_for, evaluate
    from lean.inference import load_predictor
    from lean.train import train

    model = ModelConfig("scene_cnn", input=args.input, params=params,
                        task="single_label")
    config = RunConfig(model=model,
                       train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                                         learning_rate=args.lr, seed=seed),
                       data=DataConfig(dir=str(args.data), fold=args.fold))
    run_dir = args.out / name / f"seed{seed}"
    train(config, run_dir, cache_dir=cache_dir, progress=False)
    predictor = load_predictor(run_dir)
    result = evaluate(predictor, dataset_for(predictor, args.data), "eval", progress=False)
    return float(result["accuracy"])


def run_ablation(args) -> dict:
    from tqdm import tqdm

    from lean.errors import LeanError

    chosen = [v for v in VARIANTS if not args.variants or v[0] in args.variants]
    unknown = sorted(set(args.variants or ()) - {v[0] for v in VARIANTS})
    if unknown:
        raise LeanError(f"--variants: unknown {', '.join(unknown)}; known: "
                        f"{', '.join(v[0] for v in VARIANTS)}")
    cache_dir = args.out / "audio_cache"
    # A variant scene_cnn refuses at these params (32 heads over 32 filters) is reported, not run.
    refused: dict[str, str] = {}
    for name, values, _ in chosen:
        try:
            _params(values, str(args.tagger), args.param)
        except LeanError as error:
            refused[name] = str(error)
    jobs = [(variant, seed) for variant in chosen if variant[0] not in refused
            for seed in range(args.seeds)]
    scores: dict[str, list[float]] = {}
    for (name, values, _), seed in tqdm(jobs, desc="scene_tags runs", unit="run",
                                         file=sys.stderr):
        params = _params(values, str(args.tagger), args.param)
        scores.setdefault(name, []).append(_train_and_score(name, params, seed, args, cache_dir))
    rows = []
    baseline = np.mean(scores["baseline"]) if "baseline" in scores else None
    for name, values, paper in chosen:
        if name in refused:
            rows.append({"variant": name, "params": values, "seeds": 0, "refused": refused[name],
                         "paper_accuracy": paper / 100.0,
                         "paper_gain": (paper - VARIANTS[0][2]) / 100.0})
            continue
        accuracy = np.array(scores[name])
        rows.append({
            "variant": name, "params": values, "seeds": len(accuracy),
            "accuracy": [float(a) for a in accuracy],
            "mean": float(accuracy.mean()),
            "sd": float(accuracy.std(ddof=1)) if len(accuracy) > 1 else None,
            "gain_over_baseline": None if baseline is None else float(accuracy.mean() - baseline),
            "paper_accuracy": paper / 100.0,
            "paper_gain": (paper - VARIANTS[0][2]) / 100.0,
        })
    return {
        "data": str(args.data), "tagger": str(args.tagger), "fold": args.fold,
        "input": {"sample_rate": args.input.sample_rate, "channels": args.input.channels,
                  "window_seconds": args.input.window_seconds},
        "extra_params": args.param, "epochs": args.epochs, "batch_size": args.batch_size,
        "lr": args.lr, "metric": "held-out fold accuracy, softmax head (paper: SVM back-end)",
        "rows": rows,
    }


def print_table(report: dict) -> None:
    print(f"scene_cnn tag ablation on {report['data']} (fold {report['fold']}), "
          f"{max(row['seeds'] for row in report['rows'])} seeds, {report['metric']}")
    print(f"{'variant':<15} {'accuracy':>18} {'gain':>8} {'paper':>7} {'paper gain':>10}")
    for row in report["rows"]:
        if row.get("refused"):
            print(f"{row['variant']:<15} {'not run':>18} {'':>8} {row['paper_accuracy']:>7.4f} "
                  f"{row['paper_gain']:>+10.4f}  ({row['refused']})")
            continue
        sd = f" +- {row['sd']:.3f}" if row["sd"] is not None else ""
        gain = row["gain_over_baseline"]
        print(f"{row['variant']:<15} {row['mean']:>9.3f}{sd:<9} "
              f"{'' if gain is None else f'{gain:+.3f}':>8} {row['paper_accuracy']:>7.4f} "
              f"{row['paper_gain']:>+10.4f}")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in report["rows"] if not row.get("refused")]
    positions = np.arange(len(rows))
    figure, axis = plt.subplots(figsize=(max(6.0, 0.6 * len(rows)), 4.0))
    axis.bar(positions - 0.2, [row["mean"] for row in rows], 0.4,
             yerr=[row["sd"] or 0.0 for row in rows], capsize=3, label="measured (mean, sd)")
    axis.bar(positions + 0.2, [row["paper_accuracy"] for row in rows], 0.4, alpha=0.6,
             label="paper (DCASE 2019 1a, SVM)")
    axis.set_xticks(positions, [row["variant"] for row in rows], rotation=45, ha="right")
    axis.set_ylabel("accuracy")
    axis.set_ylim(0.0, 1.0)
    axis.legend(loc="lower right")
    axis.set_title(f"scene_cnn tag conditioning, {Path(report['data']).name}, "
                   f"fold {report['fold']}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    from lean.command_line import input_spec, positive_float, positive_int, run_cli

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="single-label dataset folder")
    parser.add_argument("--tagger", required=True, type=Path, help="multi-label tagger run")
    parser.add_argument("--out", type=Path, default=Path("scene_tags_runs"),
                        help="folder of the runs (resumed and reused)")
    parser.add_argument("--seeds", type=positive_int, default=3)
    parser.add_argument("--epochs", type=positive_int, default=5)
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--lr", type=positive_float, default=1e-3)
    parser.add_argument("--fold", type=positive_int, default=1,
                        help="the fold held out for testing")
    parser.add_argument("--input", type=input_spec, default=None,
                        metavar="RATE:CHANNELS:SECONDS",
                        help="the scene model's input (default: the paper's 48000:2:10.0)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="further scene_cnn params for every variant (repeatable)")
    parser.add_argument("--variants", type=lambda text: text.split(","), default=None,
                        help="comma-separated subset of: " + ", ".join(v[0] for v in VARIANTS))
    parser.add_argument("--json", default=None, help="write the report here ('-': stdout)")
    parser.add_argument("--plot", type=Path, default=None, help="bar chart PNG")

    def run(args) -> int:
        from lean.models.registry import entry

        args.input = args.input or entry("scene_cnn").default_input()
        report = run_ablation(args)
        print_table(report)
        if args.json == "-":
            json.dump(report, sys.stdout, indent=2)
            print()
        elif args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        if args.plot:
            plot(report, args.plot)
        return 0

    parser.set_defaults(func=run)
    return run_cli(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
