"""`lean-bench host`: timings, ratios, peak memory, plot, and mAP against an independent reference."""

import json
from pathlib import Path

import numpy as np
import pytest

from adb_loopback.bench_data import LABELS, build_tiny_models, write_tiny_dataset
from lean_bench import cli
from lean_bench.report import host_cpu_model


@pytest.fixture(scope="module")
def bench_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("host_bench")
    small, large = build_tiny_models({root / "small.tflite": 8, root / "large.tflite": 512})
    return small, large, write_tiny_dataset(root / "data")


def _reference_map(model: Path, data: Path) -> float:
    """mAP computed here without lean: 1 s windows at 0.5 s hop (last one ending at the clip's
    end, short clips tiled), LiteRT per window, mean per clip, scikit-learn AP per class."""
    import csv

    import soundfile
    from ai_edge_litert.interpreter import Interpreter
    from sklearn.metrics import average_precision_score

    interpreter = Interpreter(model_path=str(model))
    interpreter.allocate_tensors()
    model_input, model_output = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = list(csv.reader(open(data / "FSD50K.ground_truth" / "eval.csv")))[1:]
    clip_scores, targets = [], []
    for fname, labels, _ in rows:
        audio, _ = soundfile.read(data / "FSD50K.eval_audio" / f"{fname}.wav", dtype="float32")
        if len(audio) < 16000:
            audio = np.tile(audio, -(-16000 // len(audio)))[:16000]
        starts = list(range(0, len(audio) - 16000 + 1, 8000))
        if starts[-1] != len(audio) - 16000:
            starts.append(len(audio) - 16000)
        scores = []
        for start in starts:
            interpreter.set_tensor(model_input["index"], audio[None, start:start + 16000])
            interpreter.invoke()
            scores.append(interpreter.get_tensor(model_output["index"])[0])
        clip_scores.append(np.mean(scores, axis=0))
        targets.append([label in labels.split(",") for label in LABELS])
    clip_scores, targets = np.array(clip_scores), np.array(targets)
    return float(np.mean([average_precision_score(targets[:, c], clip_scores[:, c])
                          for c in range(len(LABELS))]))


@pytest.mark.slow
def test_host_report_two_models_two_thread_counts(bench_files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LEAN_CACHE_DIR", str(tmp_path / "audio-cache"))
    small, large, data = bench_files
    out, plot = tmp_path / "host.json", tmp_path / "host.png"
    code = cli.main(["host", str(small), str(large), "--threads", "1,2", "--runs", "30",
                     "--warmup", "3", "--data", str(data), "--json", str(out), "--plot", str(plot)])
    assert code == 0
    text = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["measured_on"].startswith(f"host CPU {host_cpu_model()}")
    assert host_cpu_model() in text and "NOT a phone measurement" in text
    rows = report["rows"]
    assert [(Path(row["model"]).name, row["threads"]) for row in rows] == [
        ("small.tflite", 1), ("small.tflite", 2), ("large.tflite", 1), ("large.tflite", 2)]
    by_key = {(row["model_name"], row["threads"]): row for row in rows}
    for row in rows:
        assert row["size_mb"] == pytest.approx(Path(row["model"]).stat().st_size / 1e6)
        assert 0 < row["min_ms"] <= row["median_ms"] <= row["p90_ms"]
        assert row["init_ms"] > 0 and row["first_inference_ms"] > 0
        assert row["runs"] == 30 and row["warmup"] == 3
        # Peak RSS is the worker's own high-water mark: at least what it held before loading.
        assert row["peak_rss_mb"] >= row["rss_before_load_mb"] > 10
        assert row["model_rss_mb"] == pytest.approx(row["peak_rss_mb"] - row["rss_before_load_mb"])
        reference = by_key[("small.tflite", row["threads"])]
        assert row["median_ratio"] == pytest.approx(row["median_ms"] / reference["median_ms"])
        assert row["size_ratio"] == pytest.approx(row["size_mb"] / reference["size_mb"])
    assert by_key[("large.tflite", 1)]["size_ratio"] > 10
    for model in (small, large):
        expected = _reference_map(model, data)
        for row in rows:
            if row["model"] == str(model):
                assert row["mAP"] == pytest.approx(expected, abs=1e-6)
    assert f"{by_key[('large.tflite', 1)]['mAP']:.4f}" in text
    large, small_row = by_key[("large.tflite", 2)], by_key[("small.tflite", 2)]
    assert (f"  large.tflite, 2 thread(s): {large['median_ratio']:.2f}x median latency, "
            f"{large['size_ratio']:.2f}x file size, mAP {large['mAP'] - small_row['mAP']:+.4f}"
            ) in text.split("Compared with small.tflite:")[1]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_host_missing_model_is_one_line_error(tmp_path, capsys):
    assert cli.main(["host", str(tmp_path / "none.tflite")]) == 2
    error = capsys.readouterr().err
    assert error.strip() == f"lean-bench: error: {tmp_path / 'none.tflite'}: no such model file"


def test_host_broken_model_names_the_file(tmp_path, capsys):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer at all")
    assert cli.main(["host", str(broken), "--runs", "2"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"lean-bench: error: {broken}: LiteRT could not run it (")


@pytest.mark.parametrize("count", [1, 4, 8])
@pytest.mark.parametrize("cpu", ["this host", "a long CPU name"])
def test_latency_plot_keeps_every_text_inside_the_figure(count, cpu):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    from lean_bench.report import host_place, latency_figure

    place = host_place() if cpu == "this host" else (
        "host CPU Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz (224 logical cores, int8 dot "
        "product: avx512_vnni, amx_int8, avx_vnni, Linux x86_64)")
    names = ["yamnet_float32.tflite", "lean_int8.tflite", "joint_affinity_dynamic_range.tflite"]
    rows = [{"model_name": names[index // 2 % 3], "threads": 1 + index % 2,
             "median_ms": 10.0 + index, "min_ms": 9.0 + index, "p90_ms": 12.0 + index}
            for index in range(count)]
    figure = latency_figure(rows, "lean-bench host: latency per 1 s window", place)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    texts = [text for text in figure.findobj(Text) if text.get_visible() and text.get_text()]
    assert any(place[-12:] in text.get_text() for text in texts)  # the place is shown, whole
    width, height = figure.bbox.width, figure.bbox.height
    for text in texts:
        box = text.get_window_extent(renderer)
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, (
            text.get_text(), box)
    # Nothing is printed over anything else (the host line ran over the y-axis label). The
    # boxes of labels slanted alike overlap while their letters do not, so those pairs are left.
    for index, first in enumerate(texts):
        for second in texts[index + 1:]:
            if first.get_rotation() == second.get_rotation() != 0:
                continue
            assert not first.get_window_extent(renderer).overlaps(
                second.get_window_extent(renderer)), (first.get_text(), second.get_text())
