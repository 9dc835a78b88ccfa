"""TFLite Model Metadata: written with the schema modules, read back exactly, invalid values refused."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile

import pytest

import test_export_support as support
from lean.errors import LeanError
from lean_export.metadata import (
    LABELS_FILE,
    AssociatedFile,
    AudioClassifierInfo,
    add_metadata,
    metadata_schema,
    model_schema,
    read_metadata,
)


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    return support.int8_export(tmp_path_factory)


def _info(**overrides) -> AudioClassifierInfo:
    values = dict(
        name="toy", description="a toy classifier", version="1.2.3", author="someone",
        license="MIT", sample_rate=16000, labels=("dog", "cat", "bird"), score_threshold=0.25,
        associated_files=(AssociatedFile("config.json", b'{"k": 1}', "config"),),
    )
    values.update(overrides)
    return AudioClassifierInfo(**values)


def _toy_model(classes: int = 3, input_type: str = "FLOAT32") -> bytes:
    """A minimal valid TFLite flatbuffer [1, 16000] -> [1, classes] built with the schema module."""
    import flatbuffers

    schema = model_schema()
    tensors = []
    for name, shape in (("waveform", [1, 16000]), ("scores", [1, classes])):
        tensor = schema.TensorT()
        tensor.name, tensor.shape, tensor.buffer = name, shape, 0
        tensor.type = getattr(schema.TensorType, input_type if name == "waveform" else "FLOAT32")
        tensors.append(tensor)
    graph = schema.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0], [1], []
    model = schema.ModelT()
    model.version, model.subgraphs, model.buffers, model.operatorCodes = 3, [graph], [schema.BufferT()], []
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_round_trip_of_every_field(tmp_path):
    path = tmp_path / "toy.tflite"
    path.write_bytes(add_metadata(_toy_model(), _info()))
    meta = read_metadata(path)
    assert {key: meta[key] for key in ("name", "description", "version", "author", "license")} == {
        "name": "toy", "description": "a toy classifier", "version": "1.2.3", "author": "someone",
        "license": "MIT"}
    assert meta["min_parser_version"] == "1.3.0"
    assert meta["input"] == {"name": "waveform", "sample_rate": 16000, "channels": 1}
    assert meta["output"] == {"name": "probabilities", "score_threshold": 0.25, "labels_file": LABELS_FILE}
    assert meta["labels"] == ["dog", "cat", "bird"]
    assert meta["config"] == {"k": 1}
    assert meta["associated_files"] == {LABELS_FILE: "dog\ncat\nbird\n", "config.json": '{"k": 1}'}


def test_layout_follows_the_tflite_metadata_convention(tmp_path):
    data = add_metadata(_toy_model(), _info())
    schema, fb = model_schema(), metadata_schema()
    model = schema.Model.GetRootAs(data, 0)
    assert schema.Model.ModelBufferHasIdentifier(data, 0)
    entries = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    buffer = model.Buffers(entries["TFLITE_METADATA"]).DataAsNumpy().tobytes()
    assert buffer[4:8] == b"M001"
    meta = fb.ModelMetadata.GetRootAs(buffer, 0)
    audio_tensor = meta.SubgraphMetadata(0).InputTensorMetadata(0).Content()
    assert audio_tensor.ContentPropertiesType() == fb.ContentProperties.AudioProperties
    label_file = meta.SubgraphMetadata(0).OutputTensorMetadata(0).AssociatedFiles(0)
    assert label_file.Type() == fb.AssociatedFileType.TENSOR_AXIS_LABELS
    # Associated files: an uncompressed zip appended after the flatbuffer.
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == [LABELS_FILE, "config.json"]
        assert all(item.compress_type == zipfile.ZIP_STORED for item in archive.infolist())


def test_rewriting_replaces_the_metadata(tmp_path):
    once = add_metadata(_toy_model(), _info())
    path = tmp_path / "twice.tflite"
    path.write_bytes(add_metadata(once, _info(version="2.0")))
    model = model_schema().Model.GetRootAs(path.read_bytes(), 0)
    names = [model.Metadata(i).Name() for i in range(model.MetadataLength())]
    assert names.count(b"TFLITE_METADATA") == 1
    assert read_metadata(path)["version"] == "2.0"


@pytest.mark.parametrize("change, message", [
    (dict(sample_rate=0), "sample_rate must be a positive integer, got 0"),
    (dict(sample_rate=16000.0), "sample_rate must be a positive integer"),
    (dict(channels=0), "channels must be a positive integer"),
    (dict(labels=()), "at least one label"),
    (dict(labels=("a", "b\nc", "d")), "single lines"),
    (dict(score_threshold=1.5), "score threshold must lie in"),
    (dict(associated_files=(AssociatedFile(LABELS_FILE, b"x"),)), "must be unique"),
])
def test_invalid_values_are_refused_before_writing(change, message):
    # MediaPipe aborts the whole process on sample_rate 0: it must never reach a file.
    with pytest.raises(LeanError, match=message):
        add_metadata(_toy_model(), dataclasses.replace(_info(), **change))


def test_model_signature_is_checked():
    with pytest.raises(LeanError, match=r"output has shape \[1, 4\] but 3 labels"):
        add_metadata(_toy_model(classes=4), _info())
    with pytest.raises(LeanError, match="float32 input and output"):
        add_metadata(_toy_model(input_type="INT8"), _info())


def test_reading_a_model_without_metadata_is_a_clear_error(tmp_path):
    path = tmp_path / "bare.tflite"
    path.write_bytes(_toy_model())
    with pytest.raises(LeanError, match="has no TFLite Model Metadata"):
        read_metadata(path)
    (tmp_path / "text.tflite").write_text("hello")
    with pytest.raises(LeanError, match="not a TFLite model"):
        read_metadata(tmp_path / "text.tflite")


@pytest.mark.slow
def test_exported_run_carries_its_config_and_code_version(int8_export, tmp_path_factory):
    path, report = int8_export
    run_dir = support.tiny_run(tmp_path_factory)
    meta = read_metadata(path)
    assert meta["name"] == f"lean-{support.TINY_MODEL}"
    assert meta["labels"] == (run_dir / "labels.txt").read_text().splitlines()
    assert meta["config"] == json.loads((run_dir / "config.json").read_text())
    assert meta["input"] == {"name": "waveform", "sample_rate": 16000, "channels": 1}
    version_file = meta["associated_files"]["code_version.txt"]
    assert version_file.startswith(meta["version"]) and meta["version"].startswith("lean 0.1.0")
    assert "quantization: int8" in version_file
    assert report["metadata"]["num_labels"] == 13
