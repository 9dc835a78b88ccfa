"""benchmark_model log parser and adb output parsers, on real logs and documented format variants."""

import json
import re
from pathlib import Path

import pytest

from lean.errors import LeanError
from lean_bench import adb, cli
from lean_bench.adb_bench import AdbBenchOptions, Thermal, benchmark_command, hotter_than
from lean_bench.benchmark_log import parse_benchmark_log
from lean_bench.device_eval import format_properties, parse_properties

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"
ANDROID_LOG = (FIXTURES / "benchmark_model_android_aarch64_real.txt").read_text()
FAILURE_LOG = (FIXTURES / "benchmark_model_failure_real.txt").read_text()
PEAK_MEMORY_LOG = (FIXTURES / "benchmark_model_peak_mem_real.txt").read_text()


def old_format(text: str) -> str:
    """What older builds print: no level prefixes, no p5/median/p95, 'Peak memory footprint'."""
    text = re.sub(r"^(INFO|ERROR|VERBOSE|WARNING): ", "", text, flags=re.MULTILINE)
    text = re.sub(r" p5=\S+ median=\S+ p95=\S+", "", text)
    return text.replace("Memory footprint delta from the start of the tool (MB)",
                        "Peak memory footprint (MB)")


def test_real_android_log_every_field():
    log = parse_benchmark_log(ANDROID_LOG)
    assert log.ok and log.error is None and log.prefixed_format
    assert log.parameters["Min num runs"] == "1000"
    assert log.parameters["Graph"] == "./models/tiny_muaalem_float32.tflite"
    assert log.model_size_mb == pytest.approx(24.6229)
    # "Inference timings in us: Init: 119515, First inference: 87112, Warmup (avg): 58147.4,
    #  Inference (avg): 63743.2"
    assert log.init_ms == pytest.approx(119.515)
    assert log.first_inference_ms == pytest.approx(87.112)
    assert log.warmup_avg_ms == pytest.approx(58.1474)
    assert log.inference_avg_ms == pytest.approx(63.7432)
    assert log.warmup.count == 9 and log.warmup.median_ms == pytest.approx(51.962)
    stats = log.inference
    assert stats.count == 1000
    assert (stats.first_ms, stats.curr_ms, stats.min_ms, stats.max_ms) == pytest.approx(
        (52.162, 49.785, 49.088, 686.105))
    assert (stats.avg_ms, stats.std_ms, stats.p5_ms, stats.median_ms, stats.p95_ms) == pytest.approx(
        (63.7432, 60.716, 49.620, 51.891, 68.628))
    assert (log.memory_init_mb, log.memory_overall_mb) == pytest.approx((55.4961, 55.4961))
    assert log.delegate == "TfLiteXNNPackDelegate"
    assert (log.delegated_nodes, log.total_nodes, log.delegate_partitions) == (2168, 2168, 1)
    assert log.profile == []


def test_old_format_without_prefix_and_percentiles():
    new, old = parse_benchmark_log(ANDROID_LOG), parse_benchmark_log(old_format(ANDROID_LOG))
    assert old.ok and not old.prefixed_format
    assert old.inference.median_ms is None and old.inference.p95_ms is None
    assert old.inference.avg_ms == new.inference.avg_ms
    assert old.inference.count == new.inference.count
    for name in ("init_ms", "first_inference_ms", "warmup_avg_ms", "inference_avg_ms",
                 "model_size_mb", "memory_init_mb", "memory_overall_mb"):
        assert getattr(old, name) == getattr(new, name), name


def test_short_run_prints_count_one_and_curr_only():
    text = ANDROID_LOG.replace(
        "count=1000 first=52162 curr=49785 min=49088 max=686105 avg=63743.2 std=60716 p5=49620 "
        "median=51891 p95=68628", "count=1 curr=52162")
    log = parse_benchmark_log(text)
    assert log.ok
    assert log.inference.count == 1 and log.inference.curr_ms == pytest.approx(52.162)
    assert log.inference.min_ms is None and log.inference.median_ms is None
    assert log.warmup.count == 9


def test_failure_quotes_the_tools_first_error_line():
    log = parse_benchmark_log(FAILURE_LOG)
    assert not log.ok
    assert log.error.startswith("tensorflow/lite/kernels/batch_matmul.cc:353")
    assert log.errors[-1] == "Benchmarking failed."
    assert len(log.errors) == 4
    assert (log.delegated_nodes, log.total_nodes, log.delegate_partitions) == (2136, 2168, 65)


def test_failure_in_old_format_still_quotes_the_device():
    log = parse_benchmark_log(old_format(FAILURE_LOG))
    assert not log.ok and log.errors == []
    assert log.error == "tensorflow/lite/kernels/batch_matmul.cc:353 (lhs_data->type == " \
        "kTfLiteFloat32 && rhs_data->type == kTfLiteInt8) || lhs_data->type == rhs_data->type " \
        "was not true."


@pytest.mark.parametrize("output, expected", [
    ("/system/bin/sh: ./benchmark_model: not found", "./benchmark_model: not found"),
    ("STARTING!\nSegmentation fault ", "Segmentation fault"),
    ("", "no timings in the output"),
])
def test_crashes_without_error_lines(output, expected):
    log = parse_benchmark_log(output)
    assert not log.ok and expected in log.error


def test_peak_memory_lines():
    log = parse_benchmark_log(PEAK_MEMORY_LOG)
    assert log.model_size_mb == pytest.approx(0.007588)
    assert (log.memory_init_mb, log.memory_overall_mb) == pytest.approx((2.4375, 20.543))
    assert log.peak_memory_mb == pytest.approx(25.0508)
    assert log.vmrss_mb == 25.0
    assert not log.ok  # the excerpt has no timings line


def _profile_block() -> str:
    def field(text, width):
        return "\t" + str(text).rjust(width)

    lines = ["Operator-wise Profiling Info for Regular Benchmark Runs:",
             "============================== Run Order ==============================",
             field("[node type]", 24) + field("[first]", 9) + field("[avg ms]", 9) + field("[%]", 8)
             + field("[cdf%]", 8) + field("[mem KB]", 10) + field("[times called]", 9) + "\t[Name]"]
    rows = [("CONV_2D", "1.250", "1.125", "60.000%", "60.000%", "0.000", 2, "[conv 1]:0"),
            ("FULLY_CONNECTED", "0.800", "0.750", "40.000%", "100.000%", "0.000", 1, "[dense]:1")]
    widths = (24, 9, 9, 8, 8, 10, 9)
    for row in rows:
        lines.append("".join(field(value, width) for value, width in zip(row, widths))
                     + f"\t{row[-1]}")
    lines += ["", "============================== Summary by node type "
              "==============================",
              field("[Node type]", 24) + field("[count]", 9) + field("[avg ms]", 10)
              + field("[avg %]", 11) + field("[cdf %]", 11) + field("[mem KB]", 10)
              + field("[times called]", 10),
              field("CONV_2D", 24) + field(1, 9) + field("1.125", 10) + field("60.000%", 11)
              + field("60.000%", 11) + field("0.000", 10) + field(2, 10),
              field("FULLY_CONNECTED", 24) + field(1, 9) + field("0.750", 10)
              + field("40.000%", 11) + field("100.000%", 11) + field("0.000", 10) + field(1, 10),
              "",
              "Timings (microseconds): count=50 first=2050 curr=1870 min=1850 max=2050 avg=1875 "
              "std=30",
              "Memory (bytes): count=0", "2 nodes observed", ""]
    return "\n".join(lines)


@pytest.mark.parametrize("prefix", ["INFO: ", ""])
def test_op_profile_tables(prefix):
    text = ANDROID_LOG + "\n" + "\n".join(prefix + line if line else line
                                          for line in _profile_block().splitlines())
    log = parse_benchmark_log(text)
    assert log.ok
    titles = [table.title for table in log.profile]
    assert titles == ["Run Order", "Summary by node type"]
    run_order = log.profile[0]
    assert run_order.context == "Operator-wise Profiling Info for Regular Benchmark Runs"
    assert run_order.columns == ["node type", "first", "avg ms", "%", "cdf%", "mem KB",
                                 "times called", "Name"]
    assert run_order.rows[0] == {"node type": "CONV_2D", "first": 1.25, "avg ms": 1.125,
                                 "%": 60.0, "cdf%": 60.0, "mem KB": 0.0, "times called": 2,
                                 "Name": "[conv 1]:0"}
    summary = log.node_type_summary()
    assert [row["Node type"] for row in summary] == ["CONV_2D", "FULLY_CONNECTED"]
    assert sum(row["avg %"] for row in summary) == pytest.approx(100.0)
    # The profile's own "Timings (microseconds): count=..." line is not a run-statistics line.
    assert log.inference.count == 1000


def test_parse_cli_json_and_exit_status(tmp_path, capsys):
    log_path = tmp_path / "run.txt"
    log_path.write_text(ANDROID_LOG)
    assert cli.main(["parse", str(log_path), "--json"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["inference"]["median_ms"] == pytest.approx(51.891)
    assert parsed["source"] == str(log_path)
    assert parsed["measured_on"] == "unknown: not recorded in the log"
    log_path.write_text(FAILURE_LOG)
    assert cli.main(["parse", str(log_path)]) == 1
    assert "Benchmarking failed" not in capsys.readouterr().out.splitlines()[0]
    assert cli.main(["parse", str(tmp_path / "missing.txt")]) == 2
    assert "no such log file" in capsys.readouterr().err


def test_parse_cli_reads_stdin(monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(old_format(ANDROID_LOG)))
    assert cli.main(["parse", "-"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("<stdin>: ok")
    assert "inference avg (ms): 63.74" in text
    assert "inference runs: count=1000 first=52.16 curr=49.78 min=49.09 max=686.11 avg=63.74 " \
        "std=60.72" in text


DEVICES = """List of devices attached
R5CR10ABCDE            device usb:1-1 product:o1sxeea model:SM_G991B device:o1s transport_id:3
My Phone 2             unauthorized usb:1-2 transport_id:4
emulator-5554          offline transport_id:5
0123456789ABCDEF       no permissions (missing udev rules? user is in the plugdev group); see [http://developer.android.com/tools/device.html] usb:1-3 transport_id:6
127.0.0.1:6555         device product:loopback model:standin device:x transport_id:7

"""


def test_parse_devices_states_properties_and_spaces():
    entries = adb.parse_devices(DEVICES)
    assert [entry.serial for entry in entries] == [
        "R5CR10ABCDE", "My Phone 2", "emulator-5554", "0123456789ABCDEF", "127.0.0.1:6555"]
    assert [entry.state for entry in entries][:3] == ["device", "unauthorized", "offline"]
    assert entries[3].state.startswith("no permissions (missing udev rules?")
    assert entries[0].properties == {"usb": "1-1", "product": "o1sxeea", "model": "SM_G991B",
                                     "device": "o1s", "transport_id": "3"}
    assert entries[3].properties == {"usb": "1-3", "transport_id": "6"}
    assert [entry.usable for entry in entries] == [True, False, False, False, True]


def test_select_devices_messages():
    entries = adb.parse_devices(DEVICES)
    assert [e.serial for e in adb.select_devices(entries, [])] == ["R5CR10ABCDE", "127.0.0.1:6555"]
    with pytest.raises(LeanError, match="'My Phone 2' is unauthorized: unlock the phone"):
        adb.select_devices(entries, ["My Phone 2"])
    with pytest.raises(LeanError, match="offline: reconnect"):
        adb.select_devices(entries, ["emulator-5554"])
    with pytest.raises(LeanError, match="udev rules.*adb says: no permissions"):
        adb.select_devices(entries, ["0123456789ABCDEF"])
    with pytest.raises(LeanError, match="--serial 'nope' is not connected"):
        adb.select_devices(entries, ["nope"])
    with pytest.raises(LeanError, match="no Android device found"):
        adb.select_devices([], [])
    only_bad = [entry for entry in entries if not entry.usable]
    with pytest.raises(LeanError, match="unauthorized.*offline"):
        adb.select_devices(only_bad, [])


def test_device_fact_parsers():
    props = adb.parse_getprop("[ro.product.model]: [SM-G991B]\n[ro.soc.model]: [Exynos 2100]\n"
                              "[ro.build.version.sdk]: [34]\nnot a prop line\n")
    assert props == {"ro.product.model": "SM-G991B", "ro.soc.model": "Exynos 2100",
                     "ro.build.version.sdk": "34"}
    assert adb.parse_battery("Current Battery Service state:\n  level: 87\n  temperature: 305\n") \
        == (87, 30.5)
    assert adb.parse_battery("  temperature: -15\n") == (None, -1.5)
    assert adb.parse_thermal_status("IsStatusOverride: false\nThermal Status: 2\n") == 2
    assert adb.parse_thermal_status("Can't find service: thermalservice") is None
    freqs = adb.parse_cpu_max_freqs("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq 2000000\n"
                                    "/sys/devices/system/cpu/cpu10/cpufreq/cpuinfo_max_freq 2900000\n")
    assert freqs == {0: 2000000, 10: 2900000}


def test_big_core_mask_takes_whole_clusters_from_the_top():
    # Exynos 2100: 4 x A55 2.2 GHz, 3 x A78 2.8 GHz, 1 x X1 2.9 GHz.
    freqs = {0: 2210000, 1: 2210000, 2: 2210000, 3: 2210000,
             4: 2810000, 5: 2810000, 6: 2810000, 7: 2910000}
    assert adb.big_core_mask(freqs, 1) == 0x80
    assert adb.big_core_mask(freqs, 2) == 0xF0
    assert adb.big_core_mask(freqs, 4) == 0xF0
    assert adb.big_core_mask(freqs, 6) == 0xFF
    assert adb.big_core_mask({}, 4) is None
    assert adb.resolve_core_mask("all", freqs, 4) is None
    assert adb.resolve_core_mask("0f", freqs, 4) == 0x0F
    with pytest.raises(LeanError, match="expected big, all or a hex mask"):
        adb.resolve_core_mask("fast", freqs, 1)


def test_benchmark_command_pins_and_quotes():
    options = AdbBenchOptions(benchmark_binary="bm", delegate="gpu", runs=20, warmup=3,
                              profile=True)
    command = benchmark_command("/data/local/tmp/run 1/benchmark_model",
                                "/data/local/tmp/run 1/0_m.tflite", 4, 0xF0, options)
    assert command == ("taskset f0 '/data/local/tmp/run 1/benchmark_model' "
                       "'--graph=/data/local/tmp/run 1/0_m.tflite' --num_threads=4 --num_runs=20 "
                       "--warmup_runs=3 --use_gpu=true --enable_op_profiling=true 2>&1")


def test_hotter_than():
    baseline = Thermal(thermal_status=0, battery_level=80, battery_temperature_c=30.5)
    assert hotter_than(Thermal(0, 80, 31.4), baseline, 1.0) is None
    assert hotter_than(Thermal(0, 80, 31.6), baseline, 1.0) == "battery 30.5 -> 31.6 °C"
    assert hotter_than(Thermal(2, 80, 30.0), baseline, 1.0) == "thermal status 0 -> 2"
    assert hotter_than(Thermal(None, None, None), baseline, 1.0) is None


def _facts_output(getprop: str) -> str:
    return ("@@getprop\n" + getprop + "@@cpufreq\n"
            "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq 1800000\n"
            "/sys/devices/system/cpu/cpu1/cpufreq/cpuinfo_max_freq 2400000\n"
            "@@battery\nCurrent Battery Service state:\n  level: 64\n  temperature: 312\n"
            "@@thermal\nThermal Status: 1\n@@end\n")


def test_device_facts_of_a_phone_and_of_stand_ins():
    phone = adb.parse_device_facts("R5", _facts_output(
        "[ro.product.model]: [SM-G991B]\n[ro.product.manufacturer]: [samsung]\n"
        "[ro.board.platform]: [exynos2100]\n[ro.hardware]: [exynos2100]\n"
        "[ro.product.cpu.abi]: [arm64-v8a]\n[ro.build.version.sdk]: [34]\n"))
    assert phone.stand_in is None
    assert phone.place == "samsung SM-G991B (SoC exynos2100, arm64-v8a, serial R5)"
    assert phone.sdk == 34 and phone.cpu_max_freq_khz == {0: 1800000, 1: 2400000}
    assert phone.thermal == Thermal(thermal_status=1, battery_level=64, battery_temperature_c=31.2)
    no_model = adb.parse_device_facts("x", _facts_output("[ro.product.cpu.abi]: [x86_64]\n"))
    assert no_model.place.startswith("STAND-IN device, not a phone: getprop reports no "
                                     "ro.product.model")
    marked = adb.parse_device_facts("y", _facts_output(
        "[ro.product.model]: [loopback]\n[ro.lean.stand_in]: [loopback adbd test]\n"))
    assert marked.place.startswith("STAND-IN device, not a phone: loopback adbd test")
    assert marked.to_dict()["place"] == marked.place


def test_properties_as_java_writes_them():
    # java.util.Properties.store: a date comment first, ':' '=' escaped, non-ASCII as \\uXXXX.
    text = ("#Sun Nov 22 04:00:00 UTC 2026\nstate=error\nwindows_done=12\n"
            "error=cannot apply delegate\\: GPU \\u00e9\\=x\nmean_latency_ms=4.25\n")
    assert parse_properties(text) == {"state": "error", "windows_done": "12",
                                      "error": "cannot apply delegate: GPU \u00e9=x",
                                      "mean_latency_ms": "4.25"}
    job = {"format_version": 1, "num_windows": 5, "window_samples": 16000}
    assert parse_properties(format_properties(job)) == {key: str(value) for key, value in job.items()}


DEVICE_EVAL_FIXTURES = Path(__file__).parent / "fixtures" / "device_eval"


def _device_status(name: str) -> dict:
    # Written by the app's own dev.lean.core.EvalStatus.write (java.util.Properties.store).
    return parse_properties((DEVICE_EVAL_FIXTURES / name).read_text(encoding="utf-8"))


def test_device_latency_coverage_from_the_apps_status_files():
    from lean_bench.device_eval import device_latency_coverage, format_device_eval_report

    gpu = device_latency_coverage(_device_status("status_gpu_unreported.properties"), "gpu")
    assert gpu == {"delegate": "gpu", "latency_coverage": "possibly-partial",
                   "delegated_nodes": None, "total_nodes": None}
    nnapi = device_latency_coverage(_device_status("status_nnapi_partial.properties"), "nnapi")
    assert nnapi == {"delegate": "nnapi", "latency_coverage": "partial",
                     "delegated_nodes": 118, "total_nodes": 130}
    cpu = device_latency_coverage(_device_status("status_xnnpack.properties"), "xnnpack")
    assert cpu["latency_coverage"] == "cpu"
    # An app older than these fields: a gpu number is still never reported as a pure GPU number.
    old = {"state": "done", "windows_done": "4", "num_windows": "4", "mean_latency_ms": "3.5"}
    assert device_latency_coverage(old, "gpu")["latency_coverage"] == "possibly-partial"
    assert device_latency_coverage(old, "cpu")["latency_coverage"] == "cpu"
    with pytest.raises(LeanError, match="ran the job on nnapi, not on the requested gpu"):
        device_latency_coverage(_device_status("status_nnapi_partial.properties"), "gpu")

    report = {"measured_on": "a phone", "scores_computed_on": "device", "delegate": "nnapi",
              "threads": 1, "model": "m.tflite", "split": "eval", "data": "d", "num_clips": 2,
              "num_windows": 40, "num_skipped": 0, "task": "multilabel", "mAP": 0.5, "mAUC": 0.9,
              "d_prime": 1.8, "device_mean_latency_ms": 9.5, "device_latency_coverage": nnapi}
    text = format_device_eval_report(report)
    assert ("device mean latency per window (ms): 9.50 (nnapi took 118 of 130 nodes: PARTIAL, "
            "the other 12 ran on the CPU inside this latency)") in text
    report.update(delegate="gpu", device_latency_coverage=gpu)
    assert "(gpu, POSSIBLY PARTIAL: the runtime did not report" in format_device_eval_report(report)


def test_refused_job_status_reads_as_an_error_with_its_reason():
    status = _device_status("status_refused.properties")
    assert status["state"] == "error"
    assert status["error"].startswith("refused: job other-1 is still running on this device")


def test_benchmark_rows_label_delegate_timings():
    from lean_bench.adb_bench import delegate_coverage

    xnnpack_log = parse_benchmark_log(ANDROID_LOG)  # "Replacing 2168 out of 2168 ... XNNPack"
    assert delegate_coverage("xnnpack", xnnpack_log) == "cpu"
    # A --use_gpu run whose only delegation line is XNNPACK's says nothing about the GPU.
    assert delegate_coverage("gpu", xnnpack_log) == "possibly-partial"
    gpu_log = parse_benchmark_log(ANDROID_LOG.replace(
        "Replacing 2168 out of 2168 node(s) with delegate (TfLiteXNNPackDelegate) node, "
        "yielding 1 partitions",
        "Replacing 2100 out of 2168 node(s) with delegate (TfLiteGpuDelegateV2) node, "
        "yielding 3 partitions"))
    assert (gpu_log.delegated_nodes, gpu_log.total_nodes) == (2100, 2168)
    assert delegate_coverage("gpu", gpu_log) == "partial"
