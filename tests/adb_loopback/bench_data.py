"""Small .tflite models and a small FSD50K-layout dataset for the lean-bench tests."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

LABELS = ("Bark", "Siren", "Speech")
WINDOW_SAMPLES = 16000
SAMPLE_RATE = 16000

_CONVERT = r"""
import sys
import numpy as np
import tensorflow as tf

num_classes = int(sys.argv[1])
for path, hidden in zip(sys.argv[2::2], sys.argv[3::2]):
    hidden = int(hidden)
    rng = np.random.default_rng(hidden)
    first = tf.constant(rng.normal(0, 0.3, (100, hidden)).astype(np.float32))
    second = tf.constant(rng.normal(0, 0.3, (hidden, num_classes)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 16000], tf.float32, name="waveform")])
    def serve(waveform):
        frames = tf.reshape(waveform, [1, 100, 160])  # 10 ms frames
        energy = tf.math.log(tf.reduce_mean(tf.abs(frames), axis=2) + 1e-3)  # [1, 100]
        hidden_units = tf.nn.relu(tf.matmul(energy, first))  # [1, hidden]
        return tf.sigmoid(tf.matmul(hidden_units, second))  # [1, num_classes]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()],
                                                                serve)
    with open(path, "wb") as handle:
        handle.write(converter.convert())
"""


def build_tiny_models(paths_and_widths: dict, num_classes: int = len(LABELS)) -> list[Path]:
    """Float32 waveform [1, 16000] -> probabilities [1, C] .tflite files (path -> hidden width)
    with the TFLite Model Metadata lean-export writes (16 kHz mono, labels, a config.json naming
    the task) and MODEL.labels.txt beside each; converted in one subprocess, so TensorFlow stays
    out of the test process and is imported once."""
    import json

    from lean_export.metadata import AssociatedFile, AudioClassifierInfo, add_metadata

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    arguments = [str(num_classes)]
    for path, hidden in paths_and_widths.items():
        arguments += [str(path), str(hidden)]
    subprocess.run([sys.executable, "-c", _CONVERT] + arguments, check=True, env=env,
                   capture_output=True, timeout=300)
    labels = LABELS[:num_classes]
    config = json.dumps({"model": {"task": "multilabel"}}).encode()
    for path in map(Path, paths_and_widths):
        info = AudioClassifierInfo(
            name=path.stem, description="lean-bench test model", version="test", author="tests",
            license="Apache-2.0", sample_rate=SAMPLE_RATE, labels=labels,
            associated_files=(AssociatedFile("config.json", config),))
        path.write_bytes(add_metadata(path.read_bytes(), info))
        path.with_suffix(".labels.txt").write_text("\n".join(labels) + "\n")
    return [Path(path) for path in paths_and_widths]


def write_tiny_dataset(root: Path, seed: int = 0) -> Path:
    """FSD50K layout: 3 classes, 4 dev clips, 6 eval clips of 0.6-3.3 s (16-bit wav)."""
    import soundfile

    rng = np.random.default_rng(seed)
    ground_truth = root / "FSD50K.ground_truth"
    ground_truth.mkdir(parents=True, exist_ok=True)
    with open(ground_truth / "vocabulary.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        for index, label in enumerate(LABELS):
            writer.writerow([index, label, f"/m/{index:04d}"])
    eval_labels = [[0], [1], [2], [0, 2], [1], [0]]
    eval_seconds = [0.6, 1.0, 2.3, 3.3, 1.7, 2.0]
    dev_labels = [[0], [1], [2], [1, 2]]
    for split_name, labels, seconds in (("eval", eval_labels, eval_seconds),
                                        ("dev", dev_labels, [1.2] * len(dev_labels))):
        audio_dir = root / f"FSD50K.{split_name}_audio"
        audio_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for index, (clip_labels, length) in enumerate(zip(labels, seconds)):
            fname = f"{split_name}{index:03d}"
            samples = int(length * SAMPLE_RATE)
            # Loudness envelopes differ per class so the tiny model's scores differ per clip.
            envelope = 0.05 + 0.4 * np.abs(np.sin(np.linspace(0, 3 + 2 * clip_labels[0], samples)))
            audio = envelope * rng.standard_normal(samples)
            soundfile.write(audio_dir / f"{fname}.wav", np.clip(audio, -1, 1), SAMPLE_RATE,
                            subtype="PCM_16")
            names = ",".join(LABELS[label] for label in clip_labels)
            mids = ",".join(f"/m/{label:04d}" for label in clip_labels)
            row = [fname, names, mids]
            if split_name == "dev":
                row.append("train" if index < 3 else "val")
            rows.append(row)
        with open(ground_truth / f"{split_name}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["fname", "labels", "mids"] + (["split"] if split_name == "dev" else []))
            writer.writerows(rows)
    return root
