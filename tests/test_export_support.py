"""Shared fixtures of the export tests: one demo dataset, one briefly trained tiny run, one int8 export.

The export is the slow part (conversion, calibration, mAP on val and eval), so it runs once per
session and every export test module reads the same files. This module holds no tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TINY_MODEL = "export_test_tiny"
_SHARED: dict = {}


def _register_tiny_model() -> None:
    """A small family member with the real log-mel frontend: what export sees of any member."""
    import keras

    from lean.frontends import YamnetLogMel
    from lean.models.common import waveform_input
    from lean.models.registry import model_names, register

    if TINY_MODEL in model_names():
        return

    @register(TINY_MODEL, description="test-only: log-mel frontend, one conv, one hidden layer, "
              "logistic head")
    def build_tiny(config, load_pretrained=True):
        waveform = waveform_input(config)
        # log_mel has shape [B, 96, 64].
        log_mel = YamnetLogMel(sample_rate=config.input.sample_rate)(waveform)
        x = keras.layers.Reshape((96, 64, 1), name="tiny_patch")(log_mel)
        x = keras.layers.Conv2D(16, 5, strides=4, activation="relu", name="tiny_conv")(x)
        x = keras.layers.GlobalAveragePooling2D(name="tiny_pool")(x)
        # Over 1024 weights, so dynamic-range quantization has something to quantize here too.
        x = keras.layers.Dense(96, activation="relu", name="tiny_hidden")(x)
        probabilities = keras.layers.Dense(config.num_classes, activation="sigmoid", name="tiny_head")(x)
        return keras.Model(waveform, probabilities, name=TINY_MODEL)


def demo_data(tmp_path_factory) -> Path:
    if "demo" not in _SHARED:
        from lean.data.demo import build_demo_dataset

        root = tmp_path_factory.mktemp("export_demo")
        build_demo_dataset(root, clips_per_class=5, progress=False)
        _SHARED["demo"] = root
    return _SHARED["demo"]


def write_run(run_dir: Path, model, config) -> Path:
    """A run directory as `lean train` leaves it: config.json, labels.txt, best.keras."""
    from lean.config import save_json

    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "best.keras")
    save_json(config, run_dir / "config.json")
    (run_dir / "labels.txt").write_text("".join(f"{label}\n" for label in _labels(config.data.dir)))
    return run_dir


def _labels(data_dir) -> tuple[str, ...]:
    from lean.data import load_dataset

    return load_dataset(data_dir).labels


def tiny_run(tmp_path_factory) -> Path:
    """The tiny model trained for a few epochs on the demo train split (scores carry signal)."""
    if "run" not in _SHARED:
        import keras

        from lean.config import DataConfig, ModelConfig, RunConfig
        from lean.data.audio import load_audio
        from lean.data import load_dataset
        from lean.data.windows import training_windows
        from lean.models.registry import build_model

        _register_tiny_model()
        data = demo_data(tmp_path_factory)
        dataset = load_dataset(data)
        config = RunConfig(model=ModelConfig(name=TINY_MODEL, num_classes=len(dataset.labels)),
                           data=DataConfig(dir=str(data), layout="fsd50k"))
        keras.utils.set_random_seed(0)
        model = build_model(config.model)
        windows, targets = [], []
        clips = dataset.clips("train")
        for clip, target in zip(clips, dataset.label_matrix(clips)):
            for window in training_windows(load_audio(clip.path), config.model.window_samples):
                windows.append(window)
                targets.append(target)
        model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
        model.fit(np.stack(windows), np.stack(targets), batch_size=16, epochs=20, verbose=0)
        _SHARED["run"] = write_run(tmp_path_factory.mktemp("export_run") / "tiny", model, config)
    return _SHARED["run"]


def int8_export(tmp_path_factory) -> tuple[Path, dict]:
    """(model path, report) of `export_run(tiny run, --int8)`; the score gate is tested elsewhere."""
    if "int8" not in _SHARED:
        from lean_export.export import export_run

        output = tmp_path_factory.mktemp("export_out") / "tiny_int8.tflite"
        report = export_run(tiny_run(tmp_path_factory), output, "int8", calibration_count=32,
                            max_drop=1.0, progress=False)
        _SHARED["int8"] = (output, report)
    return _SHARED["int8"]
