"""Datasets in the FSD50K layout: ground-truth CSVs, vocabulary and audio folders, validated."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from lean.data.dataset import SPLITS, Clip, Dataset
from lean.errors import LeanError

# Tried in this order when `<fname>.wav` is missing.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
# The real FSD50K download prefixes every folder with "FSD50K."; user datasets may not.
FOLDER_PREFIXES = ("", "FSD50K.")
EVAL_SPLIT_VALUES = ("eval", "test", "")
# How many problems one error message lists before it only counts the rest.
MAX_LISTED_PROBLEMS = 20


@dataclass
class DatasetScan:
    """Everything read from a dataset folder, problems included (what `lean data check` shows)."""

    root: Path
    labels: list[str] = field(default_factory=list)
    mids: list[str] = field(default_factory=list)
    clips_by_split: dict = field(default_factory=lambda: {split: [] for split in SPLITS})
    problems: list[str] = field(default_factory=list)
    has_eval: bool = False

    def to_dataset(self) -> Dataset:
        return Dataset(
            root=self.root,
            labels=tuple(self.labels),
            mids=tuple(self.mids),
            clips_by_split={split: tuple(clips) for split, clips in self.clips_by_split.items()},
            task="multilabel",
            layout="fsd50k",
            has_eval=self.has_eval,
        )


def load_dataset(root: str | Path) -> Dataset:
    """Reads and validates a dataset in the FSD50K layout.

    Args:
        root: folder holding `ground_truth/` (or `FSD50K.ground_truth/`), `dev_audio/` and
            optionally `eval_audio/` (or their `FSD50K.` names).

    Returns:
        The `Dataset`. Every problem found (unknown label, missing audio, duplicate fname, bad
        split, malformed row) is collected and raised together in one `LeanError`.
    """
    scan = scan_dataset(root)
    if scan.problems:
        raise LeanError(format_problems(scan.root, scan.problems))
    return scan.to_dataset()


def format_problems(root: Path, problems: list[str]) -> str:
    """One line: the count, the first problems, and how many more were not listed."""
    listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
    more = len(problems) - MAX_LISTED_PROBLEMS
    suffix = f"; ... and {more} more" if more > 0 else ""
    noun = "problem" if len(problems) == 1 else "problems"
    return f"dataset {root} has {len(problems)} {noun}: {listed}{suffix}"


def scan_dataset(root: str | Path) -> DatasetScan:
    """Reads a dataset folder and collects every problem instead of stopping at the first."""
    root = Path(root)
    if not root.is_dir():
        raise LeanError(f"{root}: dataset folder not found")
    scan = DatasetScan(root=root)
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

    dev_files = _AudioFolder(root, "dev_audio", scan.problems)
    for clip in _read_clips(dev_path, dev_files, label_to_index, scan.problems, is_eval=False):
        scan.clips_by_split[clip.split].append(clip)

    eval_path = truth_dir / "eval.csv"
    if eval_path.is_file():
        scan.has_eval = True
        eval_files = _AudioFolder(root, "eval_audio", scan.problems)
        scan.clips_by_split["eval"] = _read_clips(
            eval_path, eval_files, label_to_index, scan.problems, is_eval=True
        )
    return scan


def _find_folder(root: Path, name: str) -> Optional[Path]:
    for prefix in FOLDER_PREFIXES:
        candidate = root / f"{prefix}{name}"
        if candidate.is_dir():
            return candidate
    return None


def _split_labels(text: str) -> list[str]:
    return [label.strip() for label in text.split(",") if label.strip()]


def _read_csv(path: Path) -> list[tuple[int, list[str]]]:
    """CSV rows with their line numbers in the file; blank lines skipped."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            rows = []
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append((reader.line_num, [cell.strip() for cell in row]))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise LeanError(f"{path}: cannot read CSV ({error})") from None
    if not rows:
        raise LeanError(f"{path}: empty file")
    return rows


def _read_vocabulary(path: Path, problems: list[str]) -> tuple[list[str], list[str]]:
    """vocabulary.csv rows index,label,mid; the header row is optional (FSD50K has none)."""
    rows = _read_csv(path)
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


class _AudioFolder:
    """Resolves `<fname>.<ext>` in one audio folder from a single directory listing (fast)."""

    def __init__(self, root: Path, name: str, problems: list[str]):
        self.folder = _find_folder(root, name)
        self.name = name
        self.files: set[str] = set()
        if self.folder is None:
            problems.append(f"{root}: no {name}/ or FSD50K.{name}/ folder")
        else:
            self.files = set(os.listdir(self.folder))

    def resolve(self, fname: str) -> Optional[Path]:
        if self.folder is None:
            return None
        for extension in AUDIO_EXTENSIONS:
            if f"{fname}{extension}" in self.files:
                return self.folder / f"{fname}{extension}"
        if fname in self.files:  # an fname that already carries its extension
            return self.folder / fname
        return None


def _read_clips(
    path: Path,
    audio: _AudioFolder,
    label_to_index: dict[str, int],
    problems: list[str],
    is_eval: bool,
) -> list[Clip]:
    rows = _read_csv(path)
    header, rows = [cell.lower() for cell in rows[0][1]], rows[1:]
    for column in ("fname", "labels"):
        if column not in header:
            raise LeanError(f"{path} line 1: no '{column}' column (found {','.join(header)})")
    has_split = "split" in header
    if not is_eval and not has_split:
        raise LeanError(f"{path} line 1: no 'split' column (each dev clip needs train or val)")
    fname_col, labels_col = header.index("fname"), header.index("labels")
    split_col = header.index("split") if has_split else None
    clips = []
    seen: dict[str, int] = {}
    for line, row in rows:
        where = f"{path.name} line {line}"
        if len(row) != len(header):
            hint = " (multi-label lists must be quoted)" if len(row) > len(header) else ""
            problems.append(f"{where}: expected {len(header)} columns, found {len(row)}{hint}")
            continue
        fname = row[fname_col]
        if not fname:
            problems.append(f"{where}: empty fname")
            continue
        if fname in seen:
            problems.append(f"{where}: duplicate fname '{fname}' (first on line {seen[fname]})")
            continue
        seen[fname] = line
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
        clip_path = audio.resolve(fname)
        if clip_path is None and audio.folder is not None:
            tried = "/".join(AUDIO_EXTENSIONS)
            problems.append(f"{where}: audio file {audio.folder.name}/{fname}.wav not found (nor {tried})")
            row_ok = False
        if row_ok:
            indices = tuple(sorted({label_to_index[name] for name in names}))
            clips.append(Clip(fname=fname, path=clip_path, label_indices=indices, split=split))
    return clips


__all__ = ["Clip", "Dataset", "DatasetScan", "load_dataset", "scan_dataset", "SPLITS"]
