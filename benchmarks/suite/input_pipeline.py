"""Windows/s the training input pipeline delivers, on 1 to all CPU cores, beside the model's
training step rate on the same host.

The pipeline is `lean.data.pipeline.build_window_dataset` exactly as `lean train` builds it
(shuffled per epoch, read from the decoded-audio cache, batched, prefetched); the training rate
is Keras `fit` of a freshly built model on one fixed in-memory batch, so it has no input cost.
Each measurement runs in a child process pinned to its cores (`sched_setaffinity`, so
TensorFlow's thread pools size themselves to them), after an untimed warm-up; measurements take
turns for `--repeats` rounds and the fastest of each counts, which damps the noise of other
jobs on shared machines. Each also reports its process CPU time, which other jobs barely
change: windows per CPU-second is what a window costs. Reported: windows/s and windows per
CPU-second per variant and core count, the ratio of the pipeline on the most cores to the
training rate (target >= 5), the scaling from the fewest cores to the most, and the cores a GPU
training at `--gpu-rate` windows/s would keep busy at the measured CPU cost per window.

    python benchmarks/suite/input_pipeline.py [--data DIR] [--model lean] [--batch-size 64]
        [--cores 1,2,...] [--gpu-rate 3000 | --train-on gpu] [--repeats 3] [--json OUT.json|-]

`--train-on gpu` times the training step on GPU 0 with mixed precision instead of on the CPU,
and sizes the pipeline for that measured rate (`scripts/gpu_check.sh` runs it so).

Variants: `cached` reads windows whose decoded audio is in the page cache (every epoch after
the first, when the cache fits in memory); `cold` is a first epoch from disk (the cache files
are evicted from the page cache with posix_fadvise first); `mixup` is the cached pipeline with
`lean train --mixup 0.2`'s mixing stage (between-class mixing is the same tf.data map on
single-label data). SpecAugment is not a pipeline stage: it is a layer of the training model,
so its cost is in the training step. A pipeline stage added to training becomes one more entry
of `VARIANTS`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

TARGET_RATIO = 5.0
# An assumed GPU step rate for LEAN when none is measured (windows/s; FSD50K's 290,000 windows
# per epoch at this rate take 97 s).
DEFAULT_GPU_RATE = 3000.0
# Windows timed per pipeline measurement (several epochs of the demo's train split).
PIPELINE_WINDOWS = 20000
TRAIN_STEPS = 10

# name -> what it measures. The child builds each with `_pipeline(variant, ...)`.
VARIANTS = {
    "cached": "windows from the decoded cache, in the page cache",
    "cold": "first epoch from disk (cache files evicted from the page cache)",
    "mixup": "the cached pipeline with mixup (alpha 0.2) of every batch, as --mixup 0.2 trains",
}
MIXUP_ALPHA = 0.2


def _core_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of core counts: {text}")


def _pin(cores: int) -> None:
    available = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, set(available[:cores]))


def _evict(cache_dir: Path) -> None:
    """Drops this cache's files from the page cache (only these files; nothing else)."""
    for path in cache_dir.rglob("*.npy"):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def _load(data_dir: Path, cache_dir: Path, window_samples: int, sample_rate: int):
    from lean.data import load_dataset
    from lean.data.audio import AudioCache
    from lean.data.pipeline import build_window_index

    dataset = load_dataset(data_dir)
    cache = AudioCache(cache_dir, sample_rate)
    index = build_window_index(dataset.clips("train"), cache, window_samples, progress=False)
    return dataset, cache, index


def _pipeline(variant: str, dataset, cache, index, window_samples: int, batch_size: int,
              epochs: int):
    from lean.data.pipeline import build_window_dataset, steps_per_epoch

    batches = build_window_dataset(index, dataset, cache, window_samples, batch_size,
                                   shuffle_seed=0, epochs=(0, epochs))
    if variant != "mixup":
        return batches
    from lean.config import TrainConfig
    from lean.training.mixing import build_mixer, mix_batches

    mixer = build_mixer(TrainConfig(mixup_alpha=MIXUP_ALPHA), dataset.task, dataset.num_classes)
    steps = steps_per_epoch(index.num_windows, batch_size)
    return mix_batches(batches, mixer, 0, 0, steps).prefetch(2)


def _child_pipeline(args) -> dict:
    """Windows/s of one variant on `args.cores` cores."""
    dataset, cache, index = _load(args.data, args.cache, args.window_samples, args.sample_rate)
    window_samples, batch = args.window_samples, args.batch_size
    if args.variant == "cold":
        import tensorflow as tf  # noqa: F401  (imported before the clock starts)

        _evict(args.cache)
        iterator = iter(_pipeline("cold", dataset, cache, index, window_samples, batch, 1))
        next(iterator)  # the pipeline's start-up, and one batch of cold reads, untimed
        started, cpu_started, windows = time.perf_counter(), time.process_time(), 0
        for batch_windows, _ in iterator:
            windows += int(batch_windows.shape[0])
    else:
        epochs = 1 + math.ceil(PIPELINE_WINDOWS / index.num_windows)
        iterator = iter(_pipeline(args.variant, dataset, cache, index, window_samples, batch,
                                  epochs))
        for _ in range(math.ceil(index.num_windows / batch)):  # warm-up: one epoch
            next(iterator)
        started, cpu_started, windows = time.perf_counter(), time.process_time(), 0
        for batch_windows, _ in iterator:
            windows += int(batch_windows.shape[0])
    return {"windows": windows, "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu_started}


def _child_train(args) -> dict:
    """Training windows/s of the model alone: fit on one fixed batch, after a traced warm-up."""
    import keras
    import numpy as np
    import tensorflow as tf

    if args.train_on == "gpu":
        if not tf.config.list_physical_devices("GPU"):
            raise SystemExit("--train-on gpu: TensorFlow sees no GPU")
        keras.mixed_precision.set_global_policy("mixed_float16")  # as `lean train` on a GPU

    from lean import tasks
    from lean.config import ModelConfig
    from lean.data import load_dataset
    from lean.models.registry import build_model

    dataset = load_dataset(args.data)
    config = ModelConfig(name=args.model, num_classes=dataset.num_classes, task=dataset.task)
    model = build_model(config, load_pretrained=False)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=tasks.loss(config.task),
                  metrics=tasks.metrics(config.task, config.num_classes))
    rng = np.random.default_rng(0)
    windows = (0.1 * rng.standard_normal((args.batch_size, *config.input.shape))).astype("float32")
    targets = dataset.label_matrix(dataset.clips("train")[:args.batch_size])
    targets = np.resize(targets, (args.batch_size, targets.shape[1]))
    batches = tf.data.Dataset.from_tensors((windows, targets)).repeat()
    model.fit(batches, steps_per_epoch=3, epochs=1, verbose=0)  # traces the step
    started, cpu_started = time.perf_counter(), time.process_time()
    model.fit(batches, steps_per_epoch=TRAIN_STEPS, epochs=1, verbose=0)
    return {"windows": TRAIN_STEPS * args.batch_size, "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu_started}


def _run_child(kind: str, cores: int, common: list[str], variant: str = "",
               gpu: bool = False) -> tuple[float, float]:
    """(windows/s, windows per CPU-second) of one measurement in a pinned child process."""
    argv = [sys.executable, __file__, "--child", kind, "--child-cores", str(cores), *common]
    if variant:
        argv += ["--variant", variant]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if not gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} child on {cores} cores failed:\n{result.stderr[-3000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    return (measured["windows"] / measured["seconds"],
            measured["windows"] / max(measured["cpu_seconds"], 1e-9))


def measure(data_dir: Path, cache_dir: Path, model: str, batch_size: int, repeats: int,
            gpu_rate: Optional[float], core_counts: Optional[list[int]] = None,
            train_on: str = "cpu", progress=print) -> dict:
    """Runs every measurement `repeats` times, taking turns; the fastest of each counts.

    Args:
        gpu_rate: windows/s of a GPU step to size the pipeline for (None: the measured
            training rate, for `train_on="gpu"`).
        core_counts: the pipeline's core counts (default 1 to all).
        train_on: "cpu" (all cores) or "gpu" (GPU 0, mixed precision).
    """
    from lean.config import ModelConfig
    from lean.host import host_description

    model_input = ModelConfig(name=model).input
    dataset, _, index = _load(data_dir, cache_dir, model_input.window_samples,
                              model_input.sample_rate)  # fills the cache once
    common = ["--data", str(data_dir), "--cache", str(cache_dir), "--model", model,
              "--batch-size", str(batch_size), "--window-samples",
              str(model_input.window_samples), "--sample-rate", str(model_input.sample_rate),
              "--train-on", train_on]
    all_cores = len(os.sched_getaffinity(0))
    core_counts = sorted(set(core_counts or range(1, all_cores + 1)))
    if core_counts[0] < 1 or core_counts[-1] > all_cores:
        raise SystemExit(f"--cores: this host has cores 1 to {all_cores}")
    best: dict = {}  # (kind, variant, cores) -> (best windows/s, best windows per CPU-second)
    for round_number in range(repeats):
        turns = [("train", all_cores, "")] + [("pipeline", cores, variant)
                                              for variant in VARIANTS for cores in core_counts]
        for kind, cores, variant in turns:
            rate, per_cpu_second = _run_child(kind, cores, common, variant,
                                              gpu=kind == "train" and train_on == "gpu")
            key = (kind, variant, cores)
            previous = best.get(key, (0.0, 0.0))
            best[key] = (max(previous[0], rate), max(previous[1], per_cpu_second))
            progress(f"round {round_number + 1}/{repeats}: {kind} {variant or model} on "
                     f"{cores} core(s): {rate:,.0f} windows/s, {per_cpu_second:,.0f} per "
                     "CPU-second")
    train_rate, train_per_cpu_second = best[("train", "", all_cores)]
    gpu_rate = train_rate if gpu_rate is None else gpu_rate
    most, least = core_counts[-1], core_counts[0]
    variants = {}
    for variant, description in VARIANTS.items():
        rates = {cores: best[("pipeline", variant, cores)][0] for cores in core_counts}
        per_cpu = {cores: best[("pipeline", variant, cores)][1] for cores in core_counts}
        variants[variant] = {
            "description": description,
            "windows_per_second": {str(cores): round(rate, 1) for cores, rate in rates.items()},
            "windows_per_cpu_second": {str(cores): round(rate, 1)
                                       for cores, rate in per_cpu.items()},
            "ratio_to_training": round(rates[most] / train_rate, 2),
            "scaling": round(rates[most] / rates[least], 2),
            # At the CPU cost per window on the most cores, parallel overheads included.
            "cores_for_gpu_rate": math.ceil(gpu_rate / per_cpu[most]),
        }
    ratio = variants["cached"]["ratio_to_training"]
    return {
        "data": str(data_dir),
        "train_windows": index.num_windows,
        "model": model,
        "batch_size": batch_size,
        "repeats": repeats,
        "cores": all_cores,
        "pipeline_cores": core_counts,
        "train_on": train_on,
        "training_windows_per_second": round(train_rate, 1),
        "training_windows_per_cpu_second": round(train_per_cpu_second, 1),
        "variants": variants,
        "gpu_rate": gpu_rate,
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        "host": host_description(),
    }


def _report(result: dict) -> None:
    cores, counts = result["cores"], result["pipeline_cores"]
    print(f"{result['train_windows']} training windows, batch {result['batch_size']}, "
          f"{cores} cores of {result['host']['cpu']}")
    where = f"all {cores} cores" if result["train_on"] == "cpu" else "GPU 0, mixed_float16"
    print(f"{result['model']} training step (fit, {where}): "
          f"{result['training_windows_per_second']:,.1f} windows/s")
    for name, variant in result["variants"].items():
        rates = ", ".join(f"{count} core(s) {rate:,.0f}"
                          for count, rate in variant["windows_per_second"].items())
        cpu = ", ".join(f"{rate:,.0f}" for rate in variant["windows_per_cpu_second"].values())
        print(f"pipeline {name:6s}: {rates} windows/s ({cpu} per CPU-second); "
              f"{variant['ratio_to_training']:.1f}x training, {variant['scaling']:.2f}x from "
              f"{counts[0]} to {counts[-1]} cores; a GPU at {result['gpu_rate']:,.0f} windows/s "
              f"needs {variant['cores_for_gpu_rate']} core(s)")
    verdict = "meets" if result["meets_target"] else "MISSES"
    print(f"cached pipeline / training: {verdict} the >= {TARGET_RATIO:g}x target")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="dataset of any layout (default: demo data)")
    parser.add_argument("--model", default="lean", help="family member whose step is timed")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cores", dest="core_counts", type=_core_list, default=None,
                        metavar="LIST", help="pipeline core counts, e.g. 1,2,8 (default: 1 to "
                        "all)")
    parser.add_argument("--gpu-rate", type=float, default=None, metavar="N",
                        help="windows/s of a GPU training step, for the cores it would need "
                        "(default: 3000, or the measured rate with --train-on gpu)")
    parser.add_argument("--train-on", choices=("cpu", "gpu"), default="cpu",
                        help="time the training step on all CPU cores or on GPU 0 (mixed "
                        "precision)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the fastest counts")
    parser.add_argument("--json", type=Path, help="write the result as JSON ('-': stdout)")
    # A measurement child (internal).
    parser.add_argument("--child", choices=("pipeline", "train"), help=argparse.SUPPRESS)
    parser.add_argument("--child-cores", dest="cores", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=tuple(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--window-samples", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sample-rate", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _pin(args.cores)
    from lean.command_line import quiet_tensorflow

    quiet_tensorflow()
    if args.child:
        measured = _child_train(args) if args.child == "train" else _child_pipeline(args)
        print(json.dumps(measured))
        return 0

    from lean_bench.report import write_json

    with tempfile.TemporaryDirectory(prefix="lean-input-pipeline-") as scratch:
        scratch = Path(scratch)
        data_dir = args.data
        if data_dir is None:
            from lean.data.demo import build_demo_dataset

            data_dir = scratch / "demo"
            build_demo_dataset(data_dir, seed=0, progress=False)
        gpu_rate = args.gpu_rate
        if gpu_rate is None and args.train_on == "cpu":
            gpu_rate = DEFAULT_GPU_RATE
        result = measure(data_dir, scratch / "cache", args.model, args.batch_size,
                         args.repeats, gpu_rate, args.core_counts, args.train_on,
                         progress=lambda line: print(line, file=sys.stderr, flush=True))
    write_json(result, None if args.json is None else str(args.json))
    if args.json is None or str(args.json) != "-":
        _report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
