"""A small single-label demo dataset in the ESC-50 layout, built offline and deterministically.

Ten classes of 5 s clips in five folds, made from the multi-label demo's sounds (real
recordings from sound-theme-freedesktop where installed, deterministic synthesis otherwise),
each over background noise, some with a quieter sound of another kind in the background, so a
model has to learn something: a clip is not its class sound alone.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Optional

import numpy as np

from lean.data.demo import (
    DEMO_CLASSES,
    MANIFEST_NAME,
    SAMPLE_RATE,
    SOUND_THEME_DIR,
    class_sound,
    load_recordings,
    pink_noise,
    prepare_demo_folder,
    recording_sources,
    write_csv,
)
from lean.errors import LeanError
from lean.io import atomic_path, atomic_write_text

# (ESC-50-style category, the multi-label demo sound it is made of), in target order.
CLASSES = (
    ("speech", "Speech"),
    ("camera_shutter", "Camera_shutter"),
    ("clock_alarm", "Alarm_clock"),
    ("church_bells", "Bell"),
    ("telephone", "Telephone"),
    ("siren", "Siren"),
    ("chirping_birds", "Chirp"),
    ("engine", "Rumble"),
    ("door_wood_knock", "Knock"),
    ("clock_tick", "Tick"),
)
# Sounds of no class, mixed in quietly as background activity.
BACKGROUND_SOUNDS = ("Hiss", "Buzz", "Beep")
NUM_FOLDS = 5
CLIP_SECONDS = 5.0
# ESC-50's own format: 44.1 kHz mono 16-bit WAV (the sounds are made at 16 kHz and resampled,
# so the clips hold nothing above 8 kHz).
FILE_RATE = 44100
DEFAULT_CLIPS_PER_CLASS = 20
# The class sound fills 1.5-5 s of the clip; the rest is background.
MIN_EVENT_SECONDS = 1.5
SNR_DB = (0.0, 15.0)  # class sound RMS over pink noise
BACKGROUND_SOUND_PROBABILITY = 0.5
BACKGROUND_SOUND_DB = (-16.0, -6.0)
OTHER_CLASS_PROBABILITY = 0.25
OTHER_CLASS_DB = (-20.0, -10.0)
ENTRIES = ("meta", "audio", "README.md", MANIFEST_NAME)
GENERATOR_VERSION = 1
README_TITLE = "# lean single-label demo dataset"


def _sound(label: str):
    return next(demo_class for demo_class in DEMO_CLASSES if demo_class.label == label)


def _fade(sound: np.ndarray, seconds: float = 0.01) -> np.ndarray:
    """Raised-cosine fade in and out, so a sound cut from a longer one starts without a click."""
    n = min(int(seconds * SAMPLE_RATE), sound.shape[0] // 2)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n))
    sound = sound.copy()
    sound[:n] *= ramp
    sound[sound.shape[0] - n:] *= ramp[::-1]
    return sound


def _place(rng: np.random.Generator, mix: np.ndarray, sound_of_length, min_seconds: float,
           gain_db: float) -> None:
    """Adds a sound of random length (at least min_seconds, at most the clip) at a random
    offset; `sound_of_length(n)` makes it, at unit RMS."""
    total = mix.shape[0]
    length = int(rng.uniform(min_seconds, CLIP_SECONDS) * SAMPLE_RATE)
    start = int(rng.integers(0, total - length + 1))
    mix[start:start + length] += 10 ** (gain_db / 20) * _fade(sound_of_length(length))


def _render_clip(rng: np.random.Generator, target: int, recordings: dict) -> np.ndarray:
    """A 5 s clip at 16 kHz: the class sound over pink noise, sometimes with a quiet background
    sound or a quieter sound of another class, at a random overall level."""
    n = int(CLIP_SECONDS * SAMPLE_RATE)
    mix = pink_noise(rng, n) * 10 ** (-rng.uniform(*SNR_DB) / 20)
    _place(rng, mix, lambda length: class_sound(rng, length, _sound(CLASSES[target][1]), recordings),
           MIN_EVENT_SECONDS, rng.uniform(-3, 3))
    if rng.uniform() < BACKGROUND_SOUND_PROBABILITY:
        background = _sound(BACKGROUND_SOUNDS[rng.integers(len(BACKGROUND_SOUNDS))])
        _place(rng, mix, lambda length: class_sound(rng, length, background, recordings), 1.0,
               rng.uniform(*BACKGROUND_SOUND_DB))
    if rng.uniform() < OTHER_CLASS_PROBABILITY:
        other = int(rng.choice([c for c in range(len(CLASSES)) if c != target]))
        _place(rng, mix, lambda length: class_sound(rng, length, _sound(CLASSES[other][1]), recordings),
               1.0, rng.uniform(*OTHER_CLASS_DB))
    peak_db = rng.uniform(-18, -1)
    return mix / (np.abs(mix).max() + 1e-12) * 10 ** (peak_db / 20)


def _plan_folds(rng: np.random.Generator, clips_per_class: int) -> list[tuple[int, int]]:
    """(target, fold) of every clip: each class spread evenly over the folds."""
    plan = []
    for target in range(len(CLASSES)):
        folds = [1 + i % NUM_FOLDS for i in range(clips_per_class)]
        rng.shuffle(folds)
        plan.extend((target, fold) for fold in folds)
    return plan


def build_single_label_demo(
    out_dir: str | Path,
    seed: int = 0,
    clips_per_class: int = DEFAULT_CLIPS_PER_CLASS,
    sound_dir: Optional[Path] = SOUND_THEME_DIR,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Writes the single-label demo (ESC-50 layout: meta/esc50.csv, audio/, 5 folds) and
    returns its manifest.

    Args:
        out_dir: destination; it must be empty or absent, or hold a demo dataset to replace when
            `force` is set. A demo built with the same arguments is reused as it is.
        seed: the same seed gives byte-identical files, given the same sound theme files and
            library versions.
        clips_per_class: clips of each of the 10 classes (at least 5, one per fold).
        sound_dir: folder of the sound theme's .oga recordings; None or missing: synthesis only.
        force: replace an existing demo dataset in out_dir.
        progress: show a tqdm bar on stderr.

    Returns:
        The manifest written to out_dir/demo.json (counts per fold, sources, arguments).
    """
    import soundfile
    import soxr
    from tqdm import tqdm

    if clips_per_class < NUM_FOLDS:
        raise LeanError(f"--clips-per-class must be at least {NUM_FOLDS} (one clip of each class "
                        f"per fold), got {clips_per_class}")
    out_dir = Path(out_dir)
    sound_dir = sound_dir if sound_dir is not None and Path(sound_dir).is_dir() else None
    recordings = load_recordings(sound_dir)
    used = {sound for _, sound in CLASSES} | set(BACKGROUND_SOUNDS)
    arguments = {"task": "single_label", "seed": seed, "clips_per_class": clips_per_class,
                 "generator_version": GENERATOR_VERSION,
                 "recorded_classes": sorted(label for label in recordings if label in used)}
    existing = prepare_demo_folder(out_dir, arguments, force, ENTRIES, _is_partial_build)
    if existing is not None:
        return existing

    plan = _plan_folds(np.random.default_rng([seed, 0]), clips_per_class)
    rows = []
    for number, (target, fold) in enumerate(tqdm(plan, desc="demo clips", unit="clip",
                                                 disable=not progress)):
        rng = np.random.default_rng([seed, 1, number])
        audio = soxr.resample(_render_clip(rng, target, recordings), SAMPLE_RATE, FILE_RATE,
                              quality="HQ")
        source_id = 100000 + number
        fname = f"{fold}-{source_id}-A-{target}.wav"
        with atomic_path(out_dir / "audio" / fname) as tmp:
            soundfile.write(str(tmp), np.clip(audio, -1, 1), FILE_RATE, subtype="PCM_16",
                            format="WAV")
        rows.append([fname, fold, target, CLASSES[target][0], "False", source_id, "A"])
    rows.sort(key=lambda row: row[0])
    write_csv(out_dir / "meta" / "esc50.csv",
              ["filename", "fold", "target", "category", "esc10", "src_file", "take"], rows)
    manifest = {
        "arguments": arguments,
        "entries": list(ENTRIES),
        "layout": "esc50",
        "num_classes": len(CLASSES),
        "num_clips": len(plan),
        "clips_per_fold": {str(f): sum(1 for _, fold in plan if fold == f)
                           for f in range(1, NUM_FOLDS + 1)},
        "clip_seconds": CLIP_SECONDS,
        "sample_rate": FILE_RATE,
        "sound_theme_dir": str(sound_dir) if sound_dir else None,
    }
    atomic_write_text(out_dir / "README.md", _readme(manifest, recordings))
    atomic_write_text(out_dir / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _is_partial_build(folder: Path) -> bool:
    """Only an interrupted build of this demo may be cleared: `audio/` and `meta/` are common
    names, so their contents must be what this demo writes too (its files, atomic temp files)."""
    def only(directory: Path, pattern: str) -> bool:
        return directory.is_dir() and all(
            re.fullmatch(pattern, name) or re.fullmatch(r"\..+\.tmp", name)
            for name in os.listdir(directory))

    names = set(os.listdir(folder))
    if not names <= {"audio", "meta", "README.md"}:
        return False
    if "audio" in names and not only(folder / "audio", r"\d+-\d+-A-\d+\.wav"):
        return False
    if "meta" in names and not only(folder / "meta", r"esc50\.csv"):
        return False
    readme = folder / "README.md"
    return not readme.exists() or readme.read_text(errors="replace").startswith(README_TITLE)


def _per_fold(clips_per_class: int) -> str:
    low, high = clips_per_class // NUM_FOLDS, -(-clips_per_class // NUM_FOLDS)
    return str(low) if low == high else f"{low}-{high}"


def _readme(manifest: dict, recordings: dict) -> str:
    recorded = [category for category, sound in CLASSES if sound in recordings]
    synthesized = [category for category, sound in CLASSES if sound not in recordings]
    args = manifest["arguments"]
    lines = [
        README_TITLE,
        "",
        f"Built by `lean data demo --task single-label` (seed {args['seed']}, "
        f"{args['clips_per_class']} clips per class): {manifest['num_clips']} clips of "
        f"{CLIP_SECONDS:g} s, {manifest['num_classes']} classes, {NUM_FOLDS} folds of "
        f"{_per_fold(args['clips_per_class'])} clips per class.",
        "Layout as ESC-50: meta/esc50.csv (filename, fold, target, category, esc10, src_file, "
        "take) and audio/<fold>-<src_file>-A-<target>.wav (16-bit, 44.1 kHz mono; made at 16 kHz, "
        "so nothing above 8 kHz).",
        f"Each clip: its class sound for 1.5-5 s at a random offset over pink noise (SNR "
        f"{SNR_DB[0]:g}-{SNR_DB[1]:g} dB); in {BACKGROUND_SOUND_PROBABILITY:.0%} of clips a quiet "
        f"background sound of no class ({', '.join(s.lower() for s in BACKGROUND_SOUNDS)}, "
        f"{BACKGROUND_SOUND_DB[0]:g} to {BACKGROUND_SOUND_DB[1]:g} dB), in "
        f"{OTHER_CLASS_PROBABILITY:.0%} a quieter sound of another class ({OTHER_CLASS_DB[0]:g} "
        f"to {OTHER_CLASS_DB[1]:g} dB); peak level -18 to -1 dBFS. A toy for trying the "
        "toolchain, not a benchmark.",
        "",
        "## Sources",
        "",
        "Synthesized (deterministic numpy, no third-party material): "
        f"{', '.join(synthesized + [s.lower() for s in BACKGROUND_SOUNDS])}.",
    ]
    lines += recording_sources(recorded, manifest["sound_theme_dir"], "every class was synthesized")
    return "\n".join(lines) + "\n"


__all__ = ["CLASSES", "DEFAULT_CLIPS_PER_CLASS", "NUM_FOLDS", "build_single_label_demo"]
