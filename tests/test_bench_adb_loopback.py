"""`lean-bench adb` and `adb-eval` end to end: the real adb client against a real adbd on loopback.

The "device" is this Linux host (adbd 34 from Debian bookworm-backports, in a private network
namespace), with labelled stand-ins for getprop, dumpsys, am and benchmark_model (see
tests/adb_loopback). Nothing here is a phone measurement, and the reports must say so.
"""

import json
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from adb_loopback import loopback
from adb_loopback.bench_data import build_tiny_models, write_tiny_dataset

pytestmark = pytest.mark.slow
LEAN_BENCH = [sys.executable, "-m", "lean_bench.cli"]
FIXTURE_INFERENCE_AVG_MS = 63.7432  # the recorded log's "Inference (avg): 63743.2" (us)


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    reason = loopback.unavailable_reason()
    if reason:
        pytest.skip(f"loopback adbd: {reason}")
    try:
        cache = loopback.install()
    except RuntimeError as error:
        pytest.skip(f"loopback adbd could not be installed: {error}")
    phone = loopback.LoopbackDevice(cache, tmp_path_factory.mktemp("loopback"))
    phone.start()
    yield phone
    phone.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("adb_models")
    first, second = build_tiny_models({root / "first.tflite": 8, root / "second.tflite": 64})
    broken = root / "broken.tflite"  # the stand-in benchmark_model replays the real failure log
    shutil.copy(first, broken)
    return first, second, broken, write_tiny_dataset(root / "data")


def test_adb_benchmark_end_to_end(device, files):
    first, second, broken, _ = files
    out = device.work_dir / "adb.json"
    result = device.run(LEAN_BENCH + [
        "adb", str(first), str(broken), str(second),
        "--benchmark-binary", str(loopback.STANDIN_DIR / "benchmark_model"),
        "--threads", "1,2", "--runs", "7", "--warmup", "2", "--profile",
        # Cooling is counted in readings (each cools the stand-in battery by 2 °C), not in
        # seconds: the timeout only guards against a hang.
        "--cool-poll", "0.2", "--cool-timeout", "300",
        "--device-dir", str(device.device_tmp), "--json", str(out)], check=False)
    assert result.returncode == 1, result.stderr  # one model failed on the device
    report = json.loads(out.read_text())
    # No --serial: every authorized device, here the two adbds.
    assert [entry["device"]["serial"] for entry in report["devices"]] == [
        loopback.SERIAL, loopback.SECOND_SERIAL]
    for entry in report["devices"]:
        _check_device_report(entry, files, device)
    assert report["devices"][0]["device"]["thermal_before"]["battery_temperature_c"] == 30.5
    assert result.stdout.count("These numbers come from a STAND-IN device, not from a phone.") == 2
    assert ("broken.tflite (1 threads, xnnpack) failed on the device: "
            "tensorflow/lite/kernels/batch_matmul.cc:353") in result.stderr
    # The stand-in benchmark_model warms the battery by 6 °C per run: the harness waits.
    assert "waiting up to 300 s for the phone to cool (battery 30.5 -> " in result.stderr
    assert "cooled down after" in result.stderr
    assert "first.tflite (2 threads) op profile: TfLiteXNNPackDelegate 49.87 ms (96.1 %), RESHAPE " \
        "2.02 ms (3.9 %)" in result.stdout
    calls = (device.state_dir / "benchmark_calls.log").read_text().splitlines()
    assert len(calls) == 12
    assert all("--use_xnnpack=true" in call and "--enable_op_profiling=true" in call
               and "--num_runs=7" in call and "--warmup_runs=2" in call for call in calls)
    # The per-run folders are gone afterwards.
    assert list(device.device_tmp.iterdir()) == []


def _check_device_report(entry, files, device):
    first, second, broken, _ = files
    facts = entry["device"]
    assert facts["model"] == "loopback-standin" and facts["sdk"] == 34
    assert facts["place"].startswith("STAND-IN device, not a phone: loopback adbd test")
    # Both stand-in devices share one stand-in battery, so only its level is known in advance.
    assert facts["thermal_before"]["thermal_status"] == 0
    assert facts["thermal_before"]["battery_level"] == 87
    rows = entry["rows"]
    assert [(Path(row["model"]).name, row["threads"]) for row in rows] == [
        ("first.tflite", 1), ("first.tflite", 2), ("broken.tflite", 1), ("broken.tflite", 2),
        ("second.tflite", 1), ("second.tflite", 2)]
    for row in rows:
        log = row["log"]
        if row["model"] == str(broken):
            assert row["exit_status"] == 1 and not log["ok"]
            assert row["error"].startswith("tensorflow/lite/kernels/batch_matmul.cc:353")
            continue
        assert row["error"] is None and log["ok"]
        assert log["inference_avg_ms"] == pytest.approx(FIXTURE_INFERENCE_AVG_MS)
        assert log["parameters"]["Num threads"] == str(row["threads"])
        assert [r["Node type"] for r in log["profile"][1]["rows"]] == ["TfLiteXNNPackDelegate",
                                                                      "RESHAPE"]
        assert row["avg_ratio"] == pytest.approx(1.0)
    second_model_rows = [row for row in rows if row["model"] == str(second)]
    assert second_model_rows[0]["cooling_before_model"]["cooled"] is True
    # This host exposes no cpuinfo_max_freq, so nothing is pinned; the JSON says so.
    assert facts["cpu_max_freq_khz"] == {} or all(row["core_mask"] for row in rows)
    assert entry["run_dir"].startswith(str(device.device_tmp) + "/lean-bench-")


def test_adb_lost_device_keeps_its_rows_and_the_other_devices(device, files):
    first, unplug = files[0], device.work_dir / "unplug.tflite"
    shutil.copy(first, unplug)
    out = device.work_dir / "lost.json"
    try:
        result = device.run(LEAN_BENCH + [
            "adb", str(first), str(unplug), "--threads", "1", "--cool-timeout", "0",
            "--benchmark-binary", str(loopback.STANDIN_DIR / "benchmark_model"),
            "--device-dir", str(device.device_tmp), "--json", str(out)], check=False)
    finally:
        device.stop_adbd()
        device.start_adbd()
        device.connect()
    assert result.returncode == 1, result.stderr
    lost, kept = json.loads(out.read_text())["devices"]
    assert lost["device"]["serial"] == loopback.SERIAL
    assert lost["device"]["place"].startswith("STAND-IN device, not a phone")
    assert [row["model_name"] for row in lost["rows"]] == ["first.tflite"]
    assert lost["rows"][0]["log"]["ok"]
    assert f"{loopback.SERIAL}: stopped: " in result.stderr
    assert "device stopped: " in result.stdout
    assert kept["error"] is None and kept["device"]["serial"] == loopback.SECOND_SERIAL
    assert [row["log"]["ok"] for row in kept["rows"]] == [True, True]


def test_adb_unknown_serial_is_a_clear_error(device, files):
    first = files[0]
    result = device.run(LEAN_BENCH + [
        "adb", str(first), "--benchmark-binary", str(loopback.STANDIN_DIR / "benchmark_model"),
        "--serial", "R5CR10ABCDE"], check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"lean-bench: error: --serial 'R5CR10ABCDE' is not connected (adb devices -l lists: "
        f"'{loopback.SERIAL}', '{loopback.SECOND_SERIAL}')")


def test_adb_eval_needs_a_serial_when_several_devices(device, files):
    result = device.run(LEAN_BENCH + ["adb-eval", str(files[0]), "--data", str(files[3])],
                        check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"lean-bench: error: several devices are connected ({loopback.SERIAL}, "
        f"{loopback.SECOND_SERIAL}): choose one with --serial")


def test_adb_eval_resumes_after_disconnect_and_matches_lean_eval(device, files, monkeypatch):
    from lean.config import EvalConfig
    from lean.data.audio import load_audio
    from lean.data import load_dataset
    from lean.data.windows import eval_windows
    from lean.evaluate import evaluate
    from lean.inference import load_predictor

    monkeypatch.setenv("LEAN_CACHE_DIR", str(device.work_dir / "test-audio-cache"))
    first, _, _, data = files
    job_dir, out = device.work_dir / "job", device.work_dir / "eval.json"
    command = LEAN_BENCH + ["adb-eval", str(first), "--data", str(data), "--split", "eval",
                            "--serial", loopback.SERIAL,
                            "--job-dir", str(job_dir), "--poll", "0.1",
                            "--device-eval-dir", str(device.device_eval_root), "--json", str(out)]
    # First attempt: the stand-in app scores slowly and "unplugs" (kills adbd) after 8 windows.
    (device.state_dir / "eval_delay_s").write_text("0.15")
    (device.state_dir / "disconnect_after").write_text(f"8 {job_dir / 'scores.f32'}")
    interrupted = device.run(command, check=False)
    assert interrupted.returncode == 2, interrupted.stderr
    last_line = interrupted.stderr.strip().splitlines()[-1]
    assert "lost contact with device" in last_line and "windows are kept in" in last_line, \
        interrupted.stderr
    kept_rows = (job_dir / "scores.f32").stat().st_size // (4 * 3)
    assert 0 < kept_rows <= 8, interrupted.stderr

    # The device loses its job folder too; the host's rows must be what the rerun continues from.
    shutil.rmtree(device.device_eval_root)
    device.device_eval_root.mkdir()
    (device.state_dir / "disconnect_after").unlink()
    (device.state_dir / "eval_delay_s").write_text("0")
    device.stop_adbd()
    device.start_adbd()
    device.connect()
    resumed = device.run(command, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert f"continuing, {kept_rows} of" in resumed.stderr, resumed.stderr
    starts = (device.state_dir / "eval_starts.log").read_text().split()
    assert [int(start) for start in starts] == [0, kept_rows], (interrupted.stderr, resumed.stderr)

    # windows.f32 is exactly what `lean eval` cuts, in its order.
    dataset = load_dataset(data)
    expected_windows = np.concatenate([eval_windows(load_audio(clip.path), 16000, 0.5)
                                       for clip in dataset.clips("eval")])
    windows = np.fromfile(job_dir / "windows.f32", dtype="<f4").reshape(-1, 16000)
    np.testing.assert_array_equal(windows, expected_windows)
    properties = (job_dir / "job.properties").read_text().splitlines()
    assert properties == ["format_version=1", f"num_windows={len(windows)}", "window_samples=16000",
                          "sample_rate=16000", "threads=1", "delegate=cpu"]
    # The stand-in app's rows equal the host's LiteRT scores of the same windows.
    predictor = load_predictor(first)
    scores = np.fromfile(job_dir / "scores.f32", dtype="<f4").reshape(-1, 3)
    np.testing.assert_allclose(scores, predictor.predict(windows), atol=1e-6)

    report = json.loads(out.read_text())
    host = evaluate(predictor, dataset, "eval", EvalConfig(), progress=False)
    assert report["mAP"] == pytest.approx(host["mAP"], abs=1e-6)
    assert [c["ap"] for c in report["per_class"]] == pytest.approx([c["ap"] for c in host["per_class"]])
    assert report["num_windows"] == host["num_windows"] == len(windows)
    assert report["measured_on"].startswith("STAND-IN device, not a phone")
    assert report["scores_computed_on"] == "STAND-IN device (not a phone)"
    assert "host" not in report and report["device_mean_latency_ms"] > 0
    assert report["device_latency_coverage"]["latency_coverage"] == "cpu"
    status = json.loads((job_dir / "device_status.json").read_text())
    assert status["state"] == "done" and int(status["windows_done"]) == len(windows)
    # Everything is on the host: the phone's job folder is removed.
    assert not (device.device_eval_root / report["job_id"]).exists()
    # A third run finds every row on the host and needs no device work at all.
    again = device.run(command, check=False)
    assert again.returncode == 0, again.stderr
    rerun = json.loads(out.read_text())
    assert rerun["mAP"] == report["mAP"]
    assert rerun["device_mean_latency_ms"] == report["device_mean_latency_ms"]
    assert (device.state_dir / "eval_starts.log").read_text().split() == starts


def test_adb_eval_device_error_is_quoted(device, files):
    second, data = files[1], files[3]
    (device.state_dir / "eval_error").write_text("GPU delegate is not supported on this device\n")
    try:
        result = device.run(LEAN_BENCH + [
            "adb-eval", str(second), "--data", str(data), "--delegate", "gpu", "--poll", "0.1",
            "--serial", loopback.SECOND_SERIAL,
            "--job-dir", str(device.work_dir / "gpu-job"),
            "--device-eval-dir", str(device.device_eval_root)], check=False)
    finally:
        (device.state_dir / "eval_error").unlink()
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"lean-bench: error: {loopback.SECOND_SERIAL}: the evaluation job failed on the device: GPU "
        "delegate is not supported on this device; 0 of ")
    assert "delegate=gpu" in (device.work_dir / "gpu-job" / "job.properties").read_text()


def test_adb_eval_follows_a_job_still_running_on_the_device(device, files):
    """The host is interrupted (Ctrl-C) while the app keeps scoring: the rerun must follow that
    job, not start a second one writing the same scores.f32. The stand-in job holds after two
    windows until the test releases it, so every step waits for an event, not for a delay."""
    second, data = files[1], files[3]
    job_dir = device.work_dir / "follow-job"
    release = device.work_dir / "follow-release"

    def command(poll_s: str) -> list[str]:
        return LEAN_BENCH + ["adb-eval", str(second), "--data", str(data), "--serial",
                             loopback.SERIAL, "--job-dir", str(job_dir), "--poll", poll_s,
                             "--device-eval-dir", str(device.device_eval_root)]

    starts_log = device.state_dir / "eval_starts.log"
    starts_before = starts_log.read_text().split() if starts_log.exists() else []
    (device.state_dir / "hold_after").write_text(f"2 {release}")
    try:
        first_attempt = device.popen(command("0.1"))
        # The held job cannot finish, so the host is still following it when interrupted.
        _wait_for(lambda: (job_dir / "scores.f32").exists()
                  and (job_dir / "scores.f32").stat().st_size >= 4 * 3,
                  first_attempt, "the first attempt pulling a row of the held job")
        first_attempt.send_signal(signal.SIGINT)
        _, error = first_attempt.communicate(timeout=120)
        assert first_attempt.returncode == 130, error
        # The rerun finds the job still held at "running"; it is released once the rerun has
        # read the size of scores.f32 it watches, so it sees the job grow. A long --poll makes
        # the rerun watch up to 3 x 10 s (it stops at the first growth): on a loaded machine a
        # few adb round trips take seconds, and the watch must not end before the job moves.
        rerun = device.popen(command("10"))
        said = []
        for line in rerun.stderr:
            said.append(line)
            if "reports this job as running; watching" in line:
                release.touch()
                break
        said.append(rerun.stderr.read())  # through the same buffer as the lines above
        rerun.wait(timeout=60)
    finally:
        release.touch()
        (device.state_dir / "hold_after").unlink(missing_ok=True)
    stderr = "".join(said)
    assert rerun.returncode == 0, stderr
    assert "the app is still scoring this job; following it" in stderr
    # One start only: the job the first attempt launched.
    assert starts_log.read_text().split() == starts_before + ["0"]


def _wait_for(condition, process, event: str, limit_s: float = 300.0) -> None:
    """Waits for an event of the command under test; the limit only turns a hang into a failure."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"waiting for {event}, the command ended: {process.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail(f"waiting for {event}: nothing after {limit_s:.0f} s")
        time.sleep(0.05)
