"""Distribution pieces that need no cluster: TF_CONFIG parsing and its one-line errors, the
start-up watchdog, and the per-replica split of every global batch (each window once per epoch
across replicas, weights that make the replicas' gradient the global batch's)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from lean.distribute import DistributionConfig, parse_tf_config
from lean.errors import LeanError
from test_train import SAMPLE_RATE, make_tone_dataset


def _tf_config(cluster, job="worker", index=0) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": job, "index": index}})


def test_cluster_order_puts_the_chief_first():
    cluster = parse_tf_config(_tf_config(
        {"worker": ["10.0.0.2:2222", "10.0.0.3:2222"], "chief": ["10.0.0.1:2222"]}, "worker", 1))
    assert [str(task) for task in cluster.tasks] == [
        "chief 0 (10.0.0.1:2222)", "worker 0 (10.0.0.2:2222)", "worker 1 (10.0.0.3:2222)"]
    assert (cluster.me.address, cluster.worker_id, cluster.is_chief) == ("10.0.0.3:2222", 2, False)
    two = parse_tf_config(_tf_config({"worker": ["a:1", "[::1]:2"]}, "worker", 0))
    assert two.is_chief and two.peers[0].host_and_port == ("::1", 2)
    error = "Error reported from /job:worker/task:1: The following tasks are unhealthy"
    assert str(two.task_of_device(error)) == "worker 1 ([::1]:2)"


@pytest.mark.parametrize("text, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ("[]", 'TF_CONFIG needs {"cluster"'),
    (_tf_config({"worker": ["a:1"], "ps": ["b:2"]}), "job 'ps' is not used by multi-worker"),
    (_tf_config({"worker": []}), 'cluster "worker" must be a non-empty list'),
    (_tf_config({"worker": ["a:1"], "chief": ["b:1", "c:1"]}), "there is one chief"),
    (_tf_config({"worker": ["a:1", "nocolon"]}), 'cluster "worker" entry 1 is \'nocolon\''),
    (_tf_config({"worker": ["a:99999"]}), "a port from 1 to 65535"),
    (_tf_config({"worker": ["a:1", "a:1"]}), "address a:1 is listed twice"),
    (_tf_config({"worker": ["a:1"]}, "chief", 0), "task type 'chief' is not a job"),
    (_tf_config({"worker": ["a:1", "b:1"]}, "worker", 2), "task index 2 is not one of the "
     "cluster's 2 worker addresses (0 to 1)"),
])
def test_malformed_tf_config_is_one_line_naming_the_problem(text, message):
    with pytest.raises(LeanError) as raised:
        parse_tf_config(text)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_distribution_config_rejects_unknown_strategies():
    with pytest.raises(LeanError, match="expected one of auto, mirrored, multi-worker"):
        DistributionConfig("parameter-server")
    with pytest.raises(LeanError, match="--peer-timeout must be positive"):
        DistributionConfig("multi-worker", peer_timeout=0)


def test_train_cli_reports_a_malformed_tf_config_in_one_line(tmp_path, capsys, monkeypatch):
    from lean.cli import main

    data = make_tone_dataset(tmp_path / "data", clips_per_split=(2, 2, 1))
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"ty')
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"),
                 "--strategy", "multi-worker", "--no-progress"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("lean: error: TF_CONFIG is not valid JSON")
    monkeypatch.delenv("TF_CONFIG")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"),
                 "--strategy", "multi-worker", "--no-progress"]) == 2
    assert "needs TF_CONFIG to describe the cluster" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _watchdog(parent_pid: int, timeout: float, port: int) -> subprocess.Popen:
    peers = [[f"worker 1 (127.0.0.1:{port})", f"127.0.0.1:{port}"]]
    return subprocess.Popen([sys.executable, "-m", "lean.distribute", "watch", str(parent_pid),
                             str(timeout), json.dumps(peers)],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_startup_watchdog_names_the_missing_peer_and_stops_the_waiting_process():
    waiting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    port = _closed_port()
    watchdog = _watchdog(waiting.pid, 0.5, port)
    try:
        assert waiting.wait(timeout=60) == -9  # SIGKILL: TensorFlow ignores SIGTERM there
        message = watchdog.communicate(timeout=60)[1].strip()
    finally:
        waiting.kill()
        watchdog.kill()
    assert message == (
        "lean: error: the TF_CONFIG cluster did not come together within 0.5 s "
        f"(--peer-timeout): worker 1 (127.0.0.1:{port}) refuses connections (not started yet, "
        "or another port). Start `lean train` with the same settings on every machine of the "
        "cluster")


def test_disarmed_watchdog_leaves_the_process_alone():
    waiting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    watchdog = _watchdog(waiting.pid, 30, _closed_port())
    try:
        watchdog.stdin.close()  # what StartupWatchdog.disarm does
        assert watchdog.wait(timeout=60) == 0
        assert watchdog.stderr.read() == ""
        time.sleep(0.1)
        assert waiting.poll() is None
    finally:
        waiting.kill()
        watchdog.kill()


@pytest.fixture(scope="module")
def tone_index(tmp_path_factory):
    from lean.data import load_dataset
    from lean.data.audio import AudioCache
    from lean.data.pipeline import build_window_index

    root = tmp_path_factory.mktemp("replicas")
    dataset = load_dataset(make_tone_dataset(root / "data", clips_per_split=(7, 2, 1)))
    cache = AudioCache(root / "cache")
    index = build_window_index(dataset.clips("train"), cache, SAMPLE_RATE, progress=False)
    return dataset, cache, index


def _elements(dataset, cache, index, batch_size, replicas=None, shuffle=True):
    from lean.data.pipeline import build_window_dataset

    data = build_window_dataset(index, dataset, cache, SAMPLE_RATE, batch_size,
                                shuffle_seed=5 if shuffle else None,
                                epochs=(0, 2) if shuffle else None, replicas=replicas)
    return list(data.as_numpy_iterator())


@pytest.mark.parametrize("total, per_worker", [(2, 1), (3, 1), (4, 2)])
def test_replica_parts_tile_every_global_batch_and_weight_it_to_the_global_mean(
        tone_index, total, per_worker):
    """Workers of `per_worker` replicas each: the parts of global batch k, over all workers,
    are exactly batch k of the one-process pipeline, in order, once each."""
    from lean.data.pipeline import ReplicaSlice

    dataset, cache, index = tone_index
    batch_size = 3
    whole = _elements(dataset, cache, index, batch_size)
    workers = [_elements(dataset, cache, index, batch_size,
                         ReplicaSlice(first=first, count=per_worker, total=total))
               for first in range(0, total, per_worker)]
    # The last batch of each epoch is partial: 10 windows -> 3, 3, 3, 1.
    assert index.num_windows % batch_size == 1
    for worker in workers:
        assert len(worker) == len(whole) * per_worker
    for step, (windows, labels) in enumerate(whole):
        parts = [part for worker in workers
                 for part in worker[step * per_worker:(step + 1) * per_worker]]
        sizes = [len(part[0]) for part in parts]
        assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(windows)
        np.testing.assert_array_equal(np.concatenate([part[0] for part in parts]), windows)
        np.testing.assert_array_equal(np.concatenate([part[1] for part in parts]), labels)
        # Keras: replica loss = sum(w * loss) / n_r / R. With w = R * n_r / N the replicas
        # sum to the mean over the N windows: here with per-window losses 1..N.
        losses = np.arange(1.0, len(windows) + 1)
        replica_losses, start = [], 0
        for part in parts:
            n = len(part[0])
            if n:
                replica_losses.append(np.sum(part[2] * losses[start:start + n]) / n / total)
            start += n
        assert np.sum(replica_losses) == pytest.approx(losses.mean(), rel=1e-6)


def test_validation_parts_have_no_weights_and_cover_the_split_once(tone_index):
    from lean.data.pipeline import ReplicaSlice

    dataset, cache, index = tone_index
    whole = _elements(dataset, cache, index, 3, shuffle=False)
    parts = [_elements(dataset, cache, index, 3, ReplicaSlice(r, 1, 3), shuffle=False)
             for r in range(3)]
    assert all(len(element) == 2 for worker in parts for element in worker)
    for step, (windows, _) in enumerate(whole):
        joined = np.concatenate([worker[step][0] for worker in parts])
        np.testing.assert_array_equal(joined, windows)
    # The last batch holds one window: two of the three replicas get an empty part.
    assert [len(worker[-1][0]) for worker in parts] == [0, 0, 1]


# Run in a fresh process: logical CPU devices must be configured before TensorFlow starts.
MIRRORED_PARITY = r'''
import json, sys
import numpy as np
import tensorflow as tf
import keras

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from lean.data import load_dataset
from lean.data.audio import AudioCache
from lean.data.pipeline import build_window_dataset, build_window_index, steps_per_epoch
from lean.distribute import Placement, replica_datasets

data_dir, cache_dir = sys.argv[1:3]
dataset = load_dataset(data_dir)
cache = AudioCache(cache_dir)
index = build_window_index(dataset.clips("train"), cache, 16000, progress=False)
batch = 4

def pipeline(replicas=None):
    return build_window_dataset(index, dataset, cache, 16000, batch, shuffle_seed=2,
                                epochs=(0, 2), max_windows_per_epoch=9, replicas=replicas)

def fit(strategy, data):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = keras.Sequential([keras.Input((16000,)), keras.layers.Reshape((100, 160)),
                                  keras.layers.Dense(8, activation="relu"),
                                  keras.layers.GlobalAveragePooling1D(),
                                  keras.layers.Dense(dataset.num_classes, activation="sigmoid")])
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    model.fit(data, epochs=2, steps_per_epoch=steps_per_epoch(index.num_windows, batch, 9),
              verbose=0)
    return model.get_weights()

one = fit(tf.distribute.get_strategy(), pipeline())
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
two = fit(mirrored, replica_datasets(Placement(mirrored, "2 logical CPUs"), pipeline))
print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "windows": index.num_windows,
                  "difference": max(float(np.max(np.abs(a - b))) for a, b in zip(one, two))}))
'''


@pytest.mark.slow
def test_mirrored_replicas_of_one_pipeline_train_what_one_device_trains(tone_index, tmp_path):
    """One input pipeline feeding two local replicas (MirroredStrategy over two logical CPUs,
    as over a machine's GPUs): its parts go to the replicas in order, and the weighted parts of
    the last batch (9 windows per epoch in batches of 4: 4, 4, 1, split 0 + 1) keep the
    one-device result."""
    dataset, cache, index = tone_index
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_PARITY, str(dataset.root), str(cache.cache_dir)],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["replicas"] == 2 and measured["windows"] == 10
    # Measured: 3e-8 (float32 rounding of the split batches); 1.1e-2 with unit weights.
    assert measured["difference"] <= 1e-5
