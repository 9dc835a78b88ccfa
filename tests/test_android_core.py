"""The Android app's JVM core (android_demo/core) compiled and tested here, and checked against the Python SDK."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import android_golden  # pytest puts tests/ on sys.path (no __init__.py there)

CORE = Path(__file__).resolve().parents[1] / "android_demo" / "core"
RUN_JVM_TESTS = CORE / "run-jvm-tests.sh"


def _run_jvm_tests(golden_dir: Path) -> subprocess.CompletedProcess:
    if shutil.which("javac") is None:
        pytest.skip("javac is not installed (Debian: apt-get install openjdk-17-jdk-headless)")
    result = subprocess.run(
        ["bash", str(RUN_JVM_TESTS), str(golden_dir)], capture_output=True, text=True, timeout=300
    )
    if result.returncode == 3:  # the script's "cannot install junit4" exit
        pytest.skip(f"junit4 unavailable: {result.stderr.strip()}")
    return result


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    directory = tmp_path_factory.mktemp("android_golden")
    written = android_golden.write_goldens(directory)
    return directory, written


def _read_properties(path: Path) -> dict:
    """java.util.Properties as the JVM writes them (comment lines, key=value, nothing escaped here)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


@pytest.mark.slow
def test_jvm_core_passes_with_python_goldens(golden):
    directory, written = golden
    result = _run_jvm_tests(directory)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # JUnit prints "OK (N tests)"; the parity tests cannot be skipped when a golden dir is given.
    assert "OK (" in result.stdout
    count = int(result.stdout.split("OK (")[1].split()[0])
    assert count >= 40

    # The JVM ran the eval job of benchmarks/DEVICE_EVAL.md: read its files back with numpy.
    job = directory / written["golden"]["eval.job"]
    expected = written["eval_expected_scores"]
    scores = np.fromfile(job / "scores.f32", dtype="<f4")
    assert scores.shape == (expected.size,)
    np.testing.assert_array_equal(scores.reshape(expected.shape), expected)
    status = _read_properties(job / "status.properties")
    assert status["state"] == "done"
    assert int(status["windows_done"]) == int(status["num_windows"]) == expected.shape[0]
    assert int(status["num_classes"]) == len(android_golden.LABELS)
    assert float(status["mean_latency_ms"]) >= 0.0
    assert "error" not in status
    assert not (job / "status.properties.tmp").exists()


@pytest.mark.slow
def test_golden_model_metadata_agrees_between_python_readers(golden):
    from lean.inference import load_predictor

    directory, written = golden
    values = written["golden"]
    labels = (directory / values["model.labels"]).read_text(encoding="utf-8").splitlines()
    assert tuple(labels) == android_golden.LABELS
    predictor = load_predictor(directory / values["model.file"])
    assert tuple(predictor.labels) == android_golden.LABELS
    assert (values["model.sample_rate"], values["model.channels"]) == (16000, 1)
    assert values["model.input_samples"] == predictor.window_samples == 16000


@pytest.mark.slow
def test_jvm_parity_fails_on_a_wrong_golden(golden, tmp_path):
    directory, _ = golden
    tampered = tmp_path / "tampered"
    shutil.copytree(directory, tampered)
    (tampered / "eval_job" / "scores.f32").unlink()
    properties = tampered / "golden.properties"
    properties.write_text(
        properties.read_text().replace("model.sample_rate=16000", "model.sample_rate=22050")
    )
    windows = tampered / "windows_0_expected.f32"
    values = np.fromfile(windows, dtype="<f4")
    values[20000] = np.nextafter(values[20000], np.float32(2))  # one ulp in window 1
    values.tofile(windows)
    result = _run_jvm_tests(tampered)
    assert result.returncode != 0
    assert "modelMetadataEqualsPythonReader" in result.stdout
    assert "windows.0 window 1" in result.stdout
    assert "Failures: 2" in result.stdout
