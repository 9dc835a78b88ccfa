"""Evaluation: same numbers as an independent reference, for Keras and LiteRT; plots; CLI JSON."""

import json
import math

import numpy as np
import pytest
import soundfile
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from lean.config import EvalConfig
from lean.errors import LeanError
from test_inference import (LABELS as MODEL_LABELS, build_tiny_model, convert_to_tflite,
                            save_run_dir, with_metadata)
from test_train import TONE_LABELS, make_tone_dataset

WINDOW = 16000


def reference_clip_windows(audio: np.ndarray) -> np.ndarray:
    """The paper's evaluation windows, written independently: 1 s, hop 0.5 s, last one flush with
    the clip's end, short clips tiled to 1 s."""
    if len(audio) < WINDOW:
        audio = np.tile(audio, WINDOW // len(audio) + 1)[:WINDOW]
    starts = list(range(0, len(audio) - WINDOW + 1, WINDOW // 2))
    if starts[-1] != len(audio) - WINDOW:
        starts.append(len(audio) - WINDOW)
    return np.stack([audio[start:start + WINDOW] for start in starts])


def reference_evaluation(model, dataset, split, pool):
    clips = dataset.clips(split)
    clip_scores, num_windows = [], 0
    for clip in clips:
        audio, rate = soundfile.read(clip.path, dtype="float32")
        assert rate == 16000 and audio.ndim == 1
        windows = reference_clip_windows(audio)
        num_windows += len(windows)
        clip_scores.append(pool(np.asarray(model(windows), dtype=np.float64)))
    y_score = np.stack(clip_scores)
    y_true = np.zeros_like(y_score)
    for row, clip in enumerate(clips):
        y_true[row, list(clip.label_indices)] = 1
    aps = [average_precision_score(y_true[:, c], y_score[:, c]) for c in range(y_true.shape[1])]
    aucs = [roc_auc_score(y_true[:, c], y_score[:, c]) for c in range(y_true.shape[1])]
    return {"mAP": np.mean(aps), "mAUC": np.mean(aucs), "aps": aps, "num_windows": num_windows}


def _mean_logits(scores):
    p = np.clip(scores, 1e-7, 1 - 1e-7)
    return 1 / (1 + np.exp(-np.mean(np.log(p / (1 - p)), axis=0)))


POOLS = {"mean": lambda s: s.mean(axis=0), "max": lambda s: s.max(axis=0),
         "mean_logits": _mean_logits}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from lean.data.audio import AudioCache
    from lean.data import load_dataset

    root = tmp_path_factory.mktemp("evaluate")
    data = make_tone_dataset(root / "data", clips_per_split=(4, 4, 16), seed=5)
    model = build_tiny_model(num_classes=len(TONE_LABELS), seed=2)
    run_dir = save_run_dir(model, root / "run", TONE_LABELS)
    tflite = root / "tiny.tflite"
    tflite.write_bytes(with_metadata(convert_to_tflite(model), TONE_LABELS))
    return {"root": root, "data": data, "dataset": load_dataset(data), "model": model,
            "run": run_dir, "tflite": tflite, "cache": AudioCache(root / "cache")}


@pytest.mark.parametrize("aggregation", ["mean", "max", "mean_logits"])
def test_keras_evaluation_matches_independent_reference(setup, aggregation):
    from lean.evaluate import evaluate
    from lean.inference import load_predictor

    report = evaluate(load_predictor(setup["run"], batch_size=5), setup["dataset"], "eval",
                      EvalConfig(aggregation=aggregation), cache=setup["cache"], progress=False)
    expected = reference_evaluation(setup["model"], setup["dataset"], "eval", POOLS[aggregation])
    assert report["num_clips"] == 16 and report["num_windows"] == expected["num_windows"]
    assert report["mAP"] == pytest.approx(expected["mAP"], abs=1e-6)
    assert report["mAUC"] == pytest.approx(expected["mAUC"], abs=1e-6)
    assert report["d_prime"] == pytest.approx(math.sqrt(2) * norm.ppf(expected["mAUC"]), abs=1e-5)
    assert [entry["label"] for entry in report["per_class"]] == list(TONE_LABELS)
    assert [entry["ap"] for entry in report["per_class"]] == pytest.approx(expected["aps"], abs=1e-6)
    assert report["model"] == str(setup["run"]) and report["model_kind"] == "keras"
    assert report["host"]["cpu"] and report["aggregation"] == aggregation


def test_tflite_goes_through_the_same_path_with_the_same_numbers(setup):
    from lean.evaluate import evaluate
    from lean.inference import load_predictor

    results = [evaluate(load_predictor(path), setup["dataset"], "eval", cache=setup["cache"],
                        progress=False) for path in (setup["run"], setup["tflite"])]
    keras_report, tflite_report = results
    assert tflite_report["model_kind"] == "tflite"
    assert tflite_report["num_windows"] == keras_report["num_windows"]
    assert tflite_report["mAP"] == pytest.approx(keras_report["mAP"], abs=1e-4)
    assert [e["ap"] for e in tflite_report["per_class"]] == pytest.approx(
        [e["ap"] for e in keras_report["per_class"]], abs=1e-4)


def test_bad_clips_are_counted_and_listed_or_fail(setup, tmp_path):
    import shutil

    from lean.data import load_dataset
    from lean.evaluate import evaluate
    from lean.inference import load_predictor

    data = tmp_path / "data"
    shutil.copytree(setup["data"], data)
    broken = sorted((data / "eval_audio").iterdir())[0]
    broken.write_bytes(broken.read_bytes()[:100])  # a WAV cut off inside its data chunk
    dataset = load_dataset(data)
    predictor = load_predictor(setup["run"])
    report = evaluate(predictor, dataset, "eval", cache=setup["cache"], progress=False)
    assert (report["num_clips"], report["num_skipped"]) == (15, 1)
    assert report["skipped_files"][0].startswith(str(broken))
    with pytest.raises(LeanError, match=f"{broken.name}: truncated"):
        evaluate(predictor, dataset, "eval", cache=setup["cache"], on_bad_audio="fail",
                 progress=False)


def test_a_model_of_another_vocabulary_is_refused(setup, tmp_path):
    from lean.evaluate import evaluate
    from lean.inference import load_predictor

    other = save_run_dir(build_tiny_model(num_classes=3), tmp_path / "run3", MODEL_LABELS)
    with pytest.raises(LeanError, match="model has 3 classes, dataset .* has 4"):
        evaluate(load_predictor(other), setup["dataset"], "eval", cache=setup["cache"])
    renamed = save_run_dir(setup["model"], tmp_path / "renamed",
                           ["Low_tone", "High_tone", "Hiss", "Clicks"])
    with pytest.raises(LeanError, match="class 2 is 'Hiss' in the model but 'Noise'"):
        evaluate(load_predictor(renamed), setup["dataset"], "eval", cache=setup["cache"])


def test_eval_cli_writes_json_and_plots(setup, tmp_path, capsys, monkeypatch):
    from lean.cli import main

    monkeypatch.setenv("LEAN_CACHE_DIR", str(setup["root"] / "cache"))
    out = tmp_path / "eval.json"
    code = main(["eval", str(setup["run"]), "--data", str(setup["data"]), "--split", "eval",
                 "--json", str(out), "--plots", str(tmp_path / "plots"), "--no-progress"])
    assert code == 0
    report = json.loads(out.read_text())
    for key in ("mAP", "mAUC", "d_prime", "num_clips", "num_windows", "model", "per_class", "host"):
        assert key in report
    assert set(report["per_class"][0]) >= {"label", "ap", "auc", "positives"}
    assert sum(entry["positives"] for entry in report["per_class"]) == int(
        setup["dataset"].label_matrix(setup["dataset"].clips("eval")).sum())
    printed = capsys.readouterr().out
    assert f"mAP     {report['mAP']:.4f}" in printed
    for name in ("pr_curves.png", "per_class_ap.png"):
        png = (tmp_path / "plots" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert main(["eval", str(setup["run"]), "--data", str(tmp_path / "nowhere")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err


def test_int8_dot_product_features_are_read_from_cpuinfo():
    from lean.host import cpu_int8_dot_product

    vnni_xeon = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\nflags\t\t: fpu avx2 avx512f avx512_vnni avx_vnni\n"
    avx2_epyc = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx avx2 fma\n"
    arm_phone = "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\nHardware\t: Qualcomm\n"
    assert cpu_int8_dot_product(vnni_xeon) == ["avx512_vnni", "avx_vnni"]
    assert cpu_int8_dot_product(avx2_epyc) == []
    assert cpu_int8_dot_product(arm_phone) == ["asimddp", "i8mm"]
    # "avx512_vnni" must not match as a substring of another flag.
    assert cpu_int8_dot_product("flags : avx512_vnnix\n") == []
