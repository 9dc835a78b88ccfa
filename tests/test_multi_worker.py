"""Multi-worker training for real: two `lean train --strategy multi-worker` processes on
loopback, CPU only, as two machines would run it. Worker 1 is killed mid-epoch, both are
restarted, then the chief is killed mid-epoch, both are restarted again, and the resumed
two-worker run must end where one process with the same global batch and seed ends.

The workers run in a private network namespace when this host allows one (root; CI), so no
packet can leave loopback and fixed ports cannot collide with anything; elsewhere on 127.0.0.1
ports the kernel hands out.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adb_loopback.loopback import unavailable_reason
from test_train import make_tone_dataset

# The smallest LEAN: YAMNet trunk (frozen), one BiLSTM(8), d = 8 attention, 16-d projection.
MODEL_ARGS = ["--model", "lean", "--param", "lstm_units=8", "--param", "lstm_layers=1",
              "--param", "projection_units=16", "--param", "attention_units=8"]
# 27 windows per epoch in global batches of 8: 8, 8, 8, 3. The last batch splits 1 + 2 over the
# two workers, so the result depends on weighting uneven parts right.
TRAIN_ARGS = [*MODEL_ARGS, "--epochs", "2", "--batch-size", "8", "--lr", "1e-3", "--seed", "3",
              "--max-windows-per-epoch", "27", "--no-progress"]
# Generous: each phase takes about 1 min on 2 idle cores and 3 min when 9 other jobs share them.
PHASE_SECONDS = 900
# Measured (this test, the resumed two workers against one process): best.keras weights differ
# by at most 3.3e-7, val_loss by 6e-8, val_pr_auc not at all. The two-worker gradient is the
# mean over the same windows, summed in another order (two parts, then an all-reduce), so
# float32 rounding differs at ~1e-7 per step, and Adam passes a relative gradient difference on
# as up to that fraction of lr (1e-3) per step. The bounds leave >= 100x margin and still catch
# a part weighted wrongly: with unit weights on the 1 + 2 split the weights differed by 2.1e-3,
# val_loss by 3.4e-3. (The epoch's train `loss` column is Keras's running mean, in which the
# weighted windows of an uneven last batch count R * n_r / N times: it is not compared.)
WEIGHT_TOLERANCE = 1e-4
VAL_LOSS_TOLERANCE = 1e-5
VAL_PR_AUC_TOLERANCE = 1e-3


class Loopback:
    """Where the workers' cluster lives: a private network namespace, else 127.0.0.1."""

    def __init__(self):
        self._holder = None
        if unavailable_reason() is None:
            self._holder = subprocess.Popen(
                ["unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep 3600"],
                stdout=subprocess.PIPE, text=True)
            assert self._holder.stdout.readline().strip() == "up"

    def command(self, argv: list[str]) -> list[str]:
        if self._holder is None:
            return argv
        return ["nsenter", f"--net=/proc/{self._holder.pid}/ns/net", "--", *argv]

    def ports(self, count: int) -> list[int]:
        if self._holder is not None:
            return [23456 + i for i in range(count)]  # a namespace of our own: all are free
        with contextlib.ExitStack() as stack:
            sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
            for probe in sockets:
                probe.bind(("127.0.0.1", 0))
            return [probe.getsockname()[1] for probe in sockets]

    def close(self) -> None:
        if self._holder is not None:
            self._holder.kill()
            self._holder.wait()


@pytest.fixture(scope="module")
def loopback():
    network = Loopback()
    yield network
    network.close()


def _tf_config(ports: list[int], index: int) -> str:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def _run_workers(loopback: Loopback, root: Path, data: Path, crash_points: dict) -> list:
    """Starts worker 0 (the chief, --out root/run0) and worker 1 (--out root/run1) with the same
    command; returns (returncode, stderr) of each once both have exited."""
    ports = loopback.ports(2)
    processes = []
    for index in (0, 1):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": _tf_config(ports, index)}
        env.pop("LEAN_TEST_FAIL_AT", None)
        if index in crash_points:
            env["LEAN_TEST_FAIL_AT"] = crash_points[index]
        argv = [sys.executable, "-m", "lean.cli", "train", "--data", str(data),
                "--out", str(root / f"run{index}"), *TRAIN_ARGS, "--strategy", "multi-worker",
                "--cache-dir", str(root / f"cache{index}"), "--peer-timeout", "600"]
        processes.append(subprocess.Popen(loopback.command(argv), env=env, text=True,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    results = []
    try:
        for process in processes:
            results.append((process.wait(timeout=PHASE_SECONDS), process.stderr.read()))
    finally:
        for process in processes:
            process.kill()
    return results


def _history(run_dir: Path) -> list[dict]:
    lines = (run_dir / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    return [dict(zip(header, map(float, line.split(",")))) for line in lines[1:]]


def _state(root: Path) -> dict:
    return json.loads((root / "run0" / "checkpoints" / "state.json").read_text())


@pytest.fixture(scope="module")
def runs(loopback, tmp_path_factory):
    """One process; then two workers of which worker 1 is killed after batch 1 of epoch 2
    (after both finished epoch 1 together); both restarted, the chief killed after batch 2 of
    epoch 2; both restarted to the end."""
    from lean.cli import main

    root = tmp_path_factory.mktemp("multi_worker")
    data = make_tone_dataset(root / "data")
    assert main(["train", "--data", str(data), "--out", str(root / "one"), *TRAIN_ARGS,
                 "--cache-dir", str(root / "cache")]) == 0
    worker_killed = _run_workers(loopback, root, data, crash_points={1: "batch:2:1"})
    state_after_worker = _state(root)
    chief_killed = _run_workers(loopback, root, data, crash_points={0: "batch:2:2"})
    state_after_chief = _state(root)
    resumed = _run_workers(loopback, root, data, crash_points={})
    return {"root": root, "worker killed": worker_killed, "chief killed": chief_killed,
            "states": (state_after_worker, state_after_chief), "resumed": resumed}


@pytest.mark.slow
def test_a_killed_worker_or_chief_stops_the_other_with_one_line_and_both_resume(runs):
    (chief_code, chief_log), (worker_code, _) = runs["worker killed"]
    assert worker_code == -9  # killed itself at the crash point, as kill -9 would
    last_line = chief_log.strip().splitlines()[-1]
    assert chief_code == 2, chief_log[-3000:]
    assert last_line.startswith("lean: error: lost worker 1 (127.0.0.1:")
    assert last_line.endswith("during epoch 2 (its heartbeats stopped); start every worker "
                              "again with the same command to resume after epoch 1")

    (chief_code, chief_log), (worker_code, worker_log) = runs["chief killed"]
    assert chief_code == -9
    assert "resuming" in chief_log and "after epoch 1 of 2" in chief_log
    last_line = worker_log.strip().splitlines()[-1]
    assert worker_code == 2, worker_log[-3000:]
    assert last_line.startswith("lean: error: lost ")
    assert last_line.endswith("during epoch 2 (its connection broke); start every worker "
                              "again with the same command to resume after epoch 1")
    assert [state["epoch"] for state in runs["states"]] == [1, 1]

    (chief_code, chief_log), (worker_code, worker_log) = runs["resumed"]
    assert (chief_code, worker_code) == (0, 0), chief_log[-3000:] + worker_log[-3000:]
    assert "resuming" in chief_log and "after epoch 1 of 2" in chief_log
    assert "resuming the chief's run after epoch 1 of 2" in worker_log
    root = runs["root"]
    state = json.loads((root / "run0" / "checkpoints" / "state.json").read_text())
    assert (state["epoch"], state["completed"]) == (2, True)
    assert [row["epoch"] for row in _history(root / "run0")] == [1, 2]
    # Only the chief writes: worker 1's --out was never created.
    assert not (root / "run1").exists()


@pytest.mark.slow
def test_two_workers_train_what_one_process_trains(runs):
    from lean.run import load_run

    root = runs["root"]
    one, two = _history(root / "one"), _history(root / "run0")
    for single, multi in zip(one, two):
        assert abs(single["val_loss"] - multi["val_loss"]) <= VAL_LOSS_TOLERANCE
        assert abs(single["val_pr_auc"] - multi["val_pr_auc"]) <= VAL_PR_AUC_TOLERANCE
    single_weights = load_run(root / "one").model.get_weights()
    multi_weights = load_run(root / "run0").model.get_weights()
    assert len(single_weights) == len(multi_weights) > 100
    difference = max(float(np.max(np.abs(a - b)))
                     for a, b in zip(single_weights, multi_weights))
    assert difference <= WEIGHT_TOLERANCE


@pytest.mark.slow
def test_a_worker_whose_peer_never_starts_stops_with_one_line(loopback, tmp_path):
    """TensorFlow alone would wait for the missing worker forever (it ignores SIGTERM there)."""
    data = make_tone_dataset(tmp_path / "data", clips_per_split=(4, 2, 1))
    ports = loopback.ports(2)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CONFIG": _tf_config(ports, 0)}
    argv = [sys.executable, "-m", "lean.cli", "train", "--data", str(data),
            "--out", str(tmp_path / "run"), *TRAIN_ARGS, "--strategy", "multi-worker",
            "--cache-dir", str(tmp_path / "cache"), "--peer-timeout", "5"]
    result = subprocess.run(loopback.command(argv), env=env, capture_output=True, text=True,
                            timeout=PHASE_SECONDS)
    assert result.returncode == -9, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "lean: error: the TF_CONFIG cluster did not come together within 5 s (--peer-timeout): "
        f"worker 1 (127.0.0.1:{ports[1]}) refuses connections (not started yet, or another "
        "port). Start `lean train` with the same settings on every machine of the cluster")

