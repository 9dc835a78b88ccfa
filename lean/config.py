"""Frozen configuration dataclasses, one per concern, composed into one run config.

Every value that shapes a model, its data or its training lives here, so that a run
directory's config.json alone rebuilds everything. Variants are made with
`dataclasses.replace`, never by editing a copy of a model file.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from lean.io import atomic_write_text


@dataclass(frozen=True)
class InputSpec:
    """The audio a model takes: one window of `window_seconds` at `sample_rate`, `channels` wide.

    A mono model's waveform input is [B, window_samples]; a multi-channel one's is
    [B, window_samples, channels] (an exported file takes the same samples interleaved,
    [1, window_samples * channels], as MediaPipe and Android deliver them).
    """

    sample_rate: int = 16000
    channels: int = 1
    window_seconds: float = 1.0

    def __post_init__(self):
        from lean.errors import LeanError

        if self.sample_rate <= 0 or self.channels <= 0 or not self.window_seconds > 0:
            raise LeanError(f"invalid input spec: {self.sample_rate} Hz, {self.channels} channels, "
                            f"{self.window_seconds} s windows (each must be positive)")

    @property
    def window_samples(self) -> int:
        """Samples per channel in one window."""
        return int(round(self.window_seconds * self.sample_rate))

    @property
    def shape(self) -> tuple[int, ...]:
        """The waveform input's shape without the batch axis."""
        if self.channels == 1:
            return (self.window_samples,)
        return (self.window_samples, self.channels)


@dataclass(frozen=True)
class ModelConfig:
    """One member of the model family, built by name through `lean.models.registry`.

    Only what every model shares lives here; what a family needs beyond that is its `params`
    dataclass, declared by its registry entry. `task`, `input` and `params` left as None take
    the entry's defaults, so `ModelConfig(name="lean")` is a complete LEAN config.
    """

    name: str = "lean"
    num_classes: int = 200
    # multilabel: sigmoid outputs, BCE; single_label: softmax outputs, categorical CE.
    task: Optional[str] = None
    input: Optional[InputSpec] = None
    # The family's params dataclass (a dict is converted by the registry entry).
    params: Any = None
    # True: pretrained parts (e.g. LEAN's YAMNet trunk) train too; False: frozen.
    trainable_backbone: bool = False
    # True: the static-shape, TFLite-friendly build of the same model (same weights).
    export_ready: bool = False

    def __post_init__(self):
        from lean.models.registry import complete_model_config

        for name, value in complete_model_config(self).items():
            object.__setattr__(self, name, value)

    @property
    def window_samples(self) -> int:
        return self.input.window_samples


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
    # Refinements (lean.training; forms and checks in lean.training.options). The defaults are
    # plain training: Adam at a constant learning rate, nothing else on.
    optimizer: str = "adam"  # adam | sgd
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0  # decoupled, as Keras' optimizers apply it
    lr_schedule: str = "constant"  # constant | step:EVERY:FACTOR | cosine
    warmup: Optional[str] = None  # constant:EPOCHS:LR | gradual:EPOCHS:START_LR
    warmup_mode: str = "replace"  # replace: the schedule's first epochs | prepend: before it
    label_smoothing: float = 0.0  # paper 000's EPS: true class 1-EPS, the others EPS/(K-1)
    mixup_alpha: float = 0.0  # Beta(alpha, alpha) mixup of waveforms and targets; 0: off
    between_class: bool = False  # Tokozume's between-class mixing with a KL loss
    specaugment: Optional[str] = None  # FREQ:TIME maximum mask widths; None: off
    teacher: Optional[str] = None  # run directory distilled from; None: no distillation
    kd_temperature: float = 10.0  # T (paper 000's best)
    kd_lambda: float = 0.5  # weight of the hard-target loss (paper 000's best)

    def __post_init__(self):
        from lean.training.options import canonical_fields

        names = [item.name for item in dataclasses.fields(self)]
        for name, value in canonical_fields({name: getattr(self, name) for name in names}).items():
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class EvalConfig:
    """How clips are cut into windows and window scores aggregated (paper: 50 % overlap, mean)."""

    window_hop_fraction: float = 0.5
    aggregation: str = "mean"  # one of lean.data.windows.AGGREGATIONS


@dataclass(frozen=True)
class DataConfig:
    """Which data a run trains on, and how its splits were chosen."""

    # The dataset folder (absolute); export reads calibration windows from it.
    dir: Optional[str] = None
    # One of lean.data.LAYOUT_NAMES (fsd50k, esc50, ...); None: detected from the files.
    layout: Optional[str] = None
    # Folds layouts: the fold held out as eval, and the one validated on.
    fold: Optional[int] = None
    val_fold: Optional[int] = None


@dataclass(frozen=True)
class SvmConfig:
    """An SVM back-end (`lean svm`, papers 002 and 003) in place of the network's softmax or
    sigmoid head, trained on the penultimate features of another run's network."""

    kernel: str = "linear"  # linear: folded into the Keras head | rbf: host only
    C: float = 0.1  # paper 003's linear SVM
    source_run: Optional[str] = None  # the run whose network computes the features


@dataclass(frozen=True)
class RunConfig:
    """Everything a run directory needs to rebuild, evaluate and export its model."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lean_version: str = ""
    # Set in the run directories `lean svm` writes; None: the network's own head.
    svm: Optional[SvmConfig] = None


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
        hint = _dataclass_hint(hints[name])
        if hint is not None and isinstance(value, dict):
            value = from_dict(hint, value)
        elif isinstance(value, list):
            value = tuple(value)  # JSON has no tuples; frozen configs hold them
        kwargs[name] = value
    # params is the family's own dataclass: ModelConfig resolves it from `name`.
    return cls(**kwargs)


def _dataclass_hint(hint) -> Optional[type]:
    """The dataclass a field holds (also through Optional[...]), else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    dataclass_args = [arg for arg in typing.get_args(hint) if dataclasses.is_dataclass(arg)]
    return dataclass_args[0] if len(dataclass_args) == 1 else None


def check_literal_fields(config: Any, context: str) -> None:
    """Raises a LeanError when a `typing.Literal` field of a config dataclass holds a value
    outside its choices (dataclasses do not check annotations; config.json may hold anything).

    Args:
        config: a dataclass instance.
        context: what the error names first, e.g. "resnet params".
    """
    from lean.errors import LeanError

    for name, hint in typing.get_type_hints(type(config)).items():
        if typing.get_origin(hint) is typing.Literal:
            value = getattr(config, name)
            if value not in typing.get_args(hint):
                raise LeanError(f"{context}: {name}={value!r}; expected one of "
                                f"{', '.join(str(arg) for arg in typing.get_args(hint))}")


def save_json(config: Any, path: str | Path) -> None:
    atomic_write_text(path, json.dumps(to_dict(config), indent=2, sort_keys=True) + "\n")


def load_json(cls: type, path: str | Path) -> Any:
    return from_dict(cls, json.loads(Path(path).read_text()))


__all__ = [
    "InputSpec",
    "ModelConfig",
    "TrainConfig",
    "EvalConfig",
    "DataConfig",
    "SvmConfig",
    "RunConfig",
    "to_dict",
    "from_dict",
    "check_literal_fields",
    "save_json",
    "load_json",
]
