"""The `lean-bench` command line: host, adb, parse and adb-eval."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lean.command_line import run_cli
from lean.errors import LeanError

BENCHMARK_MODEL_URL = ("https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/"
                       "release/lite/tools/nightly/latest/android_aarch64_benchmark_model")
EPILOG = """\
Every report states where its numbers were measured: the host CPU model for `host`, the phone's
model and SoC for `adb` and `adb-eval`. A device that is not a real phone (no ro.product.model,
or the loopback test's stand-in) is labelled STAND-IN.
"""


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected comma-separated integers, e.g. 1,4")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': thread counts must be 1 or more")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}': must be 1 or more")
    return value


def _emit(report: dict, text: str, json_target) -> None:
    """Human text to stdout, unless the JSON goes to stdout (then the text goes to stderr)."""
    from lean_bench.report import write_json

    print(text, file=sys.stderr if json_target == "-" else sys.stdout)
    write_json(report, json_target)


def _host(args) -> int:
    from lean_bench.host import format_host_report, run_host_benchmarks
    from lean_bench.report import plot_latency

    if args.data is None and args.split != "eval":
        raise LeanError("--split needs --data")
    report = run_host_benchmarks(args.models, args.threads, args.runs, args.warmup,
                                 data_dir=args.data, split=args.split)
    _emit(report, format_host_report(report), args.json)
    if args.plot:
        plot_latency(report["rows"], "lean-bench host: latency per 1 s window",
                     report["measured_on"], args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def _adb(args) -> int:
    from lean_bench.adb_bench import AdbBenchOptions, format_adb_report, run_adb_benchmarks

    options = AdbBenchOptions(
        benchmark_binary=args.benchmark_binary, threads=tuple(args.threads),
        delegate=args.delegate, cores=args.cores, runs=args.runs, warmup=args.warmup,
        profile=args.profile, cool_timeout_s=args.cool_timeout, cool_poll_s=args.cool_poll,
        cool_margin_c=args.cool_margin, device_dir=args.device_dir,
    )
    report = run_adb_benchmarks(args.models, options, serials=args.serial or [],
                                adb_path=args.adb)
    _emit(report, format_adb_report(report), args.json)
    failed = [row for device in report["devices"] for row in device["rows"] if row["error"]]
    lost = [device for device in report["devices"] if device.get("error")]
    return 1 if failed or lost else 0


def _parse(args) -> int:
    from lean_bench.benchmark_log import parse_benchmark_log

    if args.log == "-":
        path, text = Path("<stdin>"), sys.stdin.read()
    else:
        path = Path(args.log)
        if not path.is_file():
            raise LeanError(f"{path}: no such log file")
        text = path.read_text(errors="replace")
    log = parse_benchmark_log(text)
    if args.json:
        # A saved log does not name its device: say so rather than guess.
        print(json.dumps({"source": str(path), "measured_on": "unknown: not recorded in the log",
                          **log.to_dict()}, indent=2))
    else:
        print(_format_log(path, log))
    return 0 if log.ok else 1


def _format_log(path: Path, log) -> str:
    from lean_bench.report import format_table, format_value

    lines = [f"{path}: {'ok' if log.ok else 'FAILED'} (measured where the log was recorded; "
             "the log does not say which device)"]
    if log.error:
        lines.append(f"  error (the tool's own words): {log.error}")
    for name, value in (("model size (MB)", log.model_size_mb), ("init (ms)", log.init_ms),
                        ("first inference (ms)", log.first_inference_ms),
                        ("warm-up avg (ms)", log.warmup_avg_ms),
                        ("inference avg (ms)", log.inference_avg_ms),
                        ("memory init/overall (MB)",
                         None if log.memory_overall_mb is None else
                         f"{format_value(log.memory_init_mb)}/{format_value(log.memory_overall_mb)}"),
                        ("peak memory (MB)", log.peak_memory_mb)):
        if value is not None:
            lines.append(f"  {name}: {format_value(value)}")
    if log.delegate:
        lines.append(f"  {log.delegate}: {log.delegated_nodes} of {log.total_nodes} nodes, "
                     f"{log.delegate_partitions} partition(s)")
    for label, stats in (("warm-up", log.warmup), ("inference", log.inference)):
        if stats is not None:
            values = {key: value for key, value in stats.__dict__.items() if value is not None}
            lines.append(f"  {label} runs: " + " ".join(
                f"{key.replace('_ms', '')}={format_value(value)}" for key, value in values.items()))
    summary = log.node_type_summary()
    if summary:
        columns = list(summary[0])
        lines.append("  op profile, summary by node type:")
        lines.append(format_table(columns, [[row[column] for column in columns] for row in summary]))
    return "\n".join(lines)


def _adb_eval(args) -> int:
    from lean_bench.device_eval import format_device_eval_report, run_device_eval

    report = run_device_eval(args.model, args.data, split=args.split, serial=args.serial,
                             job_dir=args.job_dir, threads=args.threads, delegate=args.delegate,
                             adb_path=args.adb, device_root=args.device_eval_dir,
                             poll_s=args.poll, stall_timeout_s=args.stall_timeout)
    _emit(report, format_device_eval_report(report), args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from lean_bench.adb_bench import DELEGATE_FLAGS, DEVICE_TMP
    from lean_bench.device_eval import DEVICE_EVAL_ROOT

    parser = argparse.ArgumentParser(
        prog="lean-bench",
        description="Measure latency, memory and mAP of exported .tflite models on this host and "
                    "on Android phones over adb.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    host = commands.add_parser(
        "host", help="latency, peak memory and mAP on this machine's CPU (LiteRT)",
        description="For each model and thread count, in a fresh process: init time, first "
                    "inference, median/p90/min over --runs after --warmup, peak RSS; with --data "
                    "the mAP through the `lean eval` code path. Ratios are relative to the first "
                    "model. These are host numbers, never phone numbers.")
    host.add_argument("models", nargs="+", metavar="MODEL.tflite")
    host.add_argument("--threads", type=_int_list, default=[1],
                      help="comma-separated thread counts, e.g. 1,2,4 (default 1)")
    host.add_argument("--runs", type=_positive_int, default=100, help="timed runs (default 100)")
    host.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    host.add_argument("--data", help="FSD50K-format dataset folder: also compute mAP")
    host.add_argument("--split", default="eval", choices=("train", "val", "eval"))
    host.add_argument("--json", metavar="OUT", help="write the report as JSON ('-' = stdout)")
    host.add_argument("--plot", metavar="OUT.png", help="write a latency bar chart")
    host.set_defaults(func=_host)

    adb = commands.add_parser(
        "adb", help="run the official benchmark_model on connected phones",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"""\
Pushes --benchmark-binary and the models to a per-run folder under {DEVICE_TMP},
records device facts (model, SoC, ABI, SDK, CPU max frequencies, battery, thermal
status), runs each model pinned to the big cores, waits for the phone to cool
between models, parses the timings and removes what it pushed.

benchmark_model for 64-bit ARM phones (arm64-v8a; other ABIs: android_arm_...,
android_x86_64_...):
  {BENCHMARK_MODEL_URL}""")
    adb.add_argument("models", nargs="+", metavar="MODEL.tflite")
    adb.add_argument("--benchmark-binary", required=True, metavar="PATH",
                     help="benchmark_model built for the phone's ABI")
    adb.add_argument("--serial", action="append", metavar="S",
                     help="device serial (repeatable; default: every authorized device)")
    adb.add_argument("--threads", type=_int_list, default=[1, 4],
                     help="comma-separated thread counts (default 1,4)")
    adb.add_argument("--delegate", choices=tuple(DELEGATE_FLAGS), default="xnnpack",
                     help="cpu = built-in kernels, xnnpack (default), gpu or nnapi")
    adb.add_argument("--cores", default="big",
                     help="big (fastest cores, by cpuinfo_max_freq, enough for the threads), all "
                          "(no pinning) or a hex affinity mask such as f0 (default big)")
    adb.add_argument("--runs", type=_positive_int, default=50, help="timed runs (default 50)")
    adb.add_argument("--warmup", type=int, default=5, help="warm-up runs (default 5)")
    adb.add_argument("--profile", action="store_true", help="also record the op-profiling table")
    adb.add_argument("--cool-timeout", type=float, default=180.0, metavar="S",
                     help="wait at most S seconds for the phone to cool between models (0: never "
                          "wait; default 180)")
    adb.add_argument("--cool-poll", type=float, default=10.0, metavar="S",
                     help="seconds between temperature readings while waiting (default 10)")
    adb.add_argument("--cool-margin", type=float, default=1.0, metavar="C",
                     help="battery warmer than at the start by more than C °C counts as hot "
                          "(default 1.0)")
    adb.add_argument("--device-dir", default=DEVICE_TMP,
                     help=f"device folder for the per-run folder (default {DEVICE_TMP})")
    adb.add_argument("--adb", default="adb", help="adb client to use (default: adb on PATH)")
    adb.add_argument("--json", metavar="OUT", help="write the report as JSON ('-' = stdout)")
    adb.set_defaults(func=_adb)

    parse = commands.add_parser(
        "parse", help="parse a saved benchmark_model log",
        description="Reads a benchmark_model log (old or new format) and prints its timings, "
                    "memory and op profile; exit status 1 when the log shows a failed run.")
    parse.add_argument("log", metavar="LOG", help="the saved output, or - for stdin")
    parse.add_argument("--json", action="store_true", help="print JSON instead of text")
    parse.set_defaults(func=_parse)

    device_eval = commands.add_parser(
        "adb-eval", help="mAP with the model run on the phone by the Android demo app",
        description="Cuts the split's clips into windows exactly as `lean eval` does, pushes them "
                    "with the model to the demo app (benchmarks/DEVICE_EVAL.md), starts its "
                    "EvalActivity, pulls the window scores as they come and computes mAP with "
                    "the `lean eval` code. Scores already pulled are kept: after a disconnection, "
                    "run the same command again to continue.")
    device_eval.add_argument("model", metavar="MODEL.tflite")
    device_eval.add_argument("--data", required=True, help="FSD50K-format dataset folder")
    device_eval.add_argument("--split", default="eval", choices=("train", "val", "eval"))
    device_eval.add_argument("--serial", metavar="S", help="device serial (default: the only one)")
    device_eval.add_argument("--job-dir", metavar="DIR",
                             help="host folder of the job (default ~/.cache/lean-bench/adb-eval/JOB)")
    device_eval.add_argument("--threads", type=_positive_int, default=1)
    device_eval.add_argument("--delegate", choices=("cpu", "xnnpack", "gpu", "nnapi"),
                             default="cpu")
    device_eval.add_argument("--poll", type=float, default=2.0, metavar="S",
                             help="seconds between status polls (default 2)")
    device_eval.add_argument("--stall-timeout", type=float, default=600.0, metavar="S",
                             help="give up after S seconds without progress (default 600)")
    device_eval.add_argument("--device-eval-dir", default=DEVICE_EVAL_ROOT,
                             help=f"the app's eval folder on the device (default {DEVICE_EVAL_ROOT})")
    device_eval.add_argument("--adb", default="adb", help="adb client to use (default: adb on PATH)")
    device_eval.add_argument("--json", metavar="OUT", help="write the report as JSON ('-' = stdout)")
    device_eval.set_defaults(func=_adb_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
