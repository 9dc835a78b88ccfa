"""Datasets in the FSD50K layout: ground-truth CSVs, vocabulary and audio folders, validated."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lean.data.dataset import Clip
from lean.data.layouts.common import (
    AUDIO_EXTENSIONS,
    AudioFiles,
    DatasetScan,
    checked_rows,
    header_columns,
    no_folds,
    read_table,
)
from lean.errors import LeanError
from lean.tasks import MULTILABEL

NAME = "fsd50k"
LOOKS_FOR = "ground_truth/ or FSD50K.ground_truth/"
# The real FSD50K download prefixes every folder with "FSD50K."; user datasets may not.
FOLDER_PREFIXES = ("", "FSD50K.")
EVAL_SPLIT_VALUES = ("eval", "test", "")


def detect(root: Path) -> bool:
    return _find_folder(root, "ground_truth") is not None


def scan(root: Path, fold: Optional[int] = None, val_fold: Optional[int] = None) -> DatasetScan:
    """Reads an FSD50K-layout folder and collects every problem instead of stopping at the first.

    The folder holds `ground_truth/` (or `FSD50K.ground_truth/`) with vocabulary.csv, dev.csv
    (split train|val) and optionally eval.csv, and `dev_audio/`, `eval_audio/` (or their
    `FSD50K.` names).
    """
    no_folds(NAME, fold, val_fold)
    scan = DatasetScan(root=root, layout=NAME, task=MULTILABEL, has_eval=False,
                       split_rule="dev.csv split column (train|val), eval.csv eval")
    truth_dir = _find_folder(root, "ground_truth")
    if truth_dir is None:
        raise LeanError(f"{root}: no ground_truth/ or FSD50K.ground_truth/ folder")
    vocabulary_path = truth_dir / "vocabulary.csv"
    dev_path = truth_dir / "dev.csv"
    for required in (vocabulary_path, dev_path):
        if not required.is_file():
            raise LeanError(f"{required}: file not found")

    scan.labels, scan.mids = _read_vocabulary(vocabulary_path, scan.problems)
    label_to_index = {label: index for index, label in enumerate(scan.labels)}

    dev_files = _audio_folder(root, "dev_audio", scan.problems)
    for clip in _read_clips(dev_path, dev_files, label_to_index, scan.problems, is_eval=False):
        scan.clips_by_split[clip.split].append(clip)

    eval_path = truth_dir / "eval.csv"
    if eval_path.is_file():
        scan.has_eval = True
        eval_files = _audio_folder(root, "eval_audio", scan.problems)
        scan.clips_by_split["eval"] = _read_clips(
            eval_path, eval_files, label_to_index, scan.problems, is_eval=True
        )
    else:
        scan.split_rule += "; no eval.csv"
    return scan


def _find_folder(root: Path, name: str) -> Optional[Path]:
    for prefix in FOLDER_PREFIXES:
        candidate = root / f"{prefix}{name}"
        if candidate.is_dir():
            return candidate
    return None


def _split_labels(text: str) -> list[str]:
    return [label.strip() for label in text.split(",") if label.strip()]


def _read_vocabulary(path: Path, problems: list[str]) -> tuple[list[str], list[str]]:
    """vocabulary.csv rows index,label,mid; the header row is optional (FSD50K has none)."""
    rows = read_table(path)
    first = rows[0][1]
    if not first[0].isdigit():
        if [cell.lower() for cell in first[:2]] != ["index", "label"]:
            raise LeanError(f"{path} line 1: expected index,label,mid rows, got '{','.join(first)}'")
        rows = rows[1:]
    by_index: dict[int, tuple[str, str]] = {}
    seen_labels: set[str] = set()
    for line, row in rows:
        where = f"{path.name} line {line}"
        if len(row) < 2 or not row[1]:
            problems.append(f"{where}: expected index,label,mid")
            continue
        index_text, label = row[0], row[1]
        mid = row[2] if len(row) > 2 else ""
        if not index_text.isdigit():
            problems.append(f"{where}: index '{index_text}' is not a number")
            continue
        index = int(index_text)
        if index in by_index:
            problems.append(f"{where}: duplicate index {index}")
            continue
        if label in seen_labels:
            problems.append(f"{where}: duplicate label '{label}'")
            continue
        by_index[index] = (label, mid)
        seen_labels.add(label)
    if not by_index:
        raise LeanError(f"{path}: no classes")
    if sorted(by_index) != list(range(len(by_index))):
        problems.append(f"{path.name}: indices must run 0..{len(by_index) - 1} without gaps")
    ordered = [by_index[index] for index in sorted(by_index)]
    return [label for label, _ in ordered], [mid for _, mid in ordered]


def _audio_folder(root: Path, name: str, problems: list[str]) -> Optional[AudioFiles]:
    folder = _find_folder(root, name)
    if folder is None:
        problems.append(f"{root}: no {name}/ or FSD50K.{name}/ folder")
        return None
    return AudioFiles(folder)


def _read_clips(
    path: Path,
    audio: Optional[AudioFiles],
    label_to_index: dict[str, int],
    problems: list[str],
    is_eval: bool,
) -> list[Clip]:
    rows = read_table(path)
    header, rows = rows[0][1], rows[1:]
    columns = header_columns(path, header, ("fname", "labels"))
    has_split = "split" in columns
    if not is_eval and not has_split:
        raise LeanError(f"{path} line 1: no 'split' column (each dev clip needs train or val)")
    labels_col = columns["labels"]
    split_col = columns.get("split")
    clips = []
    for _, where, row, fname in checked_rows(path, header, rows, "fname", problems,
                                             more_columns_hint=" (multi-label lists must be quoted)"):
        row_ok = True
        split_value = row[split_col].lower() if split_col is not None else ""
        if is_eval:
            if split_value not in EVAL_SPLIT_VALUES:
                problems.append(f"{where}: split '{row[split_col]}' in eval.csv (expected eval)")
                row_ok = False
            split = "eval"
        else:
            if split_value not in ("train", "val"):
                problems.append(f"{where}: split '{row[split_col]}' is not train or val")
                row_ok = False
            split = split_value
        names = _split_labels(row[labels_col])
        if not names:
            problems.append(f"{where}: no labels")
            row_ok = False
        unknown = [name for name in names if name not in label_to_index]
        if unknown:
            quoted = ", ".join(f"'{name}'" for name in unknown)
            problems.append(f"{where}: label {quoted} not in vocabulary.csv")
            row_ok = False
        clip_path = audio.resolve(fname) if audio is not None else None
        if clip_path is None and audio is not None:
            tried = "/".join(AUDIO_EXTENSIONS)
            problems.append(f"{where}: audio file {audio.folder.name}/{fname}.wav not found (nor {tried})")
            row_ok = False
        if row_ok:
            indices = tuple(sorted({label_to_index[name] for name in names}))
            clips.append(Clip(fname=fname, path=clip_path, label_indices=indices, split=split))
    return clips


__all__ = ["NAME", "LOOKS_FOR", "detect", "scan"]
