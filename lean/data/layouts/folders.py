"""One folder per class: ROOT/<label>/**/<file>.<audio extension>, split into folds by a
stable hash of each file's path, so adding or removing a file never moves another one."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional

from lean.data.dataset import Clip
from lean.data.layouts.common import AUDIO_EXTENSIONS, DatasetScan, split_by_fold
from lean.tasks import SINGLE_LABEL

NAME = "folders"
LOOKS_FOR = "class folders of audio files (ROOT/<label>/*.wav)"
NUM_FOLDS = 5


def detect(root: Path) -> bool:
    return any(_audio_files(folder) for folder in _class_folders(root))


def fold_of(relative_path: str, num_folds: int = NUM_FOLDS) -> int:
    """1..num_folds from the SHA-1 of the file's path relative to ROOT ('/'-separated)."""
    digest = hashlib.sha1(relative_path.encode("utf-8")).digest()
    return 1 + int.from_bytes(digest[:8], "big") % num_folds


def scan(root: Path, fold: Optional[int] = None, val_fold: Optional[int] = None) -> DatasetScan:
    """Every audio file under ROOT/<label>/ (subfolders included; hidden entries skipped) is a
    clip of <label>; labels are the class folders that hold audio, sorted. Each file's fold is
    `fold_of` its relative path (5 folds); `fold` is held out as eval (default 1), `val_fold`
    (default the next fold) as val.
    """
    scan = DatasetScan(root=root, layout=NAME, task=SINGLE_LABEL)
    for entry in sorted(os.listdir(root)):
        if not entry.startswith(".") and Path(entry).suffix.lower() in AUDIO_EXTENSIONS \
                and (root / entry).is_file():
            scan.problems.append(f"{entry}: audio file outside a class folder (its class is unknown)")
    clips = []
    for folder in _class_folders(root):
        files = _audio_files(folder)
        if not files:
            continue
        index = len(scan.labels)
        scan.labels.append(folder.name)
        for path in files:
            relative = path.relative_to(root).as_posix()
            clips.append(Clip(fname=relative, path=path, label_indices=(index,), split="",
                              fold=fold_of(relative)))
    if not clips:
        scan.problems.append(f"{root}: no class folder holds audio files "
                             f"({'/'.join(AUDIO_EXTENSIONS)})")
        return scan
    split_by_fold(scan, clips, fold, val_fold, str(root))
    return scan


def _class_folders(root: Path) -> list[Path]:
    return sorted(path for path in root.iterdir()
                  if path.is_dir() and not path.name.startswith("."))


def _audio_files(folder: Path) -> list[Path]:
    """Audio files below `folder` in sorted path order, hidden files and folders skipped."""
    found = []
    for directory, subdirectories, files in os.walk(folder):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        found.extend(Path(directory) / name for name in sorted(files)
                     if not name.startswith(".") and Path(name).suffix.lower() in AUDIO_EXTENSIONS)
    return sorted(found)


__all__ = ["NAME", "LOOKS_FOR", "NUM_FOLDS", "detect", "fold_of", "scan"]
