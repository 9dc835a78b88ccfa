"""One predictor interface over a Keras run/model and a LiteRT .tflite: windows in, scores out."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from lean.config import DataConfig, InputSpec
from lean.errors import LeanError
from lean.native_log import filtered_native_stderr
from lean.run import label_lines, read_labels_file

# Windows per forward pass: large enough to keep the CPU/GPU busy, small enough for memory.
DEFAULT_BATCH = 256


def open_interpreter(model_path, num_threads: Optional[int] = None):
    """A LiteRT interpreter with its tensors allocated (XNNPACK applied).

    LiteRT prints an INFO line when it applies XNNPACK; it is dropped as TF_CPP_MIN_LOG_LEVEL says.
    """
    from ai_edge_litert.interpreter import Interpreter

    with filtered_native_stderr():
        interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
        interpreter.allocate_tensors()
    return interpreter


class Predictor:
    """Turns windows of the model's input, float32 `[N, window_samples]` (mono) or
    `[N, window_samples, channels]`, into class probabilities `[N, C]`.

    `.task` is what the model was trained for (multilabel or single_label; None when a foreign
    .tflite does not say), `.sample_rate` and `.channels` what its windows must be decoded to.
    """

    kind = "base"
    # The data settings of the run the model comes from (layout, held-out folds), when known.
    data_config: Optional[DataConfig] = None

    def __init__(self, path: Path, labels: Sequence[str], input_spec: InputSpec,
                 task: Optional[str], batch_size: int = DEFAULT_BATCH):
        if batch_size <= 0:
            raise LeanError(f"batch size must be positive, not {batch_size}")
        self.path = Path(path)
        self.labels = tuple(labels)
        self.input_spec = input_spec
        self.task = task
        self.batch_size = int(batch_size)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def window_samples(self) -> int:
        return self.input_spec.window_samples

    @property
    def sample_rate(self) -> int:
        return self.input_spec.sample_rate

    @property
    def channels(self) -> int:
        return self.input_spec.channels

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities float32 [N, C] of windows float32 [N, *input shape], in batches."""
        windows = np.asarray(windows, dtype=np.float32)
        expected = self.input_spec.shape
        if windows.ndim != 1 + len(expected) or tuple(windows.shape[1:]) != expected:
            raise LeanError(
                f"{self.path}: expected windows [N, {', '.join(map(str, expected))}], "
                f"got {list(windows.shape)}"
            )
        scores = np.empty((len(windows), self.num_classes), dtype=np.float32)
        for start in range(0, len(windows), self.batch_size):
            batch = windows[start:start + self.batch_size]
            scores[start:start + len(batch)] = self._predict_batch(batch)
        return scores

    def _predict_batch(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class KerasPredictor(Predictor):
    """A Keras model called in large fixed-signature batches (one traced graph, no retracing)."""

    kind = "keras"

    def __init__(self, model, path: Path, labels: Sequence[str], input_spec: InputSpec,
                 task: Optional[str], batch_size: int = DEFAULT_BATCH,
                 scores_labels: bool = True):
        import tensorflow as tf

        super().__init__(path, labels, input_spec, task, batch_size)
        # A model trained on any length (open time axis) gets the config's fixed windows.
        taken = tuple(model.inputs[0].shape[1:])
        model_shape = tuple(n if n is not None else want
                            for n, want in zip(taken, input_spec.shape))
        if len(taken) != len(input_spec.shape) or model_shape != input_spec.shape:
            raise LeanError(f"{path}: the model takes windows {list(taken)}, its config "
                            f"says {list(input_spec.shape)}")
        output_classes = int(model.outputs[0].shape[-1])
        # scores_labels False: the model's outputs are features, not one score per label.
        if scores_labels and output_classes != len(self.labels):
            raise LeanError(
                f"{path}: model has {output_classes} outputs but {len(self.labels)} labels"
            )
        self.model = model
        # Traced once, here: tracing later, while decoding threads import modules, can trip
        # CPython 3.11's AST recursion check; autograph is off since there is nothing to convert.
        self._forward = tf.function(
            lambda x: tf.cast(model(x, training=False), tf.float32),
            input_signature=[tf.TensorSpec([None, *model_shape], tf.float32)],
            autograph=False,
        )
        self._forward.get_concrete_function()

    def _predict_batch(self, batch: np.ndarray) -> np.ndarray:
        return self._forward(batch).numpy()


class SvmPredictor(KerasPredictor):
    """A network's penultimate features scored by a scikit-learn SVM on the host (an RBF SVM
    run of `lean svm`, which no Keras or TFLite head holds)."""

    kind = "keras+svm"

    def __init__(self, model, pipeline, path: Path, labels: Sequence[str],
                 input_spec: InputSpec, task: Optional[str], batch_size: int = DEFAULT_BATCH):
        from lean.training.svm import penultimate_model

        super().__init__(penultimate_model(model), path, labels, input_spec, task, batch_size,
                         scores_labels=False)
        self.pipeline = pipeline

    def _predict_batch(self, batch: np.ndarray) -> np.ndarray:
        features = super()._predict_batch(batch)
        return self.pipeline.predict_proba(features.astype(np.float64)).astype(np.float32)


class LiteRtPredictor(Predictor):
    """A .tflite model run by LiteRT; batched when its batch dimension is dynamic, else looped.

    Its sample rate and channels come from its TFLite Model Metadata (AudioProperties), its
    task from the run config packed with it; the window is the input tensor's size. A
    multi-channel model's input holds the channels interleaved, [1, window_samples * channels],
    as MediaPipe and Android's AudioRecord deliver them.
    """

    kind = "tflite"

    def __init__(self, path: Path, labels: Optional[Sequence[str]] = None,
                 num_threads: Optional[int] = None, batch_size: int = DEFAULT_BATCH,
                 sample_rate: Optional[int] = None, channels: Optional[int] = None,
                 task: Optional[str] = None):
        """`labels` None: read them from the model's metadata or MODEL.labels.txt; `sample_rate`,
        `channels` and `task` None: read them from the metadata."""
        path = Path(path)
        try:
            self.interpreter = open_interpreter(path, num_threads)
        except (ValueError, RuntimeError) as error:
            raise LeanError(f"{path}: not a loadable TFLite model ({error})") from None
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise LeanError(
                f"{path}: expected one input and one output tensor, got {len(inputs)} and "
                f"{len(outputs)}"
            )
        self._input, self._output = inputs[0], outputs[0]
        input_shape = list(self._input["shape"])
        # MediaPipe accepts [1, W] or [W]; a -1 batch in the signature means batches can be resized.
        self._rank = len(input_shape)
        signature = list(self._input.get("shape_signature", input_shape))
        self.dynamic_batch = bool(self._rank == 2 and signature[0] == -1)
        described = tflite_description(path)
        if labels is None:
            labels = tflite_labels(path)
        sample_rate = sample_rate or described.get("sample_rate")
        channels = channels or described.get("channels") or 1
        if not sample_rate:
            raise LeanError(f"{path}: no TFLite Model Metadata gives its sample rate; export it "
                            "with lean-export (or pass the sample rate)")
        samples = int(input_shape[-1])
        if samples % channels:
            raise LeanError(f"{path}: {samples} input values do not hold {channels} channels")
        spec = InputSpec(sample_rate=int(sample_rate), channels=int(channels),
                         window_seconds=samples // channels / sample_rate)
        super().__init__(path, labels, spec, task or described.get("task"), batch_size)
        self.data_config = described.get("data")
        output_classes = int(self._output["shape"][-1])
        if output_classes != len(self.labels):
            raise LeanError(
                f"{path}: model has {output_classes} outputs but {len(self.labels)} labels"
            )
        self._allocated_batch = int(input_shape[0]) if self._rank == 2 else 1

    @property
    def window_samples(self) -> int:
        # The input tensor's size, exactly (window_seconds may not round-trip through a float).
        return int(self._input["shape"][-1]) // self.channels

    def _quantize_input(self, windows: np.ndarray) -> np.ndarray:
        dtype = self._input["dtype"]
        if dtype == np.float32:
            return windows
        scale, zero_point = self._input["quantization"]
        if not scale:
            return windows.astype(dtype)
        info = np.iinfo(dtype)
        return np.clip(np.round(windows / scale + zero_point), info.min, info.max).astype(dtype)

    def _dequantize_output(self, values: np.ndarray) -> np.ndarray:
        scale, zero_point = self._output["quantization"]
        if values.dtype != np.float32 and scale:
            return (values.astype(np.float32) - zero_point) * scale
        return values.astype(np.float32)

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        # [B, W, C] windows become the interleaved [B, W * C] the file takes.
        batch = batch.reshape(len(batch), -1)
        if self._rank == 1:
            batch = batch[0]
        self.interpreter.set_tensor(self._input["index"], self._quantize_input(batch))
        self.interpreter.invoke()
        values = self.interpreter.get_tensor(self._output["index"])
        return self._dequantize_output(values).reshape(-1, self.num_classes)

    def _predict_batch(self, batch: np.ndarray) -> np.ndarray:
        if not self.dynamic_batch:
            return np.concatenate([self._invoke(batch[row:row + 1]) for row in range(len(batch))])
        if self._allocated_batch != len(batch):
            self.interpreter.resize_tensor_input(
                self._input["index"], [len(batch), self.window_samples * self.channels],
                strict=True)
            self.interpreter.allocate_tensors()
            self._allocated_batch = len(batch)
        return self._invoke(batch)


def tflite_description(path: Path) -> dict:
    """What a .tflite's metadata says: sample_rate, channels and (from its packed run config)
    task; {} for a file without metadata."""
    from lean.model_metadata import has_metadata, read_metadata

    if not has_metadata(Path(path).read_bytes()):
        return {}
    metadata = read_metadata(path)
    described = {key: metadata["input"].get(key) for key in ("sample_rate", "channels")}
    run_config = metadata.get("config", {})
    if run_config.get("model", {}).get("task"):
        described["task"] = run_config["model"]["task"]
    if isinstance(run_config.get("data"), dict):
        described["data"] = DataConfig(**run_config["data"])
    return described


def tflite_labels(path: Path) -> list[str]:
    """Labels of a .tflite: `MODEL.labels.txt` beside it, else the labels file in its appended zip.

    The exported metadata packs its associated files (the TENSOR_AXIS_LABELS file, one label per
    line) as a zip appended to the flatbuffer, which `zipfile` reads from the end of the file.
    """
    path = Path(path)
    beside = path.with_suffix(".labels.txt")
    if beside.is_file():
        return read_labels_file(beside)
    try:
        with zipfile.ZipFile(path) as archive:
            names = [name for name in archive.namelist() if not name.endswith("/")]
            chosen = _choose_labels_member(names)
            if chosen is None:
                raise LeanError(
                    f"{path}: no labels file among its metadata files "
                    f"({', '.join(names) or 'none'}); put one label per line in {beside.name} "
                    "beside it"
                )
            text = archive.read(chosen).decode("utf-8")
    except zipfile.BadZipFile:
        raise LeanError(
            f"{path}: no labels (no metadata files appended and no {beside.name} beside it)"
        ) from None
    return label_lines(text)


def _choose_labels_member(names: list[str]) -> Optional[str]:
    if len(names) == 1:
        return names[0]
    labelled = [name for name in names if "label" in Path(name).name.lower()]
    return labelled[0] if len(labelled) == 1 else None


def load_predictor(path: str | Path, batch_size: int = DEFAULT_BATCH,
                   num_threads: Optional[int] = None, task: Optional[str] = None,
                   sample_rate: Optional[int] = None) -> Predictor:
    """Loads a run directory, a `.keras` file or a `.tflite` file behind one interface.

    Args:
        path: run directory (uses its best.keras, labels.txt, config.json), a `.keras` file (its
            run's config.json and labels.txt beside it) or a `.tflite` file (labels, sample rate
            and task from its metadata, labels also from `MODEL.labels.txt`).
        batch_size: windows per forward pass (Keras, or a .tflite with a dynamic batch).
        num_threads: LiteRT interpreter threads (None: LiteRT's default).
        task: the model's task when its files do not say it (a foreign .tflite).
        sample_rate: the input rate of a .tflite without TFLite Model Metadata.

    Returns:
        A `Predictor` with `.labels`, `.task`, `.window_samples`, `.sample_rate`, `.channels`
        and `.predict(windows)`.
    """
    from lean.run import BEST_MODEL, CONFIG_FILE, LABELS_FILE, load_run

    path = Path(path)
    if path.is_dir():
        run = load_run(path)
        model_config = run.config.model
        if run.config.svm is not None and run.config.svm.kernel != "linear":
            from lean.run import SVM_FILE
            from lean.training.svm import load_svm

            predictor = SvmPredictor(run.model, load_svm(path / SVM_FILE), path, run.labels,
                                     model_config.input, model_config.task, batch_size)
        else:
            predictor = KerasPredictor(run.model, path, run.labels, model_config.input,
                                       model_config.task, batch_size=batch_size)
        predictor.data_config = run.config.data
        return predictor
    if not path.is_file():
        raise LeanError(f"{path}: no such run directory or model file")
    if path.suffix == ".tflite":
        return LiteRtPredictor(path, num_threads=num_threads, batch_size=batch_size, task=task,
                               sample_rate=sample_rate)
    if path.suffix == ".keras":
        from lean.config import RunConfig, load_json
        from lean.models.registry import load_model

        missing = [name for name in (LABELS_FILE, CONFIG_FILE) if not (path.parent / name).is_file()]
        if missing:
            raise LeanError(f"{path}: no {' or '.join(missing)} beside it (a run directory's "
                            f"files; {BEST_MODEL} is one)")
        config = load_json(RunConfig, path.parent / CONFIG_FILE)
        predictor = KerasPredictor(load_model(path), path,
                                   read_labels_file(path.parent / LABELS_FILE),
                                   config.model.input, task or config.model.task,
                                   batch_size=batch_size)
        predictor.data_config = config.data
        return predictor
    raise LeanError(f"{path}: expected a run directory, a .keras or a .tflite file")
