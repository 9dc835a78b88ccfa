"""`lean-bench adb`: runs the official benchmark_model on Android phones and parses what it says."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from lean.errors import LeanError

from lean_bench import report as report_lib
from lean_bench.adb import Adb, DeviceFacts, Thermal, quote, read_device_facts, read_thermal
from lean_bench.adb import resolve_core_mask, select_devices
from lean_bench.benchmark_log import parse_benchmark_log

DEVICE_TMP = "/data/local/tmp"
DELEGATE_FLAGS = {
    "cpu": ["--use_xnnpack=false"],
    "xnnpack": ["--use_xnnpack=true"],
    "gpu": ["--use_gpu=true"],
    "nnapi": ["--use_nnapi=true"],
}


@dataclass(frozen=True)
class AdbBenchOptions:
    """How each model is run on each device."""

    benchmark_binary: str
    threads: tuple = (1, 4)
    delegate: str = "xnnpack"
    cores: str = "big"  # big | all | hex mask
    runs: int = 50
    warmup: int = 5
    profile: bool = False
    # Cooling between models: wait (at most cool_timeout_s) while hotter than at the start.
    cool_timeout_s: float = 180.0
    cool_poll_s: float = 10.0
    cool_margin_c: float = 1.0
    device_dir: str = DEVICE_TMP
    run_timeout_s: float = 900.0


def hotter_than(current: Thermal, baseline: Thermal, margin_c: float) -> Optional[str]:
    """Why `current` is hotter than `baseline` (thermal status up, or battery warmer by more than
    margin_c), or None when it is not."""
    reasons = []
    if (current.thermal_status is not None and baseline.thermal_status is not None
            and current.thermal_status > baseline.thermal_status):
        reasons.append(f"thermal status {baseline.thermal_status} -> {current.thermal_status}")
    if (current.battery_temperature_c is not None and baseline.battery_temperature_c is not None
            and current.battery_temperature_c > baseline.battery_temperature_c + margin_c):
        reasons.append(f"battery {baseline.battery_temperature_c:.1f} -> "
                       f"{current.battery_temperature_c:.1f} °C")
    return ", ".join(reasons) or None


def wait_to_cool(adb: Adb, baseline: Thermal, options: AdbBenchOptions,
                 say: Callable[[str], None], sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> dict:
    """Waits (bounded) until the device is back to its starting thermal state; says so."""
    current = read_thermal(adb)
    reason = hotter_than(current, baseline, options.cool_margin_c)
    if reason is None or options.cool_timeout_s <= 0:
        return {"waited_s": 0.0, "reason": reason, "cooled": reason is None}
    say(f"{adb.serial}: waiting up to {options.cool_timeout_s:.0f} s for the phone to cool "
        f"({reason})")
    start = clock()
    while reason is not None and clock() - start < options.cool_timeout_s:
        sleep(options.cool_poll_s)
        current = read_thermal(adb)
        reason = hotter_than(current, baseline, options.cool_margin_c)
    waited = clock() - start
    if reason is None:
        say(f"{adb.serial}: cooled down after {waited:.0f} s")
    else:
        say(f"{adb.serial}: still warm after {waited:.0f} s ({reason}); continuing, the next "
            "numbers may be throttled")
    return {"waited_s": waited, "reason": reason or "cooled", "cooled": reason is None}


def benchmark_command(remote_binary: str, remote_model: str, threads: int, mask: Optional[int],
                      options: AdbBenchOptions) -> str:
    """The device shell command for one run (output of both streams, benchmark_model logs to stderr)."""
    arguments = [remote_binary, f"--graph={remote_model}", f"--num_threads={threads}",
                 f"--num_runs={options.runs}", f"--warmup_runs={options.warmup}"]
    arguments += DELEGATE_FLAGS[options.delegate]
    if options.profile:
        arguments.append("--enable_op_profiling=true")
    command = " ".join(quote(argument) for argument in arguments)
    if mask is not None:
        command = f"taskset {mask:x} {command}"
    return f"{command} 2>&1"


def _bench_one_device(adb: Adb, models: Sequence[str], options: AdbBenchOptions,
                      say: Callable[[str], None], progress, partial: dict) -> dict:
    """Runs every model on one device; `partial` holds its facts and rows as they come, so they
    are kept if the device is lost."""
    facts: DeviceFacts = read_device_facts(adb)
    partial["device"] = facts.to_dict()
    rows = partial["rows"]
    say(f"{adb.serial}: {facts.place}")
    if options.cores == "big" and not facts.cpu_max_freq_khz:
        say(f"{adb.serial}: cpuinfo_max_freq is not readable, so runs are not pinned to big cores")
    baseline = facts.thermal
    run_dir = f"{options.device_dir.rstrip('/')}/lean-bench-{time.strftime('%Y%m%d-%H%M%S')}-" \
              f"{uuid.uuid4().hex[:6]}"
    remote_binary = f"{run_dir}/benchmark_model"
    try:
        status, output = adb.shell(f"mkdir -p {quote(run_dir)}")
        if status != 0:
            raise LeanError(f"{adb.serial}: cannot create {run_dir}: {output.strip()}")
        adb.push(options.benchmark_binary, remote_binary)
        status, output = adb.shell(f"chmod 755 {quote(remote_binary)}")
        if status != 0:
            raise LeanError(f"{adb.serial}: cannot make {remote_binary} executable: "
                            f"{output.strip()}")
        remote_models = []
        for index, model in enumerate(models):
            remote_model = f"{run_dir}/{index}_{Path(model).name}"
            adb.push(str(model), remote_model)
            remote_models.append(remote_model)
        for index, (model, remote_model) in enumerate(zip(models, remote_models)):
            cooling = wait_to_cool(adb, baseline, options, say) if index > 0 else None
            for threads in options.threads:
                mask = resolve_core_mask(options.cores, facts.cpu_max_freq_khz, threads)
                before = read_thermal(adb)
                command = benchmark_command(remote_binary, remote_model, threads, mask, options)
                exit_status, output = adb.shell(command, timeout=options.run_timeout_s)
                after = read_thermal(adb)
                log = parse_benchmark_log(output)
                error = None
                if not log.ok or exit_status != 0:
                    error = log.error or f"benchmark_model exited with status {exit_status}"
                    say(f"{adb.serial}: {Path(model).name} ({threads} threads, {options.delegate})"
                        f" failed on the device: {error}")
                rows.append({
                    "model": str(model), "model_name": Path(model).name, "threads": threads,
                    "delegate": options.delegate,
                    "latency_coverage": delegate_coverage(options.delegate, log),
                    "core_mask": f"{mask:x}" if mask is not None else None,
                    "exit_status": exit_status, "error": error,
                    "thermal_before": before.__dict__, "thermal_after": after.__dict__,
                    "cooling_before_model": cooling if threads == options.threads[0] else None,
                    "log": log.to_dict(), "raw_output": output,
                })
                progress.update(1)
    finally:
        try:
            adb.shell(f"rm -rf {quote(run_dir)}", timeout=60.0)
        except LeanError as error:
            say(f"{adb.serial}: could not remove {run_dir} ({error}); remove it by hand")
    final = read_thermal(adb)
    device = facts.to_dict()
    device["thermal_before"] = device.pop("thermal")
    device["thermal_after"] = final.__dict__
    _add_ratios(rows)
    return {"device": device, "run_dir": run_dir, "rows": rows, "error": None}


def delegate_coverage(delegate: str, log) -> str:
    """What the timings of a run with `delegate` cover, from the log's "Replacing N out of M
    node(s) with delegate (NAME)" line when NAME is that delegate (see report.latency_coverage)."""
    named = (log.delegate or "").lower()
    if delegate in ("gpu", "nnapi") and delegate in named:
        return report_lib.latency_coverage(delegate, log.delegated_nodes, log.total_nodes)
    return report_lib.latency_coverage(delegate)


def _add_ratios(rows: list[dict]) -> None:
    """Average inference latency relative to the first model at the same thread count."""
    reference = {}
    for row in rows:
        reference.setdefault(row["threads"], row["log"]["inference_avg_ms"])
    for row in rows:
        row["avg_ratio"] = report_lib.ratio(row["log"]["inference_avg_ms"],
                                            reference[row["threads"]])


def run_adb_benchmarks(models: Sequence[str], options: AdbBenchOptions,
                       serials: Sequence[str] = (), adb_path: str = "adb",
                       say: Callable[[str], None] = lambda text: print(text, file=sys.stderr)
                       ) -> dict:
    """Benchmarks every model on every chosen device.

    Args:
        models: .tflite files; the first is the reference for ratios.
        options: binary, threads, delegate, cores, runs, profiling and cooling settings.
        serials: devices to use (empty: every connected, authorized device).
        adb_path: the adb client.
        say: where progress messages go (stderr).

    Returns:
        The report: one entry per device with its facts and one row per model and thread count.
    """
    from tqdm import tqdm

    if not os.path.isfile(options.benchmark_binary):
        raise LeanError(f"--benchmark-binary {options.benchmark_binary}: no such file (download "
                        "the benchmark_model build for your phone's ABI, see README)")
    for model in models:
        if not Path(model).is_file():
            raise LeanError(f"{model}: no such model file")
    if options.delegate not in DELEGATE_FLAGS:
        raise LeanError(f"--delegate {options.delegate}: expected one of {', '.join(DELEGATE_FLAGS)}")
    server = Adb(adb_path)
    chosen = select_devices(server.devices(), list(serials))
    devices = []
    total = len(chosen) * len(models) * len(options.threads)
    with tqdm(total=total, desc="benchmark_model", unit="run", file=sys.stderr) as progress:
        for entry in chosen:
            partial = {"device": None, "rows": []}
            try:
                devices.append(_bench_one_device(server.for_device(entry.serial), models,
                                                 options, say, progress, partial))
            except LeanError as error:
                if len(chosen) == 1 and not partial["rows"]:
                    raise
                # One lost phone must not discard the others' results (or its own so far).
                say(f"{entry.serial}: stopped: {error}")
                unknown = {"serial": entry.serial, "stand_in": None, "sdk": None,
                           "place": f"serial {entry.serial} (device facts unavailable)"}
                _add_ratios(partial["rows"])
                devices.append({"device": partial["device"] or unknown, "rows": partial["rows"],
                                "error": str(error)})
    return {
        "kind": "adb",
        "options": dataclasses.asdict(options),
        "devices": devices,
    }


def _profile_summary(log: dict, top: int = 5) -> str:
    """The regular runs' heaviest node types, e.g. 'CONV_2D 1.12 ms (60.0 %), ...'."""
    tables = [table for table in log["profile"] if table["title"].lower() == "summary by node type"]
    regular = [table for table in tables if "regular" in table["context"].lower()] or tables
    if not regular:
        return "not in the output"
    parts = []
    for row in regular[0]["rows"][:top]:
        parts.append(f"{row.get('Node type')} {report_lib.format_value(row.get('avg ms'))} ms "
                     f"({report_lib.format_value(row.get('avg %'), 1)} %)")
    return ", ".join(parts)


def format_adb_report(report: dict) -> str:
    headers = ["model", "thr", "cores", "init ms", "first ms", "avg ms", "median ms", "p95 ms",
               "min ms", "mem MB", "x avg", "temp °C", "status"]
    lines = []
    for device in report["devices"]:
        info = device["device"]
        lines.append(f"Measured on {info['place']}, Android SDK {info['sdk'] or '?'}; "
                     f"delegate {report['options']['delegate']}")
        if info["stand_in"]:
            lines.append("These numbers come from a STAND-IN device, not from a phone.")
        rows = []
        for row in device["rows"]:
            log = row["log"]
            stats = log["inference"] or {}
            before, after = row["thermal_before"], row["thermal_after"]
            temperature = (f"{report_lib.format_value(before['battery_temperature_c'], 1)}->"
                           f"{report_lib.format_value(after['battery_temperature_c'], 1)}")
            rows.append([
                row["model_name"], row["threads"], row["core_mask"] or "all", log["init_ms"],
                log["first_inference_ms"], log["inference_avg_ms"], stats.get("median_ms"),
                stats.get("p95_ms"), stats.get("min_ms"),
                log["peak_memory_mb"] or log["memory_overall_mb"], row["avg_ratio"], temperature,
                "ok" if row["error"] is None else "FAILED",
            ])
        lines.append(report_lib.format_table(headers, rows))
        if device.get("error"):
            lines.append(f"  device stopped: {device['error']}")
        for row in device["rows"]:
            coverage = row.get("latency_coverage", "cpu")
            if coverage != "cpu" and not row["error"]:
                log = row["log"]
                counts = (log["delegated_nodes"], log["total_nodes"]) if coverage != \
                    "possibly-partial" else (None, None)
                lines.append(f"  {row['model_name']} ({row['threads']} threads): "
                             + report_lib.describe_latency_coverage(row["delegate"], coverage,
                                                                    *counts))
            if row["error"]:
                lines.append(f"  {row['model_name']} ({row['threads']} threads): device said: "
                             f"{row['error']}")
            elif report["options"]["profile"]:
                lines.append(f"  {row['model_name']} ({row['threads']} threads) op profile: "
                             + _profile_summary(row["log"]))
        lines.append("")
    lines.append("Ratios (x) are relative to the first model at the same thread count on the same "
                 "device; mem = benchmark_model's peak (or overall) memory footprint.")
    return "\n".join(lines)
