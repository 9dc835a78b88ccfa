"""tf.data pipelines of training windows of the model's shape with their clip's targets (the
dataset's label matrix: multi-hot, or one-hot for single-label), read from the audio cache."""

from __future__ import annotations

import functools
import math
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from lean.data.audio import AudioCache
from lean.data.dataset import Clip, Dataset
from lean.data.windows import training_windows
from lean.errors import LeanError

# Decoding is I/O and C code (libsndfile, soxr) that releases the GIL: a few threads pay off.
DECODE_THREADS = max(2, min(8, os.cpu_count() or 2))
# Clips decoded ahead of the one being used, so decoding overlaps the model's work.
DECODE_LOOKAHEAD = 32
# Clips whose decoded audio a training reader keeps memory-mapped.
MAPPED_CLIPS = 4096


def default_cache_dir() -> Path:
    """Where decoded audio is cached: $LEAN_CACHE_DIR, else the user's cache folder."""
    if os.environ.get("LEAN_CACHE_DIR"):
        return Path(os.environ["LEAN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lean" / "audio"


@dataclass(frozen=True)
class ReplicaSlice:
    """The replicas of a synchronous multi-replica step that one input pipeline feeds: every
    global batch is cut into `total` contiguous parts (sizes differing by at most one) and this
    pipeline yields parts `first` .. `first + count - 1` of each, in order (one worker of
    MultiWorkerMirroredStrategy feeds its own devices' replicas)."""

    first: int
    count: int
    total: int


@dataclass
class WindowIndex:
    """Every training window of a split: which clip it comes from and its position there."""

    clips: list[Clip]
    clip_of_window: np.ndarray  # int64 [num_windows], index into `clips`
    window_in_clip: np.ndarray  # int64 [num_windows]
    # (file, one-line error naming the file and the reason) of the clips that failed to decode.
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def num_windows(self) -> int:
        return int(len(self.clip_of_window))


def decode_ahead(keys: Iterable, load: Callable, lookahead: int = DECODE_LOOKAHEAD) -> Iterator:
    """Yields `(key, audio or LeanError)` in order while later keys decode in threads."""
    def attempt(key):
        try:
            return load(key)
        except LeanError as error:
            return error

    keys = iter(keys)
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        pending = deque()
        for key in keys:
            pending.append((key, pool.submit(attempt, key)))
            if len(pending) >= lookahead:
                break
        while pending:
            key, future = pending.popleft()
            next_key = next(keys, None)
            if next_key is not None:
                pending.append((next_key, pool.submit(attempt, next_key)))
            yield key, future.result()


def build_window_index(clips: Sequence[Clip], cache: AudioCache, window_samples: int,
                       on_bad_audio: str = "skip", desc: str = "indexing windows",
                       progress: bool = True) -> WindowIndex:
    """Decodes every clip once (filling the cache) and lists its training windows.

    Args:
        clips: the clips of one split.
        cache: the decoded-audio cache the pipeline will read from, at the model's sample rate
            and channels (`AudioCache(dir, input.sample_rate, input.channels)`).
        window_samples: samples per channel in one window (the model's
            `input.window_samples`: 16000 for 1 s at 16 kHz, 44100 for 2 s at 22.05 kHz).
        on_bad_audio: "skip" (listed in `.skipped`) or "fail" (raise the file's error).

    Returns:
        The `WindowIndex` of the clips that decoded.
    """
    from tqdm import tqdm

    if on_bad_audio not in ("skip", "fail"):
        raise LeanError(f"--on-bad-audio must be skip or fail, not '{on_bad_audio}'")
    kept, clip_of_window, window_in_clip, skipped = [], [], [], []
    decoded = decode_ahead(clips, lambda clip: cache.load(clip.path))
    for clip, audio in tqdm(decoded, total=len(clips), desc=desc, unit="clip",
                            disable=not progress, leave=False):
        if isinstance(audio, LeanError):
            if on_bad_audio == "fail":
                raise audio
            skipped.append((str(clip.path), str(audio)))
            continue
        count = count_training_windows(len(audio), window_samples)
        clip_of_window.append(np.full(count, len(kept), dtype=np.int64))
        window_in_clip.append(np.arange(count, dtype=np.int64))
        kept.append(clip)
    empty = np.zeros(0, dtype=np.int64)
    return WindowIndex(
        clips=kept,
        clip_of_window=np.concatenate(clip_of_window) if clip_of_window else empty,
        window_in_clip=np.concatenate(window_in_clip) if window_in_clip else empty,
        skipped=skipped,
    )


def count_training_windows(num_samples: int, window_samples: int) -> int:
    """How many windows `training_windows` cuts from a clip of `num_samples` samples."""
    # Asked of the windowing code itself so that the index can never disagree with it.
    probe = np.zeros(num_samples, dtype=np.float32)
    return int(training_windows(probe, window_samples).shape[0])


class WindowReader:
    """Reads window k of clip c from the cache, as `training_windows` cuts it."""

    def __init__(self, index: WindowIndex, cache: AudioCache, window_samples: int,
                 label_matrix: np.ndarray, window_targets: Optional[np.ndarray] = None):
        self.index = index
        self.window_samples = window_samples
        # One window's shape, as the model's InputSpec.shape: [window_samples] mono,
        # [window_samples, channels] otherwise.
        channels = cache.channels
        self.window_shape = (window_samples,) if channels == 1 else (window_samples, channels)
        self.label_matrix = label_matrix
        # Per-window target columns appended to the clip's (distillation's teacher outputs).
        self.window_targets = window_targets
        # Memory maps of recently used clips: a clip's windows come back every epoch, and opening
        # the cache file per window would cost more than slicing it. Bounded: the kernel limits
        # how many mappings a process may hold.
        self._audio_of_clip = functools.lru_cache(maxsize=MAPPED_CLIPS)(
            lambda clip_id: cache.load(index.clips[clip_id].path))

    def read(self, window_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        windows = np.empty((len(window_ids), *self.window_shape), dtype=np.float32)
        for row, window_id in enumerate(window_ids):
            audio = self._audio_of_clip(int(self.index.clip_of_window[window_id]))
            windows[row] = self._window(audio, int(self.index.window_in_clip[window_id]))
        return windows, self._targets(window_ids)

    def read_clip_starts(self, window_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The clips' first `window_samples` (all of a shorter clip, unrepeated), every one cut
        to the batch's shortest, with their targets."""
        starts = [self._audio_of_clip(int(self.index.clip_of_window[window_id]))
                  [:self.window_samples] for window_id in window_ids]
        length = min(len(start) for start in starts)
        windows = np.stack([np.asarray(start[:length], dtype=np.float32) for start in starts])
        return windows, self._targets(window_ids)

    def _targets(self, window_ids: np.ndarray) -> np.ndarray:
        """The windows' clip targets, with the per-window target columns appended."""
        labels = self.label_matrix[self.index.clip_of_window[window_ids]]
        if self.window_targets is not None:
            labels = np.concatenate([labels, self.window_targets[window_ids]], axis=1)
        return labels

    def _window(self, audio: np.ndarray, position: int) -> np.ndarray:
        start = position * self.window_samples
        if start + self.window_samples <= len(audio):
            return audio[start:start + self.window_samples]  # the common case: a plain slice
        return training_windows(np.asarray(audio), self.window_samples)[position]


def iter_window_batches(index: WindowIndex, cache: AudioCache, window_samples: int,
                        batch_size: int = 256) -> Iterator[np.ndarray]:
    """The windows of `index` in index order, unshuffled and unaugmented, as float32 batches
    (for one pass of a model over a split: a teacher's outputs, a network's features)."""
    reader = WindowReader(index, cache, window_samples,
                          np.zeros((len(index.clips), 0), dtype=np.float32))
    for start in range(0, index.num_windows, batch_size):
        yield reader.read(np.arange(start, min(start + batch_size, index.num_windows)))[0]


def build_window_dataset(index: WindowIndex, dataset: Dataset, cache: AudioCache,
                         window_samples: int, batch_size: int, shuffle_seed: Optional[int] = None,
                         epochs: Optional[tuple[int, int]] = None,
                         max_windows_per_epoch: Optional[int] = None,
                         clip_starts: bool = False,
                         window_targets: Optional[np.ndarray] = None,
                         replicas: Optional[ReplicaSlice] = None):
    """A batched, prefetching tf.data pipeline of (windows, targets [B, C]).

    Windows are [B, window_samples] for a mono cache, [B, window_samples, channels] otherwise;
    targets are the dataset's label matrix rows (multi-hot, or one-hot for single-label).
    With `clip_starts` each clip gives one example, its first `window_samples` (a shorter clip
    whole), and each batch is cut to its shortest member ([B, shortest(, channels)]): how the
    CAB-CNN paper trains on clips of any length, for a model whose time axis is open.

    Args:
        index: the split's windows (from `build_window_index`).
        dataset: gives the label matrix.
        cache: decoded audio at the model's rate and channels, memory-mapped by the readers.
        window_samples: samples per channel in one window.
        batch_size: windows per batch; each epoch ends with its own (possibly partial) batch.
        shuffle_seed: None: windows in order, one pass (validation). Else the windows of epoch
            e are a permutation drawn from (seed, e) alone, so a resumed run sees exactly the
            order an uninterrupted one would have seen.
        epochs: (first, end) epoch numbers to generate when shuffling (training).
        max_windows_per_epoch: keep only this many windows of each epoch's permutation.
        clip_starts: one example per clip, batches cut to their shortest (see above).
        window_targets: float32 [num_windows, E] columns appended to each window's targets,
            which become [B, C + E] (knowledge distillation's teacher probabilities).
        replicas: feed only these replicas' parts of each global batch of `batch_size` windows
            (None: whole batches, one replica). Training parts then carry sample weights that
            make the replicas' summed gradient the global batch's mean gradient, as one process
            computes it, also where the epoch's last batch splits unevenly.

    Returns:
        `tf.data.Dataset` of `(windows, labels)` float32 batches, `(windows, labels, weights)`
        for training with `replicas`.
    """
    import tensorflow as tf

    reader = WindowReader(index, cache, window_samples, dataset.label_matrix(index.clips),
                          window_targets)
    # The examples, as window ids: every window, or each clip's first.
    example_ids = training_example_ids(index, clip_starts)
    num_windows = len(example_ids)
    if num_windows == 0:
        raise LeanError(f"{dataset.root}: no usable windows in this split")
    read = reader.read_clip_starts if clip_starts else reader.read
    window_shape = (None, *reader.window_shape[1:]) if clip_starts else reader.window_shape
    num_targets = dataset.num_classes
    if window_targets is not None:
        if len(window_targets) != index.num_windows:
            raise LeanError(f"{len(window_targets)} per-window targets for {index.num_windows} "
                            "windows")
        num_targets += window_targets.shape[1]

    def read_batch(window_ids, *weights):
        windows, labels = tf.numpy_function(
            read, [window_ids], (tf.float32, tf.float32), stateful=False
        )
        windows.set_shape([None, *window_shape])
        labels.set_shape([None, num_targets])
        return (windows, labels, *weights)

    if shuffle_seed is None:
        ids = tf.data.Dataset.from_tensor_slices(example_ids).batch(batch_size)
    else:
        first, end = epochs
        per_epoch = min(num_windows, max_windows_per_epoch or num_windows)

        def epoch_ids(epoch):
            order = tf.random.experimental.stateless_shuffle(
                tf.constant(example_ids),
                seed=tf.stack([tf.cast(shuffle_seed, tf.int64), epoch]),
            )
            return tf.data.Dataset.from_tensor_slices(order[:per_epoch]).batch(batch_size)

        ids = tf.data.Dataset.range(first, end).flat_map(epoch_ids)
    if replicas is not None:
        ids = ids.flat_map(functools.partial(_replica_parts, replicas=replicas,
                                             weighted=shuffle_seed is not None))
    options = tf.data.Options()
    options.deterministic = True
    # Each worker reads its own parts; tf.distribute must not shard the stream again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return (
        ids.map(read_batch, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
        .with_options(options)
    )


def training_example_ids(index: WindowIndex, clip_starts: bool = False) -> np.ndarray:
    """Window ids of a split's training examples: all windows, or each clip's first window."""
    if clip_starts:
        return np.flatnonzero(index.window_in_clip == 0).astype(np.int64)
    return np.arange(index.num_windows, dtype=np.int64)


def _replica_parts(batch_ids, replicas: ReplicaSlice, weighted: bool):
    """The parts of one global batch of window ids that `replicas` feeds: a dataset of `count`
    id vectors (with their sample weights when `weighted`)."""
    import tensorflow as tf

    size = tf.size(batch_ids, out_type=tf.int64)
    # Part r holds ids [r * size // total, (r + 1) * size // total): contiguous, near-equal.
    bounds = tf.range(replicas.total + 1, dtype=tf.int64) * size // replicas.total

    def part(replica):
        begin, end = bounds[replica], bounds[replica + 1]
        ids = batch_ids[begin:end]
        if not weighted:
            return ids
        # Keras averages a replica's loss over its own n_r windows and divides it by the
        # replica count R; weighting its windows by R * n_r / size makes the sum over replicas
        # the mean over all `size` windows (an empty part contributes nothing).
        weight = tf.cast(replicas.total * (end - begin), tf.float32) / tf.cast(size, tf.float32)
        return ids, tf.fill(tf.reshape(end - begin, [1]), weight)

    return tf.data.Dataset.range(replicas.first, replicas.first + replicas.count).map(part)


def steps_per_epoch(num_windows: int, batch_size: int,
                    max_windows_per_epoch: Optional[int] = None) -> int:
    per_epoch = min(num_windows, max_windows_per_epoch or num_windows)
    return int(math.ceil(per_epoch / batch_size))
