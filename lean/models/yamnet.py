"""YAMNet trunk (MobileNet-v1 on a 96x64 log-mel patch) as a layer table, and weight loading."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import keras
import numpy as np

from lean.errors import LeanError

log = logging.getLogger(__name__)

TRUNK_NAME = "yamnet_trunk"
EMBEDDING_SIZE = 1024
AUDIOSET_CLASSES = 521
# YAMNet params.py: BatchNorm with center, without scale.
BATCHNORM_EPSILON = 1e-4

# YAMNet's MobileNet-v1 layer table (yamnet.py): (kind, kernel, stride, filters).
YAMNET_LAYERS = (
    ("conv", (3, 3), 2, 32),
    ("separable", (3, 3), 1, 64),
    ("separable", (3, 3), 2, 128),
    ("separable", (3, 3), 1, 128),
    ("separable", (3, 3), 2, 256),
    ("separable", (3, 3), 1, 256),
    ("separable", (3, 3), 2, 512),
    ("separable", (3, 3), 1, 512),
    ("separable", (3, 3), 1, 512),
    ("separable", (3, 3), 1, 512),
    ("separable", (3, 3), 1, 512),
    ("separable", (3, 3), 1, 512),
    ("separable", (3, 3), 2, 1024),
    ("separable", (3, 3), 1, 1024),
)

_warned_random_init = False


def _official_name(keras_name: str) -> str:
    """Our layer names use '_' where the official ones use '/' (Keras 3 forbids '/')."""
    return re.sub(r"_(conv|bn|depthwise_conv|pointwise_conv|relu)", r"/\1", keras_name)


def _batch_norm(name: str) -> keras.layers.Layer:
    return keras.layers.BatchNormalization(
        center=True, scale=False, epsilon=BATCHNORM_EPSILON, name=name
    )


# Variance-preserving (He) initialisation for ReLU stacks. It only matters without the official
# weights: a frozen trunk runs its BatchNorms on their initial statistics (identity), and with
# Keras's default Glorot initialisation the 14 layers shrank the embedding to ~1e-20 (measured on
# the demo data), so a frozen random trunk gave the head nothing to learn from. A depthwise
# kernel's fan-in is its kernel area alone (Keras's fan-in also counts the channels, which
# shrank every depthwise layer's output ~20x).
_KERNEL_INIT = "he_normal"


def _depthwise_init(kernel) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(stddev=math.sqrt(2.0 / (kernel[0] * kernel[1])))


def _conv_block(x, name: str, kernel, stride: int, filters: int):
    x = keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", use_bias=False,
        kernel_initializer=_KERNEL_INIT, name=f"{name}_conv",
    )(x)
    x = _batch_norm(f"{name}_conv_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _separable_block(x, name: str, kernel, stride: int, filters: int):
    x = keras.layers.DepthwiseConv2D(
        kernel, strides=stride, padding="same", use_bias=False,
        depthwise_initializer=_depthwise_init(kernel), name=f"{name}_depthwise_conv",
    )(x)
    x = _batch_norm(f"{name}_depthwise_conv_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_depthwise_conv_relu")(x)
    x = keras.layers.Conv2D(
        filters, (1, 1), padding="same", use_bias=False,
        kernel_initializer=_KERNEL_INIT, name=f"{name}_pointwise_conv",
    )(x)
    x = _batch_norm(f"{name}_pointwise_conv_bn")(x)
    return keras.layers.ReLU(name=f"{name}_pointwise_conv_relu")(x)


def build_yamnet_trunk(
    patch_frames: int = 96, mel_bands: int = 64, batch_size: int | None = None
) -> keras.Model:
    """YAMNet without its classifier: log-mel patch [B, 96, 64] -> embedding [B, 1024].

    Args:
        patch_frames: frames per log-mel patch (96).
        mel_bands: mel bands (64).
        batch_size: static batch size (export) or None.
    Returns:
        A functional keras.Model named `yamnet_trunk`.
    """
    patch = keras.Input((patch_frames, mel_bands), batch_size=batch_size, name="log_mel")
    # x has shape [B, 96, 64, 1]: the patch as a one-channel image.
    x = keras.layers.Reshape((patch_frames, mel_bands, 1), name="patch_image")(patch)
    for index, (kind, kernel, stride, filters) in enumerate(YAMNET_LAYERS, start=1):
        block = _conv_block if kind == "conv" else _separable_block
        x = block(x, f"layer{index}", kernel, stride, filters)
    # x has shape [B, 3, 2, 1024] here; the embedding [B, 1024].
    embedding = keras.layers.GlobalAveragePooling2D(name="embedding")(x)
    return keras.Model(patch, embedding, name=TRUNK_NAME)


def build_audioset_classifier(trunk: keras.Model) -> keras.Model:
    """YAMNet with its 521-way AudioSet logistic head: log-mel patch -> AudioSet scores."""
    patch = keras.Input(trunk.input.shape[1:], batch_size=trunk.input.shape[0], name="log_mel")
    logits = keras.layers.Dense(AUDIOSET_CLASSES, name="logits")(trunk(patch))
    scores = keras.layers.Activation("sigmoid", name="audioset_scores")(logits)
    return keras.Model(patch, scores, name="yamnet_audioset")


def warn_random_init_once() -> None:
    """One warning per process when a trunk is built without pretrained weights."""
    global _warned_random_init
    if not _warned_random_init:
        _warned_random_init = True
        log.warning(
            "YAMNet trunk built with random weights (no yamnet_weights given); "
            "download the official yamnet.h5 for the paper's results"
        )


def _find_trunk(model: keras.Model) -> keras.Model:
    if model.name == TRUNK_NAME:
        return model
    for layer in model.layers:
        if layer.name == TRUNK_NAME:
            return layer
    raise LeanError(f"model {model.name!r} has no {TRUNK_NAME!r} to load YAMNet weights into")


def _weighted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if layer.weights]


def _decode(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _read_keras2_h5(path: Path) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """(layer name, [(weight name, array)]) for each layer with weights, in file order."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise LeanError(f"{path}: not a readable HDF5 weights file ({error})") from None
    with handle:
        group = handle["model_weights"] if "model_weights" in handle else handle
        if "layer_names" not in group.attrs:
            raise LeanError(f"{path}: no 'layer_names' attribute; not a Keras 2 weights file")
        layers = []
        for layer_name in map(_decode, group.attrs["layer_names"]):
            if layer_name not in group:
                raise LeanError(f"{path}: layer {layer_name!r} is listed but has no group")
            layer_group = group[layer_name]
            names = [_decode(n) for n in layer_group.attrs.get("weight_names", [])]
            if not names:
                continue
            missing = [n for n in names if n not in layer_group]
            if missing:
                raise LeanError(f"{path}: layer {layer_name!r} lacks tensors {', '.join(missing)}")
            layers.append((layer_name, [(n, np.asarray(layer_group[n])) for n in names]))
    return layers


def _saved_variables(root) -> list:
    """Every variable reachable from a restored SavedModel object (restored objects need not
    have `.variables`, so walk the trackable object graph)."""
    import tensorflow as tf

    found, seen, pending = {}, set(), [root]
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, tf.Variable):
            found[id(node)] = node
            continue
        children = getattr(node, "_trackable_children", None)
        if children is not None:
            pending.extend(children().values())
    return list(found.values())


def _read_saved_model(path: Path) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """TF Hub YAMNet SavedModel variables, grouped per layer in the trunk's order."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as error:  # the loader raises many types for a bad directory
        raise LeanError(f"{path}: not a loadable SavedModel ({error})") from None
    grouped: dict[str, list[tuple[str, np.ndarray]]] = {}
    for variable in _saved_variables(loaded):
        name = variable.name.split(":")[0]
        layer_name, _, weight = name.rpartition("/")
        grouped.setdefault(layer_name, []).append((name, variable.numpy()))

    def layer_order(item):
        match = re.match(r"layer(\d+)/(.*)", item[0])
        if match:
            return (0, int(match.group(1)), _SUBLAYER_ORDER.get(match.group(2), 99))
        return (1, 0, 0)

    # Within a layer group, Keras order: kernel | beta, moving_mean, moving_variance | bias.
    weight_rank = {"kernel": 0, "depthwise_kernel": 0, "beta": 0, "moving_mean": 1,
                   "moving_variance": 2, "bias": 1}
    ordered = []
    for layer_name, weights in sorted(grouped.items(), key=layer_order):
        weights.sort(key=lambda w: weight_rank.get(w[0].rpartition("/")[2], 9))
        ordered.append((layer_name, weights))
    return ordered


_SUBLAYER_ORDER = {"conv": 0, "conv/bn": 1, "depthwise_conv": 0, "depthwise_conv/bn": 1,
                   "pointwise_conv": 2, "pointwise_conv/bn": 3}


def load_yamnet_weights(model_or_trunk: keras.Model, path: str | Path) -> None:
    """Loads the official YAMNet weights into the trunk of a model, or into a trunk itself.

    Accepts the official `yamnet.h5` (Keras 2 `save_weights` HDF5, matched by layer order and
    shape as Keras 2 does, names checked) or a TF Hub YAMNet SavedModel directory. The file's
    final 521-way classifier is used only when `model_or_trunk` is the AudioSet classifier
    (`build_audioset_classifier`); every trunk tensor must be mapped.

    Args:
        model_or_trunk: a family model, a `yamnet_trunk`, or a YAMNet AudioSet classifier.
        path: the weights file or SavedModel directory.
    Raises:
        LeanError naming each missing, extra or mis-shaped tensor; nothing is assigned then.
    """
    path = Path(path)
    if not path.exists():
        raise LeanError(f"{path}: YAMNet weights not found")
    source = _read_saved_model(path) if path.is_dir() else _read_keras2_h5(path)
    # The official file ends with the 521-way AudioSet classifier (a Dense: kernel and bias).
    classifier_source = []
    if source and len(source[-1][1]) == 2 and source[-1][1][0][1].ndim == 2:
        classifier_source, source = source[-1:], source[:-1]
    targets = _weighted_layers(_find_trunk(model_or_trunk))
    if model_or_trunk.name == "yamnet_audioset":
        if not classifier_source:
            raise LeanError(f"{path}: no AudioSet classifier (final Dense) in the weights file")
        source += classifier_source
        targets.append(model_or_trunk.get_layer("logits"))
    problems = []
    if len(source) != len(targets):
        problems.append(f"{len(source)} layers with weights in the file, expected {len(targets)}")
        file_names = {name for name, _ in source}
        missing = [
            _official_name(layer.name) for layer in targets
            if layer.name != "logits" and _official_name(layer.name) not in file_names
        ]
        if missing:
            problems.append(f"missing layers: {', '.join(missing)}")
    assignments = []
    for (file_layer, file_weights), layer in zip(source, targets):
        expected_name = _official_name(layer.name)
        if file_layer.startswith("layer") and file_layer != expected_name:
            problems.append(f"layer {file_layer!r} where {expected_name!r} was expected")
            break  # every later pairing is shifted too; the first mismatch is the useful one
        variables = layer.weights
        if len(file_weights) != len(variables):
            problems.append(
                f"layer {file_layer!r} has {len(file_weights)} tensors, expected {len(variables)}"
            )
            continue
        for (tensor_name, array), variable in zip(file_weights, variables):
            if tuple(array.shape) != tuple(variable.shape):
                problems.append(
                    f"tensor {tensor_name!r} has shape {tuple(array.shape)}, "
                    f"expected {tuple(variable.shape)}"
                )
            else:
                assignments.append((variable, array))
    if problems:
        raise LeanError(f"{path}: cannot load YAMNet weights: {'; '.join(problems)}")
    for variable, array in assignments:
        variable.assign(array)
    log.info("loaded %d YAMNet tensors from %s", len(assignments), path)


__all__ = [
    "AUDIOSET_CLASSES",
    "EMBEDDING_SIZE",
    "TRUNK_NAME",
    "YAMNET_LAYERS",
    "build_audioset_classifier",
    "build_yamnet_trunk",
    "load_yamnet_weights",
    "warn_random_init_once",
]
