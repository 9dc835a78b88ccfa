"""What every layout reader shares: tables read with their line numbers, audio file lookup,
problems collected into one line, class tables, and the choice of eval and val folds."""

from __future__ import annotations

import csv
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from lean.data.dataset import SPLITS, Clip, Dataset
from lean.errors import LeanError

# Tried in this order when a listed file name has no extension of its own.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
# How many problems one error message lists before it only counts the rest.
MAX_LISTED_PROBLEMS = 20


@dataclass
class DatasetScan:
    """Everything read from a dataset folder, problems included (what `lean data check` shows).

    `clips_by_split` already holds the split each clip was given (for a folds layout, by the
    chosen `test_fold` and `val_fold`); `split_rule` says in words how the splits were made.
    """

    root: Path
    layout: str
    task: str
    labels: list[str] = field(default_factory=list)
    mids: list[str] = field(default_factory=list)
    clips_by_split: dict = field(default_factory=lambda: {split: [] for split in SPLITS})
    problems: list[str] = field(default_factory=list)
    has_eval: bool = True
    folds: tuple[int, ...] = ()
    test_fold: Optional[int] = None
    val_fold: Optional[int] = None
    split_rule: str = ""

    def to_dataset(self) -> Dataset:
        return Dataset(
            root=self.root,
            labels=tuple(self.labels),
            mids=tuple(self.mids),
            clips_by_split={split: tuple(clips) for split, clips in self.clips_by_split.items()},
            task=self.task,
            layout=self.layout,
            has_eval=self.has_eval,
            folds=self.folds,
            test_fold=self.test_fold,
            val_fold=self.val_fold,
            split_rule=self.split_rule,
        )


def format_problems(root: Path, problems: list[str]) -> str:
    """One line: the count, the first problems, and how many more were not listed."""
    listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
    more = len(problems) - MAX_LISTED_PROBLEMS
    suffix = f"; ... and {more} more" if more > 0 else ""
    noun = "problem" if len(problems) == 1 else "problems"
    return f"dataset {root} has {len(problems)} {noun}: {listed}{suffix}"


def read_table(path: Path, delimiter: str = ",") -> list[tuple[int, list[str]]]:
    """Rows of a CSV (or tab-separated) file with their line numbers; blank lines skipped."""
    if not path.is_file():
        raise LeanError(f"{path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            rows = []
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append((reader.line_num, [cell.strip() for cell in row]))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise LeanError(f"{path}: cannot read CSV ({error})") from None
    if not rows:
        raise LeanError(f"{path}: empty file")
    return rows


def header_columns(path: Path, header: list[str], required: Iterable[str]) -> dict[str, int]:
    """Column name (lower case) -> index; a one-line error names a missing required column."""
    names = [cell.lower() for cell in header]
    for column in required:
        if column not in names:
            raise LeanError(f"{path} line 1: no '{column}' column (found {','.join(header)})")
    return {name: index for index, name in enumerate(names)}


def checked_rows(path: Path, header: list[str], rows: list[tuple[int, list[str]]],
                 name_column: str, problems: list[str], first_seen: Optional[dict] = None,
                 separator: str = "", more_columns_hint: str = "") -> Iterator[tuple]:
    """Yields `(line, where, cells, name)` for each row with as many cells as the header, a
    non-empty `name_column` and a name not listed before; the other rows become problems.

    Args:
        path: the table file (its name starts each problem: "esc50.csv line 7: ...").
        header: the header row; rows: the rows below it, from `read_table`.
        name_column: the column naming each row's file (as the file spells it).
        problems: where problems are appended.
        first_seen: name -> (file name, line) shared across tables, to catch a file listed in
            two of them; default: this table only.
        separator: a word for the column count message ("tab-separated").
        more_columns_hint: appended when a row has more cells than the header.
    """
    name_index = [cell.lower() for cell in header].index(name_column.lower())
    seen = {} if first_seen is None else first_seen
    columns = f"{separator} columns".strip()
    for line, cells in rows:
        where = f"{path.name} line {line}"
        if len(cells) != len(header):
            hint = more_columns_hint if len(cells) > len(header) else ""
            problems.append(f"{where}: expected {len(header)} {columns}, found {len(cells)}{hint}")
            continue
        name = cells[name_index]
        if not name:
            problems.append(f"{where}: empty {name_column}")
            continue
        if name in seen:
            file_name, first_line = seen[name]
            at = f"line {first_line}" if file_name == path.name else f"{file_name} line {first_line}"
            problems.append(f"{where}: duplicate {name_column} '{name}' (first on {at})")
            continue
        seen[name] = (path.name, line)
        yield line, where, cells, name


class AudioFiles:
    """Finds listed audio files under one folder, listing each directory once (fast for 50k files).

    A name is taken as it is when that file exists, else with each of AUDIO_EXTENSIONS added.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self._listings: dict[Path, set[str]] = {}

    @property
    def exists(self) -> bool:
        return self.folder.is_dir()

    def resolve(self, name: str) -> Optional[Path]:
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts:
            return None  # a dataset's own files only
        directory = self.folder / relative.parent
        listing = self._listing(directory)
        for candidate in (relative.name, *(relative.name + ext for ext in AUDIO_EXTENSIONS)):
            if candidate in listing:
                return directory / candidate
        return None

    def _listing(self, directory: Path) -> set[str]:
        if directory not in self._listings:
            try:
                self._listings[directory] = set(os.listdir(directory))
            except OSError:
                self._listings[directory] = set()
        return self._listings[directory]


def parse_fold(text: str) -> Optional[int]:
    """A fold number (1, 2, ...; 'fold3' is read as 3), or None when `text` is not one."""
    digits = text[4:] if text.lower().startswith("fold") else text
    if not digits.isdigit() or int(digits) < 1:
        return None
    return int(digits)


class ClassTable:
    """Collects (index, name) pairs from rows (ESC-50 target/category, UrbanSound8K
    classID/class) and reports each row that contradicts the first pairing seen."""

    def __init__(self, csv_name: str, index_column: str, name_column: str):
        self.csv_name = csv_name
        self.index_column = index_column
        self.name_column = name_column
        self.name_of: dict[int, str] = {}
        self.index_of: dict[str, int] = {}
        self.first_line: dict[int, int] = {}

    def add(self, index_text: str, name: str, where: str, line: int,
            problems: list[str]) -> Optional[int]:
        """The row's class index, or None after appending the row's problem to `problems`."""
        if not index_text.isdigit():
            problems.append(f"{where}: {self.index_column} '{index_text}' is not a number")
            return None
        if not name:
            problems.append(f"{where}: empty {self.name_column}")
            return None
        index = int(index_text)
        if index not in self.name_of and name not in self.index_of:
            self.name_of[index], self.index_of[name] = name, index
            self.first_line[index] = line
            return index
        if self.name_of.get(index) == name:
            return index
        if index in self.name_of:
            problems.append(f"{where}: {self.index_column} {index} is '{self.name_of[index]}' "
                            f"on line {self.first_line[index]}, not '{name}'")
        else:
            known = self.index_of[name]
            problems.append(f"{where}: {self.name_column} '{name}' is {self.index_column} "
                            f"{known} on line {self.first_line[known]}, not {index}")
        return None

    def labels(self, problems: list[str]) -> list[str]:
        """Names in index order; the indices must run 0..N-1."""
        if self.name_of and sorted(self.name_of) != list(range(len(self.name_of))):
            problems.append(f"{self.csv_name}: {self.index_column} values must run "
                            f"0..{len(self.name_of) - 1} without gaps, found "
                            f"{', '.join(str(i) for i in sorted(self.name_of))}")
        return [self.name_of[index] for index in sorted(self.name_of)]


def no_folds(layout: str, fold: Optional[int], val_fold: Optional[int]) -> None:
    """Layouts with fixed splits take no fold arguments."""
    if fold is not None or val_fold is not None:
        raise LeanError(f"layout {layout} has fixed train/val/eval splits, not folds: "
                        "drop --fold/--val-fold")


def choose_folds(root: Path, folds: Iterable[int], fold: Optional[int],
                 val_fold: Optional[int]) -> tuple[int, int]:
    """(eval fold, val fold): `fold` (default the first) and `val_fold` (default the next one,
    wrapping around); a fold that does not exist is a one-line error listing the folds."""
    folds = sorted(set(folds))
    listed = ", ".join(str(f) for f in folds) or "none"
    test_fold = folds[0] if fold is None else fold
    if test_fold not in folds:
        raise LeanError(f"{root}: fold {test_fold} does not exist (folds: {listed})")
    if val_fold is None:
        val_fold = folds[(folds.index(test_fold) + 1) % len(folds)]
    elif val_fold not in folds:
        raise LeanError(f"{root}: val fold {val_fold} does not exist (folds: {listed})")
    if val_fold == test_fold:
        raise LeanError(f"{root}: the val fold must differ from the eval fold ({test_fold})")
    return test_fold, val_fold


def split_by_fold(scan: DatasetScan, clips: list[Clip], fold: Optional[int],
                  val_fold: Optional[int], where: str) -> None:
    """Fills `scan`'s splits from its clips' folds: the eval fold, the val fold, the rest train.

    Fewer than 3 folds (eval, val and train need one each) is a problem of the dataset (`where`
    names its file); a fold argument that names no fold is a one-line error.
    """
    scan.folds = tuple(sorted({clip.fold for clip in clips}))
    if len(scan.folds) < 3:
        found = ", ".join(str(f) for f in scan.folds) or "none"
        scan.problems.append(f"{where}: a folds layout needs at least 3 folds (eval, val and "
                             f"train), found {found}")
        return
    scan.test_fold, scan.val_fold = choose_folds(scan.root, scan.folds, fold, val_fold)
    for clip in clips:
        split = {scan.test_fold: "eval", scan.val_fold: "val"}.get(clip.fold, "train")
        scan.clips_by_split[split].append(dataclasses.replace(clip, split=split))
    train = [f for f in scan.folds if f not in (scan.test_fold, scan.val_fold)]
    scan.split_rule = (f"fold {scan.test_fold} eval, fold {scan.val_fold} val, "
                       f"fold{'s' if len(train) > 1 else ''} {', '.join(map(str, train))} train")


def scan_fold_table(scan: DatasetScan, table: Path, columns: tuple[str, str, str, str],
                    audio_name: Callable[[str, int], str], fold: Optional[int],
                    val_fold: Optional[int]) -> DatasetScan:
    """Fills `scan` from a CSV of clips with a fold, a class index and a class name (ESC-50,
    UrbanSound8K): labels are the names in index order, splits follow `fold` and `val_fold`.

    Args:
        scan: the layout's empty scan.
        table: the CSV file.
        columns: the names of its file, fold, class index and class name columns.
        audio_name: (file, fold) -> the audio file's path under ROOT/audio/.
        fold, val_fold: as `split_by_fold`.
    """
    file_column, fold_column, index_column, name_column = columns
    rows = read_table(table)
    header, rows = rows[0][1], rows[1:]
    column = header_columns(table, header, (name.lower() for name in columns))
    audio = AudioFiles(scan.root / "audio")
    if not audio.exists:
        scan.problems.append(f"{scan.root}: no audio/ folder")
    classes = ClassTable(table.name, index_column, name_column)
    clips = []
    for line, where, row, fname in checked_rows(table, header, rows, file_column, scan.problems):
        fold_text = row[column[fold_column.lower()]]
        clip_fold = parse_fold(fold_text)
        if clip_fold is None:
            scan.problems.append(f"{where}: {fold_column} '{fold_text}' is not a fold number (1, 2, ...)")
        index = classes.add(row[column[index_column.lower()]], row[column[name_column.lower()]],
                            where, line, scan.problems)
        clip_path = None
        if clip_fold is not None and audio.exists:
            clip_path = audio.resolve(audio_name(fname, clip_fold))
            if clip_path is None:
                scan.problems.append(f"{where}: audio file audio/{audio_name(fname, clip_fold)} not found")
        if clip_fold is not None and index is not None and (clip_path or not audio.exists):
            clips.append(Clip(fname=fname, path=clip_path, label_indices=(index,), split="",
                              fold=clip_fold))
    scan.labels = classes.labels(scan.problems)
    split_by_fold(scan, clips, fold, val_fold, table.name)
    return scan


__all__ = [
    "AUDIO_EXTENSIONS",
    "MAX_LISTED_PROBLEMS",
    "AudioFiles",
    "ClassTable",
    "DatasetScan",
    "checked_rows",
    "choose_folds",
    "format_problems",
    "header_columns",
    "no_folds",
    "parse_fold",
    "read_table",
    "scan_fold_table",
    "split_by_fold",
]
