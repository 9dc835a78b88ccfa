"""ESC-50 layout: meta/esc50.csv (filename, fold, target, category, ...) and audio/, 5 folds."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lean.data.layouts.common import DatasetScan, scan_fold_table
from lean.tasks import SINGLE_LABEL

NAME = "esc50"
LOOKS_FOR = "meta/esc50.csv"


def detect(root: Path) -> bool:
    return (root / LOOKS_FOR).is_file()


def scan(root: Path, fold: Optional[int] = None, val_fold: Optional[int] = None) -> DatasetScan:
    """Reads meta/esc50.csv: labels are the categories in target order, each clip is
    audio/<filename>; `fold` is held out as eval, `val_fold` (default the next fold) as val, the
    other folds train. The other columns (esc10, src_file, take) are not needed.
    """
    return scan_fold_table(DatasetScan(root=root, layout=NAME, task=SINGLE_LABEL),
                           root / LOOKS_FOR, ("filename", "fold", "target", "category"),
                           lambda fname, clip_fold: fname, fold, val_fold)


__all__ = ["NAME", "LOOKS_FOR", "detect", "scan"]
