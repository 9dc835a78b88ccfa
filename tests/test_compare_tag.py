"""`lean compare` counts per-class AP changes as in the paper's Table II; `lean tag` top-k labels."""

import json

import numpy as np
import pytest
import soundfile

from lean.errors import LeanError
from test_inference import LABELS, build_tiny_model, save_run_dir

# AP per class of evaluations A and B. Relative changes: +4 %, +12.5 %, +50 %, new, -50 %,
# unchanged, and one class A could not score (no positives), which is not compared.
AP_A = {"a": 0.50, "b": 0.40, "c": 0.20, "d": 0.00, "e": 0.60, "f": 0.30, "g": None}
AP_B = {"a": 0.52, "b": 0.45, "c": 0.30, "d": 0.08, "e": 0.30, "f": 0.30, "g": 0.90}


def _evaluation(aps, model):
    scored = [ap for ap in aps.values() if ap is not None]
    return {"model": model, "split": "eval", "mAP": float(np.mean(scored)),
            "per_class": [{"label": label, "ap": ap, "auc": None, "positives": 3}
                          for label, ap in aps.items()]}


def test_compare_counts_relative_improvements(tmp_path, capsys):
    from lean.cli import main

    paths = []
    for name, aps in (("a", AP_A), ("b", AP_B)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(_evaluation(aps, f"model_{name}")))
    assert main(["compare", *map(str, paths), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["classes_compared"] == 6
    assert (result["improved"], result["worsened"]) == (4, 1)
    # +4 % counts as improved but not by 5 %; "d" went from 0 to 0.08 and counts everywhere.
    assert result["improved_by_at_least"] == {"5%": 3, "10%": 3, "20%": 2}
    assert [row["label"] for row in result["largest_gains"]] == ["c", "d", "b", "a"]
    assert result["largest_gains"][0]["relative"] == pytest.approx(0.5)
    assert result["largest_gains"][1]["relative"] is None
    losses = [(row["label"], row["relative"]) for row in result["largest_losses"]]
    assert losses == [("e", pytest.approx(-0.5))]
    assert result["mAP_a_shared"] == pytest.approx(np.mean([0.5, 0.4, 0.2, 0.0, 0.6, 0.3]))

    assert main(["compare", *map(str, paths)]) == 0
    table = capsys.readouterr().out
    assert "classes B improves over A               4" in table
    assert "by at least  20% (relative AP)     2" in table
    assert "c                                0.200 -> 0.300  (+50.0 %)" in table


def test_compare_rejects_files_that_are_not_evaluations(tmp_path, capsys):
    from lean.cli import main

    good = tmp_path / "good.json"
    good.write_text(json.dumps(_evaluation(AP_A, "m")))
    (tmp_path / "bad.json").write_text('{"mAP": 0.3}')
    (tmp_path / "text.json").write_text("mAP 0.3")
    for other, message in (("bad.json", "evaluation B has no per_class list"),
                           ("text.json", "text.json: not JSON"),
                           ("missing.json", "missing.json: file not found")):
        assert main(["compare", str(good), str(tmp_path / other)]) == 2
        assert message in capsys.readouterr().err
    from lean.evaluate import compare_evaluations

    with pytest.raises(LeanError, match="no scored class in common"):
        compare_evaluations(_evaluation({"x": 0.1}, "m"), _evaluation({"y": 0.2}, "n"))


@pytest.fixture(scope="module")
def tagging(tmp_path_factory):
    root = tmp_path_factory.mktemp("tag")
    model = build_tiny_model(seed=4)
    rng = np.random.default_rng(0)
    files = {}
    # 2 s at 44.1 kHz stereo (resampled, downmixed) and 0.4 s at 16 kHz (repeated to 1 s).
    long_audio = rng.uniform(-0.3, 0.3, (88200, 2)).astype(np.float32)
    files["long"] = root / "long.wav"
    soundfile.write(files["long"], long_audio, 44100, subtype="FLOAT")
    files["short"] = root / "short.flac"
    soundfile.write(files["short"], rng.uniform(-0.3, 0.3, 6400).astype(np.float32), 16000)
    files["bad"] = root / "broken.wav"
    files["bad"].write_bytes(b"RIFF....WAVEnonsense")
    return {"run": save_run_dir(model, root / "run", LABELS), "model": model, "files": files}


def test_tag_windows_and_clip_scores(tagging, capsys):
    from lean.cli import main
    from lean.data.audio import load_audio

    files = tagging["files"]
    code = main(["tag", str(tagging["run"]), str(files["long"]), str(files["short"]),
                 "--top-k", "2", "--windows", "--json"])
    assert code == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["file"] for r in results] == [str(files["long"]), str(files["short"])]
    long_result = results[0]
    # 2 s with a 0.5 s hop: windows at 0, 0.5 and 1.0 s.
    assert [w["start_s"] for w in long_result["windows"]] == [0.0, 0.5, 1.0]
    audio = load_audio(files["long"])
    windows = np.stack([audio[s:s + 16000] for s in (0, 8000, 16000)])
    window_scores = np.asarray(tagging["model"](windows))
    clip_scores = window_scores.mean(axis=0)
    top2 = np.argsort(-clip_scores)[:2]
    assert [e["label"] for e in long_result["top"]] == [LABELS[i] for i in top2]
    assert [e["score"] for e in long_result["top"]] == pytest.approx(clip_scores[top2], abs=1e-5)
    first_window = long_result["windows"][0]["top"]
    assert first_window[0]["score"] == pytest.approx(window_scores[0].max(), abs=1e-5)
    assert [w["start_s"] for w in results[1]["windows"]] == [0.0]


def test_tag_reports_a_bad_file_in_one_line_and_tags_the_others(tagging, capsys):
    from lean.cli import main

    files = tagging["files"]
    code = main(["tag", str(tagging["run"]), str(files["bad"]), str(files["short"]),
                 "--top-k", "3"])
    assert code == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("lean: error:")]
    assert len(errors) == 1 and str(files["bad"]) in errors[0]
    lines = captured.out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{files['short']}: ")
    scored = lines[0].split(": ", 1)[1].split(", ")
    assert sorted(entry.rsplit(" ", 1)[0] for entry in scored) == sorted(LABELS)
