"""benchmarks/suite/stability.py: the best run and the spread over seeds, from eval reports."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "suite" / "stability.py"


@pytest.fixture(scope="module")
def stability():
    spec = importlib.util.spec_from_file_location("stability", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_best_run_is_the_most_accurate_and_the_mean_has_its_spread(stability):
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.5, 1.0, (8, 3))
    results = {seed + 3: {"task": "single_label", "num_clips": 40, "accuracy": a,
                          "macro_recall": r, "macro_f1": f}
               for seed, (a, r, f) in enumerate(scores)}
    summary = stability.summarize(results)
    best = int(np.argmax(scores[:, 0]))
    # Table 3's rule: the run with the highest accuracy, with that run's recall and F1.
    assert summary["best"] == {"seed": best + 3, "accuracy": scores[best, 0],
                               "macro_recall": scores[best, 1], "macro_f1": scores[best, 2]}
    for column, name in enumerate(("accuracy", "macro_recall", "macro_f1")):
        assert summary["mean"][name] == pytest.approx(scores[:, column].mean())
        assert summary["sd"][name] == pytest.approx(scores[:, column].std(ddof=1))
        assert summary["min"][name] == pytest.approx(scores[:, column].min())
    table = stability.markdown_table(summary, "cab_cnn, 8 seeds")
    assert table.count("| seed ") == 8 and f"**best (seed {best + 3})**" in table
    assert f"{scores[:, 0].mean():.4f} +- {scores[:, 0].std(ddof=1):.4f}" in table


def test_multilabel_runs_are_ranked_by_map(stability):
    results = {0: {"task": "multilabel", "mAP": 0.3, "mAUC": 0.9, "d_prime": 1.8},
               1: {"task": "multilabel", "mAP": 0.4, "mAUC": 0.8, "d_prime": 1.2}}
    summary = stability.summarize(results)
    assert summary["scores"] == ["mAP", "mAUC", "d_prime"] and summary["best"]["seed"] == 1
    with pytest.raises(SystemExit, match="different tasks"):
        stability.summarize({0: results[0], 1: {"task": "single_label", "accuracy": 1.0}})
