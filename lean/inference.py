"""One predictor interface over a Keras run/model and a LiteRT .tflite: windows in, scores out."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from lean.errors import LeanError
from lean.native_log import filtered_native_stderr

DEFAULT_SAMPLE_RATE = 16000
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
    """Turns 1 s windows `[N, window_samples]` float32 into class probabilities `[N, C]`."""

    kind = "base"

    def __init__(self, path: Path, labels: Sequence[str], window_samples: int, sample_rate: int,
                 batch_size: int = DEFAULT_BATCH):
        if batch_size <= 0:
            raise LeanError(f"batch size must be positive, not {batch_size}")
        self.path = Path(path)
        self.labels = tuple(labels)
        self.window_samples = int(window_samples)
        self.sample_rate = int(sample_rate)
        self.batch_size = int(batch_size)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities float32 [N, C] of windows float32 [N, window_samples], in batches."""
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[1] != self.window_samples:
            raise LeanError(
                f"{self.path}: expected windows [N, {self.window_samples}], "
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

    def __init__(self, model, path: Path, labels: Sequence[str], sample_rate: int,
                 batch_size: int = DEFAULT_BATCH):
        import tensorflow as tf

        window_samples = int(model.inputs[0].shape[-1])
        super().__init__(path, labels, window_samples, sample_rate, batch_size)
        output_classes = int(model.outputs[0].shape[-1])
        if output_classes != len(self.labels):
            raise LeanError(
                f"{path}: model has {output_classes} outputs but {len(self.labels)} labels"
            )
        self.model = model
        # Traced once, here: tracing later, while decoding threads import modules, can trip
        # CPython 3.11's AST recursion check; autograph is off since there is nothing to convert.
        self._forward = tf.function(
            lambda x: tf.cast(model(x, training=False), tf.float32),
            input_signature=[tf.TensorSpec([None, window_samples], tf.float32)],
            autograph=False,
        )
        self._forward.get_concrete_function()

    def _predict_batch(self, batch: np.ndarray) -> np.ndarray:
        return self._forward(batch).numpy()


class LiteRtPredictor(Predictor):
    """A .tflite model run by LiteRT; batched when its batch dimension is dynamic, else looped."""

    kind = "tflite"

    def __init__(self, path: Path, labels: Optional[Sequence[str]] = None,
                 num_threads: Optional[int] = None, batch_size: int = DEFAULT_BATCH):
        """`labels` None: read them from the model's metadata or MODEL.labels.txt."""
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
        if labels is None:
            labels = tflite_labels(path)
        super().__init__(path, labels, int(input_shape[-1]), DEFAULT_SAMPLE_RATE, batch_size)
        output_classes = int(self._output["shape"][-1])
        if output_classes != len(self.labels):
            raise LeanError(
                f"{path}: model has {output_classes} outputs but {len(self.labels)} labels"
            )
        self._allocated_batch = int(input_shape[0]) if self._rank == 2 else 1

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
                self._input["index"], [len(batch), self.window_samples], strict=True
            )
            self.interpreter.allocate_tensors()
            self._allocated_batch = len(batch)
        return self._invoke(batch)


def read_labels_file(path: Path) -> list[str]:
    """One label per line; blank lines are not labels."""
    return _label_lines(Path(path).read_text(encoding="utf-8"))


def _label_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


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
    return _label_lines(text)


def _choose_labels_member(names: list[str]) -> Optional[str]:
    if len(names) == 1:
        return names[0]
    labelled = [name for name in names if "label" in Path(name).name.lower()]
    return labelled[0] if len(labelled) == 1 else None


def load_predictor(path: str | Path, batch_size: int = DEFAULT_BATCH,
                   num_threads: Optional[int] = None) -> Predictor:
    """Loads a run directory, a `.keras` file or a `.tflite` file behind one interface.

    Args:
        path: run directory (uses its best.keras, labels.txt, config.json), a `.keras` file (labels
            from `labels.txt` beside it) or a `.tflite` file (labels from its metadata or
            `MODEL.labels.txt`).
        batch_size: windows per forward pass (Keras, or a .tflite with a dynamic batch).
        num_threads: LiteRT interpreter threads (None: LiteRT's default).

    Returns:
        A `Predictor` with `.labels`, `.window_samples`, `.sample_rate` and `.predict(windows)`.
    """
    path = Path(path)
    if path.is_dir():
        from lean.train import load_run

        run = load_run(path)
        return KerasPredictor(run.model, path, run.labels, run.config.model.frontend.sample_rate,
                              batch_size=batch_size)
    if not path.is_file():
        raise LeanError(f"{path}: no such run directory or model file")
    if path.suffix == ".tflite":
        return LiteRtPredictor(path, num_threads=num_threads,
                               batch_size=batch_size)
    if path.suffix == ".keras":
        from lean.models.registry import load_model

        labels_path = path.parent / "labels.txt"
        if not labels_path.is_file():
            raise LeanError(f"{path}: no labels.txt beside it")
        sample_rate = DEFAULT_SAMPLE_RATE
        if (path.parent / "config.json").is_file():
            from lean.config import RunConfig, load_json

            config = load_json(RunConfig, path.parent / "config.json")
            sample_rate = config.model.frontend.sample_rate
        return KerasPredictor(load_model(path), path, read_labels_file(labels_path), sample_rate,
                              batch_size=batch_size)
    raise LeanError(f"{path}: expected a run directory, a .keras or a .tflite file")
