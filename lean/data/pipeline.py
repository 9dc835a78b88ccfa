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
                 label_matrix: np.ndarray):
        self.index = index
        self.window_samples = window_samples
        # One window's shape, as the model's InputSpec.shape: [window_samples] mono,
        # [window_samples, channels] otherwise.
        channels = cache.channels
        self.window_shape = (window_samples,) if channels == 1 else (window_samples, channels)
        self.label_matrix = label_matrix
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
        labels = self.label_matrix[self.index.clip_of_window[window_ids]]
        return windows, labels

    def _window(self, audio: np.ndarray, position: int) -> np.ndarray:
        start = position * self.window_samples
        if start + self.window_samples <= len(audio):
            return audio[start:start + self.window_samples]  # the common case: a plain slice
        return training_windows(np.asarray(audio), self.window_samples)[position]


def build_window_dataset(index: WindowIndex, dataset: Dataset, cache: AudioCache,
                         window_samples: int, batch_size: int, shuffle_seed: Optional[int] = None,
                         epochs: Optional[tuple[int, int]] = None,
                         max_windows_per_epoch: Optional[int] = None,
                         replicas: Optional[ReplicaSlice] = None):
    """A batched, prefetching tf.data pipeline of (windows, targets [B, C]).

    Windows are [B, window_samples] for a mono cache, [B, window_samples, channels] otherwise;
    targets are the dataset's label matrix rows (multi-hot, or one-hot for single-label).

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
        replicas: feed only these replicas' parts of each global batch of `batch_size` windows
            (None: whole batches, one replica). Training parts then carry sample weights that
            make the replicas' summed gradient the global batch's mean gradient, as one process
            computes it, also where the epoch's last batch splits unevenly.

    Returns:
        `tf.data.Dataset` of `(windows, labels)` float32 batches, `(windows, labels, weights)`
        for training with `replicas`.
    """
    import tensorflow as tf

    reader = WindowReader(index, cache, window_samples, dataset.label_matrix(index.clips))
    num_classes = dataset.num_classes
    num_windows = index.num_windows
    if num_windows == 0:
        raise LeanError(f"{dataset.root}: no usable windows in this split")

    def read_batch(window_ids, *weights):
        windows, labels = tf.numpy_function(
            reader.read, [window_ids], (tf.float32, tf.float32), stateful=False
        )
        windows.set_shape([None, *reader.window_shape])
        labels.set_shape([None, num_classes])
        return (windows, labels, *weights)

    if shuffle_seed is None:
        ids = tf.data.Dataset.range(num_windows).batch(batch_size)
    else:
        first, end = epochs
        per_epoch = min(num_windows, max_windows_per_epoch or num_windows)

        def epoch_ids(epoch):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(num_windows, dtype=tf.int64),
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
