"""The recorded demo (`lean data demo --classes N`): layout, determinism, sources, packages, and
that a linear model learns it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lean.data import demo_recorded, load_dataset
from lean.errors import LeanError
from test_demo_data import file_digests, linear_model_eval

CLASSES = 30
CLIPS_PER_CLASS = 8
pytestmark = pytest.mark.skipif(
    not all(demo_recorded.package_available(c.package) for c in demo_recorded.CLASSES),
    reason="needs fluidsynth, fluid-soundfont-gm, espeak-ng, sound-theme-freedesktop, "
           "sound-icons (scripts/test.sh installs them)")


@pytest.fixture(scope="module")
def recorded_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("recorded") / "data"
    demo_recorded.build_recorded_demo(out, CLASSES, seed=1, clips_per_class=CLIPS_PER_CLASS,
                                      progress=False)
    return out


def test_layout_counts_and_mixtures(recorded_dir):
    dataset = load_dataset(recorded_dir)
    assert dataset.layout == "fsd50k" and dataset.task == "multilabel"
    assert list(dataset.labels) == [c.label for c in demo_recorded.CLASSES[:CLASSES]]
    clips = {split: dataset.clips(split) for split in ("train", "val", "eval")}
    # 8 clips per class: round(8 x 0.25) = 2 eval, round(8 x 0.2) = 2 val, 4 train.
    assert {split: len(c) for split, c in clips.items()} == {
        "train": 4 * CLASSES, "val": 2 * CLASSES, "eval": 2 * CLASSES}
    for split, split_clips in clips.items():
        assert {i for clip in split_clips for i in clip.label_indices} == set(range(CLASSES))
    counts = np.bincount([len(clip.label_indices) for c in clips.values() for clip in c])
    assert counts[1] > counts[2] > counts[3] > 0 and len(counts) == 4
    manifest = json.loads((recorded_dir / "demo.json").read_text())
    assert manifest["packages"] == sorted(demo_recorded.PACKAGES)
    readme = (recorded_dir / "README.md").read_text()
    for package in demo_recorded.PACKAGES:
        assert f"`{package}`" in readme
    assert "MIT" in readme and "CC-BY-SA-3.0" in readme and "GPL-2+" in readme


def test_bank_holds_distinct_real_sounds_for_every_class():
    chosen = demo_recorded.CLASSES[:CLASSES]
    bank = demo_recorded.build_recording_bank(chosen)
    assert list(bank) == [c.label for c in chosen]
    for recorded_class in chosen:
        recordings = bank[recorded_class.label]
        assert all(len(r) > 160 and np.abs(r).max() > 0 for r in recordings)  # >= 10 ms
        if isinstance(recorded_class.source, demo_recorded.Instrument):
            assert len(recordings) == demo_recorded.NOTES_PER_INSTRUMENT
        if isinstance(recorded_class.source, demo_recorded.Voice):
            source = recorded_class.source
            assert len(recordings) == len(source.voices) * len(source.texts)
    # Different instruments give different spectra: the average spectrum of the piano's notes
    # is far from the violin's.
    def mean_spectrum(recordings):
        spectra = [np.abs(np.fft.rfft(r[:4096], 4096)) for r in recordings]
        spectrum = np.mean(spectra, axis=0)
        return spectrum / spectrum.sum()
    piano, violin = mean_spectrum(bank["Piano"]), mean_spectrum(bank["Violin"])
    assert np.abs(piano - violin).sum() > 0.3


@pytest.mark.slow
def test_same_seed_same_bytes(recorded_dir, tmp_path):
    again = tmp_path / "again"
    demo_recorded.build_recorded_demo(again, CLASSES, seed=1, clips_per_class=CLIPS_PER_CLASS,
                                      progress=False)
    assert file_digests(again) == file_digests(recorded_dir)


def test_class_count_and_missing_packages_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(LeanError, match=r"--classes must be between 30 and \d+, got 12"):
        demo_recorded.build_recorded_demo(tmp_path / "a", 12)
    monkeypatch.setattr(demo_recorded, "package_available", lambda package: package != "espeak-ng")
    with pytest.raises(LeanError, match=r"needs the Debian packages espeak-ng \(apt-get install "
                                        r"espeak-ng\)"):
        demo_recorded.build_recorded_demo(tmp_path / "b", 30)
    assert not (tmp_path / "b").exists()


def test_cli_builds_it_and_refuses_single_label(tmp_path, capsys):
    from lean.cli import main

    assert main(["data", "demo", str(tmp_path / "d"), "--classes", "31", "--task",
                 "single-label"]) == 2
    assert "does not combine with --task single-label" in capsys.readouterr().err


@pytest.mark.slow
def test_a_linear_model_learns_it(recorded_dir):
    """Band energies and a linear model, trained on train + val, tag eval clips far above chance."""
    result, chance = linear_model_eval(load_dataset(recorded_dir))
    print(f"recorded demo eval mAP {result['mAP']:.3f}, chance {chance:.3f}")
    assert result["mAP"] > 4 * chance
