"""Old import path, kept while train, eval, export and benchmarks move to `lean.data`:
`load_dataset` here is `lean.data.load_dataset`, which reads FSD50K and every other layout."""

from lean.data.dataset import SPLITS, Clip, Dataset
from lean.data.layouts import load_dataset, scan_dataset
from lean.data.layouts.common import MAX_LISTED_PROBLEMS, DatasetScan

__all__ = ["Clip", "Dataset", "DatasetScan", "MAX_LISTED_PROBLEMS", "SPLITS", "load_dataset",
           "scan_dataset"]
