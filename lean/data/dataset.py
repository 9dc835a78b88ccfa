"""One Dataset API over every layout: clips per split, labels in output order, the task.

Each layout module (FSD50K, and the single-label layouts) reads its own files and returns a
`Dataset`; training, evaluation, export and benchmarks only ever see this API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from lean.errors import LeanError

SPLITS = ("train", "val", "eval")


@dataclass(frozen=True)
class Clip:
    """One audio file and its labels (indices into the dataset's labels)."""

    fname: str
    path: Path
    label_indices: tuple[int, ...]
    split: str
    # The cross-validation fold of a folds layout (ESC-50, UrbanSound8K, a folds CSV), else None.
    fold: Optional[int] = None


@dataclass(frozen=True)
class Dataset:
    """A validated dataset; `clips(split)` lists the clips of train, val or eval.

    `task` is what the layout implies (FSD50K: multilabel; the single-label layouts:
    single_label). For a folds layout, `test_fold` and `val_fold` record which folds became
    eval and val (for dcase, `test_fold` is the evaluation-setup fold); `split_rule` says in
    words how the splits were made.
    """

    root: Path
    labels: tuple[str, ...]
    clips_by_split: dict = field(repr=False)
    task: str = "multilabel"
    layout: str = "fsd50k"
    mids: tuple[str, ...] = ()
    has_eval: bool = True
    folds: tuple[int, ...] = ()
    test_fold: Optional[int] = None
    val_fold: Optional[int] = None
    split_rule: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def clips(self, split: str) -> list[Clip]:
        if split not in SPLITS:
            raise LeanError(f"unknown split '{split}': expected one of {', '.join(SPLITS)}")
        if split == "eval" and not self.has_eval:
            raise LeanError(f"{self.root}: this dataset has no eval split ({self.split_rule})")
        return list(self.clips_by_split[split])

    def label_matrix(self, clips: Iterable[Clip]) -> np.ndarray:
        """Targets float32 [len(clips), num_classes] in label order: multi-hot, or one-hot for a
        single-label dataset."""
        clips = list(clips)
        matrix = np.zeros((len(clips), self.num_classes), dtype=np.float32)
        for row, clip in enumerate(clips):
            matrix[row, list(clip.label_indices)] = 1.0
        return matrix

    def describe_split(self) -> dict:
        """How the splits were chosen, for run files and reports."""
        return {"layout": self.layout, "task": self.task, "folds": list(self.folds),
                "test_fold": self.test_fold, "val_fold": self.val_fold,
                "split_rule": self.split_rule}


__all__ = ["Clip", "Dataset", "SPLITS"]
