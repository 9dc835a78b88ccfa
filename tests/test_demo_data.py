"""The demo dataset: layout, determinism, sources, reuse rules, and that its classes are learnable."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from lean.command_line import run_cli
from lean.commands import data as data_command
from lean.data.audio import load_audio
from lean.data.demo import DEMO_CLASSES, SOUND_THEME_DIR, build_demo_dataset
from lean.data import load_dataset
from lean.data.windows import aggregate_clip_scores, eval_windows, training_windows
from lean.errors import LeanError
from lean.metrics import multilabel_metrics

CLIPS_PER_CLASS = 6


def file_digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "data"
    build_demo_dataset(out, seed=3, clips_per_class=CLIPS_PER_CLASS, progress=False)
    return out


def test_layout_counts_and_clip_format(demo_dir):
    dataset = load_dataset(demo_dir)
    assert len(dataset.labels) == len(DEMO_CLASSES) >= 10
    clips = {split: dataset.clips(split) for split in ("train", "val", "eval")}
    assert sum(len(c) for c in clips.values()) == CLIPS_PER_CLASS * len(DEMO_CLASSES)
    for split in clips:
        labels_seen = {index for clip in clips[split] for index in clip.label_indices}
        assert labels_seen == set(range(len(DEMO_CLASSES))), split
    all_clips = [clip for split_clips in clips.values() for clip in split_clips]
    assert sum(len(clip.label_indices) == 2 for clip in all_clips) >= 0.15 * len(all_clips)
    rates = set()
    for clip in all_clips:
        info = soundfile.info(clip.path)
        assert (info.format, info.subtype) == ("WAV", "PCM_16")
        assert 1.0 <= info.duration <= 4.0 + 1e-3
        rates.add(info.samplerate)
    assert rates == {16000, 44100}
    manifest = json.loads((demo_dir / "demo.json").read_text())
    assert manifest["num_clips"] == len(all_clips)


def test_same_seed_same_bytes_other_seed_other_audio(demo_dir, tmp_path):
    again = tmp_path / "again"
    build_demo_dataset(again, seed=3, clips_per_class=CLIPS_PER_CLASS, progress=False)
    assert file_digests(again) == file_digests(demo_dir)
    other = tmp_path / "other"
    build_demo_dataset(other, seed=4, clips_per_class=CLIPS_PER_CLASS, progress=False)
    audio_digests = {name: digest for name, digest in file_digests(demo_dir).items() if name.endswith(".wav")}
    other_digests = {name: digest for name, digest in file_digests(other).items() if name.endswith(".wav")}
    assert set(audio_digests.values()).isdisjoint(other_digests.values())


def test_readme_names_the_sources(demo_dir, tmp_path):
    readme = (demo_dir / "README.md").read_text()
    if SOUND_THEME_DIR.is_dir():
        assert "sound-theme-freedesktop" in readme and "CC-BY-SA-3.0" in readme and "GPL-2+" in readme
    synthetic = tmp_path / "synthetic"
    manifest = build_demo_dataset(synthetic, seed=3, clips_per_class=5, sound_dir=None, progress=False)
    assert manifest["arguments"]["recorded_classes"] == []
    assert "was not installed" in (synthetic / "README.md").read_text()


def test_reuse_and_overwrite_rules(demo_dir, tmp_path):
    before = file_digests(demo_dir)
    build_demo_dataset(demo_dir, seed=3, clips_per_class=CLIPS_PER_CLASS, progress=False)  # same: reused
    assert file_digests(demo_dir) == before
    with pytest.raises(LeanError, match="built with other arguments; add --force"):
        build_demo_dataset(demo_dir, seed=9, clips_per_class=CLIPS_PER_CLASS, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(LeanError, match="not empty and holds no demo dataset"):
        build_demo_dataset(foreign, progress=False)
    assert (foreign / "thesis.tex").read_text() == "keep me"
    with pytest.raises(LeanError, match="is not a folder"):
        build_demo_dataset(foreign / "thesis.tex", progress=False)


def test_an_interrupted_build_is_rebuilt(tmp_path):
    out = tmp_path / "data"
    (out / "dev_audio").mkdir(parents=True)
    (out / "dev_audio" / "100000.wav").write_bytes(b"RIFF half written")  # no manifest yet
    build_demo_dataset(out, seed=1, clips_per_class=5, sound_dir=None, progress=False)
    dataset = load_dataset(out)  # every listed file exists and the CSVs are whole
    for clip in dataset.clips("train") + dataset.clips("val"):
        assert load_audio(clip.path).shape[0] >= 16000  # the half-written file was replaced


@pytest.mark.parametrize("demo_class", DEMO_CLASSES, ids=lambda c: c.label)
def test_every_window_of_a_class_sound_holds_that_class(demo_class):
    """Windows inherit their clip's labels, so a class's sound must be audible in every 1 s
    window, even in the shortest (0.5 s) stretch a second class gets."""
    from lean.data.demo import class_sound, load_recordings

    recordings = load_recordings(SOUND_THEME_DIR)
    for trial in range(8):
        rng = np.random.default_rng([11, trial])
        for seconds in (0.5, 3.7):
            sound = class_sound(rng, int(seconds * 16000), demo_class, recordings)
            assert np.isfinite(sound).all()
            windows = training_windows(sound.astype(np.float32), 16000) if seconds >= 1 else sound[None]
            window_rms = np.sqrt(np.mean(windows**2, axis=1))
            assert window_rms.min() > 0.05, f"{demo_class.label}: a window is nearly silent"


def test_demo_command_help_and_argument_errors(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="lean")
    data_command.register(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "demo", "--help"])
    assert f"{len(DEMO_CLASSES)} classes" in capsys.readouterr().out
    assert run_cli(parser, ["data", "demo", str(tmp_path / "d"), "--clips-per-class", "0"]) == 2
    assert "--clips-per-class must be at least 5, got 0" in capsys.readouterr().err


def band_energy_features(windows: np.ndarray) -> np.ndarray:
    """Log energies of 24 log-spaced bands (mean and spread over 32 ms frames): a tiny frontend."""
    frames = windows[:, : (windows.shape[1] // 512) * 512].reshape(windows.shape[0], -1, 512)
    power = np.abs(np.fft.rfft(frames * np.hanning(512), axis=-1)) ** 2
    edges = np.unique(np.geomspace(2, 257, 25).astype(int))
    bands = np.stack([power[..., lo:hi].sum(-1) for lo, hi in zip(edges[:-1], edges[1:])], -1)
    log_bands = np.log(bands + 1e-8)
    log_bands -= log_bands.mean(axis=-1, keepdims=True)  # level-invariant: the gain is random
    return np.concatenate([log_bands.mean(axis=1), log_bands.std(axis=1)], axis=1)


def linear_model_eval(dataset) -> tuple[dict, float]:
    """(multilabel metrics on eval, chance mAP) of a linear model on band energies trained on
    the train and val windows: how learnable a dataset's classes are from sound alone."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import StandardScaler

    train = dataset.clips("train") + dataset.clips("val")
    train_windows = [training_windows(load_audio(clip.path), 16000) for clip in train]
    x_train = band_energy_features(np.concatenate(train_windows))
    y_train = np.repeat(dataset.label_matrix(train), [len(w) for w in train_windows], axis=0)
    scaler = StandardScaler().fit(x_train)
    model = OneVsRestClassifier(LogisticRegression(C=1.0, max_iter=2000)).fit(scaler.transform(x_train), y_train)

    test = dataset.clips("eval")
    test_windows = [eval_windows(load_audio(clip.path), 16000) for clip in test]
    window_scores = model.predict_proba(scaler.transform(band_energy_features(np.concatenate(test_windows))))
    clip_of_window = np.repeat(np.arange(len(test)), [len(w) for w in test_windows])
    clip_scores = aggregate_clip_scores(window_scores, clip_of_window)
    y_test = dataset.label_matrix(test)
    result = multilabel_metrics(y_test, clip_scores, dataset.labels)
    chance = float(np.mean(y_test.mean(axis=0)))
    return result, chance


@pytest.mark.slow
def test_a_tiny_classifier_beats_chance_by_far(demo_dir):
    """The classes must be learnable from sound: a linear model on band energies, trained on
    train windows, tags eval clips far above the chance mAP (the positives' share per class)."""
    result, chance = linear_model_eval(load_dataset(demo_dir))
    print(f"demo eval mAP {result['mAP']:.3f}, mAUC {result['mAUC']:.3f}, chance mAP {chance:.3f}")
    assert result["mAP"] > 0.6 > 3 * chance
    assert result["mAUC"] > 0.85
