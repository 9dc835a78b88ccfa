"""Datasets in every supported layout, audio decoding and caching, windowing, tf.data pipelines.

`load_dataset(root, layout=None, fold=None, val_fold=None) -> Dataset` is the entry point.
"""

from lean.data.layouts import LAYOUT_NAMES, detect_layout, load_dataset, scan_dataset

__all__ = ["LAYOUT_NAMES", "detect_layout", "load_dataset", "scan_dataset"]
