"""Shared pytest set-up: quiet TensorFlow, CPU-only determinism, and the slow marker."""

import os

# Must be set before TensorFlow is imported by any test module.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
