"""Model family registry: name -> builder; build, describe, save/load and export-ready copies."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lean.config import ModelConfig
from lean.errors import LeanError

# builder(config, load_pretrained) -> keras.Model. `load_pretrained=False` builds the
# architecture only (export_ready_copy copies every weight afterwards).
Builder = Callable[[ModelConfig, bool], "keras.Model"]


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    builder: Builder


_REGISTRY: dict[str, Entry] = {}


def register(name: str, description: str) -> Callable[[Builder], Builder]:
    """Decorator adding a family member: `@register("lean", description="...")`."""

    def add(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = Entry(name, description, builder)
        return builder

    return add


def _entries() -> dict[str, Entry]:
    import lean.models  # noqa: F401  (imports every family module, which registers itself)

    return _REGISTRY


def model_names() -> list[str]:
    """Registered model names, in registration order."""
    return list(_entries())


def describe(name: str) -> str:
    """One-line description of a registered model."""
    return _entry(name).description


def _entry(name: str) -> Entry:
    entries = _entries()
    if name not in entries:
        raise LeanError(f"unknown model {name!r}; known: {', '.join(entries)}")
    return entries[name]


def build_model(config: ModelConfig, load_pretrained: bool = True):
    """Builds the family member `config.name`.

    Args:
        config: the model's config values (name, num_classes, export_ready, ...).
        load_pretrained: load pretrained parts named in the config (e.g. `yamnet_weights`).
    Returns:
        keras.Model with one input `waveform` float32 [B, window_samples] (B static 1 when
        export_ready) and one output, probabilities float32 [B, num_classes].
    """
    if config.num_classes < 1:
        raise LeanError(f"num_classes must be at least 1, got {config.num_classes}")
    return _entry(config.name).builder(config, load_pretrained)


def load_model(path: str | Path):
    """Loads a `.keras` file written by `model.save` with all of lean's custom layers."""
    import keras

    import lean.models  # noqa: F401  (registers the custom layers)

    path = Path(path)
    if not path.is_file():
        raise LeanError(f"{path}: model file not found")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a corrupt or foreign file
        raise LeanError(f"{path}: cannot load Keras model ({type(error).__name__}: {error})") \
            from None


def export_ready_copy(model, config: ModelConfig):
    """The export-ready build (static batch 1, TFLite-friendly) of `model`, with its weights.

    Weights are copied layer by layer by name; a layer missing from `model` or with different
    weight shapes is an error, so no weight is ever left at its random initialization.
    """
    export_config = dataclasses.replace(config, export_ready=True)
    exported = build_model(export_config, load_pretrained=False)
    source_layers = {layer.name: layer for layer in model.layers}
    for layer in exported.layers:
        if not layer.weights:
            continue
        source = source_layers.get(layer.name)
        if source is None:
            raise LeanError(f"model {model.name!r} has no layer {layer.name!r} to copy weights from")
        values = source.get_weights()
        shapes = [tuple(v.shape) for v in layer.weights]
        if [tuple(v.shape) for v in values] != shapes:
            raise LeanError(
                f"layer {layer.name!r}: weight shapes {[tuple(v.shape) for v in values]} "
                f"do not match the export build's {shapes}"
            )
        layer.set_weights(values)
    return exported


__all__ = [
    "Entry",
    "build_model",
    "describe",
    "export_ready_copy",
    "load_model",
    "model_names",
    "register",
]
