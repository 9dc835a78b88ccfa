"""`lean eval`: clip-level metrics of a run directory or a .tflite on a dataset split (mAP, mAUC
and d' for tagging; accuracy, macro F1 and the confusion matrix for single-label models)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lean.command_line import add_data_arguments
from lean.config import EvalConfig
from lean.data.windows import AGGREGATIONS
from lean.tasks import TASKS


def register(subparsers) -> None:
    defaults = EvalConfig()
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a run directory, .keras or .tflite model on a dataset split",
        description=(
            "Cut every clip of the split into windows of the model's input length with 50 % "
            "overlap (--window-hop) (short clips repeated to one window), decoded to the model's sample rate "
            "and channels, predict them in batches, pool window scores per clip and report the "
            "task's metrics: per-class AP and ROC-AUC, mAP, mAUC and d' for a multilabel "
            "model; accuracy, macro recall, precision and F1, per-class values and the "
            "confusion matrix (rows true class, columns predicted), per clip and per window "
            "(segments), for a single_label one. Keras models and .tflite files (LiteRT) go "
            "through the same code."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model", type=Path, metavar="RUN_DIR_OR_MODEL", nargs="?",
                        help="run directory, .keras file or .tflite file")
    parser.add_argument("--fuse", type=Path, nargs="+", default=None, metavar="RUN",
                        help="instead of one model, two or more (run directories, .keras or "
                        ".tflite) with the same labels and input: each window's posteriors are "
                        "multiplied and renormalised before the clip aggregation (the fusion of "
                        "log-mel and log-Gammatone systems); each model alone is reported too")
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (any layout)")
    add_data_arguments(parser)
    parser.add_argument("--split", choices=("eval", "val"), default="eval",
                        help="which split (folds layouts: the folds --fold/--val-fold name, by "
                        "default those the run was trained with)")
    parser.add_argument("--task", choices=tuple(TASKS), default=None,
                        help="the model's task, for a .tflite whose metadata does not say it")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json",
                        help="write the full result as JSON ('-' for stdout)")
    parser.add_argument("--plots", type=Path, default=None, metavar="DIR",
                        help="write the plots there: pr_curves.png and per_class_ap.png "
                        "(multilabel), confusion_matrix.png (single_label)")
    parser.add_argument("--aggregation", choices=AGGREGATIONS, default=defaults.aggregation,
                        help="how window scores become a clip score (log_sum: the sum of "
                        "log-probabilities, scene classification's multiplicative fusion)")
    parser.add_argument("--window-hop", type=float, default=defaults.window_hop_fraction,
                        metavar="FRACTION",
                        help="hop between windows as a fraction of the window (1.0: "
                        "non-overlapping segments, e.g. 15 x 2 s of a 30 s scene recording)")
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

    folds = (f", test fold {report['test_fold']}, val fold {report['val_fold']}"
             if report.get("test_fold") is not None else "")
    lines = [
        f"model   {report['model']} ({report['model_kind']}, {report['task']})"
        if not report.get("fused") else
        f"models  {' x '.join(member['model'] for member in report['fused'])} (posteriors "
        f"multiplied, {report['task']})",
        f"data    {report['data']} [{report['split']}{folds}]: {report['num_clips']} clips, "
        f"{report['num_windows']} windows, {report['num_skipped']} skipped",
    ]
    if report["task"] == "multilabel":
        lines.append(
            f"mAP     {number(report['mAP'])}   mAUC {number(report['mAUC'])}   "
            f"d' {number(report['d_prime'], 3)}   ({report['num_classes_ap']} of "
            f"{report['num_classes']} classes scored, aggregation {report['aggregation']})")
    else:
        segments = report["segments"]
        lines += [
            f"clips   accuracy {number(report['accuracy'])}   macro recall "
            f"{number(report['macro_recall'])}   macro F1 {number(report['macro_f1'])}   "
            f"macro precision {number(report['macro_precision'])}   (aggregation "
            f"{report['aggregation']})",
            f"windows accuracy {number(segments['accuracy'])}   macro recall "
            f"{number(segments['macro_recall'])}   macro F1 {number(segments['macro_f1'])}   "
            f"macro precision {number(segments['macro_precision'])}",
        ]
    for member in report.get("fused", []):
        main = (f"mAP {number(member['mAP'])}" if report["task"] == "multilabel" else
                f"clips accuracy {number(member['accuracy'])}   macro F1 "
                f"{number(member['macro_f1'])}   windows accuracy "
                f"{number(member['segments']['accuracy'])}")
        lines.append(f"alone   {member['model']}: {main}")
    lines.append(f"speed   {report['windows_per_second']} windows/s on {report['host']['cpu']}")
    missing = report.get("classes_without_positives") or report.get("classes_without_examples")
    if missing:
        lines.append(f"no examples of: {', '.join(missing)}")
    for path in report.get("plots", []):
        lines.append(f"plot    {path}")
    return "\n".join(lines)


def run(args) -> int:
    from lean.data.audio import AudioCache
    from lean.data.pipeline import default_cache_dir
    from lean.errors import LeanError
    from lean.evaluate import dataset_for, evaluate
    from lean.inference import load_predictor
    from lean.io import atomic_write_text

    if args.batch_size <= 0:
        raise LeanError(f"--batch-size must be positive, not {args.batch_size}")
    if not 0.0 < args.window_hop <= 1.0:
        raise LeanError(f"--window-hop must be in (0, 1], not {args.window_hop}")
    if (args.model is None) == (args.fuse is None):
        raise LeanError("give one model (RUN_DIR_OR_MODEL) or --fuse RUN_A RUN_B, not both")
    if args.fuse is not None and len(args.fuse) < 2:
        raise LeanError(f"--fuse needs two or more runs, got {len(args.fuse)}")
    models = args.fuse or [args.model]
    predictor, *fuse_with = [
        load_predictor(path, batch_size=args.batch_size, num_threads=args.threads,
                       task=args.task) for path in models]
    # The folds the run held out, unless --layout / --fold say otherwise.
    dataset = dataset_for(predictor, args.data, args.layout, args.fold, args.val_fold)
    cache = AudioCache(args.cache_dir or default_cache_dir(), predictor.sample_rate,
                       channels=predictor.channels)
    eval_config = EvalConfig(window_hop_fraction=args.window_hop, aggregation=args.aggregation)
    report = evaluate(predictor, dataset, args.split, eval_config,
                      cache=cache, on_bad_audio=args.on_bad_audio, plots_dir=args.plots,
                      progress=not args.no_progress, fuse_with=tuple(fuse_with))
    text = json.dumps(report, indent=2) + "\n"
    if args.json is not None and str(args.json) == "-":
        sys.stdout.write(text)
        print(format_summary(report), file=sys.stderr)
        return 0
    if args.json is not None:
        atomic_write_text(args.json, text)
    print(format_summary(report))
    return 0
