"""Single-label layouts (ESC-50, UrbanSound8K, DCASE scenes, clips CSV, class folders):
parsing, detection, validation errors, fold selection, and `lean data check`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from lean.cli import run_cli
from lean.commands import data as data_command
from lean.data import detect_layout, load_dataset, scan_dataset
from lean.data.layouts import LAYOUTS, dcase, folders
from lean.errors import LeanError

NOISE = np.random.default_rng(0).uniform(-0.1, 0.1, 1600).astype(np.float32)


def write_wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, NOISE, 16000)


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ESC-50: rows (filename, fold, target, category); targets deliberately not in row order.
ESC_ROWS = [(f"{fold}-{100 + i}-A-{target}.wav", fold, target, category)
            for i, (fold, target, category) in enumerate(
                (fold, target, category) for fold in range(1, 6)
                for target, category in ((1, "rooster"), (0, "dog"), (2, "rain")))]


def write_esc50(root: Path, rows=ESC_ROWS, extra_lines: str = "", skip_audio=()) -> Path:
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    lines += [f"{name},{fold},{target},{category},False,{100 + n},A"
              for n, (name, fold, target, category) in enumerate(rows)]
    write_text(root / "meta" / "esc50.csv", "\n".join(lines) + "\n" + extra_lines)
    for name, *_ in rows:
        if name not in skip_audio:
            write_wav(root / "audio" / name)
    return root


def test_esc50_labels_in_target_order_and_default_folds(tmp_path):
    dataset = load_dataset(write_esc50(tmp_path))
    assert (dataset.layout, dataset.task) == ("esc50", "single_label")
    assert dataset.labels == ("dog", "rooster", "rain")
    assert dataset.folds == (1, 2, 3, 4, 5)
    assert (dataset.test_fold, dataset.val_fold) == (1, 2)
    assert {clip.fold for clip in dataset.clips("eval")} == {1}
    assert {clip.fold for clip in dataset.clips("val")} == {2}
    assert {clip.fold for clip in dataset.clips("train")} == {3, 4, 5}
    eval_clips = dataset.clips("eval")
    assert [(c.fname, c.label_indices, c.split) for c in eval_clips] == [
        ("1-100-A-1.wav", (1,), "eval"), ("1-101-A-0.wav", (0,), "eval"),
        ("1-102-A-2.wav", (2,), "eval")]
    assert eval_clips[0].path == tmp_path / "audio" / "1-100-A-1.wav"
    np.testing.assert_array_equal(dataset.label_matrix(eval_clips),
                                  [[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    assert dataset.describe_split() == {
        "layout": "esc50", "task": "single_label", "folds": [1, 2, 3, 4, 5], "test_fold": 1,
        "val_fold": 2, "split_rule": "fold 1 eval, fold 2 val, folds 3, 4, 5 train"}


@pytest.mark.parametrize("fold,val_fold,expected_val,expected_train", [
    (3, None, 4, {1, 2, 5}),
    (5, None, 1, {2, 3, 4}),  # the next fold wraps around
    (2, 5, 5, {1, 3, 4}),
])
def test_fold_selection(tmp_path, fold, val_fold, expected_val, expected_train):
    dataset = load_dataset(write_esc50(tmp_path), fold=fold, val_fold=val_fold)
    assert (dataset.test_fold, dataset.val_fold) == (fold, expected_val)
    assert {clip.fold for clip in dataset.clips("eval")} == {fold}
    assert {clip.fold for clip in dataset.clips("val")} == {expected_val}
    assert {clip.fold for clip in dataset.clips("train")} == expected_train
    assert sum(len(dataset.clips(split)) for split in ("train", "val", "eval")) == len(ESC_ROWS)


def test_fold_errors_are_one_line_and_list_the_folds(tmp_path):
    root = write_esc50(tmp_path)
    with pytest.raises(LeanError, match=r"fold 7 does not exist \(folds: 1, 2, 3, 4, 5\)$"):
        load_dataset(root, fold=7)
    with pytest.raises(LeanError, match=r"val fold 0 does not exist \(folds: 1, 2, 3, 4, 5\)"):
        load_dataset(root, fold=1, val_fold=0)
    with pytest.raises(LeanError, match="the val fold must differ from the eval fold"):
        load_dataset(root, fold=2, val_fold=2)
    few = write_esc50(tmp_path / "few", rows=[row for row in ESC_ROWS if row[1] <= 2])
    with pytest.raises(LeanError, match="esc50.csv: a folds layout needs at least 3 folds"):
        load_dataset(few)


def test_esc50_problems_name_file_and_line(tmp_path):
    extra = ("6-200-A-0.wav,x,0,dog,False,200,A\n"  # line 17: bad fold
             "1-100-A-1.wav,1,1,rooster,False,100,A\n"  # line 18: duplicate file
             "1-201-A-1.wav,1,1,cat,False,201,A\n"  # line 19: target 1 is rooster
             "1-202-A-3.wav,1,3,dog,False,202,A\n"  # line 20: dog is target 0
             "1-203-A-0.wav,1,0\n")  # line 21: malformed
    root = write_esc50(tmp_path, extra_lines=extra, skip_audio=("2-104-A-0.wav",))
    for name in ("6-200-A-0.wav", "1-201-A-1.wav", "1-202-A-3.wav"):
        write_wav(root / "audio" / name)
    with pytest.raises(LeanError) as error:
        load_dataset(root)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"dataset {root} has 6 problems: ")
    assert "esc50.csv line 6: audio file audio/2-104-A-0.wav not found" in message
    assert "esc50.csv line 17: fold 'x' is not a fold number" in message
    assert "esc50.csv line 18: duplicate filename '1-100-A-1.wav' (first on line 2)" in message
    assert "esc50.csv line 19: target 1 is 'rooster' on line 2, not 'cat'" in message
    assert "esc50.csv line 20: category 'dog' is target 0 on line 3, not 3" in message
    assert "esc50.csv line 21: expected 7 columns, found 3" in message


def write_urbansound8k(root: Path, skip_audio=(), extra_lines: str = "") -> Path:
    lines = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    classes = ((3, "dog_bark"), (0, "air_conditioner"), (1, "car_horn"), (2, "children_playing"))
    for fold in (1, 2, 3, 10):
        for class_id, name in classes:
            fname = f"{fold}{class_id}-{class_id}-0-0.wav"
            lines.append(f"{fname},{fold}{class_id},0.0,0.1,1,{fold},{class_id},{name}")
            if fname not in skip_audio:
                write_wav(root / "audio" / f"fold{fold}" / fname)
    write_text(root / "metadata" / "UrbanSound8K.csv", "\n".join(lines) + "\n" + extra_lines)
    return root


def test_urbansound8k_reads_fold_folders_in_class_id_order(tmp_path):
    dataset = load_dataset(write_urbansound8k(tmp_path), fold=10)
    assert dataset.layout == "urbansound8k"
    assert dataset.labels == ("air_conditioner", "car_horn", "children_playing", "dog_bark")
    assert dataset.folds == (1, 2, 3, 10)
    assert (dataset.test_fold, dataset.val_fold) == (10, 1)
    eval_clips = dataset.clips("eval")
    assert eval_clips[0].path == tmp_path / "audio" / "fold10" / "103-3-0-0.wav"
    assert [clip.label_indices for clip in eval_clips] == [(3,), (0,), (1,), (2,)]


def test_urbansound8k_problems(tmp_path):
    extra = "99-0-0-0.wav,99,0,1,1,2,7,siren\n"  # line 18: audio missing; gap in classID
    root = write_urbansound8k(tmp_path, skip_audio=("23-3-0-0.wav",), extra_lines=extra)
    scan = scan_dataset(root)
    assert scan.problems == [
        "UrbanSound8K.csv line 6: audio file audio/fold2/23-3-0-0.wav not found",
        "UrbanSound8K.csv line 18: audio file audio/fold2/99-0-0-0.wav not found",
        "UrbanSound8K.csv: classID values must run 0..4 without gaps, found 0, 1, 2, 3, 7",
    ]


# DCASE: scene -> identifiers (recording locations), 2 clips per location.
SCENES = {"airport": ["barcelona-0", "lisbon-1", "paris-2", "vienna-3"],
          "bus": ["barcelona-4", "lisbon-5", "paris-6"],
          "park": ["helsinki-7", "london-8", "milan-9", "prague-10", "stockholm-11"]}


def write_dcase(root: Path, evaluate_locations=("paris-2", "paris-6", "milan-9")) -> Path:
    meta = ["filename\tscene_label\tidentifier\tsource_label"]
    train, evaluate = ["filename\tscene_label"], ["filename\tscene_label"]
    for scene, identifiers in SCENES.items():
        for identifier in identifiers:
            for segment in range(2):
                fname = f"audio/{scene}-{identifier}-{segment}-a.wav"
                meta.append(f"{fname}\t{scene}\t{identifier}\ta")
                (evaluate if identifier in evaluate_locations else train).append(f"{fname}\t{scene}")
                write_wav(root / fname)
    write_text(root / "meta.csv", "\n".join(meta) + "\n")
    write_text(root / "evaluation_setup" / "fold1_train.csv", "\n".join(train) + "\n")
    write_text(root / "evaluation_setup" / "fold1_evaluate.csv", "\n".join(evaluate) + "\n")
    write_text(root / "evaluation_setup" / "fold1_test.csv",
               "filename\n" + "".join(line.split("\t")[0] + "\n" for line in evaluate[1:]))
    return root


def location(clip) -> str:
    return "-".join(Path(clip.fname).stem.split("-")[1:3])


def test_dcase_val_holds_out_whole_locations_of_every_scene(tmp_path):
    dataset = load_dataset(write_dcase(tmp_path))
    assert (dataset.layout, dataset.task) == ("dcase", "single_label")
    assert dataset.labels == ("airport", "bus", "park")
    assert (dataset.folds, dataset.test_fold, dataset.val_fold) == ((1,), 1, None)
    assert {location(c) for c in dataset.clips("eval")} == {"paris-2", "paris-6", "milan-9"}
    train = {location(c) for c in dataset.clips("train")}
    val = {location(c) for c in dataset.clips("val")}
    assert not train & val  # no recording location on both sides
    assert len(dataset.clips("train")) + len(dataset.clips("val")) == 18
    # ceil(10 % of each scene's train clips) = 1 clip, so one whole location (2 clips) per scene
    assert sorted(c.label_indices[0] for c in dataset.clips("val")) == [0, 0, 1, 1, 2, 2]
    assert dataset.clips("eval")[0].path == tmp_path / "audio" / "airport-paris-2-0-a.wav"
    again = load_dataset(write_dcase(tmp_path / "copy"))
    assert [c.fname for c in again.clips("val")] == [c.fname for c in dataset.clips("val")]


def test_val_carving_never_takes_a_scenes_last_location():
    from lean.data.dataset import Clip

    clips = [Clip(f"{scene}-{i}", Path("x"), (scene,), "train") for scene in (0, 1) for i in range(4)]
    location_of = {clip.fname: f"loc{clip.label_indices[0]}" for clip in clips}  # one per scene
    assert dcase.carve_val_locations(clips, location_of, 2) == set()
    location_of = {clip.fname: clip.fname[-1] for clip in clips}  # locations span both scenes
    held_out = dcase.carve_val_locations(clips, location_of, 2, fraction=0.5)
    assert len(held_out) == 2  # ceil(0.5 * 4) = 2 clips of each scene, one per location


def test_dcase_problems_and_fold_arguments(tmp_path):
    root = write_dcase(tmp_path)
    setup = root / "evaluation_setup"
    with open(root / "meta.csv", "a") as handle:  # lines 26, 27: in no setup file yet
        for segment in range(2):
            handle.write(f"audio/bus-rome-12-{segment}-a.wav\tbus\trome-12\ta\n")
            write_wav(root / "audio" / f"bus-rome-12-{segment}-a.wav")
    with open(setup / "fold1_evaluate.csv", "a") as handle:
        handle.write("audio/airport-barcelona-0-0-a.wav\tairport\n")  # also in train
        handle.write("audio/nowhere.wav\tairport\n")  # not in meta.csv
        handle.write("audio/bus-rome-12-0-a.wav\tpark\n")  # disagrees with meta.csv
        handle.write("audio/bus-rome-12-1-a.wav\ttram\n")  # unknown scene
        handle.write("audio/bus-rome-12-2-a.wav\n")  # malformed
    (root / "audio" / "park-london-8-1-a.wav").unlink()
    scan = scan_dataset(root)
    assert scan.problems == [
        "fold1_train.csv line 15: audio file audio/park-london-8-1-a.wav not found",
        "fold1_evaluate.csv line 8: duplicate filename 'audio/airport-barcelona-0-0-a.wav' "
        "(first on fold1_train.csv line 2)",
        "fold1_evaluate.csv line 9: 'audio/nowhere.wav' not in meta.csv",
        "fold1_evaluate.csv line 10: scene_label 'park' but meta.csv line 26 says 'bus'",
        "fold1_evaluate.csv line 11: scene_label 'tram' not in meta.csv (unknown class)",
        "fold1_evaluate.csv line 12: expected 2 tab-separated columns, found 1",
    ]
    with pytest.raises(LeanError, match=r"fold 2 does not exist \(folds: 1\)"):
        load_dataset(root, fold=2)
    with pytest.raises(LeanError, match="--val-fold does not apply"):
        load_dataset(root, val_fold=1)


def test_clips_csv_with_split_column_labels_file_and_relative_paths(tmp_path):
    write_text(tmp_path / "clips.csv", "fname,label,split\n"
               "sub/a.wav,yes,train\nsub/b,no,train\nc.flac,no,val\nd.wav,yes,test\n")
    for name in ("sub/a.wav", "sub/b.wav", "d.wav"):
        write_wav(tmp_path / name)
    soundfile.write(tmp_path / "c.flac", NOISE, 16000)
    dataset = load_dataset(tmp_path)
    assert (dataset.layout, dataset.task, dataset.folds) == ("csv", "single_label", ())
    assert dataset.labels == ("no", "yes")  # sorted without labels.txt
    assert [c.path for c in dataset.clips("train")] == [tmp_path / "sub/a.wav", tmp_path / "sub/b.wav"]
    assert [c.split for c in dataset.clips("eval")] == ["eval"]  # test means eval
    write_text(tmp_path / "labels.txt", "yes\nno\n")
    dataset = load_dataset(tmp_path)
    assert dataset.labels == ("yes", "no")
    np.testing.assert_array_equal(dataset.label_matrix(dataset.clips("train")), [[1, 0], [0, 1]])
    with pytest.raises(LeanError, match="not folds: drop --fold"):
        load_dataset(tmp_path, fold=1)


def test_clips_csv_with_fold_column_and_its_problems(tmp_path):
    rows = [f"{k}{c}.wav,{c},{k}" for k in range(1, 4) for c in ("a", "b")]
    write_text(tmp_path / "clips.csv", "fname,label,fold\n" + "\n".join(rows) + "\n"
               "1a.wav,a,1\n"  # line 8: duplicate
               "x.wav,c,2\n"  # line 9: unknown class (labels.txt), missing audio
               "2a.wav,a\n"  # line 10: malformed
               "3b.wav,b,zero\n")  # line 11: duplicate (checked first)
    write_text(tmp_path / "labels.txt", "a\nb\n")
    for k in range(1, 4):
        for c in "ab":
            write_wav(tmp_path / f"{k}{c}.wav")
    scan = scan_dataset(tmp_path)
    assert scan.problems == [
        "clips.csv line 8: duplicate fname '1a.wav' (first on line 2)",
        "clips.csv line 9: label 'c' not in labels.txt (unknown class)",
        "clips.csv line 9: audio file x.wav not found",
        "clips.csv line 10: expected 3 columns, found 2",
        "clips.csv line 11: duplicate fname '3b.wav' (first on line 7)",
    ]
    write_text(tmp_path / "clips.csv", "fname,label,fold\n" + "\n".join(rows) + "\n")
    dataset = load_dataset(tmp_path, fold=2)
    assert (dataset.test_fold, dataset.val_fold) == (2, 3)
    assert [c.fname for c in dataset.clips("eval")] == ["2a.wav", "2b.wav"]
    write_text(tmp_path / "clips.csv", "fname,label,split\n1a.wav,a,holdout\n")
    assert scan_dataset(tmp_path).problems == [
        "clips.csv line 2: split 'holdout' is not train, val, eval, test"]
    write_text(tmp_path / "clips.csv", "fname,label\n1a.wav,a\n")
    with pytest.raises(LeanError, match="needs one 'split' column or one 'fold' column"):
        load_dataset(tmp_path)


def test_class_folders_split_by_a_stable_hash_of_the_path(tmp_path):
    for label in ("dog", "cat"):
        for i in range(12):
            write_wav(tmp_path / label / ("nested" if i % 3 == 0 else "") / f"{i}.wav")
    (tmp_path / "notes").mkdir()
    write_text(tmp_path / "notes" / "readme.txt", "not audio")
    write_wav(tmp_path / ".hidden" / "x.wav")
    dataset = load_dataset(tmp_path)
    assert (dataset.layout, dataset.task) == ("folders", "single_label")
    assert dataset.labels == ("cat", "dog")  # folders without audio are no class
    clips = [clip for split in ("train", "val", "eval") for clip in dataset.clips(split)]
    assert len(clips) == 24
    assert all(clip.fold == folders.fold_of(clip.fname) for clip in clips)
    assert {clip.fold for clip in clips} <= set(range(1, folders.NUM_FOLDS + 1))
    assert {clip.fold for clip in dataset.clips("eval")} == {1}
    folds_before = {clip.fname: clip.fold for clip in clips}
    write_wav(tmp_path / "cat" / "new.wav")
    after = load_dataset(tmp_path)
    folds_after = {clip.fname: clip.fold for split in ("train", "val", "eval")
                   for clip in after.clips(split)}
    assert {name: folds_after[name] for name in folds_before} == folds_before
    write_wav(tmp_path / "stray.wav")
    assert scan_dataset(tmp_path).problems == [
        "stray.wav: audio file outside a class folder (its class is unknown)"]


def test_detection_override_ambiguity_and_unknown_folders(tmp_path):
    esc = write_esc50(tmp_path / "esc")
    assert detect_layout(esc) == "esc50"
    assert detect_layout(write_urbansound8k(tmp_path / "us8k")) == "urbansound8k"
    assert detect_layout(write_dcase(tmp_path / "dcase")) == "dcase"
    write_text(esc / "clips.csv", "fname,label,fold\n" + "".join(
        f"audio/{name},{category},{fold}\n" for name, fold, _, category in ESC_ROWS))
    with pytest.raises(LeanError, match=r"looks like several layouts \(esc50, csv\); choose one "
                                        "with --layout"):
        load_dataset(esc)
    csv_dataset = load_dataset(esc, layout="csv")
    assert csv_dataset.layout == "csv" and csv_dataset.labels == ("dog", "rain", "rooster")
    assert load_dataset(esc, layout="esc50").labels == ("dog", "rooster", "rain")
    # an ESC-50 folder's audio/ holds audio files, but marked layouts win over class folders
    (esc / "clips.csv").unlink()
    assert detect_layout(esc) == "esc50"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LeanError) as error:
        load_dataset(empty)
    message = str(error.value)
    assert "\n" not in message and "no dataset layout recognised" in message
    for module in LAYOUTS.values():
        assert f"no {module.LOOKS_FOR} ({module.NAME})" in message
    with pytest.raises(LeanError, match="unknown layout 'esc'"):
        load_dataset(esc, layout="esc")
    with pytest.raises(LeanError, match="dataset folder not found"):
        load_dataset(tmp_path / "absent")


def data_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lean")
    data_command.register(parser.add_subparsers(dest="command", required=True))
    return run_cli(parser, ["data", *argv])


def test_check_prints_layout_task_and_counts_per_split_fold_and_class(tmp_path, capsys):
    root = write_esc50(tmp_path / "esc")
    assert data_cli(["check", str(root), "--fold", "3"]) == 0
    out = capsys.readouterr().out
    assert f"dataset {root}: esc50 layout, single_label, 3 classes" in out
    assert "splits: fold 3 eval, fold 4 val, folds 1, 2, 5 train" in out
    assert "  train       9 clips\n  val         3 clips\n  eval        3 clips" in out
    assert "folds 1: 3, 2: 3, 3: 3, 4: 3, 5: 3" in out
    assert "multi-label" not in out
    assert "no problems found" in out

    assert data_cli(["check", str(root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["layout"], summary["task"]) == ("esc50", "single_label")
    assert (summary["folds"], summary["test_fold"], summary["val_fold"]) == ([1, 2, 3, 4, 5], 1, 2)
    assert summary["clips"] == {"train": 9, "val": 3, "eval": 3}
    assert summary["clips_per_fold"] == {str(f): 3 for f in range(1, 6)}
    assert summary["classes"][0] == {"label": "dog", "train": 3, "val": 1, "eval": 1,
                                     "folds": {str(f): 1 for f in range(1, 6)}}

    bad = write_esc50(tmp_path / "bad", skip_audio=("2-104-A-0.wav",))
    assert data_cli(["check", str(bad)]) == 1
    assert "esc50.csv line 6: audio file audio/2-104-A-0.wav not found" in capsys.readouterr().out
    assert data_cli(["check", str(root), "--fold", "9"]) == 2
    assert "fold 9 does not exist (folds: 1, 2, 3, 4, 5)" in capsys.readouterr().err
    assert data_cli(["check", str(root), "--layout", "urbansound8k"]) == 2
    assert "metadata/UrbanSound8K.csv: file not found" in capsys.readouterr().err
