"""A plain clips CSV: ROOT/clips.csv with fname,label and a split or a fold column, audio paths
relative to ROOT, and an optional ROOT/labels.txt that fixes the classes and their order."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

from lean.data.dataset import Clip
from lean.data.layouts.common import (
    AudioFiles,
    DatasetScan,
    checked_rows,
    header_columns,
    no_folds,
    parse_fold,
    read_table,
    split_by_fold,
)
from lean.errors import LeanError
from lean.tasks import SINGLE_LABEL

NAME = "csv"
LOOKS_FOR = "clips.csv"
LABELS_FILE = "labels.txt"
# Split values and the split each one means; "test" is the same as "eval".
SPLIT_VALUES = {"train": "train", "val": "val", "eval": "eval", "test": "eval"}


def detect(root: Path) -> bool:
    return (root / LOOKS_FOR).is_file()


def scan(root: Path, fold: Optional[int] = None, val_fold: Optional[int] = None) -> DatasetScan:
    """Reads clips.csv: one row per clip, `fname` (a path relative to ROOT; the extension may
    be left out), `label`, and either `split` (train|val|eval|test) or `fold` (1, 2, ...).

    Labels are those of labels.txt (one per line, in output order) when it exists, and a row
    with another label is a problem; else every label in the CSV, sorted.
    """
    scan = DatasetScan(root=root, layout=NAME, task=SINGLE_LABEL)
    path = root / LOOKS_FOR
    rows = read_table(path)
    header, rows = rows[0][1], rows[1:]
    columns = header_columns(path, header, ("fname", "label"))
    if ("split" in columns) == ("fold" in columns):
        raise LeanError(f"{path} line 1: needs one 'split' column or one 'fold' column "
                        f"(found {','.join(header)})")
    by_fold = "fold" in columns
    if not by_fold:
        no_folds(f"{NAME} (clips.csv with a split column)", fold, val_fold)
    vocabulary = _read_labels(root / LABELS_FILE)
    audio = AudioFiles(root)
    parsed = []  # clips without label indices yet (the labels are known after the last row)
    label_of: dict[str, str] = {}
    for _, where, row, fname in checked_rows(path, header, rows, "fname", scan.problems):
        label = row[columns["label"]]
        row_ok = True
        split, clip_fold = "", None
        if by_fold:
            clip_fold = parse_fold(row[columns["fold"]])
            if clip_fold is None:
                scan.problems.append(f"{where}: fold '{row[columns['fold']]}' is not a fold number (1, 2, ...)")
                row_ok = False
        else:
            split = SPLIT_VALUES.get(row[columns["split"]].lower(), "")
            if not split:
                scan.problems.append(f"{where}: split '{row[columns['split']]}' is not "
                                     f"{', '.join(SPLIT_VALUES)}")
                row_ok = False
        if not label:
            scan.problems.append(f"{where}: empty label")
            row_ok = False
        elif vocabulary is not None and label not in vocabulary:
            scan.problems.append(f"{where}: label '{label}' not in {LABELS_FILE} (unknown class)")
            row_ok = False
        clip_path = audio.resolve(fname)
        if clip_path is None:
            scan.problems.append(f"{where}: audio file {fname} not found")
            row_ok = False
        if row_ok:
            label_of[fname] = label
            parsed.append(Clip(fname=fname, path=clip_path, label_indices=(), split=split,
                               fold=clip_fold))
    scan.labels = vocabulary if vocabulary is not None else sorted(set(label_of.values()))
    index = {label: i for i, label in enumerate(scan.labels)}
    clips = [Clip(clip.fname, clip.path, (index[label_of[clip.fname]],), clip.split, clip.fold)
             for clip in parsed]
    if by_fold:
        split_by_fold(scan, clips, fold, val_fold, path.name)
        return scan
    for clip in clips:
        scan.clips_by_split[clip.split].append(clip)
    scan.has_eval = bool(scan.clips_by_split["eval"])
    scan.split_rule = "clips.csv split column" + ("" if scan.has_eval else "; no eval rows")
    return scan


def _read_labels(path: Path) -> Optional[list[str]]:
    if not path.is_file():
        return None
    labels = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    labels = [label for label in labels if label]
    duplicates = sorted(label for label, count in Counter(labels).items() if count > 1)
    if duplicates:
        raise LeanError(f"{path}: label {', '.join(repr(d) for d in duplicates)} listed twice")
    if not labels:
        raise LeanError(f"{path}: no labels")
    return labels


__all__ = ["NAME", "LOOKS_FOR", "LABELS_FILE", "detect", "scan"]
