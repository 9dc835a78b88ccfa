"""Throughput of the whole `lean eval` path against the bare model on the same pre-cut windows.

The eval path (cached decoding, windowing, batched prediction, aggregation, metrics) should run
at >= 80 % of the bare model's windows/s, i.e. decoding and windowing must not be the bottleneck.
Both are measured in one process on the same windows, after one untimed warm-up of each (the
cache is filled and the model traced first); each is timed `--repeats` times, taking turns, and
the fastest run counts, which damps noise from other processes on shared machines.

    python benchmarks/suite/eval_throughput.py [--data DIR | --demo multi-label|single-label]
        [--model RUN_DIR|MODEL.tflite] [--split eval] [--batch-size 256] [--repeats 3]
        [--json OUT.json|-]

Defaults: a demo dataset (`lean data demo`, seed 0; `--demo single-label` for the ESC-50-layout
one) generated into a temporary folder, and a freshly built `lean` model with random weights for
the dataset's task (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lean.command_line import quiet_tensorflow

quiet_tensorflow()

TARGET_RATIO = 0.8


def _random_lean_run(run_dir: Path, dataset) -> Path:
    """A run directory as `lean train` leaves it, holding an untrained `lean` model built for the
    dataset's task and folds."""
    from lean.config import DataConfig, ModelConfig, RunConfig, save_json
    from lean.models.registry import build_model
    from lean.run import save_keras_atomic, write_labels_file

    config = RunConfig(
        model=ModelConfig(name="lean", num_classes=dataset.num_classes, task=dataset.task),
        data=DataConfig(dir=str(dataset.root), layout=dataset.layout, fold=dataset.test_fold,
                        val_fold=dataset.val_fold))
    save_json(config, run_dir / "config.json")
    write_labels_file(run_dir / "labels.txt", dataset.labels)
    save_keras_atomic(build_model(config.model), run_dir / "best.keras")
    return run_dir


def _fastest_interleaved(functions: dict, repeats: int) -> tuple[dict, dict]:
    """Times each function `repeats` times, taking turns so that all see the same machine load;
    returns (fastest seconds, last result) per name."""
    best = {name: float("inf") for name in functions}
    results = {}
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            results[name] = function()
            best[name] = min(best[name], time.perf_counter() - started)
    return best, results


def measure(predictor, dataset, split: str, cache, repeats: int) -> dict:
    """Windows/s of `lean.evaluate.evaluate` and of the bare model on the same windows."""
    from lean.config import EvalConfig
    from lean.data.windows import eval_windows
    from lean.evaluate import evaluate

    eval_config = EvalConfig()
    clips = dataset.clips(split)
    # Warm-up, untimed: fills the decoded-audio cache and traces the model once.
    warm = evaluate(predictor, dataset, split, eval_config, cache=cache, progress=False)
    windows = np.concatenate([
        eval_windows(np.asarray(cache.load(clip.path)), predictor.window_samples,
                     eval_config.window_hop_fraction)
        for clip in clips
    ])
    assert len(windows) == warm["num_windows"], "pre-cut windows differ from the eval path's"

    functions = {
        "lean eval path": lambda: evaluate(predictor, dataset, split, eval_config, cache=cache,
                                           progress=False),
        "predictor.predict": lambda: predictor.predict(windows),
    }
    if predictor.kind == "keras":
        batch = predictor.batch_size
        predictor.model.predict(windows[:batch], batch_size=batch, verbose=0)  # warm-up
        functions["keras model.predict"] = lambda: predictor.model.predict(
            windows, batch_size=batch, verbose=0)
    seconds, results = _fastest_interleaved(functions, repeats)
    eval_seconds, report = seconds.pop("lean eval path"), results["lean eval path"]
    bare = seconds
    # The stricter baseline: whichever bare call was faster.
    bare_name = min(bare, key=bare.get)
    eval_rate = len(windows) / eval_seconds
    bare_rate = len(windows) / bare[bare_name]
    return {
        "model": str(predictor.path),
        "model_kind": predictor.kind,
        "data": str(dataset.root),
        "split": split,
        "num_clips": report["num_clips"],
        "num_windows": len(windows),
        "batch_size": predictor.batch_size,
        "repeats": repeats,
        "eval_windows_per_second": round(eval_rate, 1),
        "bare_windows_per_second": round(bare_rate, 1),
        "bare_baseline": bare_name,
        "bare_seconds": {name: round(seconds, 4) for name, seconds in bare.items()},
        "eval_seconds": round(eval_seconds, 4),
        "ratio": round(eval_rate / bare_rate, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": eval_rate / bare_rate >= TARGET_RATIO,
        "task": report["task"],
        "score": {"metric": "mAP", "value": report["mAP"]} if report["task"] == "multilabel"
        else {"metric": "accuracy", "value": report["accuracy"]},
        "host": report["host"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="dataset of any layout (default: demo data)")
    parser.add_argument("--demo", choices=("multi-label", "single-label"), default="multi-label",
                        help="which demo dataset to build when --data is not given")
    parser.add_argument("--model", type=Path,
                        help="run directory, .keras or .tflite (default: an untrained `lean`)")
    parser.add_argument("--split", default="eval", choices=("eval", "val", "train"))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="LiteRT threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each; fastest counts")
    parser.add_argument("--json", type=Path, help="write the result as JSON ('-': stdout)")
    args = parser.parse_args(argv)

    from lean.data import load_dataset
    from lean.data.audio import AudioCache
    from lean.evaluate import dataset_for
    from lean.inference import load_predictor
    from lean.io import atomic_write_text

    with tempfile.TemporaryDirectory(prefix="lean-eval-throughput-") as scratch:
        scratch = Path(scratch)
        data_dir = args.data
        if data_dir is None:
            from lean.data.demo import build_demo_dataset
            from lean.data.demo_single_label import build_single_label_demo

            data_dir = scratch / "demo"
            build = build_single_label_demo if args.demo == "single-label" else build_demo_dataset
            build(data_dir, seed=0, progress=False)
        model_path = args.model or _random_lean_run(scratch / "run", load_dataset(data_dir))
        predictor = load_predictor(model_path, batch_size=args.batch_size,
                                   num_threads=args.threads)
        cache = AudioCache(scratch / "cache", predictor.sample_rate, predictor.channels)
        result = measure(predictor, dataset_for(predictor, data_dir), args.split, cache,
                         args.repeats)

    text = json.dumps(result, indent=2) + "\n"
    if args.json is not None and str(args.json) == "-":
        sys.stdout.write(text)
    else:
        if args.json is not None:
            atomic_write_text(args.json, text)
        print(f"{result['num_windows']} windows of {result['num_clips']} clips, "
              f"{result['model_kind']} {result['task']} model, batch {result['batch_size']}, "
              f"on {result['host']['cpu']}")
        print(f"lean eval path : {result['eval_windows_per_second']:8.1f} windows/s")
        print(f"bare model     : {result['bare_windows_per_second']:8.1f} windows/s "
              f"({result['bare_baseline']})")
        verdict = "meets" if result["meets_target"] else "MISSES"
        print(f"ratio          : {result['ratio']:.3f} ({verdict} the >= {TARGET_RATIO} target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
