"""Model family registry: name -> builder; build, describe, save/load and export-ready copies."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lean.config import InputSpec, ModelConfig, from_dict
from lean.errors import LeanError
from lean.tasks import TASKS

# builder(config, load_pretrained) -> keras.Model. `load_pretrained=False` builds the
# architecture only (export_ready_copy copies every weight afterwards).
Builder = Callable[[ModelConfig, bool], "keras.Model"]


@dataclass(frozen=True)
class NoParams:
    """The params of a family that needs nothing beyond the shared ModelConfig."""


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    builder: Builder
    # The family's params dataclass (its defaults are the paper's values).
    params: type = NoParams
    # The input the paper uses; a run may ask for another. A function of the params when one of
    # them sets it (CAB-CNN's `seconds` is its window), so that value has one source.
    input: InputSpec | Callable[[object], InputSpec] = InputSpec()
    # The paper's task; every member builds for either (a dataset's layout picks it).
    task: str = "multilabel"
    # parts(config) -> {name: run directory}: the trained runs a model is built from (a
    # tagger); `lean train` copies each into RUN_DIR/parts/NAME (lean.run.copy_parts).
    parts: Callable[[ModelConfig], dict] | None = None

    def default_input(self, params=None) -> InputSpec:
        """The input a config with these params (default: the family's defaults) takes."""
        if callable(self.input):
            return self.input(params if params is not None else self.params())
        return self.input


_REGISTRY: dict[str, Entry] = {}


def register(name: str, description: str, params: type = NoParams,
             input: InputSpec | Callable[[object], InputSpec] = InputSpec(),
             task: str = "multilabel", parts: Callable[[ModelConfig], dict] | None = None
             ) -> Callable[[Builder], Builder]:
    """Decorator adding a family member.

    `@register("lean", description="...", params=LeanParams, input=InputSpec(16000, 1, 1.0))`;
    `params` is a frozen dataclass whose defaults are the paper's values. `input` may be a
    function `params -> InputSpec` when a family param sets the input (e.g. its window length).
    `parts(config)` names the trained runs the model is built from, which a new run keeps
    copies of.
    """
    if not dataclasses.is_dataclass(params):
        raise TypeError(f"model {name!r}: params must be a dataclass, not {params!r}")
    if task not in TASKS:
        raise ValueError(f"model {name!r}: task must be one of {list(TASKS)}, not {task!r}")

    def add(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = Entry(name, description, builder, params, input, task, parts)
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
    return entry(name).description


def entry(name: str) -> Entry:
    """The registry entry of `name`; a LeanError naming the known models otherwise."""
    entries = _entries()
    if name not in entries:
        raise LeanError(f"unknown model {name!r}; known: {', '.join(entries)}")
    return entries[name]


def complete_model_config(config: ModelConfig) -> dict:
    """The values ModelConfig.__post_init__ fills in: the entry's defaults for task, input and
    params left as None, and params given as a dict (config.json) made the family's dataclass."""
    family = entry(config.name)
    task = config.task if config.task is not None else family.task
    if task not in TASKS:
        raise LeanError(f"model {config.name!r}: unknown task {task!r}; expected one of "
                        f"{', '.join(TASKS)}")
    params = config.params
    if params is None:
        params = family.params()
    elif isinstance(params, dict):
        params = params_from_dict(config.name, params)
    elif not isinstance(params, family.params):
        raise LeanError(f"model {config.name!r} takes {family.params.__name__}, not "
                        f"{type(params).__name__}")
    model_input = config.input if config.input is not None else family.default_input(params)
    if isinstance(model_input, dict):
        model_input = InputSpec(**model_input)
    return {"task": task, "input": model_input, "params": params}


def params_from_dict(name: str, values: dict):
    """A family's params dataclass from its config.json dict; unknown keys are a LeanError."""
    cls = entry(name).params
    try:
        return from_dict(cls, values)
    except (TypeError, ValueError) as error:
        raise LeanError(f"model {name!r}: invalid params ({error}); valid keys: "
                        f"{', '.join(param_keys(cls))}") from None


def param_keys(cls: type, prefix: str = "") -> list[str]:
    """Every settable key of a params dataclass, nested dataclasses as dotted keys."""
    keys = []
    for item in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[item.name]
        if dataclasses.is_dataclass(hint):
            keys += param_keys(hint, f"{prefix}{item.name}.")
        else:
            keys.append(f"{prefix}{item.name}")
    return keys


def parse_param_overrides(name: str, assignments: list[str], base=None):
    """Applies `--param KEY=VALUE` assignments to a family's params (default: its defaults).

    Values are parsed by the field's type (int, float, bool, str, Optional, Literal choices);
    nested dataclasses take dotted keys (`frontend.mel_bands=80`). A key the family does not
    have, or a value of the wrong type, is a LeanError naming the model's valid keys.
    """
    cls = entry(name).params
    values = dataclasses.asdict(base if base is not None else cls())
    valid = param_keys(cls)
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        key = key.strip()
        if not separator or not key:
            raise LeanError(f"--param {assignment!r}: expected KEY=VALUE")
        if key not in valid:
            raise LeanError(f"--param {key}: model {name!r} has no such parameter; valid keys: "
                            f"{', '.join(valid) or '(none)'}")
        owner, target = cls, values
        *path, leaf = key.split(".")
        for part in path:
            owner, target = typing.get_type_hints(owner)[part], target[part]
        target[leaf] = _parse_value(typing.get_type_hints(owner)[leaf], text.strip(), key)
    return params_from_dict(name, values)


def _parse_value(hint, text: str, key: str):
    """`text` as a value of type `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        if text not in [str(arg) for arg in args]:
            raise LeanError(f"--param {key}={text}: expected one of "
                            f"{', '.join(str(arg) for arg in args)}")
        return next(arg for arg in args if str(arg) == text)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if text.lower() in ("none", "null", ""):
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _parse_value(inner, text, key)
    try:
        if hint is bool:
            if text.lower() in ("true", "1", "yes", "on"):
                return True
            if text.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(text)
        if hint in (int, float, str):
            return hint(text)
    except ValueError:
        raise LeanError(f"--param {key}={text}: not a valid {hint.__name__}") from None
    raise LeanError(f"--param {key}: cannot be set from the command line ({hint})")


def build_model(config: ModelConfig, load_pretrained: bool = True):
    """Builds the family member `config.name`.

    Args:
        config: the model's config values (name, num_classes, task, input, params, ...).
        load_pretrained: load pretrained parts named in the params (e.g. `yamnet_weights`).
    Returns:
        keras.Model with one input `waveform` float32 [B, *config.input.shape] (B static 1 when
        export_ready) and one output, probabilities float32 [B, num_classes]: sigmoid for
        multilabel, softmax for single_label.
    """
    if config.num_classes < 1:
        raise LeanError(f"num_classes must be at least 1, got {config.num_classes}")
    return entry(config.name).builder(config, load_pretrained)


def load_model(path: str | Path):
    """Loads a `.keras` file written by `model.save` with all of lean's custom layers."""
    import keras

    import lean.models  # noqa: F401  (registers the custom layers)
    import lean.training.svm  # noqa: F401  (a `lean svm` run's folded head)

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

    Weights are copied layer by layer by name (`copy_weights_by_name`), so no weight is ever
    left at its random initialization.
    """
    export_config = dataclasses.replace(config, export_ready=True)
    exported = build_model(export_config, load_pretrained=False)
    copy_weights_by_name(model, exported)
    return exported


def copy_weights_by_name(source, target) -> None:
    """Copies every weighted layer of `target` from the layer of the same name in `source`.

    Nested models (a trunk, a whole tagger model) are matched layer by layer inside, so their
    layers may differ in kind between builds as long as names and weight shapes agree. A layer
    missing from `source` or with other weight shapes is a LeanError.
    """
    import keras

    source_layers = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if not layer.weights:
            continue
        match = source_layers.get(layer.name)
        if match is None:
            raise LeanError(f"model {source.name!r} has no layer {layer.name!r} to copy weights from")
        if isinstance(layer, keras.Model) and isinstance(match, keras.Model):
            copy_weights_by_name(match, layer)
            continue
        values = match.get_weights()
        shapes = [tuple(v.shape) for v in layer.weights]
        if [tuple(v.shape) for v in values] != shapes:
            raise LeanError(
                f"layer {layer.name!r}: weight shapes {[tuple(v.shape) for v in values]} "
                f"do not match {target.name!r}'s {shapes}"
            )
        layer.set_weights(values)


__all__ = [
    "Entry",
    "NoParams",
    "build_model",
    "complete_model_config",
    "copy_weights_by_name",
    "describe",
    "entry",
    "export_ready_copy",
    "load_model",
    "model_names",
    "param_keys",
    "params_from_dict",
    "parse_param_overrides",
    "register",
]
