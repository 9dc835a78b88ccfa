"""TF_CPP_MIN_LOG_LEVEL for the C++ log lines that TensorFlow and LiteRT print without checking it.

TensorFlow 2.21 logs its start-up notices (oneDNN, missing CUDA driver) through absl before absl
is initialised, and LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." at
the first allocation; neither honours the variable. We capture native stderr (fd 2) around those
two moments and pass on every line except log lines below the level.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

# absl before initialisation: "I0000 00:00:1795621682.654801   19794 port.cc:153] ..."
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] ")
# TFLite's minimal logging: "INFO: ...", "WARNING: ...", "ERROR: ..."
_TFLITE_LINE = re.compile(r"^(VERBOSE|INFO|WARNING|ERROR): ")
_LEVELS = {"I": 0, "W": 1, "E": 2, "F": 3, "VERBOSE": 0, "INFO": 0, "WARNING": 1, "ERROR": 2}


def native_log_level(line: str) -> int | None:
    """Severity of a C++ log line (0 info, 1 warning, 2 error, 3 fatal); None for other text."""
    match = _ABSL_LINE.match(line) or _TFLITE_LINE.match(line)
    return _LEVELS[match.group(1)] if match else None


def min_log_level() -> int:
    """TF_CPP_MIN_LOG_LEVEL as TensorFlow reads it: 0 (show all) when unset or not a number."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


@contextlib.contextmanager
def filtered_native_stderr():
    """Runs the block with fd 2 captured; afterwards passes on all but the log lines below the level."""
    level = min_log_level()
    if level <= 0:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            severities = [native_log_level(line) for line in lines]
            kept = "".join(line for line, severity in zip(lines, severities)
                           if severity is None or severity >= level)
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _FilteredTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as usual, then runs its package code under `filtered_native_stderr`."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: later imports find the loaded module
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            with filtered_native_stderr():
                execute(module)

        spec.loader.exec_module = exec_module
        return spec


def filter_tensorflow_startup() -> None:
    """Makes the process's first `import tensorflow` (also via keras) honour TF_CPP_MIN_LOG_LEVEL."""
    if "tensorflow" in sys.modules or any(isinstance(finder, _FilteredTensorFlowImport)
                                          for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _FilteredTensorFlowImport())
