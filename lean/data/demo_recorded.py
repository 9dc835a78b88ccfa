"""A harder multi-label demo (FSD50K layout): 30 to 60 classes of real recordings and mixtures.

`lean data demo DIR --classes N` builds it from sounds that Debian packages ship, so it needs
no download: General MIDI instruments rendered by FluidSynth from the FluidR3 GM soundfont
(`fluidsynth`, `fluid-soundfont-gm`), speech in several languages and voices from
`espeak-ng`, and recorded UI and instrument sounds of `sound-theme-freedesktop` and
`sound-icons`. Clips mix one to three classes at random gains and offsets over pink noise, so
similar classes (two brass instruments, two Romance languages) overlap: the small default demo
hides what int8 costs, a split of a few hundred clips of this one resolves it better.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from lean.data.demo import (
    DEMO_ENTRIES,
    MANIFEST_NAME,
    SAMPLE_RATE,
    SOUND_THEME_DIR,
    _from_recordings,
    _names,
    _trim_silence,
    normalized_active_rms,
    pink_noise,
    prepare_demo_folder,
    shuffled_splits,
    write_fsd50k_clips,
)
from lean.errors import LeanError
from lean.io import atomic_write_text

MIN_CLASSES = 30
DEFAULT_CLIPS_PER_CLASS = 40
MIN_SECONDS, MAX_SECONDS = 1.0, 5.0
# Share of clips with a second and with a third class mixed in.
SECOND_CLASS_FRACTION, THIRD_CLASS_FRACTION = 0.4, 0.12
SNR_DB = (0.0, 20.0)
VAL_FRACTION, EVAL_FRACTION = 0.2, 0.25
GENERATOR_VERSION = 1
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SOUND_ICONS_DIR = Path("/usr/share/sounds/sound-icons")
README_TITLE = "# lean recorded demo dataset"

# Debian package -> (what it provides, licence from its debian/copyright).
PACKAGES = {
    "fluid-soundfont-gm": ("FluidR3 General MIDI soundfont (Frank Wen et al.), rendered with "
                           "`fluidsynth`", "MIT"),
    "espeak-ng": ("espeak-ng speech synthesizer voices", "GPL-3+ (the program; the rendered "
                  "speech is its output)"),
    "sound-theme-freedesktop": ("freedesktop.org sound theme recordings", "per file, below"),
    "sound-icons": ("Brailcom sound icons", "GPL-2+ (Brailcom, o.p.s.)"),
}
# sound-theme-freedesktop files used here and their licences (debian/copyright); files whose
# licence it does not state (dialog-*, window-*) are left out.
THEME_CREDITS = {
    "alarm-clock-elapsed.oga": "Tim/corsica_s, CC-BY-SA-3.0",
    "audio-channel-*.oga, audio-test-signal.oga": "The ALSA developers, GPL-2+",
    "audio-volume-change.oga": "Lucas McCallister, CC-BY-SA-3.0",
    "bell.oga, complete.oga, trash-empty.oga": "Dr. Richard Boulanger et al, CC-BY-3.0",
    "camera-shutter.oga, screen-capture.oga": "freesound user horsthorstensen, CC-BY-SA-3.0",
    "device-*.oga, power-*.oga, network-connectivity-*.oga, message.oga, dialog-information.oga":
        "Ivica Bukvic, CC-BY-SA-3.0",
    "message-new-instant.oga, phone-*.oga": "Damien Sandras, GPL-2+",
    "service-login.oga, service-logout.oga": "The Pidgin developers, GPL-2",
    "suspend-error.oga": "Red Hat, Inc., CC-BY-SA-3.0",
}


@dataclass(frozen=True)
class Instrument:
    """A General MIDI program (0-based; None: the drum kit on channel 10) and its note range."""

    program: Optional[int]
    low: int
    high: int


@dataclass(frozen=True)
class Voice:
    """espeak-ng voices (language + variant) that speak one language, and what they say."""

    voices: tuple[str, ...]
    texts: tuple[str, ...]


@dataclass(frozen=True)
class RecordedClass:
    """One class: its label, the package its sounds come from, and how to get them."""

    label: str
    package: str
    source: object  # Instrument, Voice, or a tuple of file names


_VARIANTS = ("m1", "m3", "f2", "f4")


def _speech(language: str, *texts: str) -> Voice:
    return Voice(tuple(f"{language}+{variant}" for variant in _VARIANTS), texts)


def _gm(program: Optional[int], low: int, high: int) -> Instrument:
    return Instrument(program, low, high)


def _theme(*names: str) -> tuple[str, ...]:
    return names


# The class table, interleaving the sources so the first 30 classes use every package.
# Speech: counting and the days of the week (common words) in each language.
CLASSES = (
    RecordedClass("Piano", "fluid-soundfont-gm", _gm(0, 40, 84)),
    RecordedClass("Speech_English", "espeak-ng", _speech(
        "en", "one two three four five six seven eight nine ten",
        "Monday Tuesday Wednesday Thursday Friday Saturday Sunday",
        "the next train leaves from platform four in ten minutes")),
    RecordedClass("Bell", "sound-theme-freedesktop", _theme("bell.oga", "complete.oga")),
    RecordedClass("Violin", "fluid-soundfont-gm", _gm(40, 55, 93)),
    RecordedClass("Canary", "sound-icons", ("canary-long.wav",)),
    RecordedClass("Speech_German", "espeak-ng", _speech(
        "de", "eins zwei drei vier fünf sechs sieben acht neun zehn",
        "Montag Dienstag Mittwoch Donnerstag Freitag Samstag Sonntag",
        "der nächste Zug fährt in zehn Minuten von Gleis vier")),
    RecordedClass("Trumpet", "fluid-soundfont-gm", _gm(56, 55, 82)),
    RecordedClass("Telephone", "sound-theme-freedesktop", _theme(
        "phone-incoming-call.oga", "phone-outgoing-calling.oga", "phone-outgoing-busy.oga")),
    RecordedClass("Acoustic_guitar", "fluid-soundfont-gm", _gm(24, 40, 76)),
    RecordedClass("Speech_French", "espeak-ng", _speech(
        "fr", "un deux trois quatre cinq six sept huit neuf dix",
        "lundi mardi mercredi jeudi vendredi samedi dimanche",
        "le prochain train part du quai quatre dans dix minutes")),
    RecordedClass("Glass_water", "sound-icons", ("glass-water-1.wav",)),
    RecordedClass("Flute", "fluid-soundfont-gm", _gm(73, 60, 96)),
    RecordedClass("Camera_shutter", "sound-theme-freedesktop", _theme(
        "camera-shutter.oga", "screen-capture.oga")),
    RecordedClass("Church_organ", "fluid-soundfont-gm", _gm(19, 36, 84)),
    RecordedClass("Speech_Spanish", "espeak-ng", _speech(
        "es", "uno dos tres cuatro cinco seis siete ocho nueve diez",
        "lunes martes miércoles jueves viernes sábado domingo",
        "el próximo tren sale del andén cuatro en diez minutos")),
    RecordedClass("Drum_kit", "fluid-soundfont-gm", _gm(None, 35, 59)),
    RecordedClass("Squeak", "sound-icons", (
        "pisk-up.wav", "pisk-down.wav", "pisk-up-cink.wav", "pisk-down-cink.wav")),
    RecordedClass("Cello", "fluid-soundfont-gm", _gm(42, 36, 72)),
    RecordedClass("Alarm_clock", "sound-theme-freedesktop", _theme("alarm-clock-elapsed.oga")),
    RecordedClass("Speech_Italian", "espeak-ng", _speech(
        "it", "uno due tre quattro cinque sei sette otto nove dieci",
        "lunedì martedì mercoledì giovedì venerdì sabato domenica",
        "il prossimo treno parte dal binario quattro tra dieci minuti")),
    RecordedClass("Clarinet", "fluid-soundfont-gm", _gm(71, 50, 86)),
    RecordedClass("Harpsichord_chord", "sound-icons", tuple(
        f"cembalo-{n}.wav" for n in (1, 2, 3, 6, 10, 11, 12))),
    RecordedClass("Marimba", "fluid-soundfont-gm", _gm(12, 48, 84)),
    RecordedClass("Device_plug", "sound-theme-freedesktop", _theme(
        "device-added.oga", "device-removed.oga", "power-plug.oga", "power-unplug.oga")),
    RecordedClass("Speech_Polish", "espeak-ng", _speech(
        "pl", "jeden dwa trzy cztery pięć sześć siedem osiem dziewięć dziesięć",
        "poniedziałek wtorek środa czwartek piątek sobota niedziela",
        "następny pociąg odjeżdża z peronu czwartego za dziesięć minut")),
    RecordedClass("Saxophone", "fluid-soundfont-gm", _gm(65, 49, 81)),
    RecordedClass("Voice_announcement", "sound-theme-freedesktop", _theme(*(
        f"audio-channel-{side}.oga" for side in (
            "front-center", "front-left", "front-right", "rear-center", "rear-left",
            "rear-right", "side-left", "side-right")))),
    RecordedClass("Accordion", "fluid-soundfont-gm", _gm(21, 53, 89)),
    RecordedClass("Percussion_hit", "sound-icons", (
        "percussion-10.wav", "percussion-12.wav", "percussion-28.wav", "percussion-50.wav")),
    RecordedClass("Harp", "fluid-soundfont-gm", _gm(46, 36, 96)),
    RecordedClass("Speech_Dutch", "espeak-ng", _speech(
        "nl", "een twee drie vier vijf zes zeven acht negen tien",
        "maandag dinsdag woensdag donderdag vrijdag zaterdag zondag",
        "de volgende trein vertrekt over tien minuten van spoor vier")),
    RecordedClass("Message_chime", "sound-theme-freedesktop", _theme(
        "message.oga", "message-new-instant.oga", "dialog-information.oga")),
    RecordedClass("Trombone", "fluid-soundfont-gm", _gm(57, 40, 72)),
    RecordedClass("Electric_guitar", "fluid-soundfont-gm", _gm(27, 40, 84)),
    RecordedClass("Whispering", "espeak-ng", Voice(("en+whisper", "de+whisper", "fr+whisper"), (
        "one two three four five six seven eight nine ten",
        "Monday Tuesday Wednesday Thursday Friday Saturday Sunday"))),
    RecordedClass("Bass_guitar", "fluid-soundfont-gm", _gm(33, 28, 55)),
    RecordedClass("Network_chime", "sound-theme-freedesktop", _theme(
        "network-connectivity-established.oga", "network-connectivity-lost.oga")),
    RecordedClass("Oboe", "fluid-soundfont-gm", _gm(68, 58, 91)),
    RecordedClass("Speech_Portuguese", "espeak-ng", _speech(
        "pt", "um dois três quatro cinco seis sete oito nove dez",
        "segunda terça quarta quinta sexta sábado domingo",
        "o próximo comboio parte da linha quatro daqui a dez minutos")),
    RecordedClass("Xylophone", "fluid-soundfont-gm", _gm(13, 65, 96)),
    RecordedClass("Login_chime", "sound-theme-freedesktop", _theme(
        "service-login.oga", "service-logout.oga")),
    RecordedClass("French_horn", "fluid-soundfont-gm", _gm(60, 41, 77)),
    RecordedClass("Trash_empty", "sound-theme-freedesktop", _theme("trash-empty.oga")),
    RecordedClass("Sitar", "fluid-soundfont-gm", _gm(104, 48, 77)),
    RecordedClass("Speech_Swedish", "espeak-ng", _speech(
        "sv", "ett två tre fyra fem sex sju åtta nio tio",
        "måndag tisdag onsdag torsdag fredag lördag söndag",
        "nästa tåg avgår från spår fyra om tio minuter")),
    RecordedClass("Banjo", "fluid-soundfont-gm", _gm(105, 48, 84)),
    RecordedClass("Test_tone", "sound-theme-freedesktop", _theme(
        "audio-test-signal.oga", "audio-volume-change.oga")),
    RecordedClass("Pan_flute", "fluid-soundfont-gm", _gm(75, 60, 96)),
    RecordedClass("Bagpipes", "fluid-soundfont-gm", _gm(109, 60, 84)),
    RecordedClass("Steel_drum", "fluid-soundfont-gm", _gm(114, 52, 88)),
    RecordedClass("Choir", "fluid-soundfont-gm", _gm(52, 48, 79)),
    RecordedClass("Timpani", "fluid-soundfont-gm", _gm(47, 36, 60)),
    RecordedClass("Music_box", "fluid-soundfont-gm", _gm(10, 60, 96)),
    RecordedClass("Speech_Finnish", "espeak-ng", _speech(
        "fi", "yksi kaksi kolme neljä viisi kuusi seitsemän kahdeksan yhdeksän kymmenen",
        "maanantai tiistai keskiviikko torstai perjantai lauantai sunnuntai",
        "seuraava juna lähtee raiteelta neljä kymmenen minuutin kuluttua")),
    RecordedClass("Tuba", "fluid-soundfont-gm", _gm(58, 28, 58)),
    RecordedClass("Suspend_error", "sound-theme-freedesktop", _theme("suspend-error.oga")),
)
MAX_CLASSES = len(CLASSES)
# Notes rendered per instrument, at seeded random pitches, lengths and velocities.
NOTES_PER_INSTRUMENT = 12
NOTE_SECONDS = (0.25, 1.2)
NOTE_RELEASE_SECONDS = 0.6
BANK_SEED = 20260


def package_available(package: str) -> bool:
    """Whether the files or program that a package provides are here."""
    if package == "fluid-soundfont-gm":
        return SOUNDFONT.is_file() and shutil.which("fluidsynth") is not None
    if package == "espeak-ng":
        return shutil.which("espeak-ng") is not None
    if package == "sound-theme-freedesktop":
        return SOUND_THEME_DIR.is_dir()
    return SOUND_ICONS_DIR.is_dir()


def _midi_file(path: Path, instruments: list[Instrument], rng) -> list[list[tuple[float, float]]]:
    """Writes one MIDI file that plays every instrument's notes in turn; returns each
    instrument's (start s, length s) notes."""
    import mido

    ticks_per_second = 960  # 480 ticks per beat at 120 bpm
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500000))
    clock, pending, timings = 0.0, 0.0, []
    for instrument in instruments:
        channel = 9 if instrument.program is None else 0
        if instrument.program is not None:
            track.append(mido.Message("program_change", program=instrument.program, channel=0,
                                      time=round(pending * ticks_per_second)))
            pending = 0.0
        notes = []
        for _ in range(NOTES_PER_INSTRUMENT):
            note = int(rng.integers(instrument.low, instrument.high + 1))
            length = float(rng.uniform(*NOTE_SECONDS))
            velocity = int(rng.integers(60, 121))
            track.append(mido.Message("note_on", note=note, velocity=velocity, channel=channel,
                                      time=round(pending * ticks_per_second)))
            track.append(mido.Message("note_off", note=note, velocity=0, channel=channel,
                                      time=round(length * ticks_per_second)))
            notes.append((clock, length))
            clock += length + NOTE_RELEASE_SECONDS
            pending = NOTE_RELEASE_SECONDS
        timings.append(notes)
    midi.save(str(path))
    return timings


def _render_instruments(instruments: list[Instrument], scratch: Path) -> list[list[np.ndarray]]:
    """Every instrument's notes at 16 kHz mono, rendered by FluidSynth in one pass."""
    timings = _midi_file(scratch / "notes.mid", instruments, np.random.default_rng(BANK_SEED))
    raw = scratch / "notes.raw"
    command = ["fluidsynth", "-n", "-i", "-q", "-g", "0.5", "-r", str(SAMPLE_RATE), "-R", "0",
               "-C", "0", "-T", "raw", "-O", "float", "-F", str(raw), str(SOUNDFONT),
               str(scratch / "notes.mid")]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0 or not raw.is_file():
        raise LeanError(f"fluidsynth failed (exit {completed.returncode}): "
                        f"{(completed.stderr.strip().splitlines() or ['no output'])[-1]}")
    # Interleaved stereo float32 -> mono.
    audio = np.fromfile(raw, dtype="<f4").reshape(-1, 2).mean(axis=1).astype(np.float64)
    notes = []
    for timing in timings:
        cut = []
        for start, length in timing:
            first = int(start * SAMPLE_RATE)
            cut.append(_trim_silence(audio[first:first + int((length + NOTE_RELEASE_SECONDS)
                                                             * SAMPLE_RATE)]))
        notes.append(cut)
    return notes


def _render_speech(voice: Voice, scratch: Path, rng) -> list[np.ndarray]:
    """Each text in each voice, at seeded random speed and pitch, 16 kHz mono."""
    import soundfile
    import soxr

    utterances = []
    for voice_name in voice.voices:
        for number, text in enumerate(voice.texts):
            path = scratch / f"speech_{voice_name.replace('+', '_')}_{number}.wav"
            command = ["espeak-ng", "-v", voice_name, "-s", str(int(rng.integers(130, 191))),
                       "-p", str(int(rng.integers(30, 71))), "-w", str(path), text]
            completed = subprocess.run(command, capture_output=True, text=True)
            if completed.returncode != 0:
                raise LeanError(f"espeak-ng -v {voice_name} failed: {completed.stderr.strip()}")
            audio, rate = soundfile.read(str(path), dtype="float64")
            utterances.append(_trim_silence(soxr.resample(audio, rate, SAMPLE_RATE,
                                                          quality="HQ")))
    return utterances


def _load_files(names: tuple[str, ...], folder: Path) -> list[np.ndarray]:
    from lean.data.audio import load_audio

    paths = [folder / name for name in names]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise LeanError(f"{missing[0]}: recording not found (is its package installed?)")
    return [_trim_silence(load_audio(path, SAMPLE_RATE)) for path in paths]


def build_recording_bank(classes: tuple[RecordedClass, ...]) -> dict[str, list[np.ndarray]]:
    """label -> its recordings (16 kHz mono float64, silence trimmed)."""
    bank: dict[str, list[np.ndarray]] = {}
    rng = np.random.default_rng(BANK_SEED)
    with tempfile.TemporaryDirectory(prefix="lean_demo_") as scratch:
        scratch = Path(scratch)
        instruments = [c for c in classes if isinstance(c.source, Instrument)]
        if instruments:
            rendered = _render_instruments([c.source for c in instruments], scratch)
            bank.update({c.label: notes for c, notes in zip(instruments, rendered)})
        for recorded_class in classes:
            source = recorded_class.source
            if isinstance(source, Voice):
                bank[recorded_class.label] = _render_speech(source, scratch, rng)
            elif isinstance(source, tuple):
                folder = (SOUND_THEME_DIR if recorded_class.package == "sound-theme-freedesktop"
                          else SOUND_ICONS_DIR)
                bank[recorded_class.label] = _load_files(source, folder)
    for label, recordings in bank.items():
        if not recordings or not all(len(r) > SAMPLE_RATE // 100 for r in recordings):
            raise AssertionError(f"demo bank: {label} has an empty recording")
    return {c.label: bank[c.label] for c in classes}


def choose_classes(count: int) -> tuple[RecordedClass, ...]:
    """The first `count` classes of the table; a clear error when packages are missing."""
    if not MIN_CLASSES <= count <= MAX_CLASSES:
        raise LeanError(f"--classes must be between {MIN_CLASSES} and {MAX_CLASSES}, got {count}")
    chosen = CLASSES[:count]
    missing = sorted({c.package for c in chosen if not package_available(c.package)})
    if missing:
        raise LeanError(f"the {count}-class recorded demo needs the Debian packages "
                        f"{', '.join(missing)}" + (" and fluidsynth" if "fluid-soundfont-gm"
                                                    in missing else "")
                        + f" (apt-get install {' '.join(missing)}"
                        + (" fluidsynth" if "fluid-soundfont-gm" in missing else "") + ")")
    return chosen


def _plan_clips(rng, num_classes: int, clips_per_class: int) -> list[dict]:
    """Labels and split of every clip, stratified by the clip's first class."""
    plan = []
    for primary in range(num_classes):
        for split in shuffled_splits(rng, clips_per_class, EVAL_FRACTION, VAL_FRACTION):
            labels = [primary]
            draw = rng.uniform()
            extra = 2 if draw < THIRD_CLASS_FRACTION else 1 if draw < SECOND_CLASS_FRACTION else 0
            others = [c for c in range(num_classes) if c != primary]
            labels += [int(c) for c in rng.choice(others, size=extra, replace=False)]
            plan.append({"labels": labels, "split": split})
    return [plan[i] for i in rng.permutation(len(plan))]


def _render_clip(rng, labels: list[int], classes, bank) -> np.ndarray:
    """A clip of 1-5 s: each class sound from a random offset at a random gain, over pink
    noise, at a random overall level."""
    n = int(rng.uniform(MIN_SECONDS, MAX_SECONDS) * SAMPLE_RATE)
    mix = np.zeros(n)
    for rank, index in enumerate(labels):
        # Later classes start in the first half and are up to 9 dB quieter.
        start = 0 if rank == 0 else int(rng.uniform(0, 0.5) * n)
        gain_db = rng.uniform(-3, 3) - (rng.uniform(0, 9) if rank else 0)
        label = classes[index].label
        sound = normalized_active_rms(_from_recordings(rng, n - start, bank[label]), label)
        mix[start:] += 10 ** (gain_db / 20) * sound
    mix += pink_noise(rng, n) * 10 ** (-rng.uniform(*SNR_DB) / 20)
    peak_db = rng.uniform(-18, -1)
    return mix / (np.abs(mix).max() + 1e-12) * 10 ** (peak_db / 20)


def build_recorded_demo(out_dir: str | Path, classes: int, seed: int = 0,
                        clips_per_class: int = DEFAULT_CLIPS_PER_CLASS, force: bool = False,
                        progress: bool = True) -> dict:
    """Writes the recorded demo (FSD50K layout, 16-bit WAV) and returns its manifest.

    Args:
        out_dir: destination; empty or absent, or a demo to replace with `force` (one built
            with the same arguments is reused).
        classes: how many classes of the table (30 to MAX_CLASSES).
        seed: the same seed gives the same files, given the same package versions.
        clips_per_class: clips whose first label is each class (at least 5).
        force: replace an existing demo in out_dir.
        progress: show a tqdm bar on stderr.

    Returns:
        The manifest written to out_dir/demo.json.
    """
    if clips_per_class < 5:
        raise LeanError(f"--clips-per-class must be at least 5, got {clips_per_class}")
    chosen = choose_classes(classes)
    out_dir = Path(out_dir)
    arguments = {"kind": "recorded", "classes": classes, "seed": seed,
                 "clips_per_class": clips_per_class, "generator_version": GENERATOR_VERSION}
    existing = prepare_demo_folder(out_dir, arguments, force, DEMO_ENTRIES,
                                   lambda folder: _names(folder) <= set(DEMO_ENTRIES))
    if existing is not None:
        return existing
    bank = build_recording_bank(chosen)
    plan = _plan_clips(np.random.default_rng([seed, 0]), len(chosen), clips_per_class)
    write_fsd50k_clips(out_dir, plan, [c.label for c in chosen], seed, 200000,
                       lambda rng, labels: _render_clip(rng, labels, chosen, bank), progress)
    manifest = {
        "arguments": arguments,
        "entries": list(DEMO_ENTRIES),
        "num_classes": len(chosen),
        "num_clips": len(plan),
        "clips_per_split": {split: sum(1 for clip in plan if clip["split"] == split)
                            for split in ("train", "val", "eval")},
        "clips_per_label_count": {str(k): sum(1 for clip in plan if len(clip["labels"]) == k)
                                  for k in (1, 2, 3)},
        "packages": sorted({c.package for c in chosen}),
        "recorded_classes": [c.label for c in chosen],
    }
    atomic_write_text(out_dir / "README.md", _readme(manifest, chosen))
    atomic_write_text(out_dir / MANIFEST_NAME,
                      json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _readme(manifest: dict, chosen) -> str:
    counts, args = manifest["clips_per_split"], manifest["arguments"]
    mixed = manifest["clips_per_label_count"]
    lines = [
        README_TITLE,
        "",
        f"Built by `lean data demo --classes {args['classes']}` (seed {args['seed']}, "
        f"{args['clips_per_class']} clips per class): {manifest['num_clips']} clips (train "
        f"{counts['train']}, val {counts['val']}, eval {counts['eval']}), "
        f"{manifest['num_classes']} classes; {mixed['2']} clips mix two classes, {mixed['3']} "
        "three.",
        "Layout as FSD50K: ground_truth/{dev,eval,vocabulary}.csv, dev_audio/, eval_audio/ "
        f"(16-bit WAV, {MIN_SECONDS:g}-{MAX_SECONDS:g} s, mostly 16 kHz mono, some 44.1 kHz "
        "stereo).",
        "Each clip: its first class at -3 to +3 dB, further classes from a random offset in the "
        "first half, up to 9 dB quieter, every sound made of its class's recordings picked at "
        "random, pitch/speed shifted by -12 to +14 % and repeated; over pink noise (SNR "
        f"{SNR_DB[0]:g}-{SNR_DB[1]:g} dB), peak level -18 to -1 dBFS. Made for measuring, not "
        "a substitute for FSD50K.",
        "",
        "## Sources and licences",
        "",
        "All sounds come from Debian packages; their licences carry over to the clips made "
        "from them.",
        "",
    ]
    for package in manifest["packages"]:
        what, licence = PACKAGES[package]
        labels = [c.label for c in chosen if c.package == package]
        lines.append(f"- `{package}`: {what}; licence {licence}. Classes: {', '.join(labels)}.")
    if "fluid-soundfont-gm" in manifest["packages"]:
        lines += ["", f"Instruments: {NOTES_PER_INSTRUMENT} notes per General MIDI program at "
                  "seeded random pitches in the instrument's range, 0.25-1.2 s, velocity "
                  "60-120, rendered at 16 kHz without reverb or chorus."]
    if "espeak-ng" in manifest["packages"]:
        lines += ["", "Speech: counting to ten, the days of the week and one sentence per "
                  "language, in four espeak-ng voice variants (m1, m3, f2, f4) at random speed "
                  "and pitch; whispering in three languages."]
    if "sound-theme-freedesktop" in manifest["packages"]:
        lines += ["", "sound-theme-freedesktop files (debian/copyright):", ""]
        lines += [f"- {files}: {credit}" for files, credit in THEME_CREDITS.items()]
    return "\n".join(lines) + "\n"


__all__ = ["CLASSES", "DEFAULT_CLIPS_PER_CLASS", "MAX_CLASSES", "MIN_CLASSES",
           "build_recorded_demo", "choose_classes"]
