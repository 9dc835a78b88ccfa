"""lean-bench pieces that need no device: cooling waits, replayed device scores, torn score rows."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lean.errors import LeanError
from lean_bench.adb import DeviceFacts, Thermal
from lean_bench.adb_bench import AdbBenchOptions, wait_to_cool
from lean_bench.device_eval import (DeviceEvalJob, DeviceScoresPredictor, bind_job_to_device,
                                    default_job_id)


class ScriptedThermalAdb:
    """Answers the thermal script with the given battery temperatures (tenths of °C), in turn."""

    serial = "fake-serial"

    def __init__(self, temperatures):
        self.temperatures = list(temperatures)
        self.calls = 0

    def shell(self, command, timeout=120.0):
        temperature = self.temperatures[min(self.calls, len(self.temperatures) - 1)]
        self.calls += 1
        return 0, (f"@@battery\n  level: 50\n  temperature: {temperature}\n@@thermal\n"
                   f"Thermal Status: 0\n@@end\n")


BASELINE = Thermal(thermal_status=0, battery_level=50, battery_temperature_c=30.0)


def test_wait_to_cool_waits_until_back_to_baseline():
    adb, said, slept = ScriptedThermalAdb([345, 330, 305]), [], []
    options = AdbBenchOptions(benchmark_binary="bm", cool_timeout_s=60, cool_poll_s=5)
    result = wait_to_cool(adb, BASELINE, options, said.append, sleep=slept.append)
    assert result["cooled"] is True and slept == [5, 5] and adb.calls == 3
    assert said[0] == ("fake-serial: waiting up to 60 s for the phone to cool "
                       "(battery 30.0 -> 34.5 °C)")
    assert said[1].startswith("fake-serial: cooled down after")


def test_wait_to_cool_is_bounded_and_says_so():
    adb, said, now = ScriptedThermalAdb([345]), [], [0.0]

    def sleep(seconds):  # a clock that moves only when the harness sleeps: no timing luck
        now[0] += seconds

    options = AdbBenchOptions(benchmark_binary="bm", cool_timeout_s=0.3, cool_poll_s=0.125)
    result = wait_to_cool(adb, BASELINE, options, said.append, sleep=sleep, clock=lambda: now[0])
    # Polls at 0.125 and 0.25 s are still warm; the one at 0.375 s is past the timeout.
    assert result["cooled"] is False and result["waited_s"] == 0.375 and adb.calls == 4
    assert said[-1].startswith("fake-serial: still warm after 0 s (battery 30.0 -> 34.5 °C); "
                               "continuing, the next numbers may be throttled")


def test_wait_to_cool_disabled_or_not_needed():
    options = AdbBenchOptions(benchmark_binary="bm", cool_timeout_s=0)
    said = []
    assert wait_to_cool(ScriptedThermalAdb([345]), BASELINE, options, said.append)["waited_s"] == 0
    options = AdbBenchOptions(benchmark_binary="bm")
    assert wait_to_cool(ScriptedThermalAdb([309]), BASELINE, options, said.append)["cooled"]
    assert said == []


def _reference(num_classes=2, window_samples=4):
    return SimpleNamespace(labels=("a", "b")[:num_classes], path=Path("m.tflite"),
                           task="multilabel", window_samples=window_samples, sample_rate=16000,
                           channels=1, num_classes=num_classes)


def test_replayed_scores_follow_the_pushed_windows():
    windows = np.arange(24, dtype=np.float32).reshape(6, 4)
    scores = np.linspace(0, 1, 12, dtype=np.float32).reshape(6, 2)
    replay = DeviceScoresPredictor(_reference(), windows, scores)
    np.testing.assert_array_equal(replay.predict(windows[:4]), scores[:4])
    np.testing.assert_array_equal(replay.predict(windows[4:]), scores[4:])
    other = DeviceScoresPredictor(_reference(), windows, scores)
    changed = windows[:3].copy()
    changed[2, 1] += 1e-3
    with pytest.raises(LeanError, match="differ from the job's windows.f32 at window 0"):
        other.predict(changed)


def test_torn_last_row_is_cut_off(tmp_path):
    (tmp_path / "job.properties").write_text("format_version=1\nnum_windows=5\nwindow_samples=4\n")
    job = DeviceEvalJob(adb=None, job_dir=tmp_path, job_id="job-1", device_root="/sdcard/x")
    assert job.remote_dir == "/sdcard/x/job-1"
    assert job.host_rows(num_classes=3) == 0
    (tmp_path / "scores.f32").write_bytes(b"\0" * (2 * 12 + 7))
    assert job.host_rows(num_classes=3) == 2
    assert (tmp_path / "scores.f32").stat().st_size == 24
    with pytest.raises(LeanError, match="letters, digits"):
        DeviceEvalJob(adb=None, job_dir=tmp_path, job_id="bad/id", device_root="/sdcard/x")


def test_job_id_depends_on_model_content_data_split_and_delegate(tmp_path):
    model = tmp_path / "lean_int8.tflite"
    model.write_bytes(b"model-1")
    first = default_job_id(model, tmp_path, "eval", 0.5)
    assert first.startswith("lean_int8-eval-") and len(first) == len("lean_int8-eval-") + 12
    assert default_job_id(model, tmp_path, "eval", 0.5) == first
    assert default_job_id(model, tmp_path, "val", 0.5) != first
    # Another delegate or thread count is another job: its rows never carry the cpu label.
    others = {default_job_id(model, tmp_path, "eval", 0.5, delegate, threads)
              for delegate, threads in (("gpu", 1), ("nnapi", 1), ("cpu", 4), ("gpu", 4))}
    assert len(others) == 4 and first not in others
    assert default_job_id(model, tmp_path, "eval", 0.5, "cpu", 1) == first
    model.write_bytes(b"model-2")
    assert default_job_id(model, tmp_path, "eval", 0.5) != first


def test_a_job_stays_with_the_device_that_scored_it(tmp_path):
    def phone(serial, model):
        return DeviceFacts(serial=serial, model=model, manufacturer="samsung", soc="exynos2100",
                           abi="arm64-v8a", sdk=34, cpu_max_freq_khz={}, stand_in=None)

    bind_job_to_device(tmp_path, phone("R5", "SM-G991B"))
    bind_job_to_device(tmp_path, phone("R5", "SM-G991B"))  # the same phone again: fine
    with pytest.raises(LeanError, match="this job was scored on samsung SM-G991B .*serial R5.*, "
                                        "not on samsung SM-S911B"):
        bind_job_to_device(tmp_path, phone("R7", "SM-S911B"))
