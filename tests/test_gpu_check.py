"""scripts/gpu_check.sh --dry-run: every step of the GPU check (demo data, a mixed-precision
and a float32 run of one seed, their losses and eval mAP compared, int8 export, the training
step against the input pipeline) on the CPU with tiny settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.sh"


@pytest.mark.slow
def test_gpu_check_dry_run_passes_every_check(tmp_path):
    out = tmp_path / "gpu_check"
    env = {**os.environ, "PY": sys.executable, "LEAN_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(out)], env=env,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines if line.startswith("== ")] == [
        "== 1/6 install: skipped", "== 2/6 demo dataset",
        "== 3/6 train with mixed precision, then float32, same seed",
        "== 4/6 eval mAP: mixed precision against float32",
        "== 5/6 int8 export of the mixed-precision run",
        "== 6/6 training step rate against the input pipeline"]
    assert "losses finite in both runs; the mixed run trained with float32" in lines
    for name in ("mixed", "float32"):
        report = json.loads((out / name / "gpu_check.json").read_text())
        assert report["losses_finite"] and report["epoch"] == 2
        assert report["train_windows_per_epoch"] == 64 and report["windows_per_second"] > 0
        assert report["gpu_peak_memory_mib"] is None  # no GPU in a dry run
    # On the CPU both runs are float32 and of one seed: the same scores exactly.
    mixed, full = (json.loads((out / f"eval_{name}.json").read_text())["mAP"]
                   for name in ("mixed", "float32"))
    assert mixed == full
    assert (out / "lean_int8.tflite").stat().st_size > 1_000_000
    pipeline = json.loads((out / "input_pipeline.json").read_text())
    assert pipeline["train_on"] == "cpu" and pipeline["pipeline_cores"] == [1]
    assert set(pipeline["variants"]) == {"cached", "cold", "mixup"}
    assert lines[-1].startswith("gpu_check: all checks passed in ")
