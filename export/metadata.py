"""TFLite Model Metadata for audio classifiers: write it (MediaPipe-ready); `read_metadata`
(from `lean.model_metadata`) reads it back."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field

import flatbuffers
import numpy as np

from lean.errors import LeanError
from lean.model_metadata import (
    LABELS_FILE,
    METADATA_BUFFER_NAME,
    METADATA_FILE_IDENTIFIER,
    MODEL_FILE_IDENTIFIER,
    metadata_schema,
    model_schema,
    read_metadata,
)

# AudioProperties entered the metadata schema in parser version 1.3.0.
MIN_PARSER_VERSION = "1.3.0"
BUFFER_ALIGNMENT = 16


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


__all__ = ["AssociatedFile", "AudioClassifierInfo", "add_metadata", "build_metadata_buffer",
           "pack_model", "read_metadata"]
