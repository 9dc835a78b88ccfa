"""The single-label demo dataset: ESC-50 layout, counts, determinism, sources, reuse rules, model
input specs, the CLI, and that its classes are learnable but not trivially."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from test_demo_data import band_energy_features, file_digests

from lean.cli import run_cli
from lean.commands import data as data_command
from lean.data import detect_layout, load_dataset
from lean.data.audio import load_audio
from lean.data.demo import SOUND_THEME_DIR, build_demo_dataset
from lean.data.demo_single_label import CLASSES, NUM_FOLDS, build_single_label_demo
from lean.data.windows import aggregate_clip_scores, eval_windows, training_windows
from lean.errors import LeanError
from lean.metrics import single_label_metrics

CLIPS_PER_CLASS = 5


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single_label_demo") / "data"
    build_single_label_demo(out, seed=3, clips_per_class=CLIPS_PER_CLASS, progress=False)
    return out


def test_esc50_layout_counts_and_clip_format(demo_dir):
    assert detect_layout(demo_dir) == "esc50"
    dataset = load_dataset(demo_dir)
    assert (dataset.task, dataset.folds) == ("single_label", tuple(range(1, NUM_FOLDS + 1)))
    assert dataset.labels == tuple(category for category, _ in CLASSES)
    clips = [clip for split in ("train", "val", "eval") for clip in dataset.clips(split)]
    assert len(clips) == CLIPS_PER_CLASS * len(CLASSES)
    for fold in dataset.folds:  # every class once in every fold
        targets = sorted(clip.label_indices[0] for clip in clips if clip.fold == fold)
        assert targets == list(range(len(CLASSES)))
    for clip in clips:
        info = soundfile.info(clip.path)
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 44100, 1)
        assert info.frames == 5 * 44100
        fold, _, take, target = clip.fname.removesuffix(".wav").split("-")
        assert (int(fold), take, (int(target),)) == (clip.fold, "A", clip.label_indices)
    manifest = json.loads((demo_dir / "demo.json").read_text())
    assert manifest["num_clips"] == len(clips)
    assert manifest["clips_per_fold"] == {str(f): len(CLASSES) for f in dataset.folds}


def test_same_seed_same_bytes_other_seed_other_audio(demo_dir, tmp_path):
    again = tmp_path / "again"
    build_single_label_demo(again, seed=3, clips_per_class=CLIPS_PER_CLASS, progress=False)
    assert file_digests(again) == file_digests(demo_dir)
    other = tmp_path / "other"
    build_single_label_demo(other, seed=4, clips_per_class=CLIPS_PER_CLASS, progress=False)
    audio = {d for name, d in file_digests(demo_dir).items() if name.endswith(".wav")}
    other_audio = {d for name, d in file_digests(other).items() if name.endswith(".wav")}
    assert audio.isdisjoint(other_audio)


def test_readme_names_the_sources(demo_dir, tmp_path):
    readme = (demo_dir / "README.md").read_text()
    assert "ESC-50" in readme and "Synthesized" in readme
    if SOUND_THEME_DIR.is_dir():
        assert "sound-theme-freedesktop" in readme and "CC-BY-SA-3.0" in readme
        assert "From real recordings: speech, camera_shutter" in readme
    synthetic = tmp_path / "synthetic"
    build_single_label_demo(synthetic, clips_per_class=CLIPS_PER_CLASS, sound_dir=None,
                            progress=False)
    assert "was not installed, so every class was synthesized" in (synthetic / "README.md").read_text()
    assert load_dataset(synthetic).num_classes == len(CLASSES)


@pytest.mark.parametrize("rate,channels,seconds,windows", [
    (16000, 1, 1.0, 5), (22050, 1, 2.0, 3), (16000, 1, 10.0, 1), (48000, 2, 10.0, 1)])
def test_clips_decode_and_window_for_each_model_input(demo_dir, rate, channels, seconds, windows):
    clip = load_dataset(demo_dir).clips("train")[0]
    audio = load_audio(clip.path, rate, channels)
    assert audio.shape[0] == 5 * rate
    cut = training_windows(audio, int(seconds * rate))
    assert cut.shape == (windows, int(seconds * rate)) + ((channels,) if channels > 1 else ())


def test_reuse_and_replace_rules_across_both_demos(demo_dir, tmp_path):
    before = file_digests(demo_dir)
    build_single_label_demo(demo_dir, seed=3, clips_per_class=CLIPS_PER_CLASS, progress=False)
    assert file_digests(demo_dir) == before  # same arguments: reused
    multi = tmp_path / "multi"
    build_demo_dataset(multi, clips_per_class=5, sound_dir=None, progress=False)
    with pytest.raises(LeanError, match="built with other arguments; add --force"):
        build_single_label_demo(multi, clips_per_class=CLIPS_PER_CLASS, progress=False)
    build_single_label_demo(multi, clips_per_class=CLIPS_PER_CLASS, sound_dir=None, force=True,
                            progress=False)
    assert sorted(p.name for p in multi.iterdir()) == ["README.md", "audio", "demo.json", "meta"]
    build_demo_dataset(multi, clips_per_class=5, sound_dir=None, force=True, progress=False)
    assert detect_layout(multi) == "fsd50k" and not (multi / "audio").exists()

    foreign = tmp_path / "foreign"
    (foreign / "audio").mkdir(parents=True)
    (foreign / "audio" / "my_recording.wav").write_bytes(b"keep me")
    with pytest.raises(LeanError, match="not empty and holds no demo dataset"):
        build_single_label_demo(foreign, clips_per_class=CLIPS_PER_CLASS, progress=False)
    assert (foreign / "audio" / "my_recording.wav").read_bytes() == b"keep me"

    interrupted = tmp_path / "interrupted"
    (interrupted / "audio").mkdir(parents=True)
    (interrupted / "audio" / "1-100003-A-0.wav").write_bytes(b"RIFF half written")
    build_single_label_demo(interrupted, clips_per_class=CLIPS_PER_CLASS, sound_dir=None,
                            progress=False)
    assert len(load_dataset(interrupted).clips("train")) == 3 * len(CLASSES)


def data_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lean")
    data_command.register(parser.add_subparsers(dest="command", required=True))
    return run_cli(parser, ["data", *argv])


def test_demo_and_check_commands(demo_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    assert data_cli(["demo", str(out), "--task", "single-label", "--clips-per-class", "5"]) == 0
    printed = capsys.readouterr().out
    assert f"single-label demo dataset in {out} (ESC-50 layout): 50 clips of 5 s, 10 classes" in printed
    assert file_digests(out) != {} and detect_layout(out) == "esc50"
    assert data_cli(["demo", str(out), "--task", "single_label", "--clips-per-class", "5",
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["arguments"]["task"] == "single_label"
    assert data_cli(["check", str(out)]) == 0
    assert "esc50 layout, single_label, 10 classes" in capsys.readouterr().out
    assert data_cli(["demo", str(out), "--task", "single-label", "--clips-per-class", "3"]) == 2
    assert "--clips-per-class must be at least 5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        data_cli(["demo", str(out), "--task", "regression"])
    assert "expected multi-label or single-label, not 'regression'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_tiny_classifier_beats_chance_but_not_perfectly(tmp_path):
    """Learnable from sound, yet not trivial: a linear model on band energies of 1 s windows,
    trained on folds 2-5, scores the fold-1 clips far above chance (10 %) and below 100 %."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    root = tmp_path / "data"
    build_single_label_demo(root, seed=0, clips_per_class=10, progress=False)
    dataset = load_dataset(root, fold=1)
    train = dataset.clips("train") + dataset.clips("val")
    train_windows = [training_windows(load_audio(clip.path), 16000) for clip in train]
    x_train = band_energy_features(np.concatenate(train_windows))
    y_train = np.repeat([clip.label_indices[0] for clip in train], [len(w) for w in train_windows])
    scaler = StandardScaler().fit(x_train)
    model = LogisticRegression(C=1.0, max_iter=3000).fit(scaler.transform(x_train), y_train)

    test = dataset.clips("eval")
    test_windows = [eval_windows(load_audio(clip.path), 16000) for clip in test]
    window_scores = model.predict_proba(scaler.transform(band_energy_features(np.concatenate(test_windows))))
    clip_of_window = np.repeat(np.arange(len(test)), [len(w) for w in test_windows])
    y_test = dataset.label_matrix(test)
    window_accuracy = float(np.mean(window_scores.argmax(1) == y_test.argmax(1)[clip_of_window]))
    clip_accuracy = single_label_metrics(
        y_test, aggregate_clip_scores(window_scores, clip_of_window, "log_sum"), dataset.labels)["accuracy"]
    print(f"single-label demo fold 1: window accuracy {window_accuracy:.3f}, clip accuracy "
          f"(log_sum) {clip_accuracy:.3f}, chance 0.100")
    assert 0.4 < window_accuracy < 0.95
    assert clip_accuracy > 0.5
