"""TFLite Model Metadata for audio classifiers: write it (MediaPipe-ready) and read it back."""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import flatbuffers
import numpy as np

from lean.errors import LeanError

METADATA_BUFFER_NAME = "TFLITE_METADATA"
METADATA_FILE_IDENTIFIER = b"M001"
MODEL_FILE_IDENTIFIER = b"TFL3"
# AudioProperties entered the metadata schema in parser version 1.3.0.
MIN_PARSER_VERSION = "1.3.0"
LABELS_FILE = "labels.txt"
BUFFER_ALIGNMENT = 16


@lru_cache(maxsize=None)
def metadata_schema() -> ModuleType:
    """The metadata flatbuffer schema module that mediapipe ships.

    Loaded from its file: importing it through `mediapipe.tasks` runs the package's
    __init__, which pulls in native libraries and can fail to import.
    """
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise LeanError("the mediapipe package is not installed; it ships the metadata schema")
    path = Path(spec.submodule_search_locations[0]) / "tasks/metadata/metadata_schema_py_generated.py"
    module_spec = importlib.util.spec_from_file_location("_lean_metadata_schema", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def model_schema() -> ModuleType:
    """The TFLite model flatbuffer schema module that ai-edge-litert ships."""
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


@dataclass(frozen=True)
class AssociatedFile:
    """A file packed into the model's zip tail and listed in the metadata."""

    name: str
    content: bytes
    description: str = ""


@dataclass(frozen=True)
class AudioClassifierInfo:
    """What the metadata says about an audio classifier with input [1, samples] and output [1, C]."""

    name: str
    description: str
    version: str
    author: str
    license: str
    sample_rate: int
    labels: tuple[str, ...]
    channels: int = 1
    score_threshold: float = 0.0
    input_description: str = "Mono waveform, float32 in [-1, 1]."
    output_description: str = "Probability of each label (sigmoid), float32."
    associated_files: tuple[AssociatedFile, ...] = field(default_factory=tuple)

    def validate(self) -> None:
        """Rejects values that make MediaPipe abort or misread the model (sample_rate 0 aborts)."""
        if not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise LeanError(f"metadata sample_rate must be a positive integer, got {self.sample_rate!r}")
        if not isinstance(self.channels, int) or self.channels <= 0:
            raise LeanError(f"metadata channels must be a positive integer, got {self.channels!r}")
        if not self.labels:
            raise LeanError("metadata needs at least one label")
        bad = [label for label in self.labels if not label or "\n" in label]
        if bad:
            raise LeanError(f"labels must be non-empty single lines, got {bad[0]!r}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise LeanError(f"score threshold must lie in [0, 1], got {self.score_threshold}")
        names = [LABELS_FILE] + [f.name for f in self.associated_files]
        if len(set(names)) != len(names):
            raise LeanError(f"associated file names must be unique, got {', '.join(names)}")


def build_metadata_buffer(info: AudioClassifierInfo) -> bytes:
    """Serializes the ModelMetadata flatbuffer (file identifier M001).

    Args:
      info: the validated description of the classifier.

    Returns:
      The flatbuffer bytes that go into the model's "TFLITE_METADATA" buffer.
    """
    info.validate()
    fb = metadata_schema()
    audio = fb.AudioPropertiesT()
    audio.sampleRate = info.sample_rate
    audio.channels = info.channels
    input_meta = fb.TensorMetadataT()
    input_meta.name = "waveform"
    input_meta.description = input_description(info)
    input_meta.content = fb.ContentT()
    input_meta.content.contentPropertiesType = fb.ContentProperties.AudioProperties
    input_meta.content.contentProperties = audio

    labels_file = fb.AssociatedFileT()
    labels_file.name = LABELS_FILE
    labels_file.description = "Labels of the output's class axis, one per line."
    labels_file.type = fb.AssociatedFileType.TENSOR_AXIS_LABELS
    thresholding = fb.ProcessUnitT()
    thresholding.optionsType = fb.ProcessUnitOptions.ScoreThresholdingOptions
    thresholding.options = fb.ScoreThresholdingOptionsT()
    thresholding.options.globalScoreThreshold = float(info.score_threshold)
    output_meta = fb.TensorMetadataT()
    output_meta.name = "probabilities"
    output_meta.description = info.output_description
    output_meta.content = fb.ContentT()
    output_meta.content.contentPropertiesType = fb.ContentProperties.FeatureProperties
    output_meta.content.contentProperties = fb.FeaturePropertiesT()
    output_meta.associatedFiles = [labels_file]
    output_meta.processUnits = [thresholding]

    subgraph = fb.SubGraphMetadataT()
    subgraph.name = info.name
    subgraph.inputTensorMetadata = [input_meta]
    subgraph.outputTensorMetadata = [output_meta]

    model_meta = fb.ModelMetadataT()
    model_meta.name = info.name
    model_meta.description = info.description
    model_meta.version = info.version
    model_meta.author = info.author
    model_meta.license = info.license
    model_meta.subgraphMetadata = [subgraph]
    model_meta.minParserVersion = MIN_PARSER_VERSION
    model_meta.associatedFiles = []
    for extra in info.associated_files:
        entry = fb.AssociatedFileT()
        entry.name = extra.name
        entry.description = extra.description
        entry.type = fb.AssociatedFileType.UNKNOWN
        model_meta.associatedFiles.append(entry)

    builder = flatbuffers.Builder(1024)
    builder.Finish(model_meta.Pack(builder), file_identifier=METADATA_FILE_IDENTIFIER)
    return bytes(builder.Output())


def input_description(info: AudioClassifierInfo) -> str:
    return f"{info.input_description} {info.sample_rate} Hz, {info.channels} channel(s)."


def _io_signature(model) -> tuple[list, list]:
    """(input tensors, output tensors) of the first subgraph of an unpacked ModelT."""
    graph = model.subgraphs[0]
    return [graph.tensors[i] for i in graph.inputs], [graph.tensors[i] for i in graph.outputs]


def _check_classifier_signature(model, info: AudioClassifierInfo) -> None:
    """MediaPipe needs one float32 [1, N] input and one float32 [1, C] output with C labels."""
    float32 = model_schema().TensorType.FLOAT32
    inputs, outputs = _io_signature(model)
    if len(inputs) != 1 or len(outputs) != 1:
        raise LeanError(f"an audio classifier needs 1 input and 1 output, the model has {len(inputs)} and {len(outputs)}")
    waveform, scores = inputs[0], outputs[0]
    if waveform.type != float32 or scores.type != float32:
        raise LeanError("MediaPipe needs float32 input and output tensors; the model has other types")
    if len(waveform.shape) != 2 or waveform.shape[0] != 1:
        raise LeanError(f"the input must have shape [1, samples], got {[int(n) for n in waveform.shape]}")
    if len(scores.shape) != 2 or scores.shape[0] != 1 or scores.shape[1] != len(info.labels):
        raise LeanError(
            f"the output has shape {[int(n) for n in scores.shape]} but {len(info.labels)} labels were given"
        )


class _AlignedBuilder(flatbuffers.Builder):
    """Keeps byte buffers (weights) 16-byte aligned, as the TFLite converter writes them.

    The generic builder aligns a byte vector to 1; kernels that read weights in place
    (float or int8 SIMD loads) are then fed unaligned memory.
    """

    def CreateNumpyVector(self, x):
        if x.dtype == np.uint8 and x.size >= 16:
            self.StartVector(1, x.size, BUFFER_ALIGNMENT)
            self.head -= x.size
            self.Bytes[self.head : self.head + x.size] = x.tobytes()
            return self.EndVector()
        return super().CreateNumpyVector(x)


def pack_model(model) -> bytes:
    """Serializes an unpacked `ModelT` (file identifier TFL3), weights 16-byte aligned."""
    builder = _AlignedBuilder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=MODEL_FILE_IDENTIFIER)
    return bytes(builder.Output())


def add_metadata(model_bytes: bytes, info: AudioClassifierInfo) -> bytes:
    """Returns the model with the metadata buffer added and the associated files zipped onto it.

    Args:
      model_bytes: a TFLite flatbuffer (any existing TFLITE_METADATA entry is replaced).
      info: what the metadata says; validated, and checked against the model's tensors.

    Returns:
      The model file bytes: flatbuffer with metadata, then a zip of the associated files.
    """
    schema = model_schema()
    metadata_bytes = build_metadata_buffer(info)
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    _check_classifier_signature(model, info)
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_BUFFER_NAME.encode()]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata_bytes, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_BUFFER_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    # The TFLite metadata convention: associated files in an uncompressed zip after the flatbuffer.
    packed = io.BytesIO()
    packed.write(pack_model(model))
    with zipfile.ZipFile(packed, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(LABELS_FILE, "\n".join(info.labels) + "\n")
        for extra in info.associated_files:
            archive.writestr(extra.name, extra.content)
    return packed.getvalue()


def _metadata_buffer(model_bytes: bytes, source: str) -> bytes:
    schema = model_schema()
    if not schema.Model.ModelBufferHasIdentifier(model_bytes, 0):
        raise LeanError(f"{source}: not a TFLite model (no TFL3 file identifier)")
    model = schema.Model.GetRootAs(model_bytes, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == METADATA_BUFFER_NAME.encode():
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    raise LeanError(f"{source}: the model has no TFLite Model Metadata ({METADATA_BUFFER_NAME})")


def _text(value) -> str | None:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _associated_files(model_bytes: bytes) -> dict[str, bytes]:
    """The files of the zip appended to the model (none when there is no zip)."""
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
            return {item.filename: archive.read(item) for item in archive.infolist()}
    except zipfile.BadZipFile:
        return {}


def read_metadata(path: str | Path) -> dict:
    """Reads the metadata of a model file back into a JSON-ready dict.

    Args:
      path: a .tflite file written by `add_metadata` (or any model with TFLite Model Metadata).

    Returns:
      name, description, version, author, license, min_parser_version, input (name,
      sample_rate, channels), output (name, score_threshold, labels_file), labels (list),
      associated_files ({name: text}), config (the run's config.json as a dict, if packed).
    """
    path = Path(path)
    if not path.is_file():
        raise LeanError(f"{path}: no such model file")
    model_bytes = path.read_bytes()
    metadata_bytes = _metadata_buffer(model_bytes, str(path))
    fb = metadata_schema()
    if not fb.ModelMetadata.ModelMetadataBufferHasIdentifier(metadata_bytes, 0):
        raise LeanError(f"{path}: the metadata buffer lacks the M001 file identifier")
    meta = fb.ModelMetadataT.InitFromPackedBuf(metadata_bytes, 0)
    subgraph = meta.subgraphMetadata[0]
    input_meta, output_meta = subgraph.inputTensorMetadata[0], subgraph.outputTensorMetadata[0]
    audio = input_meta.content.contentProperties if input_meta.content else None
    threshold = None
    for unit in output_meta.processUnits or []:
        if unit.optionsType == fb.ProcessUnitOptions.ScoreThresholdingOptions:
            threshold = unit.options.globalScoreThreshold
    labels_file = None
    for entry in output_meta.associatedFiles or []:
        if entry.type == fb.AssociatedFileType.TENSOR_AXIS_LABELS:
            labels_file = _text(entry.name)
    files = _associated_files(model_bytes)
    listed = [_text(e.name) for e in (meta.associatedFiles or [])] + ([labels_file] if labels_file else [])
    missing = [name for name in listed if name not in files]
    if missing:
        raise LeanError(f"{path}: associated file(s) {', '.join(missing)} listed but not packed")
    result = {
        "name": _text(meta.name),
        "description": _text(meta.description),
        "version": _text(meta.version),
        "author": _text(meta.author),
        "license": _text(meta.license),
        "min_parser_version": _text(meta.minParserVersion),
        "input": {
            "name": _text(input_meta.name),
            "sample_rate": audio.sampleRate if audio is not None else None,
            "channels": audio.channels if audio is not None else None,
        },
        "output": {
            "name": _text(output_meta.name),
            "score_threshold": threshold,
            "labels_file": labels_file,
        },
        "labels": files[labels_file].decode("utf-8").splitlines() if labels_file else [],
        "associated_files": {name: data.decode("utf-8", errors="replace") for name, data in files.items()},
    }
    if "config.json" in files:
        result["config"] = json.loads(files["config.json"])
    return result
