"""DCASE acoustic scenes (TAU Urban Acoustic Scenes 2019 style): meta.csv and the official
evaluation setup, evaluation_setup/fold<K>_train.csv and fold<K>_evaluate.csv (tab-separated).

Train and eval come from the chosen setup's files. Val is carved from train by recording
location: TAU's `identifier` (e.g. `barcelona-0`) names the location a clip was recorded at,
and clips of one location sound alike (same place, same session), so a location's clips go
all to train or all to val, never split between them.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Optional

from lean.data.dataset import Clip
from lean.data.layouts.common import (
    AudioFiles,
    DatasetScan,
    checked_rows,
    header_columns,
    read_table,
)
from lean.errors import LeanError
from lean.tasks import SINGLE_LABEL

NAME = "dcase"
LOOKS_FOR = "meta.csv + evaluation_setup/"
SETUP_DIR = "evaluation_setup"
# Of each scene's train clips, at least this fraction (rounded up) moves to val, taken as
# whole recording locations.
VAL_FRACTION = 0.1
SETUP_FILE = re.compile(r"^fold(\d+)_train\.csv$")


def detect(root: Path) -> bool:
    return (root / "meta.csv").is_file() and (root / SETUP_DIR).is_dir()


def setup_folds(root: Path) -> list[int]:
    """The K of every evaluation_setup/fold<K>_train.csv that has its fold<K>_evaluate.csv."""
    setup = root / SETUP_DIR
    if not setup.is_dir():
        return []
    folds = []
    for name in setup.iterdir():
        match = SETUP_FILE.match(name.name)
        if match and (setup / f"fold{match.group(1)}_evaluate.csv").is_file():
            folds.append(int(match.group(1)))
    return sorted(folds)


def scan(root: Path, fold: Optional[int] = None, val_fold: Optional[int] = None) -> DatasetScan:
    """Reads meta.csv (filename, scene_label, identifier; tab-separated) and the setup fold
    `fold` (default the first): its train file gives train and val, its evaluate file eval.

    Labels are the scene labels of meta.csv in alphabetical order.
    `fold<K>_test.csv` (the evaluate files without labels) is not read.
    """
    if val_fold is not None:
        raise LeanError(f"layout {NAME} carves val from train by recording location; "
                        "--val-fold does not apply")
    scan = DatasetScan(root=root, layout=NAME, task=SINGLE_LABEL)
    meta = _read_meta(root / "meta.csv", scan.problems)
    scan.labels = sorted({scene for scene, _, _ in meta.values()})
    folds = setup_folds(root)
    if not folds:
        raise LeanError(f"{root / SETUP_DIR}: no fold<K>_train.csv with its fold<K>_evaluate.csv")
    scan.folds = tuple(folds)
    scan.test_fold = folds[0] if fold is None else fold
    if scan.test_fold not in folds:
        raise LeanError(f"{root}: fold {scan.test_fold} does not exist "
                        f"(folds: {', '.join(str(f) for f in folds)})")
    audio = AudioFiles(root)
    label_index = {label: index for index, label in enumerate(scan.labels)}
    setup = root / SETUP_DIR
    train_path = setup / f"fold{scan.test_fold}_train.csv"
    eval_path = setup / f"fold{scan.test_fold}_evaluate.csv"
    listed: dict = {}  # filename -> (setup file, line), across both files
    train = _read_setup(train_path, meta, label_index, audio, listed, scan.problems)
    scan.clips_by_split["eval"] = _read_setup(eval_path, meta, label_index, audio, listed,
                                              scan.problems, split="eval")
    locations = {clip.fname: meta[clip.fname][1] for clip in train}
    held_out = carve_val_locations(train, locations, len(scan.labels))
    for clip in train:
        split = "val" if locations[clip.fname] in held_out else "train"
        scan.clips_by_split[split].append(Clip(clip.fname, clip.path, clip.label_indices, split))
    scan.split_rule = (f"setup fold {scan.test_fold}: {eval_path.name} eval, {train_path.name} "
                       f"train, of which {len(held_out)} recording locations (identifier) val")
    return scan


def carve_val_locations(train: list[Clip], location_of: dict[str, str], num_classes: int,
                        fraction: float = VAL_FRACTION) -> set[str]:
    """The locations whose clips become val: for each scene at least ceil(fraction * its train
    clips), taken as whole locations in a fixed pseudo-random order (SHA-1 of the identifier),
    never a scene's last location. The same files always give the same val set.

    Args:
        train: the setup's train clips.
        location_of: fname -> recording location (identifier).
        num_classes: number of scenes.
        fraction: the share of each scene's train clips to move to val.

    Returns:
        The identifiers held out as val.
    """
    clips_of_location: dict[str, list[Clip]] = {}
    for clip in train:
        clips_of_location.setdefault(location_of[clip.fname], []).append(clip)
    per_scene = [0] * num_classes
    for clip in train:
        per_scene[clip.label_indices[0]] += 1
    wanted = [math.ceil(fraction * count) for count in per_scene]
    locations_left = [0] * num_classes
    for clips in clips_of_location.values():
        for scene in {clip.label_indices[0] for clip in clips}:
            locations_left[scene] += 1
    order = sorted(clips_of_location,
                   key=lambda location: hashlib.sha1(location.encode("utf-8")).hexdigest())
    held_out: set[str] = set()
    for location in order:
        clips = clips_of_location[location]
        scenes = {clip.label_indices[0] for clip in clips}
        helps = any(wanted[scene] > 0 for scene in scenes)
        keeps_train = all(locations_left[scene] > 1 for scene in scenes)
        if helps and keeps_train:
            held_out.add(location)
            for clip in clips:
                wanted[clip.label_indices[0]] -= 1
            for scene in scenes:
                locations_left[scene] -= 1
        if all(count <= 0 for count in wanted):
            break
    return held_out


def _read_meta(path: Path, problems: list[str]) -> dict[str, tuple[str, str, int]]:
    """filename -> (scene_label, identifier, line) of every good meta.csv row."""
    rows = read_table(path, delimiter="\t")
    header, rows = rows[0][1], rows[1:]
    columns = header_columns(path, header, ("filename", "scene_label", "identifier"))
    meta: dict[str, tuple[str, str, int]] = {}
    for line, where, row, fname in checked_rows(path, header, rows, "filename", problems,
                                                separator="tab-separated"):
        scene, identifier = row[columns["scene_label"]], row[columns["identifier"]]
        if not scene or not identifier:
            problems.append(f"{where}: empty scene_label or identifier")
            continue
        meta[fname] = (scene, identifier, line)
    return meta


def _read_setup(path: Path, meta: dict, label_index: dict[str, int], audio: AudioFiles,
                listed: dict, problems: list[str], split: str = "train") -> list[Clip]:
    """The clips of one setup file (filename and, where given, scene_label), checked against
    meta.csv; a file listed twice, in either setup file, is a problem."""
    rows = read_table(path, delimiter="\t")
    header, rows = rows[0][1], rows[1:]
    columns = header_columns(path, header, ("filename",))
    clips = []
    for _, where, row, fname in checked_rows(path, header, rows, "filename", problems, listed,
                                             separator="tab-separated"):
        if fname not in meta:
            problems.append(f"{where}: '{fname}' not in meta.csv")
            continue
        scene = meta[fname][0]
        if "scene_label" in columns:
            given = row[columns["scene_label"]]
            if given not in label_index:
                problems.append(f"{where}: scene_label '{given}' not in meta.csv (unknown class)")
                continue
            if given != scene:
                problems.append(f"{where}: scene_label '{given}' but meta.csv line "
                                f"{meta[fname][2]} says '{scene}'")
                continue
        clip_path = audio.resolve(fname)
        if clip_path is None:
            problems.append(f"{where}: audio file {fname} not found")
            continue
        clips.append(Clip(fname=fname, path=clip_path, label_indices=(label_index[scene],),
                          split=split))
    return clips


__all__ = ["NAME", "LOOKS_FOR", "VAL_FRACTION", "carve_val_locations", "detect", "scan",
           "setup_folds"]
