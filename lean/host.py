"""Where a measurement was taken: the host's CPU model and int8 dot-product features, cores,
platform and library versions (evaluation, export and benchmark reports all name it)."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Optional


def _cpuinfo_fields(text: Optional[str] = None) -> dict[str, str]:
    """The first value of each `key : value` line of /proc/cpuinfo (or of `text`); {} if unreadable."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return {}
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if value.strip():
            fields.setdefault(name.strip(), value.strip())
    return fields


def host_cpu_model() -> str:
    """The host CPU model from /proc/cpuinfo (x86 `model name`, ARM `Hardware`/`Model`)."""
    fields = _cpuinfo_fields()
    for key in ("model name", "Hardware", "Model", "cpu model"):
        if key in fields:
            return fields[key]
    return platform.processor() or platform.machine() or "unknown CPU"


# CPU features with an int8 dot-product instruction: with one, XNNPACK's int8 kernels run far
# faster than its float ones (measured: int8 YAMNet 0.56x float YAMNet's latency on an
# AVX512-VNNI Xeon, 0.88x on an AVX2-only EPYC), so int8/float latency ratios depend on it.
INT8_DOT_PRODUCT_FEATURES = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm", "sve2")


def cpu_int8_dot_product(cpuinfo: Optional[str] = None) -> list[str]:
    """The int8 dot-product features the CPU lists in /proc/cpuinfo (x86 `flags`, ARM `Features`)."""
    fields = _cpuinfo_fields(cpuinfo)
    present = set(fields.get("flags", fields.get("Features", "")).split())
    return [feature for feature in INT8_DOT_PRODUCT_FEATURES if feature in present]


def host_description(predictor=None) -> dict:
    """Where a measurement was taken: CPU model and int8 dot-product features, core count,
    platform, and any GPU in use."""
    host = {"cpu": host_cpu_model(), "cpu_int8_dot_product": cpu_int8_dot_product(),
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]}
    if getattr(predictor, "kind", None) == "keras":
        import tensorflow as tf

        host["gpus"] = [gpu.name for gpu in tf.config.list_physical_devices("GPU")]
        host["tensorflow"] = tf.__version__
    elif getattr(predictor, "kind", None) == "tflite":
        from importlib.metadata import version

        host["ai_edge_litert"] = version("ai-edge-litert")
    return host


__all__ = ["INT8_DOT_PRODUCT_FEATURES", "cpu_int8_dot_product", "host_cpu_model",
           "host_description"]
