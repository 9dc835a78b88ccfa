"""FSD50K-layout reading: folder names, vocabulary header, labels, validation errors, `lean data check`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from lean.command_line import run_cli
from lean.commands import data as data_command
from lean.data import load_dataset
from lean.data.layouts.common import MAX_LISTED_PROBLEMS
from lean.errors import LeanError

VOCABULARY = [("0", "Bark", "/m/05tny_"), ("1", "Electric_guitar", "/m/02sgy"), ("2", "Guitar", "/m/0342h")]


def write_dataset(
    root: Path,
    dev_rows: list[tuple],
    eval_rows: list[tuple] | None = (),
    prefix: str = "",
    vocabulary_header: bool = False,
    audio_extension: str = ".wav",
    create_audio: bool = True,
) -> Path:
    """A small dataset on disk; rows are (fname, labels[, split]); audio is 0.1 s of noise."""
    truth = root / f"{prefix}ground_truth"
    truth.mkdir(parents=True)
    header = "index,label,mid\n" if vocabulary_header else ""
    (truth / "vocabulary.csv").write_text(header + "".join(",".join(row) + "\n" for row in VOCABULARY))
    (truth / "dev.csv").write_text(
        "fname,labels,mids,split\n" + "".join(f'{r[0]},"{r[1]}","",{r[2]}\n' for r in dev_rows)
    )
    folders = {"dev_audio": [r[0] for r in dev_rows]}
    if eval_rows is not None:
        (truth / "eval.csv").write_text("fname,labels,mids\n" + "".join(f'{r[0]},"{r[1]}",""\n' for r in eval_rows))
        folders["eval_audio"] = [r[0] for r in eval_rows]
    noise = np.random.default_rng(0).uniform(-0.1, 0.1, 1600).astype(np.float32)
    for folder, fnames in folders.items():
        (root / f"{prefix}{folder}").mkdir()
        for fname in fnames if create_audio else []:
            soundfile.write(root / f"{prefix}{folder}" / f"{fname}{audio_extension}", noise, 16000)
    return root


GOOD_DEV = [("11", "Bark", "train"), ("12", "Electric_guitar,Guitar", "train"), ("13", "Guitar", "val")]
GOOD_EVAL = [("21", "Guitar,Bark", ""), ("22", "Bark", "")]


@pytest.mark.parametrize("prefix", ["", "FSD50K."])
@pytest.mark.parametrize("vocabulary_header", [False, True])
def test_reads_both_folder_names_and_vocabulary_with_or_without_header(tmp_path, prefix, vocabulary_header):
    root = write_dataset(tmp_path, GOOD_DEV, GOOD_EVAL, prefix=prefix, vocabulary_header=vocabulary_header)
    dataset = load_dataset(root)
    assert dataset.labels == ("Bark", "Electric_guitar", "Guitar")
    assert dataset.mids == ("/m/05tny_", "/m/02sgy", "/m/0342h")
    train = dataset.clips("train")
    assert [(c.fname, c.label_indices, c.split) for c in train] == [("11", (0,), "train"), ("12", (1, 2), "train")]
    assert train[1].path == root / f"{prefix}dev_audio" / "12.wav"
    assert [(c.fname, c.label_indices) for c in dataset.clips("val")] == [("13", (2,))]
    assert [(c.fname, c.label_indices, c.split) for c in dataset.clips("eval")] == [
        ("21", (0, 2), "eval"),
        ("22", (0,), "eval"),
    ]
    np.testing.assert_array_equal(dataset.label_matrix(dataset.clips("eval")), [[1, 0, 1], [1, 0, 0]])


def test_other_audio_extensions_are_found_when_wav_is_missing(tmp_path):
    root = write_dataset(tmp_path, GOOD_DEV, GOOD_EVAL, audio_extension=".flac")
    dataset = load_dataset(root)
    assert dataset.clips("val")[0].path.name == "13.flac"


def test_eval_csv_is_optional_but_asking_for_eval_then_fails(tmp_path):
    dataset = load_dataset(write_dataset(tmp_path, GOOD_DEV, eval_rows=None))
    assert len(dataset.clips("train")) == 2
    with pytest.raises(LeanError, match="has no eval split"):
        dataset.clips("eval")
    with pytest.raises(LeanError, match="unknown split 'test'"):
        dataset.clips("test")


def test_every_problem_is_counted_and_named_with_its_line(tmp_path):
    dev = [
        ("11", "Bark", "train"),
        ("12", "Barking", "train"),  # line 3: unknown label
        ("11", "Guitar", "val"),  # line 4: duplicate fname
        ("14", "Guitar", "test"),  # line 5: bad split
        ("15", "Bark", "train"),  # line 6: audio missing (removed below)
    ]
    root = write_dataset(tmp_path, dev, GOOD_EVAL)
    (root / "dev_audio" / "15.wav").unlink()
    with open(root / "ground_truth" / "dev.csv", "a") as handle:
        handle.write("16,Bark,Guitar,,train\n")  # line 7: labels not quoted
    with pytest.raises(LeanError) as error:
        load_dataset(root)
    message = str(error.value)
    assert "\n" not in message
    assert "has 5 problems" in message
    assert "dev.csv line 3: label 'Barking' not in vocabulary.csv" in message
    assert "dev.csv line 4: duplicate fname '11' (first on line 2)" in message
    assert "dev.csv line 5: split 'test' is not train or val" in message
    assert "dev.csv line 6: audio file dev_audio/15.wav not found" in message
    assert "dev.csv line 7: expected 4 columns, found 5 (multi-label lists must be quoted)" in message


def test_long_problem_lists_are_cut_and_counted(tmp_path):
    dev = [(str(100 + i), "Nope", "train") for i in range(30)]
    with pytest.raises(LeanError) as error:
        load_dataset(write_dataset(tmp_path, dev, GOOD_EVAL))
    message = str(error.value)
    assert "has 30 problems" in message
    assert message.count("not in vocabulary") == MAX_LISTED_PROBLEMS
    assert message.endswith(f"... and {30 - MAX_LISTED_PROBLEMS} more")


def test_missing_folders_and_columns_are_one_line_errors(tmp_path):
    with pytest.raises(LeanError, match="no ground_truth/ or FSD50K.ground_truth/"):
        load_dataset(tmp_path)
    root = write_dataset(tmp_path / "a", GOOD_DEV, GOOD_EVAL)
    (root / "ground_truth" / "dev.csv").write_text("fname,labels,mids\n11,Bark,x\n")
    with pytest.raises(LeanError, match="dev.csv line 1: no 'split' column"):
        load_dataset(root)
    root = write_dataset(tmp_path / "b", GOOD_DEV, GOOD_EVAL)
    (root / "ground_truth" / "vocabulary.csv").write_text("0,Bark,x\n0,Guitar,y\n")
    with pytest.raises(LeanError, match="vocabulary.csv line 2: duplicate index 0"):
        load_dataset(root)


def data_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lean")
    data_command.register(parser.add_subparsers(dest="command", required=True))
    return run_cli(parser, ["data", *argv])


def test_check_command_summarizes_counts_and_reports_problems(tmp_path, capsys):
    root = write_dataset(tmp_path / "good", GOOD_DEV, GOOD_EVAL)
    assert data_cli(["check", str(root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["clips"] == {"train": 2, "val": 1, "eval": 2}
    assert summary["multi_label_clips"] == {"train": 1, "val": 0, "eval": 1}
    assert summary["classes"][2] == {"label": "Guitar", "train": 1, "val": 1, "eval": 1}
    assert summary["problems"] == []

    bad = write_dataset(tmp_path / "bad", GOOD_DEV + [("14", "Cat", "train")], GOOD_EVAL)
    (bad / "eval_audio" / "22.wav").write_bytes(b"not audio" * 20)
    assert data_cli(["check", str(bad), "--decode"]) == 1
    out = capsys.readouterr().out
    assert "train       2 clips" in out
    assert "dev.csv line 5: label 'Cat' not in vocabulary.csv" in out
    assert "audio: 0.4 s in total" in out  # four readable 0.1 s clips
    assert f"bad audio: {bad / 'eval_audio' / '22.wav'}: not a readable audio file" in out

    assert data_cli(["check", str(tmp_path / "absent")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
