"""Frozen configuration dataclasses, one per concern, composed into one run config.

Every value that shapes a model, its data or its training lives here, so that a run
directory's config.json alone rebuilds everything. Variants are made with
`dataclasses.replace`, never by editing a copy of a model file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from lean.io import atomic_write_text


@dataclass(frozen=True)
class FrontendConfig:
    """YAMNet's log-mel frontend (tensorflow/models research/audioset/yamnet params.py)."""

    sample_rate: int = 16000
    stft_window_seconds: float = 0.025
    stft_hop_seconds: float = 0.010
    mel_bands: int = 64
    mel_min_hz: float = 125.0
    mel_max_hz: float = 7500.0
    log_offset: float = 0.001
    patch_frames: int = 96

    @property
    def window_samples(self) -> int:
        return int(round(self.sample_rate * self.stft_window_seconds))

    @property
    def hop_samples(self) -> int:
        return int(round(self.sample_rate * self.stft_hop_seconds))

    @property
    def fft_length(self) -> int:
        # YAMNet: the next power of two above the window (400 -> 512).
        return 2 ** int(math.ceil(math.log2(self.window_samples)))

    @property
    def patch_bands(self) -> int:
        return self.mel_bands


@dataclass(frozen=True)
class ModelConfig:
    """One member of the model family, built by name through `lean.models.registry`."""

    name: str = "lean"
    num_classes: int = 200
    window_seconds: float = 1.0
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    # Right channel: YAMNet embedding -> Dense projection (E_yam).
    projection_units: int = 256
    # Left channel ("wave encoder"): waveform as (wave_frames, samples/wave_frames) -> BiLSTMs.
    wave_frames: int = 40
    lstm_units: int = 128
    lstm_layers: int = 2
    # Bahdanau cross attention width d.
    attention_units: int = 128
    # False: the YAMNet trunk is frozen (the paper); True: fine-tune it.
    finetune_yamnet: bool = False
    # Path of the official yamnet.h5 (or a TF Hub SavedModel dir) the trunk was loaded from.
    yamnet_weights: Optional[str] = None
    # True: the static-shape, TFLite-friendly build of the same model (same weights).
    export_ready: bool = False

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.frontend.sample_rate))


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and runtime settings of `lean train` (paper: Adam 1e-4, batch 64, 40 epochs)."""

    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-4
    seed: int = 0
    mixed_precision: bool = True  # only takes effect on a GPU
    multi_gpu: bool = True  # MirroredStrategy when more than one GPU is visible
    on_bad_audio: str = "skip"  # skip | fail


@dataclass(frozen=True)
class EvalConfig:
    """How clips are cut into windows and window scores aggregated (paper: 50 % overlap, mean)."""

    window_hop_fraction: float = 0.5
    aggregation: str = "mean"  # mean | max | mean_logits


@dataclass(frozen=True)
class RunConfig:
    """Everything a run directory needs to rebuild, evaluate and export its model."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    data_dir: Optional[str] = None
    lean_version: str = ""


def to_dict(config: Any) -> dict:
    """Nested dataclass -> plain dict (JSON-ready)."""
    return dataclasses.asdict(config)


def from_dict(cls: type, values: dict) -> Any:
    """Plain dict -> nested frozen dataclass; unknown keys are an error, missing keys default."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value)
        kwargs[name] = value
    return cls(**kwargs)


def save_json(config: Any, path: str | Path) -> None:
    atomic_write_text(path, json.dumps(to_dict(config), indent=2, sort_keys=True) + "\n")


def load_json(cls: type, path: str | Path) -> Any:
    return from_dict(cls, json.loads(Path(path).read_text()))


__all__ = [
    "FrontendConfig",
    "ModelConfig",
    "TrainConfig",
    "EvalConfig",
    "RunConfig",
    "to_dict",
    "from_dict",
    "save_json",
    "load_json",
]
