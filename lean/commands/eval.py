"""`lean eval`: clip-level mAP, mAUC and d' of a run directory or a .tflite on a dataset split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lean.config import EvalConfig


def register(subparsers) -> None:
    defaults = EvalConfig()
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a run directory, .keras or .tflite model on a dataset split",
        description=(
            "Cut every clip of the split into 1 s windows with 50 %% overlap (short clips "
            "repeated to 1 s), predict them in batches, pool window scores per clip and report "
            "per-class AP and ROC-AUC, mAP, mAUC and d'. Keras models and .tflite files (LiteRT) "
            "go through the same code."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model", type=Path, metavar="RUN_DIR_OR_MODEL",
                        help="run directory, .keras file or .tflite file")
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (FSD50K layout)")
    parser.add_argument("--split", choices=("eval", "val"), default="eval")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json",
                        help="write the full result as JSON ('-' for stdout)")
    parser.add_argument("--plots", type=Path, default=None, metavar="DIR",
                        help="write pr_curves.png and per_class_ap.png there")
    parser.add_argument("--aggregation", choices=("mean", "max", "mean_logits"),
                        default=defaults.aggregation, help="how window scores become a clip score")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="windows per forward pass (Keras, or a .tflite with a dynamic batch)")
    parser.add_argument("--threads", type=int, default=None,
                        help="LiteRT interpreter threads (default: LiteRT's choice)")
    parser.add_argument("--on-bad-audio", choices=("skip", "fail"), default="skip",
                        help="skip: count and list unreadable clips in the result; fail: stop")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="decoded-audio cache (default: $LEAN_CACHE_DIR, else "
                        "~/.cache/lean/audio)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def format_summary(report: dict) -> str:
    """The few lines a person reads; the JSON has everything."""
    def number(value, digits=4):
        return "n/a" if value is None else f"{value:.{digits}f}"

    lines = [
        f"model   {report['model']} ({report['model_kind']})",
        f"data    {report['data']} [{report['split']}]: {report['num_clips']} clips, "
        f"{report['num_windows']} windows, {report['num_skipped']} skipped",
        f"mAP     {number(report['mAP'])}   mAUC {number(report['mAUC'])}   "
        f"d' {number(report['d_prime'], 3)}   ({report['num_classes_ap']} of "
        f"{report['num_classes']} classes scored, aggregation {report['aggregation']})",
        f"speed   {report['windows_per_second']} windows/s on {report['host']['cpu']}",
    ]
    if report["classes_without_positives"]:
        lines.append(f"no positives: {', '.join(report['classes_without_positives'])}")
    for path in report.get("plots", []):
        lines.append(f"plot    {path}")
    return "\n".join(lines)


def run(args) -> int:
    from lean.data.audio import AudioCache
    from lean.data.fsd50k import load_dataset
    from lean.data.pipeline import default_cache_dir
    from lean.evaluate import evaluate
    from lean.inference import load_predictor
    from lean.io import atomic_write_text

    if args.batch_size <= 0:
        from lean.errors import LeanError

        raise LeanError(f"--batch-size must be positive, not {args.batch_size}")
    dataset = load_dataset(args.data)
    predictor = load_predictor(args.model, batch_size=args.batch_size, num_threads=args.threads)
    cache = AudioCache(args.cache_dir or default_cache_dir(), predictor.sample_rate)
    report = evaluate(predictor, dataset, args.split, EvalConfig(aggregation=args.aggregation),
                      cache=cache, on_bad_audio=args.on_bad_audio, plots_dir=args.plots,
                      progress=not args.no_progress)
    text = json.dumps(report, indent=2) + "\n"
    if args.json is not None and str(args.json) == "-":
        sys.stdout.write(text)
        print(format_summary(report), file=sys.stderr)
        return 0
    if args.json is not None:
        atomic_write_text(args.json, text)
    print(format_summary(report))
    return 0
