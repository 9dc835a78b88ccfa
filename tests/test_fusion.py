"""Recording-level decisions: log-sum aggregation of segments and the fusion of two models'
posteriors (`lean eval --aggregation log_sum`, `lean eval --fuse`), on known scores."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score

from lean.config import EvalConfig
from lean.data.dataset import Clip, Dataset
from lean.errors import LeanError
from lean.evaluate import evaluate, fuse_scores

LABELS = ("bus", "park", "street")
WINDOW = 10  # samples per window; each window's samples all hold its id

# Two recordings of three segments each (true classes bus and street): each model's posterior
# for every segment id. Model A confuses the second recording, model B the first.
TRUE_CLASS = {0: 0, 1: 2}
SCORES_A = {
    0: [0.7, 0.2, 0.1], 1: [0.6, 0.3, 0.1], 2: [0.2, 0.7, 0.1],
    10: [0.1, 0.5, 0.4], 11: [0.2, 0.4, 0.4], 12: [0.1, 0.5, 0.4],
}
SCORES_B = {
    0: [0.4, 0.5, 0.1], 1: [0.3, 0.6, 0.1], 2: [0.5, 0.4, 0.1],
    10: [0.1, 0.2, 0.7], 11: [0.2, 0.2, 0.6], 12: [0.1, 0.4, 0.5],
}


class ScriptedPredictor:
    """Answers each window with the posterior its table holds for the window's id."""

    kind = "scripted"
    task = "single_label"
    sample_rate, channels, window_samples, batch_size = 100, 1, WINDOW, 4
    labels = LABELS
    num_classes = len(LABELS)

    def __init__(self, name: str, table: dict):
        self.path, self.table = Path(name), table

    def predict(self, windows: np.ndarray) -> np.ndarray:
        return np.array([self.table[int(round(window[0]))] for window in windows], np.float32)


class ScriptedCache:
    """Audio of each clip: its segment ids, each repeated for one window."""

    def load(self, path: Path) -> np.ndarray:
        first = 10 * int(path.stem)
        return np.repeat(np.arange(first, first + 3), WINDOW).astype(np.float32)


def _dataset() -> Dataset:
    clips = [Clip(str(k), Path(f"{k}.wav"), (c,), "eval") for k, c in TRUE_CLASS.items()]
    return Dataset(root=Path("scenes"), labels=LABELS, task="single_label", layout="clips_csv",
                   clips_by_split={"train": [], "val": [], "eval": clips})


def _reference(tables: list[dict]) -> dict:
    """Accuracy, macro F1 and macro precision per segment and per recording, in NumPy: the
    product of the models' posteriors per segment, then the sum of log posteriors per
    recording, argmax."""
    segment_ids = [10 * clip + w for clip in TRUE_CLASS for w in range(3)]
    fused = np.prod([[table[i] for i in segment_ids] for table in tables], axis=0)
    fused /= fused.sum(axis=1, keepdims=True)
    segment_true = [TRUE_CLASS[i // 10] for i in segment_ids]
    recording = np.log(fused).reshape(len(TRUE_CLASS), 3, 3).sum(axis=1).argmax(axis=1)

    def scores(y_true, y_pred):
        # Macro averages over the classes with examples (park has none), as lean's metrics.
        present = sorted(set(y_true))
        return {"accuracy": accuracy_score(y_true, y_pred),
                "macro_f1": f1_score(y_true, y_pred, labels=present, average="macro",
                                     zero_division=0),
                "macro_precision": precision_score(y_true, y_pred, labels=present,
                                                   average="macro", zero_division=0)}

    return {"segments": scores(segment_true, fused.argmax(axis=1)),
            "recordings": scores(list(TRUE_CLASS.values()), recording)}


def _assert_metrics(report: dict, expected: dict) -> None:
    for key, value in expected["recordings"].items():
        assert report[key] == pytest.approx(value), key
    for key, value in expected["segments"].items():
        assert report["segments"][key] == pytest.approx(value), key


def test_fused_posteriors_on_hand_computed_values():
    a, b = np.array([[0.7, 0.2, 0.1]]), np.array([[0.2, 0.6, 0.2]])
    # 0.14, 0.12, 0.02 renormalised.
    np.testing.assert_allclose(fuse_scores([a, b], "single_label"), [[0.5, 3 / 7, 1 / 14]])
    # Binary posteriors per class: 0.8 x 0.6 / (0.8 x 0.6 + 0.2 x 0.4) = 6 / 7.
    np.testing.assert_allclose(fuse_scores([np.array([[0.8]]), np.array([[0.6]])],
                                           "multilabel"), [[6 / 7]])
    # A 0 from one model lowers a class but cannot veto it against two certain models.
    vetoed = fuse_scores([np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]),
                          np.array([[0.0, 1.0]])], "single_label")
    assert vetoed[0, 0] > 0.5


def test_log_sum_per_recording_with_segment_metrics():
    config = EvalConfig(window_hop_fraction=1.0, aggregation="log_sum")
    for table in (SCORES_A, SCORES_B):
        report = evaluate(ScriptedPredictor("a", table), _dataset(), "eval", config,
                          cache=ScriptedCache(), progress=False)
        assert (report["num_clips"], report["num_windows"]) == (2, 6)
        _assert_metrics(report, _reference([table]))
    # Alone, each model misses one recording.
    assert _reference([SCORES_A])["recordings"]["accuracy"] == 0.5
    assert _reference([SCORES_B])["recordings"]["accuracy"] == 0.5


def test_two_model_fusion_multiplies_the_posteriors():
    config = EvalConfig(window_hop_fraction=1.0, aggregation="log_sum")
    report = evaluate(ScriptedPredictor("logmel", SCORES_A), _dataset(), "eval", config,
                      cache=ScriptedCache(), progress=False,
                      fuse_with=(ScriptedPredictor("loggam", SCORES_B),))
    expected = _reference([SCORES_A, SCORES_B])
    _assert_metrics(report, expected)
    assert expected["recordings"]["accuracy"] == 1.0  # the fusion gets both recordings
    # Each model's own numbers come along.
    assert [member["model"] for member in report["fused"]] == ["logmel", "loggam"]
    for member, table in zip(report["fused"], (SCORES_A, SCORES_B)):
        _assert_metrics(member, _reference([table]))


def test_fusion_needs_the_same_classes_and_windows():
    other = ScriptedPredictor("other", SCORES_B)
    other.window_samples = 20
    with pytest.raises(LeanError, match="--fuse: other has another window samples"):
        evaluate(ScriptedPredictor("a", SCORES_A), _dataset(), "eval", cache=ScriptedCache(),
                 progress=False, fuse_with=(other,))


def test_eval_cli_takes_one_model_or_fuse(capsys):
    from lean.cli import main

    assert main(["eval", "--data", "x"]) == 2
    assert "give one model" in capsys.readouterr().err
    assert main(["eval", "--data", "x", "--fuse", "a"]) == 2
    assert "two or more" in capsys.readouterr().err
    assert main(["eval", "run", "--data", "x", "--window-hop", "1.5"]) == 2
    assert "--window-hop" in capsys.readouterr().err
