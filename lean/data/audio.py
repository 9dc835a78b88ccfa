"""Audio decoding to the rate and channels a model takes (float32), with checks for broken files
and an on-disk cache."""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from pathlib import Path
from typing import Iterable

import numpy as np

from lean.errors import LeanError
from lean.io import atomic_path, atomic_write_text

DEFAULT_SAMPLE_RATE = 16000
# soxr's "HQ" preset (the one librosa calls soxr_hq): 20-bit precision, steep anti-aliasing.
RESAMPLE_QUALITY = "HQ"
# Compressed formats report estimated frame counts; allow this slack before calling it truncated.
FRAME_COUNT_TOLERANCE = 0.01
# WAV writers that stream to a pipe leave these placeholder sizes in the header.
UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF)


class BadAudioError(LeanError):
    """An audio file that cannot be used: missing, empty, truncated, not audio, NaN/Inf."""


def load_audio(path: str | Path, sample_rate: int = DEFAULT_SAMPLE_RATE,
               channels: int = 1) -> np.ndarray:
    """Decodes an audio file to float32 at `sample_rate` with `channels` channels.

    Args:
        path: a WAV, FLAC, OGG or MP3 file at any sample rate, integer or float samples, any
            number of channels.
        sample_rate: the output rate; other rates are resampled with soxr (HQ).
        channels: 1: the file's channels are averaged to mono. More: a mono file's channel is
            repeated on every output channel, a file with exactly `channels` channels is kept
            as it is, and any other channel count is a BadAudioError (no guessing which
            channels a model expects).

    Returns:
        float32 array [samples] for mono, [samples, channels] otherwise, roughly in [-1, 1].

    Raises:
        BadAudioError: one line naming the file and what is wrong with it.
    """
    if channels < 1:
        raise LeanError(f"channels must be at least 1, got {channels}")
    path = Path(path)
    samples, source_rate = _decode(path)
    if samples.shape[0] == 0:
        raise BadAudioError(f"{path}: no audio samples")
    if not np.isfinite(samples).all():
        raise BadAudioError(f"{path}: contains NaN or Inf samples")
    source_channels = samples.shape[1]
    if channels == 1:
        audio = samples.mean(axis=1, dtype=np.float32) if source_channels > 1 else samples[:, 0]
    elif source_channels == channels:
        audio = samples
    elif source_channels == 1:
        audio = samples[:, 0]  # resampled once, then repeated on every channel
    else:
        raise BadAudioError(f"{path}: has {source_channels} channels; the model takes "
                            f"{channels} (or a mono file)")
    if source_rate != sample_rate:
        import soxr  # imported here: only needed when rates differ

        audio = soxr.resample(audio, source_rate, sample_rate, quality=RESAMPLE_QUALITY)
    if channels > 1 and audio.ndim == 1:
        audio = np.repeat(audio[:, None], channels, axis=1)
    return np.ascontiguousarray(audio, dtype=np.float32)


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """Samples [frames, channels] float32 and the file's sample rate, or BadAudioError."""
    import soundfile

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise BadAudioError(f"{path}: file not found") from None
    except OSError as error:
        raise BadAudioError(f"{path}: cannot read ({error.strerror})") from None
    if size == 0:
        raise BadAudioError(f"{path}: empty file (0 bytes)")
    try:
        handle = soundfile.SoundFile(str(path))
    except (soundfile.LibsndfileError, RuntimeError, ValueError, OSError) as error:
        return _decode_fallback(path, _libsndfile_reason(error))
    try:
        with handle:
            declared_frames, source_rate, audio_format = handle.frames, handle.samplerate, handle.format
            samples = handle.read(dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError, OSError) as error:
        raise BadAudioError(f"{path}: truncated or corrupt audio ({_libsndfile_reason(error)})") from None
    if source_rate <= 0:
        raise BadAudioError(f"{path}: invalid sample rate {source_rate}")
    _check_complete(path, audio_format, samples.shape[0], declared_frames)
    return samples, source_rate


def _libsndfile_reason(error: Exception) -> str:
    reason = str(getattr(error, "error_string", "") or error).strip().rstrip(".")
    # libsndfile's MP3 reader says this of any existing file it cannot parse.
    if "does not exist" in reason:
        return "unrecognised format"
    return reason.removeprefix("Error : ")


def _decode_fallback(path: Path, reason: str) -> tuple[np.ndarray, int]:
    """Formats libsndfile cannot open (e.g. MP3 before libsndfile 1.1): librosa/audioread."""
    not_audio = BadAudioError(f"{path}: not a readable audio file ({reason})")
    if path.suffix.lower() not in (".mp3", ".m4a", ".aac", ".mp4"):
        raise not_audio
    try:
        import warnings

        import librosa

        with warnings.catch_warnings():  # librosa warns that audioread is deprecated
            warnings.simplefilter("ignore")
            samples, source_rate = librosa.load(str(path), sr=None, mono=False, dtype=np.float32)
    except Exception:  # audioread raises many unrelated types (no backend, decode error...)
        raise not_audio from None
    samples = np.atleast_2d(samples).T  # librosa: [channels, frames] -> [frames, channels]
    return np.ascontiguousarray(samples, dtype=np.float32), int(source_rate)


def _check_complete(path: Path, audio_format: str, frames_read: int, declared_frames: int) -> None:
    """libsndfile quietly decodes what it can of a cut-off file; catch the common cases."""
    if audio_format in ("WAV", "WAVEX"):
        missing = _wav_missing_bytes(path)
        if missing > 0:
            raise BadAudioError(f"{path}: truncated WAV (data chunk is {missing} bytes short)")
    elif audio_format == "OGG":
        if not _ogg_has_end_of_stream(path):
            raise BadAudioError(f"{path}: truncated OGG (no end-of-stream page)")
    if declared_frames > 0 and frames_read < declared_frames * (1 - FRAME_COUNT_TOLERANCE):
        raise BadAudioError(f"{path}: truncated ({frames_read} of {declared_frames} frames decoded)")


def _wav_missing_bytes(path: Path) -> int:
    """How many bytes of the data chunk the header promises but the file lacks (0 if complete)."""
    file_size = path.stat().st_size
    with open(path, "rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return 0  # RF64 and other variants: trust libsndfile
        offset = 12
        while offset + 8 <= file_size:
            handle.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                if chunk_size in UNKNOWN_WAV_SIZES:
                    return 0
                return max(0, offset + 8 + chunk_size - file_size)
            offset += 8 + chunk_size + (chunk_size & 1)
    return 0


def _ogg_has_end_of_stream(path: Path) -> bool:
    """The last Ogg page of a complete stream carries the end-of-stream flag (0x04)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 65536))  # an Ogg page is at most 65,307 bytes
        tail = handle.read()
    last_page = tail.rfind(b"OggS")
    if last_page < 0 or last_page + 5 >= len(tail):
        return False
    return bool(tail[last_page + 5] & 0x04)


# np.load parses the .npy header with ast.literal_eval, which CPython 3.11.7 does not make
# thread-safe ("AST constructor recursion depth mismatch" seen with parallel decode-ahead
# threads); the header parse is microseconds, so serialise it.
_NPY_OPEN_LOCK = threading.Lock()


def _open_cached(npy: Path) -> np.ndarray:
    with _NPY_OPEN_LOCK:
        return np.load(npy, mmap_mode="r")


class AudioCache:
    """Decodes each file once, at the cache's rate and channels, to float32 `.npy` files that
    later reads memory-map.

    An entry is named by a hash of the source's absolute path plus its size and mtime_ns, so an
    edited source file misses the cache and is decoded again (its stale entry is removed). Files
    that fail to decode are remembered too (a `.bad` file with the reason), so a broken file costs
    one decode attempt, not one per epoch. Entries are written atomically: concurrent readers
    (tf.data workers, a second process) see a whole entry or none.
    """

    def __init__(self, cache_dir: str | Path, sample_rate: int = DEFAULT_SAMPLE_RATE,
                 channels: int = 1):
        self.cache_dir = Path(cache_dir)
        self.sample_rate = sample_rate
        self.channels = channels

    def load(self, path: str | Path) -> np.ndarray:
        """The decoded audio as `load_audio` returns it ([samples] mono, else [samples,
        channels]), memory-mapped read-only from the cache."""
        path = Path(path).absolute()
        try:
            stat = path.stat()
        except OSError:
            raise BadAudioError(f"{path}: file not found") from None
        stem = self._stem(path)
        entry = stem.with_name(f"{stem.name}-{stat.st_size}-{stat.st_mtime_ns}")
        npy, bad = entry.with_suffix(".npy"), entry.with_suffix(".bad")
        if npy.exists():
            return _open_cached(npy)
        if bad.exists():
            raise BadAudioError(bad.read_text(encoding="utf-8").strip())
        self._remove_stale(stem, keep=(npy.name, bad.name))
        try:
            audio = load_audio(path, self.sample_rate, self.channels)
        except BadAudioError as error:
            atomic_write_text(bad, f"{error}\n")
            raise
        with atomic_path(npy) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, audio)
        return _open_cached(npy)

    def warm(self, paths: Iterable[str | Path], progress: bool = True) -> list[BadAudioError]:
        """Decodes every path not cached yet (tqdm bar on stderr); returns the files that failed."""
        from tqdm import tqdm

        failures = []
        paths = list(paths)
        for path in tqdm(paths, desc="decoding audio", unit="file", disable=not progress):
            try:
                self.load(path)
            except BadAudioError as error:
                failures.append(error)
        return failures

    def _stem(self, path: Path) -> Path:
        key = f"{path}\0{self.sample_rate}"
        if self.channels != 1:  # mono keeps the key it always had, so old caches stay valid
            key += f"\0{self.channels}ch"
        key = hashlib.sha1(key.encode("utf-8")).hexdigest()
        return self.cache_dir / key[:2] / key

    @staticmethod
    def _remove_stale(stem: Path, keep: tuple[str, ...]) -> None:
        """Entries of older versions of the source; a parallel worker may be writing `keep`."""
        if not stem.parent.is_dir():
            return
        for stale in stem.parent.glob(f"{stem.name}-*"):
            if stale.suffix in (".npy", ".bad") and stale.name not in keep:
                stale.unlink(missing_ok=True)


__all__ = ["BadAudioError", "load_audio", "AudioCache", "DEFAULT_SAMPLE_RATE"]
