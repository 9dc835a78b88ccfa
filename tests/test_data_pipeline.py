"""The tf.data window pipeline for models of other shapes: stereo 2 s windows at 22.05 kHz from a
single-label (one-hot) dataset, read from a stereo cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from lean.data import load_dataset
from lean.data.audio import AudioCache, load_audio
from lean.data.pipeline import build_window_dataset, build_window_index, count_training_windows
from lean.data.windows import training_windows

RATE, WINDOW = 22050, 2 * 22050


def write_stereo_esc50(root: Path) -> Path:
    """ESC-50 layout, 3 classes x 5 folds, 44.1 kHz stereo clips of 1-5 s (channels differ)."""
    rng = np.random.default_rng(3)
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        for target, category in enumerate(("dog", "rain", "siren")):
            name = f"{fold}-{fold}{target}-A-{target}.wav"
            seconds = (1.0, 3.2, 5.0)[(fold + target) % 3]
            audio = rng.uniform(-0.5, 0.5, (int(44100 * seconds), 2)) * [1.0, 0.3]
            (root / "audio").mkdir(parents=True, exist_ok=True)
            soundfile.write(root / "audio" / name, audio, 44100, subtype="FLOAT")
            lines.append(f"{name},{fold},{target},{category},False,{fold}{target},A")
    (root / "meta").mkdir()
    (root / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n")
    return root


def test_stereo_windows_with_one_hot_targets_once_per_epoch(tmp_path):
    dataset = load_dataset(write_stereo_esc50(tmp_path / "data"))
    cache = AudioCache(tmp_path / "cache", RATE, channels=2)
    train = dataset.clips("train")
    index = build_window_index(train, cache, WINDOW, progress=False)
    expected = {}
    for clip in train:
        audio = load_audio(clip.path, RATE, channels=2)
        assert count_training_windows(audio.shape[0], WINDOW) == len(training_windows(audio, WINDOW))
        for window in training_windows(audio, WINDOW):
            expected[window.tobytes()] = dataset.label_matrix([clip])[0]
    # Three train folds, each with one clip of 1 s (1 window, repeated), 3.2 s (2) and 5 s (3).
    assert index.num_windows == len(expected) == 18

    data = build_window_dataset(index, dataset, cache, WINDOW, batch_size=4, shuffle_seed=1,
                                epochs=(0, 1))
    windows_spec, labels_spec = data.element_spec
    assert windows_spec.shape.as_list() == [None, WINDOW, 2]
    assert labels_spec.shape.as_list() == [None, 3]
    seen = []
    for windows, labels in data.as_numpy_iterator():
        for window, label in zip(windows, labels):
            np.testing.assert_array_equal(label, expected[window.tobytes()])
            assert label.sum() == 1.0  # one-hot
            seen.append(window.tobytes())
    assert sorted(seen) == sorted(expected)


def test_clip_starts_cut_each_batch_to_its_shortest_clip(tmp_path):
    """For a model with an open time axis: each clip once per epoch, its first window (a
    shorter clip whole, not repeated), every batch as long as its shortest member."""
    dataset = load_dataset(write_stereo_esc50(tmp_path / "data"))
    cache = AudioCache(tmp_path / "cache", RATE, channels=2)
    train = dataset.clips("train")
    index = build_window_index(train, cache, WINDOW, progress=False)
    starts = {clip.fname: load_audio(clip.path, RATE, channels=2)[:WINDOW] for clip in train}
    data = build_window_dataset(index, dataset, cache, WINDOW, batch_size=4, shuffle_seed=2,
                                epochs=(0, 2), clip_starts=True)
    assert data.element_spec[0].shape.as_list() == [None, None, 2]
    epoch, epochs, lengths = [], [], set()
    for windows, labels in data.as_numpy_iterator():
        for window, label in zip(windows, labels):
            # The clip whose start this row is: same label, same leading samples.
            matches = [name for name, start in starts.items() if len(start) >= len(window)
                       and np.array_equal(start[:len(window)], window)]
            assert len(matches) == 1
            clip = next(c for c in train if c.fname == matches[0])
            np.testing.assert_array_equal(label, dataset.label_matrix([clip])[0])
            epoch.append(matches[0])
        # Cut to the shortest member: one of the rows is that clip's whole start.
        assert any(len(starts[name]) == windows.shape[1] for name in epoch[-len(windows):])
        lengths.add(windows.shape[1])
        if len(epoch) == len(train):
            epochs.append(epoch)
            epoch = []
    assert len(epochs) == 2 and all(sorted(e) == sorted(starts) for e in epochs)
    # 1 s clips cut their batches to 1 s; batches of 3.2 s and 5 s clips are a full window.
    assert RATE in lengths and max(lengths) <= WINDOW
