"""Where `lean train` runs: one device, one machine's GPUs (MirroredStrategy) or several
machines (MultiWorkerMirroredStrategy, configured from the standard TF_CONFIG).

Multi-worker training keeps TensorFlow's engine and adds what a run directory needs: the chief
(worker 0) alone owns the run directory; every other worker checks at the start that its
settings and data are the chief's, and takes the chief's training state (and, on resume, its
weights and optimizer state) over the network, so it needs no shared filesystem. A worker that
cannot reach the cluster within `peer_timeout` seconds, or loses a peer mid-run, stops with one
line naming the peer; restarting every worker resumes from the last completed epoch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np

from lean.data.pipeline import ReplicaSlice
from lean.errors import LeanError

STRATEGY_NAMES = ("auto", "mirrored", "multi-worker", "one-device")
TF_CONFIG = "TF_CONFIG"
# The jobs MultiWorkerMirroredStrategy trains with; parameter servers and side-car evaluators
# belong to other strategies.
JOBS = ("chief", "worker")
README_SECTION = "README 'Training on several machines'"


@dataclass(frozen=True)
class DistributionConfig:
    """How `lean train` spreads one run over devices and machines (not part of the run's
    config: a run may resume under another strategy and train the same way).

    strategy: auto (MirroredStrategy over several visible GPUs, else one device), mirrored,
        multi-worker (TF_CONFIG) or one-device.
    peer_timeout: seconds a multi-worker start waits for every worker of TF_CONFIG.
    """

    strategy: str = "auto"
    peer_timeout: float = 300.0

    def __post_init__(self):
        if self.strategy not in STRATEGY_NAMES:
            raise LeanError(f"--strategy {self.strategy!r}: expected one of "
                            f"{', '.join(STRATEGY_NAMES)}")
        if not self.peer_timeout > 0:
            raise LeanError(f"--peer-timeout must be positive, not {self.peer_timeout}")


@dataclass(frozen=True)
class Task:
    """One process of the cluster."""

    job: str
    index: int
    address: str  # host:port

    def __str__(self) -> str:
        return f"{self.job} {self.index} ({self.address})"

    @property
    def host_and_port(self) -> tuple[str, int]:
        host, port = self.address.rsplit(":", 1)
        return host.strip("[]"), int(port)


@dataclass(frozen=True)
class Cluster:
    """The TF_CONFIG cluster, its tasks in TensorFlow's worker order (the chief first)."""

    tasks: tuple[Task, ...]
    me: Task

    @property
    def worker_id(self) -> int:
        return self.tasks.index(self.me)

    @property
    def is_chief(self) -> bool:
        return self.worker_id == 0

    @property
    def peers(self) -> tuple[Task, ...]:
        return tuple(task for task in self.tasks if task != self.me)

    def task_of_device(self, text: str) -> Optional[Task]:
        """The task a TensorFlow device or error text names ('/job:worker/replica:0/task:1')."""
        for task in self.tasks:
            if f"/job:{task.job}/replica:0/task:{task.index}" in text or \
                    f"/job:{task.job}/task:{task.index}" in text:
                return task
        return None


def parse_tf_config(text: str) -> Cluster:
    """The cluster TF_CONFIG describes; a LeanError naming what is malformed otherwise.

    Args:
        text: TF_CONFIG, e.g. `{"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
            "task": {"type": "worker", "index": 0}}`.

    Returns:
        The `Cluster` with this process's task as `me`.
    """
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise LeanError(f"{TF_CONFIG} is not valid JSON ({error})") from None
    if not isinstance(values, dict) or not isinstance(values.get("cluster"), dict) \
            or not isinstance(values.get("task"), dict):
        raise LeanError(f'{TF_CONFIG} needs {{"cluster": {{"worker": ["host:port", ...]}}, '
                        f'"task": {{"type": "worker", "index": N}}}}')
    jobs = values["cluster"]
    unknown = sorted(set(jobs) - set(JOBS))
    if unknown:
        raise LeanError(f"{TF_CONFIG}: job {unknown[0]!r} is not used by multi-worker "
                        f"training (only {' and '.join(JOBS)})")
    tasks, seen = [], set()
    for job in JOBS:
        addresses = jobs.get(job, [])
        if not isinstance(addresses, list) or not addresses and job in jobs:
            raise LeanError(f'{TF_CONFIG}: cluster "{job}" must be a non-empty list of '
                            '"host:port" addresses')
        if job == "chief" and len(addresses) > 1:
            raise LeanError(f'{TF_CONFIG}: cluster "chief" has {len(addresses)} addresses; '
                            'there is one chief')
        for index, address in enumerate(addresses):
            _check_address(address, f'cluster "{job}" entry {index}')
            if address in seen:
                raise LeanError(f"{TF_CONFIG}: address {address} is listed twice")
            seen.add(address)
            tasks.append(Task(job, index, address))
    if not tasks:
        raise LeanError(f'{TF_CONFIG}: the cluster lists no "worker" addresses')
    task = values["task"]
    job, index = task.get("type"), task.get("index")
    if job not in jobs:
        raise LeanError(f"{TF_CONFIG}: task type {job!r} is not a job of the cluster "
                        f"({', '.join(sorted(jobs))})")
    count = len(jobs[job])
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise LeanError(f"{TF_CONFIG}: task index {index!r} is not one of the cluster's "
                        f"{count} {job} addresses (0 to {count - 1})")
    return Cluster(tuple(tasks), next(t for t in tasks if (t.job, t.index) == (job, index)))


def _check_address(address, where: str) -> None:
    if not isinstance(address, str) or ":" not in address:
        raise LeanError(f'{TF_CONFIG}: {where} is {address!r}, not "host:port"')
    host, port = address.rsplit(":", 1)
    if not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
        raise LeanError(f'{TF_CONFIG}: {where} is {address!r}, not "host:port" with a port '
                        "from 1 to 65535")


def cluster_from_environment(environ: Optional[dict] = None) -> Cluster:
    """The cluster of $TF_CONFIG, which multi-worker training needs."""
    text = (os.environ if environ is None else environ).get(TF_CONFIG, "").strip()
    if not text:
        raise LeanError(f"--strategy multi-worker needs {TF_CONFIG} to describe the cluster "
                        f"and this machine's place in it (see {README_SECTION})")
    return parse_tf_config(text)


@dataclass
class Placement:
    """The strategy a run trains under and, for multi-worker training, its cluster."""

    strategy: object  # tf.distribute.Strategy
    description: str
    cluster: Optional[Cluster] = None
    watchdog: Optional["StartupWatchdog"] = None

    @property
    def is_chief(self) -> bool:
        """Whether this process owns the run directory (every single-process run does)."""
        return self.cluster is None or self.cluster.is_chief

    @property
    def num_replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)


def place(distribution: DistributionConfig, multi_gpu: bool = True) -> Placement:
    """Creates the strategy `distribution.strategy` names.

    Args:
        distribution: the strategy and, for multi-worker, the start-up timeout.
        multi_gpu: whether `auto` may use MirroredStrategy (`--no-multi-gpu` says no).

    Returns:
        The `Placement`. A multi-worker one has connected to its cluster (or this process was
        stopped with one line naming the peers that did not answer); its watchdog stays armed
        until `agree_with_chief` has run.
    """
    import tensorflow as tf

    name = distribution.strategy
    if name == "multi-worker":
        return _multi_worker_placement(distribution)
    gpus = tf.config.list_physical_devices("GPU")
    if name == "mirrored" or (name == "auto" and multi_gpu and len(gpus) > 1):
        strategy = tf.distribute.MirroredStrategy()
        return Placement(strategy, f"{_devices(gpus)} with MirroredStrategy")
    where = "GPU 0" if gpus else "CPU (no GPU found)"
    if len(gpus) > 1:
        why = "--strategy one-device" if name == "one-device" else "--no-multi-gpu"
        where += f" of {len(gpus)} ({why})"
    return Placement(tf.distribute.get_strategy(), where)


def _devices(gpus: list) -> str:
    if not gpus:
        return "the CPU"
    return f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''}"


def _keras_multi_worker_strategy():
    """MultiWorkerMirroredStrategy whose `reduce` takes what Keras 3's fit gives it: nested
    batches and scalar logs. Keras 3.15 reduces a structure, and scalars `axis=0`, which TF's
    multi-worker strategy rejects (keras-team/keras#20585); here each tensor is reduced alone,
    scalars across replicas only."""
    import tensorflow as tf

    class KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            def reduce_one(item):
                rank = self.experimental_local_results(item)[0].shape.rank
                return super(KerasMultiWorkerMirroredStrategy, self).reduce(
                    reduce_op, item, axis if rank else None)

            return tf.nest.map_structure(reduce_one, value)

    return KerasMultiWorkerMirroredStrategy()


def _multi_worker_placement(distribution: DistributionConfig) -> Placement:
    cluster = cluster_from_environment()
    _check_port_free(cluster.me)
    # TensorFlow waits for the whole cluster inside the strategy's constructor without
    # releasing the GIL or heeding SIGTERM (measured: 13 min, still waiting), so the deadline
    # is kept by a separate process.
    watchdog = StartupWatchdog(cluster, distribution.peer_timeout)
    strategy = _keras_multi_worker_strategy()
    gpus = [device for device in strategy.extended.worker_devices if "GPU" in device.upper()]
    description = (f"{cluster.me}, {'the chief' if cluster.is_chief else 'not the chief'}, "
                   f"{_devices(gpus)} here, {strategy.num_replicas_in_sync} replicas on "
                   f"{len(cluster.tasks)} machines with MultiWorkerMirroredStrategy")
    return Placement(strategy, description, cluster, watchdog)


def _check_port_free(task: Task) -> None:
    host, port = task.host_and_port
    del host  # TensorFlow's server listens on every interface
    with socket.socket() as probe:
        # As gRPC does: connections of an earlier run in TIME_WAIT do not take the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as error:
            raise LeanError(f"{TF_CONFIG}: this machine is {task}, but port {port} is taken "
                            f"here ({error.strerror}): another process listens on it") from None


class StartupWatchdog:
    """A child process that stops this one with one line when the cluster has not come
    together within `timeout` seconds; `disarm()` once it has."""

    def __init__(self, cluster: Cluster, timeout: float):
        peers = [[str(task), task.address] for task in cluster.peers]
        self._process = subprocess.Popen(
            [sys.executable, "-m", "lean.distribute", "watch", str(os.getpid()), str(timeout),
             json.dumps(peers)],
            stdin=subprocess.PIPE, close_fds=True,
        )

    def disarm(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()  # EOF: the child exits quietly
            self._process.wait(timeout=30)


def _watch(parent_pid: int, timeout: float, peers: list) -> None:
    """The watchdog child: waits for EOF on stdin (disarmed, or the parent exited); after
    `timeout` seconds without it, prints why the cluster did not form and kills the parent."""
    readable, _, _ = select.select([sys.stdin], [], [], timeout)
    if readable:
        return
    problems = [f"{name} {_probe(address)}" for name, address in peers]
    print(f"lean: error: the {TF_CONFIG} cluster did not come together within {timeout:g} s "
          f"(--peer-timeout): {'; '.join(problems)}. Start `lean train` with the same settings "
          "on every machine of the cluster", file=sys.stderr, flush=True)
    os.kill(parent_pid, signal.SIGKILL)


def _probe(address: str) -> str:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            return "listens"
    except socket.gaierror:
        return "has an unknown host name"
    except ConnectionRefusedError:
        return "refuses connections (not started yet, or another port)"
    except OSError:
        return "does not answer (a wrong address, or a firewall)"


def fingerprint(value) -> float:
    """48 bits of the SHA-256 of `value`'s JSON: exact in a float64 collective."""
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).digest()
    return float(int.from_bytes(digest[:6], "big"))


def broadcast_from_chief(strategy, values: list[np.ndarray]) -> list[np.ndarray]:
    """Every worker receives the chief's `values` (the others' are ignored): an all-reduce
    sum to which only replica 0, on the chief, contributes."""
    import tensorflow as tf

    @tf.function
    def contribute(values):
        first = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0)
        return [tf.where(first, value, tf.zeros_like(value)) for value in values]

    per_replica = strategy.run(contribute, args=([tf.constant(value) for value in values],))
    summed = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    return [np.asarray(value) for value in summed]


def agree_with_chief(placement: Placement, facts: dict, state: Optional[dict]) -> dict:
    """Checks that every worker has the chief's `facts` (settings, labels, data) and returns
    the chief's training state on every worker; a LeanError on every worker otherwise.

    Args:
        facts: name -> JSON-able value that must be equal on all workers, e.g.
            {"settings": ..., "train windows": ...}.
        state: the chief's training state (None: a new run); ignored on the other workers.

    Returns:
        {"epoch", "completed", "best_score", "best_epoch"} as the chief has them.
    """
    state = state or {}
    names = sorted(facts)
    mine = np.array([fingerprint(facts[name]) for name in names]
                    + [state.get("epoch", 0), bool(state.get("completed")),
                       -1 if state.get("best_epoch") is None else state["best_epoch"],
                       np.nan if state.get("best_score") is None else state["best_score"]],
                    dtype=np.float64)
    (chief,) = broadcast_from_chief(placement.strategy, [mine])
    differing = [name for name, a, b in zip(names, mine, chief) if a != b]
    # Every worker must stop if one does, or the others would wait for it until its heartbeat
    # times out: the count of disagreeing workers is summed across the cluster.
    (mismatched,) = _sum_over_workers(placement.strategy, float(bool(differing)))
    if placement.watchdog is not None:
        placement.watchdog.disarm()
    if differing:
        raise LeanError(f"{placement.cluster.me}: its {', '.join(differing)} differ from the "
                        "chief's; every worker needs the same command and a copy of the same "
                        "dataset")
    if mismatched:
        raise LeanError(f"{int(mismatched)} worker(s) have other settings or data than the chief "
                        "(each says which); every worker needs the same command and dataset")
    epoch, completed, best_epoch, best_score = chief[len(names):]
    return {"epoch": int(epoch), "completed": bool(completed),
            "best_epoch": None if best_epoch < 0 else int(best_epoch),
            "best_score": None if np.isnan(best_score) else float(best_score)}


def _sum_over_workers(strategy, value: float) -> list[np.ndarray]:
    import tensorflow as tf

    replicas_here = len(strategy.extended.worker_devices)

    @tf.function
    def contribute(value):
        # One replica per worker contributes: the first of its local devices.
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return tf.where(tf.equal(replica % replicas_here, 0), value, tf.zeros_like(value))

    per_replica = strategy.run(contribute, args=(tf.constant(value, tf.float64),))
    return [np.asarray(strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None))]


def checkpoint_values(checkpoint) -> list[np.ndarray]:
    """The weights and optimizer variables of a loaded resume checkpoint, in the order
    `restore_from_chief` assigns them. Load it outside the multi-worker strategy's scope: there,
    creating a variable is a collective that every worker would have to join."""
    return [np.asarray(v.numpy()) for v in list(checkpoint.weights)
            + list(checkpoint.optimizer.variables)]


def restore_from_chief(placement: Placement, model, chief_values: Optional[list]) -> None:
    """Gives every worker's freshly built and compiled `model` (inside the strategy's scope)
    the weights and optimizer state of the chief's resume checkpoint, which only the chief
    reads: `chief_values` from `checkpoint_values` on the chief, None elsewhere."""
    model.optimizer.build(model.trainable_variables)
    targets = list(model.weights) + list(model.optimizer.variables)
    if placement.is_chief:
        if [value.shape for value in chief_values] != [tuple(v.shape) for v in targets]:
            raise LeanError("the resume checkpoint does not fit the model its config builds "
                            f"({len(chief_values)} against {len(targets)} variables)")
        values = chief_values
    else:
        values = [np.zeros(tuple(v.shape), dtype=v.dtype) for v in targets]
    for target, value in zip(targets, broadcast_from_chief(placement.strategy, values)):
        target.assign(value)


def check_batches(placement: Placement, batch_size: int, train_windows: int,
                  val_windows: int) -> None:
    """What splitting each global batch over the replicas needs: a batch size that divides
    evenly, and a first train and val batch that is whole (Keras 3 averages the first batch
    over the replicas to build the model's state, so their parts must have one shape)."""
    replicas = placement.num_replicas
    if replicas == 1:
        return
    if batch_size % replicas:
        raise LeanError(f"--batch-size {batch_size} does not split evenly over {replicas} "
                        f"replicas ({placement.description}); use a multiple of {replicas}")
    for split, windows in (("train (per epoch)", train_windows), ("val", val_windows)):
        if windows < batch_size:
            raise LeanError(f"{split} has {windows} windows, fewer than one global batch of "
                            f"{batch_size}: lower --batch-size for {replicas} replicas")


def replica_datasets(placement: Placement, build: Callable):
    """A distributed dataset whose input pipelines each feed their own replicas.

    Args:
        build: ReplicaSlice -> tf.data.Dataset of the parts of each global batch that those
            replicas take (`lean.data.pipeline.build_window_dataset(..., replicas=...)`).
    """
    def per_pipeline(context):
        local = context.num_replicas_in_sync // context.num_input_pipelines
        return build(ReplicaSlice(first=context.input_pipeline_id * local, count=local,
                                  total=context.num_replicas_in_sync))

    return placement.strategy.distribute_datasets_from_function(per_pipeline)


@contextlib.contextmanager
def lost_peers_explained(placement: Placement, epochs_done: Callable[[], int]) -> Iterator[None]:
    """Turns the error of a collective that failed because a worker stopped (killed, crashed,
    unplugged: its heartbeats stopped, or its connection reset) into one line naming it."""
    import tensorflow as tf

    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
            tf.errors.DeadlineExceededError) as error:
        if placement.cluster is None:
            raise
        text = str(error)
        peer = placement.cluster.task_of_device(text)
        who = str(peer) if peer and peer != placement.cluster.me else "a worker"
        if "unhealthy" in text or "heartbeat" in text:
            how = "its heartbeats stopped"
        elif "reset by peer" in text or "Socket closed" in text or "Connection refused" in text:
            how = "its connection broke"
        else:
            how = f"{type(error).__name__}: {text.strip().splitlines()[0][:160]}"
        done = epochs_done()
        raise LeanError(
            f"lost {who} during epoch {done + 1} ({how}); start every worker again with the "
            f"same command to resume after epoch {done}") from None


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "watch":
    _watch(int(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4]))
