"""UrbanSound8K layout: metadata/UrbanSound8K.csv and audio/fold1..10/, 10 folds."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lean.data.layouts.common import DatasetScan, scan_fold_table
from lean.tasks import SINGLE_LABEL

NAME = "urbansound8k"
LOOKS_FOR = "metadata/UrbanSound8K.csv"


def detect(root: Path) -> bool:
    return (root / LOOKS_FOR).is_file()


def scan(root: Path, fold: Optional[int] = None, val_fold: Optional[int] = None) -> DatasetScan:
    """Reads metadata/UrbanSound8K.csv: labels are the classes in classID order, each clip is
    audio/fold<fold>/<slice_file_name>; `fold` is held out as eval, `val_fold` (default the next
    fold) as val. The official folds keep the slices of one recording (fsID) together; the
    dataset's authors ask for them to be used as they are, since reshuffled folds leak.
    """
    return scan_fold_table(DatasetScan(root=root, layout=NAME, task=SINGLE_LABEL),
                           root / LOOKS_FOR, ("slice_file_name", "fold", "classID", "class"),
                           lambda fname, clip_fold: f"fold{clip_fold}/{fname}", fold, val_fold)


__all__ = ["NAME", "LOOKS_FOR", "detect", "scan"]
