"""`lean tag`: top-k labels of audio files (per clip or per window) with a run or a .tflite."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lean.data.windows import AGGREGATIONS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "tag",
        help="top-k labels of audio files with a run directory or .tflite model",
        description=(
            "Decode each file (any rate and channel count) to the model's input (its sample "
            "rate and channels, from the run's config or the .tflite's metadata), cut it into "
            "windows of the model's length with 50 % overlap as `lean eval` does, and print the "
            "top-k labels of the clip (window scores pooled) or, with --windows, of every "
            "window with its start time. A file that cannot be decoded gets a one-line error; "
            "the others are still tagged."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model", type=Path, metavar="MODEL",
                        help="run directory, .keras file or .tflite file")
    parser.add_argument("audio", type=Path, nargs="+", metavar="AUDIO", help="audio files")
    parser.add_argument("--top-k", type=int, default=5, help="labels per clip or window")
    parser.add_argument("--windows", action="store_true",
                        help="report every window (with its start time) instead of the clip")
    parser.add_argument("--aggregation", choices=AGGREGATIONS, default="mean",
                        help="how window scores become the clip score")
    parser.add_argument("--json", action="store_true", help="JSON on stdout")
    parser.set_defaults(func=run)


def tag_files(predictor, paths: list[Path], top_k: int, per_window: bool,
              aggregation: str = "mean") -> tuple[list[dict], list[tuple[Path, Exception]]]:
    """Tags each file; returns (results in file order, (path, error) of files that failed)."""
    from lean.data.audio import load_audio
    from lean.data.pipeline import decode_ahead
    from lean.data.windows import aggregate_clip_scores
    from lean.evaluate import score_windows

    decoded = decode_ahead(paths, lambda path: load_audio(path, predictor.sample_rate,
                                                          channels=predictor.channels))
    scored = score_windows(predictor, decoded, hop_fraction=0.5, total=len(paths),
                           desc="tagging", progress=len(paths) > 1)
    labels = predictor.labels
    k = min(top_k, len(labels))

    def top(scores):
        order = sorted(range(len(labels)), key=lambda index: -scores[index])[:k]
        return [{"label": labels[index], "score": round(float(scores[index]), 6)}
                for index in order]

    results = []
    clip_scores = aggregate_clip_scores(scored.scores, scored.clip_of_window, aggregation,
                                        num_clips=len(scored.keys)) if scored.keys else []
    for clip, path in enumerate(scored.keys):
        result = {"file": str(path), "top": top(clip_scores[clip])}
        if per_window:
            rows = scored.clip_of_window == clip
            result["windows"] = [
                {"start_s": round(int(start) / predictor.sample_rate, 3), "top": top(scores)}
                for start, scores in zip(scored.window_starts[rows], scored.scores[rows])
            ]
        results.append(result)
    return results, scored.failures


def format_text(result: dict) -> str:
    def labels(top):
        return ", ".join(f"{entry['label']} {entry['score']:.3f}" for entry in top)

    if "windows" not in result:
        return f"{result['file']}: {labels(result['top'])}"
    lines = [f"{result['file']}: clip {labels(result['top'])}"]
    lines += [f"  {window['start_s']:7.2f} s  {labels(window['top'])}"
              for window in result["windows"]]
    return "\n".join(lines)


def run(args) -> int:
    from lean.errors import LeanError
    from lean.inference import load_predictor

    if args.top_k <= 0:
        raise LeanError(f"--top-k must be positive, not {args.top_k}")
    predictor = load_predictor(args.model)
    results, failures = tag_files(predictor, list(args.audio), args.top_k, args.windows,
                                  args.aggregation)
    for _, error in failures:
        print(f"lean: error: {error}", file=sys.stderr)
    if args.json:
        json.dump({"model": str(args.model), "results": results,
                   "errors": [str(error) for _, error in failures]}, sys.stdout, indent=2)
        print()
    else:
        for result in results:
            print(format_text(result))
    return 2 if failures else 0
