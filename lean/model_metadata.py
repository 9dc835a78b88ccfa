"""TFLite Model Metadata of audio classifiers, read back: sample rate, channels, labels and the
packed run config of an exported model (the writer is `lean_export.metadata`)."""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from lean.errors import LeanError

METADATA_BUFFER_NAME = "TFLITE_METADATA"
METADATA_FILE_IDENTIFIER = b"M001"
MODEL_FILE_IDENTIFIER = b"TFL3"
LABELS_FILE = "labels.txt"
CONFIG_FILE = "config.json"


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
    if CONFIG_FILE in files:
        result["config"] = json.loads(files[CONFIG_FILE])
    return result


def has_metadata(model_bytes: bytes) -> bool:
    """Whether a TFLite flatbuffer carries a TFLITE_METADATA buffer."""
    try:
        _metadata_buffer(model_bytes, "model")
    except LeanError:
        return False
    return True


__all__ = ["has_metadata", "metadata_schema", "model_schema", "read_metadata"]
