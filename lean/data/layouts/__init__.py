"""Every dataset layout behind one entry point: `load_dataset(root, layout=None, fold=None,
val_fold=None)` detects the layout from the files present and returns the one `Dataset`.

Each layout module has NAME, LOOKS_FOR (what detection looks for, in words), `detect(root)`
and `scan(root, fold, val_fold) -> DatasetScan`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lean.data.dataset import Dataset
from lean.data.layouts import clips_csv, dcase, esc50, folders, fsd50k, urbansound8k
from lean.data.layouts.common import DatasetScan, format_problems
from lean.errors import LeanError

# Layouts recognised by a file of their own; `folders` (any class folders of audio) is only
# tried when none of these match.
MARKED_LAYOUTS = (fsd50k, esc50, urbansound8k, dcase, clips_csv)
LAYOUTS = {module.NAME: module for module in (*MARKED_LAYOUTS, folders)}
LAYOUT_NAMES = tuple(LAYOUTS)


def detect_layout(root: str | Path) -> str:
    """The name of the one layout whose files are in `root`; a one-line error when none or
    several are."""
    root = _existing_folder(root)
    found = [module.NAME for module in MARKED_LAYOUTS if module.detect(root)]
    if len(found) > 1:
        raise LeanError(f"{root}: looks like several layouts ({', '.join(found)}); "
                        "choose one with --layout")
    if found:
        return found[0]
    if folders.detect(root):
        return folders.NAME
    looked_for = ", ".join(f"no {module.LOOKS_FOR} ({name})" for name, module in LAYOUTS.items())
    raise LeanError(f"{root}: no dataset layout recognised: {looked_for}")


def scan_dataset(root: str | Path, layout: Optional[str] = None, fold: Optional[int] = None,
                 val_fold: Optional[int] = None) -> DatasetScan:
    """Reads a dataset folder and collects every problem instead of stopping at the first (what
    `lean data check` prints). Arguments as `load_dataset`."""
    root = _existing_folder(root)
    if layout is None:
        layout = detect_layout(root)
    if layout not in LAYOUTS:
        raise LeanError(f"unknown layout '{layout}': expected one of {', '.join(LAYOUT_NAMES)}")
    return LAYOUTS[layout].scan(root, fold=fold, val_fold=val_fold)


def load_dataset(root: str | Path, layout: Optional[str] = None, fold: Optional[int] = None,
                 val_fold: Optional[int] = None) -> Dataset:
    """Reads and validates a dataset in any supported layout.

    Args:
        root: the dataset folder.
        layout: one of LAYOUT_NAMES; None detects it from the files present.
        fold: for a folds layout (esc50, urbansound8k, a clips.csv with a fold column, folders),
            the fold held out as eval (default: the first); for dcase, the evaluation-setup
            fold (default: the first). Fixed-split layouts take none.
        val_fold: for a folds layout, the fold used as val (default: the fold after `fold`,
            wrapping around).

    Returns:
        The `Dataset`, with its layout, task and chosen folds recorded. Every problem found
        (unknown class, missing audio, duplicate file, bad fold or split, malformed row) is
        collected and raised together in one one-line `LeanError`.
    """
    scan = scan_dataset(root, layout, fold, val_fold)
    if scan.problems:
        raise LeanError(format_problems(scan.root, scan.problems))
    return scan.to_dataset()


def _existing_folder(root: str | Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise LeanError(f"{root}: dataset folder not found")
    return root


__all__ = ["LAYOUTS", "LAYOUT_NAMES", "DatasetScan", "detect_layout", "load_dataset",
           "scan_dataset"]
