"""C++ log lines that TensorFlow and LiteRT print without checking TF_CPP_MIN_LOG_LEVEL."""

import os
import subprocess
import sys

from lean.native_log import filtered_native_stderr, native_log_level

LITERT_BANNER = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


def test_native_log_level_reads_absl_and_tflite_lines():
    assert native_log_level("I0000 00:00:1795621682.654801   19794 port.cc:153] oneDNN on\n") == 0
    assert native_log_level("W0000 00:00:1795621682.65   19 cuda_executor.cc:1228] x") == 1
    assert native_log_level("E0000 00:00:1795621682.654801   19794 cuda_driver.cc:152] cuInit") == 2
    assert native_log_level("F0000 00:00:1795621682.654801   19794 a.cc:1] Check failed") == 3
    assert native_log_level(LITERT_BANNER) == 0
    assert native_log_level("ERROR: The model is not a valid Flatbuffer buffer") == 2
    assert native_log_level("lean: error: no such file") is None
    assert native_log_level("Traceback (most recent call last):") is None


def test_filter_drops_only_log_lines_below_the_level(monkeypatch, capfd):
    text = (f"{LITERT_BANNER}\n"
            "W0000 00:00:1.5   7 a.cc:1] a warning\n"
            "E0000 00:00:1.5   7 a.cc:2] an error\n"
            "plain text from a library\n")
    for level, kept in [("0", text), ("2", "E0000 00:00:1.5   7 a.cc:2] an error\nplain text from a library\n"),
                        ("3", "plain text from a library\n")]:
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", level)
        with filtered_native_stderr():
            os.write(2, text.encode())
        assert capfd.readouterr().err == kept


def _stderr_of(code: str, level: str) -> str:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=level, CUDA_VISIBLE_DEVICES="")
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)  # conftest turns oneDNN off; its notice is one to drop
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True).stderr


def test_cli_setup_makes_the_tensorflow_import_and_litert_quiet(tmp_path):
    """Each case in a fresh process: both notices come once per process."""
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
    path = tmp_path / "dense.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    load = (f"import tensorflow\nfrom lean.inference import open_interpreter\n"
            f"open_interpreter({str(path)!r})\n")
    unfiltered = _stderr_of(load, "2")
    assert "oneDNN custom operations are on" in unfiltered  # TensorFlow ignores the level here
    assert LITERT_BANNER not in unfiltered  # open_interpreter honours the level by itself
    assert LITERT_BANNER in _stderr_of(load, "0")
    quiet = _stderr_of("from lean.command_line import quiet_tensorflow\nquiet_tensorflow()\n" + load, "2")
    assert quiet.strip() == ""
