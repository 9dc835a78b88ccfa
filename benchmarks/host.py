"""`lean-bench host`: latency, peak memory and task score (mAP or accuracy) of .tflite models on
this machine's CPU."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from lean.errors import LeanError

from lean_bench import report as report_lib

LATENCY_KEYS = ("init_ms", "first_inference_ms", "median_ms", "p90_ms", "min_ms", "mean_ms")


def _current_rss_mb() -> Optional[float]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def measure_latency(model_path: str, threads: int, runs: int, warmup: int) -> dict:
    """Times one model in this process with LiteRT (XNNPACK), the way benchmark_model does.

    Args:
        model_path: the .tflite file.
        threads: interpreter threads.
        runs: timed invocations after warm-up.
        warmup: untimed invocations after the first one.

    Returns:
        init/first/median/p90/min/mean in ms, the process's RSS before loading and its peak.
    """
    import numpy as np

    from lean.inference import open_interpreter

    rss_before_mb = _current_rss_mb()
    start = time.perf_counter()
    interpreter = open_interpreter(model_path, threads)
    init_ms = (time.perf_counter() - start) * 1000.0
    # Any fixed input: the graph has no data-dependent control flow.
    generator = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        dtype = np.dtype(detail["dtype"])
        if dtype.kind == "f":
            values = (0.1 * generator.standard_normal(detail["shape"])).astype(dtype)
        else:
            info = np.iinfo(dtype)
            values = generator.integers(info.min, info.max, detail["shape"], endpoint=True,
                                        dtype=dtype)
        interpreter.set_tensor(detail["index"], values)
    start = time.perf_counter()
    interpreter.invoke()
    first_ms = (time.perf_counter() - start) * 1000.0
    for _ in range(warmup):
        interpreter.invoke()
    timings = np.empty(runs, dtype=np.float64)
    for index in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        timings[index] = (time.perf_counter() - start) * 1000.0
    # ru_maxrss is in KiB on Linux: the process's resident high-water mark.
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "init_ms": init_ms,
        "first_inference_ms": first_ms,
        "median_ms": float(np.median(timings)),
        "p90_ms": float(np.percentile(timings, 90)),
        "min_ms": float(timings.min()),
        "mean_ms": float(timings.mean()),
        "runs": runs,
        "warmup": warmup,
        "rss_before_load_mb": rss_before_mb,
        "peak_rss_mb": peak_rss_mb,
        # What loading and running the model added to the process (interpreter, arena, weights).
        "model_rss_mb": None if rss_before_mb is None else peak_rss_mb - rss_before_mb,
    }


def measure_in_subprocess(model_path: str, threads: int, runs: int, warmup: int,
                          timeout_s: float = 1800.0) -> dict:
    """Runs `measure_latency` in a fresh Python process, so its peak memory is the model's own."""
    command = [sys.executable, "-m", "lean_bench.host", "--worker", model_path,
               "--threads", str(threads), "--runs", str(runs), "--warmup", str(warmup)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise LeanError(f"{model_path}: the measurement did not finish in {timeout_s:.0f} s") from None
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"the worker died with exit status {result.returncode}"
        raise LeanError(f"{model_path}: LiteRT could not run it ({reason})")
    return json.loads(result.stdout.strip().splitlines()[-1])


# The metrics a row reports, by the model's task.
TASK_METRICS = {"multilabel": ("mAP", "mAUC", "d_prime"),
                "single_label": ("accuracy", "macro_f1", "macro_recall")}


def _task_scores(model_path: str, data_dir: str, split: str) -> dict:
    """The model's task metrics through the `lean eval` code path (lean.evaluate.evaluate), on
    the folds its run held out."""
    from lean.config import EvalConfig
    from lean.evaluate import dataset_for, evaluate
    from lean.inference import load_predictor

    predictor = load_predictor(model_path)
    result = evaluate(predictor, dataset_for(predictor, data_dir), split, EvalConfig(),
                      progress=False)
    return {"task": result["task"],
            **{key: result.get(key) for key in TASK_METRICS[result["task"]]}}


def run_host_benchmarks(models: Sequence[str], threads: Sequence[int], runs: int, warmup: int,
                        data_dir: Optional[str] = None, split: str = "eval") -> dict:
    """Measures every model at every thread count, each in its own process.

    Args:
        models: .tflite paths; the first is the reference for ratios.
        threads: thread counts.
        runs: timed runs per measurement; warmup: untimed runs before them.
        data_dir: a dataset (any layout) for the task's metrics (None: no accuracy).
        split: the split evaluated.

    Returns:
        The report: place of measurement, rows (one per model and thread count).
    """
    from tqdm import tqdm

    for model in models:
        if not Path(model).is_file():
            raise LeanError(f"{model}: no such model file")
    rows = []
    pairs = [(model, count) for model in models for count in threads]
    for model, count in tqdm(pairs, desc="host latency", unit="run", file=sys.stderr):
        row = {"model": str(model), "model_name": Path(model).name, "threads": count,
               "size_mb": Path(model).stat().st_size / 1e6}
        row.update(measure_in_subprocess(str(model), count, runs, warmup))
        rows.append(row)
    accuracy = {}
    if data_dir:
        for model in tqdm(models, desc=f"scoring {split}", unit="model", file=sys.stderr):
            accuracy[str(model)] = _task_scores(str(model), data_dir, split)
    for row in rows:
        row.update(accuracy.get(row["model"], {}))
    _add_ratios(rows)
    return {
        "kind": "host",
        "measured_on": report_lib.host_place(),
        "host_cpu": report_lib.host_cpu_model(),
        "runtime": f"LiteRT {_litert_version()} (XNNPACK), Python interpreter invoke()",
        "data": {"dir": data_dir, "split": split} if data_dir else None,
        "rows": rows,
    }


def _litert_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-litert")
    except PackageNotFoundError:
        return "unknown"


def _add_ratios(rows: list[dict]) -> None:
    """Median latency, size and memory relative to the first model at the same thread count."""
    reference = {}
    for row in rows:
        reference.setdefault(row["threads"], row)
    for row in rows:
        base = reference[row["threads"]]
        row["median_ratio"] = report_lib.ratio(row["median_ms"], base["median_ms"])
        row["size_ratio"] = report_lib.ratio(row["size_mb"], base["size_mb"])
        row["peak_rss_ratio"] = report_lib.ratio(row["peak_rss_mb"], base["peak_rss_mb"])


def format_host_report(report: dict) -> str:
    headers = ["model", "thr", "MB", "init ms", "first ms", "median ms", "p90 ms", "min ms",
               "peak RSS MB", "+model MB", "x median", "x size"]
    scores = [metric for metric in ("mAP", "accuracy")
              if any(row.get(metric) is not None for row in report["rows"])]
    headers += scores
    rows = []
    for row in report["rows"]:
        values = [row["model_name"], row["threads"], row["size_mb"], row["init_ms"],
                  row["first_inference_ms"], row["median_ms"], row["p90_ms"], row["min_ms"],
                  row["peak_rss_mb"], row["model_rss_mb"], row["median_ratio"],
                  row["size_ratio"]]
        values += [report_lib.format_value(row.get(metric), 4) for metric in scores]
        rows.append(values)
    runs = report["rows"][0]["runs"] if report["rows"] else 0
    warmup = report["rows"][0]["warmup"] if report["rows"] else 0
    lines = [
        f"Measured on {report['measured_on']}: this is NOT a phone measurement.",
        f"Runtime: {report['runtime']}; {runs} timed runs after {warmup} warm-up runs, each "
        "model and thread count in a fresh process (peak RSS = its whole-process high-water mark;"
        " +model = peak minus the RSS before loading the model).",
        "Ratios (x) are relative to the first model at the same thread count.",
        "",
        report_lib.format_table(headers, rows),
    ]
    lines += _comparison_lines(report["rows"])
    if report.get("data"):
        lines.append(f"{' and '.join(scores) or 'Scores'}: `lean eval` code path on "
                     f"{report['data']['dir']} split {report['data']['split']} (computed on this "
                     "host).")
    return "\n".join(lines)


def _comparison_lines(rows: list[dict]) -> list[str]:
    """One sentence per other model: latency, size and score against the first model."""
    if len({row["model"] for row in rows}) < 2:
        return []
    reference = rows[0]
    lines = ["", f"Compared with {reference['model_name']}:"]
    for row in rows:
        if row["model"] == reference["model"]:
            continue
        text = (f"  {row['model_name']}, {row['threads']} thread(s): "
                f"{row['median_ratio']:.2f}x median latency, {row['size_ratio']:.2f}x file size")
        base = next(r for r in rows if r["model"] == reference["model"]
                    and r["threads"] == row["threads"])
        for metric in ("mAP", "accuracy"):
            if row.get(metric) is not None and base.get(metric) is not None:
                text += f", {metric} {row[metric] - base[metric]:+.4f}"
        lines.append(text)
    return lines


def _worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lean_bench.host")
    parser.add_argument("--worker", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(measure_latency(args.worker, args.threads, args.runs, args.warmup)))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
