"""Audio decoding across formats, bit depths, rates and channels; broken files; the decode cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

import lean.data.audio as audio_module
from lean.data.audio import AudioCache, BadAudioError, load_audio

TONE_HZ = 440.0
SECONDS = 0.5


def tone(rate: int, channels: int) -> np.ndarray:
    """Channel k holds the 440 Hz tone at amplitude 0.4 / (k + 1): the mono mix is known exactly."""
    t = np.arange(int(rate * SECONDS)) / rate
    base = np.sin(2 * np.pi * TONE_HZ * t)
    return np.stack([0.4 / (k + 1) * base for k in range(channels)], axis=1)


def expected_mono(channels: int) -> np.ndarray:
    """The analytic 16 kHz mono result: mean of the channel amplitudes times the tone."""
    amplitude = np.mean([0.4 / (k + 1) for k in range(channels)])
    t = np.arange(int(16000 * SECONDS)) / 16000
    return amplitude * np.sin(2 * np.pi * TONE_HZ * t)


LOSSLESS = [
    ("WAV", "PCM_U8", ".wav", 8000, 1, 0.01),
    ("WAV", "ULAW", ".wav", 8000, 2, 0.02),
    ("WAV", "PCM_16", ".wav", 44100, 2, 1e-3),
    ("WAV", "PCM_24", ".wav", 22050, 3, 1e-3),
    ("WAV", "PCM_32", ".wav", 48000, 1, 1e-3),
    ("WAV", "FLOAT", ".wav", 16000, 2, 1e-6),
    ("WAV", "DOUBLE", ".wav", 32000, 1, 1e-3),
    ("FLAC", "PCM_16", ".flac", 48000, 2, 1e-3),
    ("FLAC", "PCM_24", ".flac", 11025, 1, 1e-3),
]


@pytest.mark.parametrize("container,subtype,extension,rate,channels,tolerance", LOSSLESS)
def test_lossless_formats_decode_to_the_analytic_16k_mono_signal(
    tmp_path, container, subtype, extension, rate, channels, tolerance
):
    path = tmp_path / f"tone{extension}"
    soundfile.write(path, tone(rate, channels), rate, format=container, subtype=subtype)
    decoded = load_audio(path)
    reference = expected_mono(channels)
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    assert abs(decoded.shape[0] - reference.shape[0]) <= 1
    # Resampler edges ring; compare the middle, where a good resampler is near-transparent.
    middle = slice(400, reference.shape[0] - 400)
    error = np.max(np.abs(decoded[middle] - reference[middle]))
    assert error < tolerance, f"max error {error}"


@pytest.mark.parametrize(
    "container,subtype,extension,rate",
    [("OGG", "VORBIS", ".ogg", 44100), ("OGG", "OPUS", ".opus", 48000), ("MP3", "MPEG_LAYER_III", ".mp3", 44100)],
)
def test_lossy_formats_keep_the_tone(tmp_path, container, subtype, extension, rate):
    if subtype not in soundfile.available_subtypes(container):
        pytest.skip(f"libsndfile {soundfile.__libsndfile_version__} cannot write {container}/{subtype}")
    path = tmp_path / f"tone{extension}"
    soundfile.write(path, tone(rate, 2), rate, format=container, subtype=subtype)
    decoded = load_audio(path)
    # MP3 encoders add a few ms of priming delay; judge by level and pitch, not sample alignment.
    assert abs(decoded.shape[0] - 8000) < 0.05 * 8000
    spectrum = np.abs(np.fft.rfft(decoded * np.hanning(decoded.shape[0])))
    peak_hz = np.argmax(spectrum) * 16000 / decoded.shape[0]
    assert abs(peak_hz - TONE_HZ) < 4
    rms_expected = np.mean([0.4, 0.2]) / np.sqrt(2)
    assert np.sqrt(np.mean(decoded[1000:-1000] ** 2)) == pytest.approx(rms_expected, rel=0.1)


def test_other_output_rates_are_honoured(tmp_path):
    path = tmp_path / "tone.wav"
    soundfile.write(path, tone(16000, 1), 16000, subtype="PCM_16")
    assert load_audio(path, sample_rate=8000).shape == (4000,)
    assert load_audio(path).shape == (8000,)


def stereo_44k(path: Path) -> np.ndarray:
    """A 44.1 kHz stereo file whose channels differ (440 Hz left, 1 kHz right); its samples."""
    t = np.arange(int(44100 * SECONDS)) / 44100
    samples = np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 1000 * t)], axis=1)
    soundfile.write(path, samples, 44100, subtype="FLOAT")
    return samples.astype(np.float32)


def test_stereo_44k_decodes_to_22k_mono_and_48k_stereo_as_soxr_does(tmp_path):
    import soxr

    samples = stereo_44k(tmp_path / "stereo.wav")
    mono = load_audio(tmp_path / "stereo.wav", 22050)
    expected_mono = soxr.resample(samples.mean(axis=1), 44100, 22050, quality="HQ")
    assert mono.shape == (11025,) and mono.dtype == np.float32
    np.testing.assert_allclose(mono, expected_mono, atol=1e-6)
    stereo = load_audio(tmp_path / "stereo.wav", 48000, channels=2)
    assert stereo.shape == (24000, 2) and stereo.dtype == np.float32 and stereo.flags.c_contiguous
    for channel in range(2):  # each channel resampled on its own: left stays left
        expected = soxr.resample(samples[:, channel], 44100, 48000, quality="HQ")
        np.testing.assert_allclose(stereo[:, channel], expected, atol=1e-6)
    assert load_audio(tmp_path / "stereo.wav", 44100, channels=2).tobytes() == samples.tobytes()


def test_mono_files_fill_every_channel_and_other_counts_are_errors(tmp_path):
    soundfile.write(tmp_path / "mono.wav", tone(16000, 1), 16000, subtype="FLOAT")
    stereo = load_audio(tmp_path / "mono.wav", 32000, channels=2)
    assert stereo.shape == (16000, 2)
    np.testing.assert_array_equal(stereo[:, 0], stereo[:, 1])
    np.testing.assert_array_equal(stereo[:, 0], load_audio(tmp_path / "mono.wav", 32000))
    soundfile.write(tmp_path / "three.wav", tone(16000, 3), 16000)
    with pytest.raises(BadAudioError, match=r"three.wav: has 3 channels; the model takes 2 \(or a mono file\)"):
        load_audio(tmp_path / "three.wav", 16000, channels=2)
    assert load_audio(tmp_path / "three.wav", 16000, channels=3).shape == (8000, 3)


def test_cache_entries_are_per_rate_and_channels(tmp_path):
    source = tmp_path / "stereo.wav"
    stereo_44k(source)
    mono = AudioCache(tmp_path / "cache", 16000).load(source)
    stereo = AudioCache(tmp_path / "cache", 16000, channels=2).load(source)
    assert mono.shape == (8000,) and stereo.shape == (8000, 2)
    np.testing.assert_array_equal(stereo, load_audio(source, 16000, channels=2))
    np.testing.assert_array_equal(mono, load_audio(source, 16000))
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def cut_in_half(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, expected reason) for each kind of broken input."""
    noise = np.random.default_rng(1).uniform(-0.5, 0.5, (22050, 2))
    files = {}
    files["empty"] = (write_bytes(tmp_path / "empty.wav", b""), "empty file")
    files["garbage"] = (write_bytes(tmp_path / "garbage.wav", os.urandom(4000)), "not a readable audio file")
    files["text"] = (write_bytes(tmp_path / "notes.mp3", b"this is not audio\n" * 50), "not a readable audio file")
    for name, container, subtype, reason in [
        ("truncated.wav", "WAV", "PCM_16", "truncated WAV"),
        ("truncated.flac", "FLAC", "PCM_16", "truncated or corrupt"),
        ("truncated.ogg", "OGG", "VORBIS", "truncated OGG"),
    ]:
        path = tmp_path / name
        soundfile.write(path, noise, 22050, format=container, subtype=subtype)
        files[name] = (cut_in_half(path), reason)
    if "MPEG_LAYER_III" in soundfile.available_subtypes("MP3"):
        path = tmp_path / "truncated.mp3"
        soundfile.write(path, noise, 22050, format="MP3", subtype="MPEG_LAYER_III")
        files["truncated.mp3"] = (cut_in_half(path), "truncated (")
    header_only = tmp_path / "header_only.wav"
    soundfile.write(header_only, noise[:0], 22050, subtype="PCM_16")
    files["no samples"] = (header_only, "no audio samples")
    for name, value in [("nan.wav", np.nan), ("inf.wav", np.inf)]:
        bad = noise.copy()
        bad[100, 0] = value
        soundfile.write(tmp_path / name, bad, 22050, subtype="FLOAT")
        files[name] = (tmp_path / name, "NaN or Inf")
    files["missing"] = (tmp_path / "absent.wav", "file not found")
    return files


def test_each_kind_of_bad_file_gets_a_one_line_error_naming_it(tmp_path):
    for name, (path, reason) in make_bad_files(tmp_path).items():
        with pytest.raises(BadAudioError) as error:
            load_audio(path)
        message = str(error.value)
        assert message.startswith(str(path)), name
        assert reason in message, f"{name}: {message}"
        assert "\n" not in message, name


def count_decodes(monkeypatch) -> list:
    calls = []
    original = audio_module.load_audio

    def counting(path, sample_rate=16000, channels=1):
        calls.append(Path(path))
        return original(path, sample_rate, channels)

    monkeypatch.setattr(audio_module, "load_audio", counting)
    return calls


def test_cache_decodes_once_memory_maps_and_follows_source_changes(tmp_path, monkeypatch):
    calls = count_decodes(monkeypatch)
    source = tmp_path / "clip.wav"
    soundfile.write(source, tone(44100, 2), 44100, subtype="PCM_16")
    cache = AudioCache(tmp_path / "cache")

    first = cache.load(source)
    again = cache.load(source)
    assert len(calls) == 1
    assert isinstance(again, np.memmap) and again.dtype == np.float32
    np.testing.assert_array_equal(again, load_audio(source))
    np.testing.assert_array_equal(first, again)

    # New content of a new length: the size changes, the entry is rebuilt, the stale one removed.
    soundfile.write(source, 0.5 * tone(16000, 1)[:4000], 16000, subtype="PCM_16")
    changed = cache.load(source)
    assert len(calls) == 2 and changed.shape == (4000,)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1

    # Same size, new mtime (e.g. a file restored from backup): decoded again.
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    cache.load(source)
    assert len(calls) == 3
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_cache_remembers_bad_files_and_warm_reports_them(tmp_path, monkeypatch):
    calls = count_decodes(monkeypatch)
    good = tmp_path / "good.wav"
    soundfile.write(good, tone(16000, 1), 16000)
    bad = write_bytes(tmp_path / "bad.wav", b"not audio at all\n" * 20)
    cache = AudioCache(tmp_path / "cache")
    failures = cache.warm([good, bad], progress=False)
    assert [str(error) for error in failures] == [f"{bad}: not a readable audio file (Format not recognised)"]
    with pytest.raises(BadAudioError, match="bad.wav: not a readable audio file"):
        cache.load(bad)
    assert len(calls) == 2  # the second attempt was answered from the cache
    cache.load(good)
    assert len(calls) == 2


def test_cache_is_safe_under_parallel_readers(tmp_path):
    """tf.data reads with several workers at once: every read sees a whole entry."""
    from concurrent.futures import ThreadPoolExecutor

    sources = []
    for index in range(4):
        path = tmp_path / f"clip{index}.wav"
        soundfile.write(path, tone(22050, 2)[: 5000 + 1000 * index], 22050, subtype="PCM_16")
        sources.append(path)
    expected = [load_audio(path) for path in sources]
    cache = AudioCache(tmp_path / "cache")
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: np.array(cache.load(sources[i % 4])), range(64)))
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result, expected[i % 4])
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 4


def test_files_libsndfile_cannot_open_fall_back_to_librosa(tmp_path, monkeypatch):
    """An MP3 on a system whose libsndfile predates MP3 support goes through librosa/audioread."""
    import librosa

    def cannot_open(*args, **kwargs):
        raise RuntimeError("Error opening file: Format not recognised.")

    stereo = tone(22050, 2).T.astype(np.float32)  # librosa's layout: [channels, frames]
    monkeypatch.setattr(soundfile, "SoundFile", cannot_open)
    monkeypatch.setattr(librosa, "load", lambda path, sr, mono, dtype: (stereo, 22050))
    path = write_bytes(tmp_path / "song.mp3", b"ID3 pretend mp3")
    decoded = load_audio(path)
    np.testing.assert_allclose(decoded[400:-400], expected_mono(2)[400:-400], atol=1e-3)
    with pytest.raises(BadAudioError, match=r"song.flac: not a readable audio file \(Error opening file"):
        load_audio(write_bytes(tmp_path / "song.flac", b"fLaC broken"))
