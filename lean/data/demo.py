"""A small multi-label demo dataset in the FSD50K layout, built offline and deterministically."""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from lean.errors import LeanError
from lean.io import atomic_path, atomic_write_text

SAMPLE_RATE = 16000
# A few clips are stored as 44.1 kHz stereo, like FSD50K's files, so the resampling and
# downmixing path of the data pipeline is exercised by the quickstart too.
FSD50K_RATE_FRACTION = 0.15
FSD50K_RATE = 44100
MULTI_LABEL_FRACTION = 0.3
MIN_SECONDS, MAX_SECONDS = 1.0, 4.0
VAL_FRACTION, EVAL_FRACTION = 0.15, 0.2
DEFAULT_CLIPS_PER_CLASS = 28
# Debian/Ubuntu package with real recordings (.oga) used for five classes when installed.
SOUND_THEME_PACKAGE = "sound-theme-freedesktop"
SOUND_THEME_DIR = Path("/usr/share/sounds/freedesktop/stereo")
MANIFEST_NAME = "demo.json"
# Everything a build writes; a folder holding only these is a (possibly interrupted) demo build.
DEMO_ENTRIES = ("ground_truth", "dev_audio", "eval_audio", "README.md", MANIFEST_NAME)
# Bumped whenever the generator changes, so an existing demo folder is rebuilt, not reused.
GENERATOR_VERSION = 2


# ---------------------------------------------------------------------------------------------
# Synthesis helpers: every generator fills `n` samples at 16 kHz with activity of its class.

def _time(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / SAMPLE_RATE


def _bandpass(signal: np.ndarray, low_hz: float, high_hz: float, order: int = 4) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    nyquist = SAMPLE_RATE / 2
    if low_hz <= 0:
        sos = butter(order, high_hz / nyquist, btype="lowpass", output="sos")
    elif high_hz >= nyquist:
        sos = butter(order, low_hz / nyquist, btype="highpass", output="sos")
    else:
        sos = butter(order, [low_hz / nyquist, high_hz / nyquist], btype="bandpass", output="sos")
    return sosfilt(sos, signal)


def pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """1/f noise by shaping white noise in the frequency domain (background for every clip)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    frequencies = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum /= np.sqrt(np.maximum(frequencies, 20.0))
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.std(noise) + 1e-12)


def _place_events(rng: np.random.Generator, n: int, event: Callable[[], np.ndarray], gap_s: tuple) -> np.ndarray:
    """Repeats freshly drawn events across the clip with random gaps (transient classes)."""
    out = np.zeros(n)
    # The first event starts early enough that even the shortest clip holds one.
    position = int(rng.uniform(0, min(gap_s[1], 0.25 * n / SAMPLE_RATE)) * SAMPLE_RATE)
    while position < n:
        sound = event()
        end = min(n, position + sound.shape[0])
        out[position:end] += sound[: end - position]
        position = end + int(rng.uniform(*gap_s) * SAMPLE_RATE)
    return out


def _decay(length_s: float, tau_s: float) -> np.ndarray:
    return np.exp(-_time(int(length_s * SAMPLE_RATE)) / tau_s)


def synth_siren(rng, n):
    """Sine whose pitch swings slowly (FM) between two frequencies."""
    t = _time(n)
    low, high = rng.uniform(550, 750), rng.uniform(1100, 1500)
    rate = rng.uniform(0.4, 1.2)
    frequency = low + (high - low) * 0.5 * (1 + np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.3)))
    return np.sin(2 * np.pi * np.cumsum(frequency) / SAMPLE_RATE)


def synth_chirp(rng, n):
    """Fast upward log sweeps, repeated."""
    def event():
        length = rng.uniform(0.12, 0.3)
        t = _time(int(length * SAMPLE_RATE))
        f0, f1 = rng.uniform(1500, 2500), rng.uniform(4500, 6500)
        phase = 2 * np.pi * f0 * length / np.log(f1 / f0) * ((f1 / f0) ** (t / length) - 1)
        return np.sin(phase) * np.hanning(t.shape[0])
    return _place_events(rng, n, event, (0.03, 0.2))


def synth_hiss(rng, n):
    """Steady high-passed noise (steam, air leak)."""
    return _bandpass(rng.standard_normal(n), rng.uniform(3000, 4500), SAMPLE_RATE / 2) * 2.0


def synth_rumble(rng, n):
    """Low-passed noise with a slow swell (engine, thunder-like)."""
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * _time(n) + rng.uniform(0, 6.3))
    return _bandpass(rng.standard_normal(n), 0, rng.uniform(120, 220)) * swell * 4.0


def synth_buzz(rng, n):
    """Harmonic stack (sawtooth-like) on a low fundamental."""
    t = _time(n)
    f0 = rng.uniform(90, 160)
    harmonics = np.arange(1, int(6000 // f0))
    return sum(np.sin(2 * np.pi * f0 * k * t) / k for k in harmonics) * 0.8


def synth_knock(rng, n):
    """Damped low resonances struck two or three times in a row."""
    def event():
        strike = np.sin(2 * np.pi * rng.uniform(150, 260) * _time(int(0.09 * SAMPLE_RATE)))
        strike *= _decay(0.09, 0.018)
        gap = np.zeros(int(rng.uniform(0.12, 0.2) * SAMPLE_RATE))
        return np.concatenate([np.concatenate([strike, gap]) for _ in range(rng.integers(2, 4))])
    return _place_events(rng, n, event, (0.15, 0.5))


def synth_tick(rng, n):
    """Regular clicks (clock, metronome): 1 ms broadband impulses at 3-8 Hz."""
    period = int(SAMPLE_RATE / rng.uniform(3, 8))
    out = np.zeros(n)
    click = rng.standard_normal(16) * np.hanning(16) * 4
    for start in range(int(rng.integers(0, period)), n - 16, period):
        out[start:start + 16] += click
    return _bandpass(out, 1500, SAMPLE_RATE / 2, order=2) * 2


def synth_beep(rng, n):
    """Gated pure tone: short beeps of one pitch."""
    frequency = rng.uniform(900, 1300)
    on = rng.uniform(0.08, 0.2)
    def event():
        tone = np.sin(2 * np.pi * frequency * _time(int(on * SAMPLE_RATE)))
        return tone * np.minimum(1, np.minimum(np.arange(tone.shape[0]), np.arange(tone.shape[0])[::-1]) / 80)
    return _place_events(rng, n, event, (on * 0.7, on * 1.6))


def synth_speech(rng, n):
    """Stand-in for speech: a glottal pulse train through moving vowel formants, in syllables."""
    t = _time(n)
    f0 = rng.uniform(100, 220) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    source = _bandpass(np.sign(np.sin(2 * np.pi * np.cumsum(f0) / SAMPLE_RATE)), 0, 3500)
    vowels = ((730, 1090), (270, 2290), (300, 870), (530, 1840), (660, 1720))
    out = np.zeros(n)
    position = 0
    while position < n:
        length = int(rng.uniform(0.12, 0.28) * SAMPLE_RATE)
        segment = source[position:position + length]
        f1, f2 = vowels[rng.integers(len(vowels))]
        voiced = _bandpass(segment, f1 * 0.8, f1 * 1.2, 2) + 0.6 * _bandpass(segment, f2 * 0.85, f2 * 1.15, 2)
        out[position:position + segment.shape[0]] = voiced * np.hanning(segment.shape[0])
        position += length + int(rng.uniform(0.0, 0.08) * SAMPLE_RATE)
    return out * 3


def synth_camera_shutter(rng, n):
    """Stand-in for a shutter: two band-passed noise clicks 50-90 ms apart."""
    def event():
        click = _bandpass(rng.standard_normal(int(0.02 * SAMPLE_RATE)), 1000, 6000, 2) * _decay(0.02, 0.005)
        gap = np.zeros(int(rng.uniform(0.05, 0.09) * SAMPLE_RATE))
        return np.concatenate([click, gap, click * 0.7]) * 3
    return _place_events(rng, n, event, (0.3, 0.7))


def synth_alarm_clock(rng, n):
    """Stand-in for a mechanical alarm: a high two-tone ring hammered at about 15 Hz."""
    t = _time(n)
    frequency = rng.uniform(2000, 2800)
    ring = np.sin(2 * np.pi * frequency * t) + 0.5 * np.sin(2 * np.pi * frequency * 1.47 * t)
    return ring * (0.5 + 0.5 * np.sign(np.sin(2 * np.pi * rng.uniform(12, 18) * t)))


def synth_bell(rng, n):
    """Stand-in for a bell: inharmonic partials with exponential decay, struck repeatedly."""
    f0 = rng.uniform(400, 900)
    def event():
        t = _time(int(0.8 * SAMPLE_RATE))
        partials = sum(np.sin(2 * np.pi * f0 * r * t) / (i + 1) for i, r in enumerate((1, 2.76, 5.40, 8.93)))
        return partials * np.exp(-t / 0.25)
    return _place_events(rng, n, event, (0.0, 0.3))


def synth_telephone(rng, n):
    """Stand-in for a telephone: 440 + 480 Hz dual tone, on and off."""
    t = _time(n)
    tone = np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t)
    cadence = rng.uniform(0.3, 0.6)
    return tone * (np.sin(2 * np.pi * t / (2 * cadence) + rng.uniform(0, 6.3)) > 0) * 0.7


@dataclass(frozen=True)
class DemoClass:
    """One class: its FSD50K-style label, its synthesizer, and real recordings if available."""

    label: str
    synthesize: Callable[[np.random.Generator, int], np.ndarray]
    recordings: tuple[str, ...] = ()  # file names in SOUND_THEME_DIR


# The class table. Real recordings replace the synthesizer when the sound theme is installed.
DEMO_CLASSES = (
    DemoClass("Speech", synth_speech, tuple(
        f"audio-channel-{side}.oga" for side in (
            "front-center", "front-left", "front-right", "rear-center", "rear-left",
            "rear-right", "side-left", "side-right"))),
    DemoClass("Camera_shutter", synth_camera_shutter, ("camera-shutter.oga", "screen-capture.oga")),
    DemoClass("Alarm_clock", synth_alarm_clock, ("alarm-clock-elapsed.oga",)),
    DemoClass("Bell", synth_bell, ("bell.oga", "complete.oga")),
    DemoClass("Telephone", synth_telephone, (
        "phone-incoming-call.oga", "phone-outgoing-calling.oga", "phone-outgoing-busy.oga")),
    DemoClass("Siren", synth_siren),
    DemoClass("Chirp", synth_chirp),
    DemoClass("Hiss", synth_hiss),
    DemoClass("Rumble", synth_rumble),
    DemoClass("Buzz", synth_buzz),
    DemoClass("Knock", synth_knock),
    DemoClass("Tick", synth_tick),
    DemoClass("Beep", synth_beep),
)

# Licences of the sound theme's files, from the package's debian/copyright.
RECORDING_CREDITS = {
    "audio-channel-*.oga": "The ALSA developers, GPL-2+",
    "camera-shutter.oga, screen-capture.oga": "freesound user horsthorstensen, CC-BY-SA-3.0",
    "alarm-clock-elapsed.oga": "Tim/corsica_s, CC-BY-SA-3.0",
    "bell.oga, complete.oga": "Dr. Richard Boulanger et al, CC-BY-3.0",
    "phone-*.oga": "Damien Sandras, GPL-2+",
}


def load_recordings(sound_dir: Optional[Path]) -> dict[str, list[np.ndarray]]:
    """label -> recordings at 16 kHz mono (silence trimmed), for the classes whose files exist."""
    from lean.data.audio import load_audio

    found: dict[str, list[np.ndarray]] = {}
    if sound_dir is None:
        return found
    for demo_class in DEMO_CLASSES:
        paths = [sound_dir / name for name in demo_class.recordings]
        if demo_class.recordings and all(path.is_file() for path in paths):
            found[demo_class.label] = [_trim_silence(load_audio(path, SAMPLE_RATE)) for path in paths]
    return found


def _trim_silence(audio: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > threshold * np.abs(audio).max())
    return audio[loud[0]:loud[-1] + 1].astype(np.float64)


def _from_recordings(rng: np.random.Generator, n: int, recordings: list[np.ndarray]) -> np.ndarray:
    """Random recordings, each pitch/time shifted by resampling, repeated to fill the clip."""
    import soxr

    def event():
        recording = recordings[rng.integers(len(recordings))]
        speed = rng.uniform(0.88, 1.14)  # > 1: higher and faster
        return soxr.resample(recording, SAMPLE_RATE * speed, SAMPLE_RATE, quality="HQ")
    return _place_events(rng, n, event, (0.02, 0.25))


def class_sound(rng, n, demo_class: DemoClass, recordings: dict) -> np.ndarray:
    """One class's sound over n samples, normalized to unit RMS over its active part."""
    if demo_class.label in recordings:
        sound = _from_recordings(rng, n, recordings[demo_class.label])
    else:
        sound = demo_class.synthesize(rng, n)
    return normalized_active_rms(sound, demo_class.label)


def normalized_active_rms(sound: np.ndarray, label: str) -> np.ndarray:
    """`sound` scaled to unit RMS over its active part (above -60 dB of its peak)."""
    peak = np.abs(sound).max()
    if not peak > 0:  # would make a clip whose label is a lie
        raise AssertionError(f"demo generator made a silent {label} event")
    active = np.abs(sound) > 1e-3 * peak
    return sound / np.sqrt(np.mean(sound[active] ** 2))


def _render_clip(rng, label_indices, recordings) -> np.ndarray:
    """A clip of 1-4 s: the class sounds at random gains over pink background noise."""
    n = int(rng.uniform(MIN_SECONDS, MAX_SECONDS) * SAMPLE_RATE)
    mix = np.zeros(n)
    for rank, index in enumerate(label_indices):
        # A second class starts somewhere in the first half and is up to 6 dB quieter.
        start = 0 if rank == 0 else int(rng.uniform(0, 0.5) * n)
        gain_db = rng.uniform(-3, 3) - (rng.uniform(0, 6) if rank else 0)
        mix[start:] += 10 ** (gain_db / 20) * class_sound(rng, n - start, DEMO_CLASSES[index], recordings)
    snr_db = rng.uniform(6, 24)
    mix += pink_noise(rng, n) * 10 ** (-snr_db / 20)
    peak_db = rng.uniform(-18, -1)  # overall level varies from clip to clip
    return mix / (np.abs(mix).max() + 1e-12) * 10 ** (peak_db / 20)


def shuffled_splits(rng, clips_per_class: int, eval_fraction: float,
                    val_fraction: float) -> list[str]:
    """The splits of one class's clips (eval, val and train counts rounded), in random order."""
    splits = ["eval"] * round(clips_per_class * eval_fraction)
    splits += ["val"] * round(clips_per_class * val_fraction)
    splits += ["train"] * (clips_per_class - len(splits))
    rng.shuffle(splits)
    return splits


def _plan_clips(rng, clips_per_class: int) -> list[dict]:
    """Which classes each clip holds and its split, stratified by the clip's first class."""
    num_classes = len(DEMO_CLASSES)
    plan = []
    for primary in range(num_classes):
        for split in shuffled_splits(rng, clips_per_class, EVAL_FRACTION, VAL_FRACTION):
            labels = [primary]
            if rng.uniform() < MULTI_LABEL_FRACTION:
                labels.append(int(rng.choice([c for c in range(num_classes) if c != primary])))
            plan.append({"labels": labels, "split": split})
    order = rng.permutation(len(plan))
    return [plan[i] for i in order]


def build_demo_dataset(
    out_dir: str | Path,
    seed: int = 0,
    clips_per_class: int = DEFAULT_CLIPS_PER_CLASS,
    sound_dir: Optional[Path] = SOUND_THEME_DIR,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Writes the demo dataset (FSD50K layout, 16-bit WAV) and returns its manifest.

    Args:
        out_dir: destination; it must be empty or absent, or hold a demo dataset to replace when
            `force` is set. A demo built with the same arguments is reused as it is.
        seed: the same seed gives byte-identical files, given the same sound theme files and
            library versions (the recordings are decoded with libsndfile/libvorbis).
        clips_per_class: clips whose first label is each class (13 classes).
        sound_dir: folder of the sound theme's .oga recordings; None or missing: synthesis only.
        force: replace an existing dataset in out_dir.
        progress: show a tqdm bar on stderr.

    Returns:
        The manifest written to out_dir/demo.json (counts per split, sources, arguments).
    """

    if clips_per_class < 5:
        # Fewer clips could leave a split without some class.
        raise LeanError(f"--clips-per-class must be at least 5, got {clips_per_class}")
    out_dir = Path(out_dir)
    sound_dir = sound_dir if sound_dir is not None and Path(sound_dir).is_dir() else None
    recordings = load_recordings(sound_dir)
    arguments = {"seed": seed, "clips_per_class": clips_per_class, "generator_version": GENERATOR_VERSION,
                 "recorded_classes": sorted(recordings)}
    existing = prepare_demo_folder(out_dir, arguments, force, DEMO_ENTRIES,
                                   lambda folder: _names(folder) <= set(DEMO_ENTRIES))
    if existing is not None:
        return existing

    plan = _plan_clips(np.random.default_rng([seed, 0]), clips_per_class)
    write_fsd50k_clips(out_dir, plan, [c.label for c in DEMO_CLASSES], seed, 100000,
                       lambda rng, labels: _render_clip(rng, labels, recordings), progress)
    counts = {split: sum(1 for clip in plan if clip["split"] == split) for split in ("train", "val", "eval")}
    manifest = {
        "arguments": arguments,
        "num_classes": len(DEMO_CLASSES),
        "num_clips": len(plan),
        "clips_per_split": counts,
        "multi_label_clips": sum(1 for clip in plan if len(clip["labels"]) > 1),
        "sound_theme_dir": str(sound_dir) if sound_dir else None,
    }
    atomic_write_text(out_dir / "README.md", _readme(manifest, recordings))
    atomic_write_text(out_dir / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def write_fsd50k_clips(out_dir: Path, plan: list[dict], labels: list[str], seed: int,
                       first_fname: int, render: Callable, progress: bool) -> None:
    """Renders every planned clip into the FSD50K layout: dev_audio/ and eval_audio/ WAVs and
    ground_truth/ (vocabulary.csv, dev.csv, eval.csv).

    Args:
        plan: one dict per clip, `labels` (class indexes) and `split` (train, val or eval).
        labels: the class labels, in index order.
        seed: clip N draws from numpy's generator seeded [seed, 1, N] (rendering first), so
            each clip is the same whatever else changes.
        first_fname: the first clip's file name (a number, as FSD50K's are).
        render: render(rng, class indexes) -> float mono audio at SAMPLE_RATE.
        progress: show a tqdm bar on stderr.
    """
    import soundfile
    import soxr
    from tqdm import tqdm

    rows = {"dev": [], "eval": []}
    for number, clip in enumerate(tqdm(plan, desc="demo clips", unit="clip", disable=not progress)):
        rng = np.random.default_rng([seed, 1, number])
        audio = render(rng, clip["labels"])
        rate = SAMPLE_RATE
        if rng.uniform() < FSD50K_RATE_FRACTION:
            # Some clips at FSD50K's own 44.1 kHz, in stereo, so decoding is exercised.
            rate = FSD50K_RATE
            audio = soxr.resample(audio, SAMPLE_RATE, rate, quality="HQ")
            audio = np.stack([audio, audio * rng.uniform(0.5, 1.0)], axis=1)
        part = "eval" if clip["split"] == "eval" else "dev"
        fname = str(first_fname + number)
        with atomic_path(out_dir / f"{part}_audio" / f"{fname}.wav") as tmp:
            soundfile.write(str(tmp), np.clip(audio, -1, 1), rate, subtype="PCM_16", format="WAV")
        clip_labels = [labels[index] for index in clip["labels"]]
        row = [fname, ",".join(clip_labels), ",".join(_mid(label) for label in clip_labels)]
        rows[part].append(row + ([clip["split"]] if part == "dev" else []))
    truth = out_dir / "ground_truth"
    write_csv(truth / "vocabulary.csv", None, [[i, label, _mid(label)]
                                                for i, label in enumerate(labels)])
    write_csv(truth / "dev.csv", ["fname", "labels", "mids", "split"], rows["dev"])
    write_csv(truth / "eval.csv", ["fname", "labels", "mids"], rows["eval"])


def prepare_demo_folder(out_dir: Path, arguments: dict, force: bool, entries: tuple[str, ...],
                        is_partial_build: Callable[[Path], bool]) -> Optional[dict]:
    """The manifest of a demo already built in `out_dir` with `arguments` (reuse it), or None
    once `out_dir` is ready for a build.

    Args:
        out_dir: the demo's folder: absent, empty, a finished demo (its manifest, written last,
            is there), or an interrupted build of this kind.
        arguments: what this build is made from; a finished demo with other arguments is only
            replaced with `force`.
        force: replace a finished demo of either kind.
        entries: the names this kind of build writes (removed before building).
        is_partial_build: tells whether a non-empty folder without a manifest is an
            interrupted build of this kind (cleared) or someone's files (an error).
    """
    manifest_path = out_dir / MANIFEST_NAME
    if out_dir.exists() and not out_dir.is_dir():
        raise LeanError(f"{out_dir}: exists and is not a folder")
    remove = set(entries)
    if manifest_path.is_file():
        existing = json.loads(manifest_path.read_text())
        if existing.get("arguments") == arguments and not force:
            return existing
        if not force:
            raise LeanError(f"{out_dir}: holds a demo dataset built with other arguments; add --force to replace it")
        remove |= set(existing.get("entries", DEMO_ENTRIES))
    elif out_dir.is_dir():
        if _names(out_dir) and not is_partial_build(out_dir):
            raise LeanError(f"{out_dir}: folder is not empty and holds no demo dataset; choose another folder")
    # Remove an older or interrupted build (it never got its manifest, which is written last).
    for name in sorted(remove):
        target = out_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    return None


def recording_sources(recorded: list[str], sound_theme_dir: Optional[str],
                      when_missing: str) -> list[str]:
    """README lines naming the classes made from the sound theme's recordings and their
    licences, or (none recorded) saying that the theme was missing and `when_missing`."""
    if not recorded:
        return ["", f"`{SOUND_THEME_PACKAGE}` was not installed, so {when_missing} (`apt-get "
                f"install {SOUND_THEME_PACKAGE}` and rebuild with --force for real recordings)."]
    lines = [
        "",
        f"From real recordings: {', '.join(recorded)}. They come from the Debian package "
        f"`{SOUND_THEME_PACKAGE}` (files in {sound_theme_dir}), resampled, "
        "pitch/time-shifted, repeated and mixed. Their licences (from the package's "
        "debian/copyright) carry over to the clips made from them:",
        "",
    ]
    return lines + [f"- {files}: {credit}" for files, credit in RECORDING_CREDITS.items()]


def _names(folder: Path) -> set[str]:
    return {entry.name for entry in folder.iterdir()}


def _mid(label: str) -> str:
    # Not AudioSet machine ids: the demo's own, so nobody mistakes them for the ontology's.
    return f"/demo/{label.lower()}"


def write_csv(path: Path, header: Optional[list[str]], rows: list[list]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _readme(manifest: dict, recordings: dict) -> str:
    recorded = [c.label for c in DEMO_CLASSES if c.label in recordings]
    synthesized = [c.label for c in DEMO_CLASSES if c.label not in recordings]
    counts = manifest["clips_per_split"]
    lines = [
        "# lean demo dataset",
        "",
        f"Built by `lean data demo` (seed {manifest['arguments']['seed']}, "
        f"{manifest['arguments']['clips_per_class']} clips per class): {manifest['num_clips']} clips "
        f"(train {counts['train']}, val {counts['val']}, eval {counts['eval']}), "
        f"{manifest['num_classes']} classes, {manifest['multi_label_clips']} clips with two classes mixed.",
        "Layout as FSD50K: ground_truth/{dev,eval,vocabulary}.csv, dev_audio/, eval_audio/ "
        "(16-bit WAV, 1-4 s, mostly 16 kHz mono; some 44.1 kHz stereo like FSD50K's files).",
        "Each clip: its class sounds at random gain, pitch/speed and offset over pink background noise "
        "(SNR 6-24 dB), peak level -18 to -1 dBFS. A toy for testing the toolchain, not a benchmark.",
        "",
        "## Sources",
        "",
        f"Synthesized (deterministic numpy, no third-party material): {', '.join(synthesized)}.",
    ]
    lines += recording_sources(recorded, manifest["sound_theme_dir"], "Speech, Camera_shutter, "
                               "Alarm_clock, Bell and Telephone were synthesized too")
    return "\n".join(lines) + "\n"


__all__ = ["DEMO_CLASSES", "build_demo_dataset", "SOUND_THEME_PACKAGE", "DEFAULT_CLIPS_PER_CLASS"]
