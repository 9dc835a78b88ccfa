"""The Android app's JVM core (android_demo/core) compiled and tested here, and checked against the Python SDK."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import android_golden  # pytest puts tests/ on sys.path (no __init__.py there)
from lean_bench.device_eval import device_latency_coverage, parse_properties

CORE = Path(__file__).resolve().parents[1] / "android_demo" / "core"
RUN_JVM_TESTS = CORE / "run-jvm-tests.sh"


def _run_jvm_tests(golden_dir: Path) -> subprocess.CompletedProcess:
    if shutil.which("javac") is None:
        pytest.skip("javac is not installed (Debian: apt-get install openjdk-17-jdk-headless)")
    result = subprocess.run(
        ["bash", str(RUN_JVM_TESTS), str(golden_dir)], capture_output=True, text=True, timeout=300
    )
    if result.returncode == 3:  # the script's "cannot install junit4" exit
        pytest.skip(f"junit4 unavailable: {result.stderr.strip()}")
    return result


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    directory = tmp_path_factory.mktemp("android_golden")
    written = android_golden.write_goldens(directory)
    return directory, written


@pytest.mark.slow
def test_jvm_core_passes_with_python_goldens(golden):
    directory, written = golden
    result = _run_jvm_tests(directory)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # JUnit prints "OK (N tests)"; the parity tests cannot be skipped when a golden dir is given.
    assert "OK (" in result.stdout
    count = int(result.stdout.split("OK (")[1].split()[0])
    assert count >= 40

    # The JVM ran the eval jobs of benchmarks/DEVICE_EVAL.md: read them back as the harness does.
    values = written["golden"]
    expected = written["eval_expected_scores"]
    job = directory / values["eval.job"]
    scores = np.fromfile(job / "scores.f32", dtype="<f4")
    assert scores.shape == (expected.size,)
    np.testing.assert_array_equal(scores.reshape(expected.shape), expected)
    status = parse_properties((job / "status.properties").read_text(encoding="utf-8"))
    assert status["state"] == "done"
    assert int(status["windows_done"]) == int(status["num_windows"]) == expected.shape[0]
    assert int(status["num_classes"]) == len(android_golden.LABELS)
    assert float(status["mean_latency_ms"]) >= 0.0
    assert "error" not in status
    # Where the windows ran, and that a cpu latency covers the whole graph.
    assert (status["delegate"], status["latency_coverage"]) == ("cpu", "cpu")
    assert device_latency_coverage(status, "cpu")["latency_coverage"] == "cpu"
    assert not (job / "status.properties.tmp").exists()

    failing = directory / values["eval.failing_job"]
    status = parse_properties((failing / "status.properties").read_text(encoding="utf-8"))
    fail_at = values["eval.fail_at"]
    assert status["state"] == "error"
    assert status["error"] == f"IllegalStateException: {android_golden.EVAL_FAILURE}"
    assert (int(status["windows_done"]), int(status["num_windows"])) == (fail_at, 5)
    rows = np.fromfile(failing / "scores.f32", dtype="<f4").reshape(-1, len(android_golden.LABELS))
    np.testing.assert_array_equal(rows, expected[:fail_at])


@pytest.mark.slow
def test_golden_model_metadata_agrees_between_python_readers(golden):
    from lean.inference import load_predictor

    directory, written = golden
    values = written["golden"]
    labels = (directory / values["model.labels"]).read_text(encoding="utf-8").splitlines()
    assert tuple(labels) == android_golden.LABELS
    predictor = load_predictor(directory / values["model.file"])
    assert tuple(predictor.labels) == android_golden.LABELS
    assert (values["model.sample_rate"], values["model.channels"]) == (16000, 1)
    assert values["model.input_samples"] == predictor.window_samples == 16000


@pytest.mark.slow
def test_jvm_parity_fails_on_a_wrong_golden(golden, tmp_path):
    directory, _ = golden
    tampered = tmp_path / "tampered"
    shutil.copytree(directory, tampered)
    for scores in tampered.glob("eval_job*/scores.f32"):  # so the eval jobs start afresh
        scores.unlink()
    properties = tampered / "golden.properties"
    properties.write_text(
        properties.read_text().replace("model.sample_rate=16000", "model.sample_rate=22050")
    )
    windows = tampered / "windows_0_expected.f32"
    values = np.fromfile(windows, dtype="<f4")
    values[20000] = np.nextafter(values[20000], np.float32(2))  # one ulp in window 1
    values.tofile(windows)
    result = _run_jvm_tests(tampered)
    assert result.returncode != 0
    assert "modelMetadataEqualsPythonReader" in result.stdout
    assert "windows.0 window 1" in result.stdout
    assert "Failures: 2" in result.stdout


def test_jvm_failure_message_matches_the_golden_writer():
    # The Java test hard-codes the failure message the golden writer expects back.
    source = (CORE / "src/test/java/dev/lean/core/GoldenParityTest.java").read_text()
    assert f'FAILURE_MESSAGE = "{android_golden.EVAL_FAILURE}"' in source


ANDROID = CORE.parent
APP_MAIN = ANDROID / "app" / "src" / "main"


def _version_catalog() -> dict:
    import tomllib

    return tomllib.loads((ANDROID / "gradle" / "libs.versions.toml").read_text())


def test_gradle_files_use_only_pinned_catalog_entries():
    import re

    catalog = _version_catalog()
    versions = catalog["versions"]
    assert all(re.fullmatch(r"\d+(\.\d+)+", v) for v in versions.values()), versions
    aliases = {name.replace("-", ".") for name in catalog["libraries"]}
    plugins = {name.replace("-", ".") for name in catalog["plugins"]}
    for entry in list(catalog["libraries"].values()) + list(catalog["plugins"].values()):
        assert entry["version"]["ref"] in versions, entry  # TOML reads version.ref as nested keys
    scripts = [ANDROID / "build.gradle.kts", ANDROID / "app" / "build.gradle.kts", CORE / "build.gradle.kts"]
    used_libraries, used_plugins = set(), set()
    for script in scripts:
        text = script.read_text()
        used_plugins |= set(re.findall(r"libs\.plugins\.([\w.]+)", text))
        used_libraries |= {name for name in re.findall(r"libs\.([\w.]+)", text) if not name.startswith("plugins.")}
        # Every dependency comes from the catalog: no inline "group:name:version" strings.
        assert not re.search(r'implementation\("[^"]+:[^"]+"\)', text), script
    assert used_plugins <= plugins, used_plugins - plugins
    assert used_libraries <= aliases, used_libraries - aliases
    assert {"litert", "litert.api", "litert.gpu", "litert.gpu.api"} <= used_libraries
    settings = (ANDROID / "settings.gradle.kts").read_text()
    assert 'include(":app", ":core")' in settings
    wrapper = (ANDROID / "gradle" / "wrapper" / "gradle-wrapper.properties").read_text()
    assert re.search(r"distributionUrl=.*gradle-\d+\.\d+(\.\d+)?-bin\.zip", wrapper)
    assert not (ANDROID / "gradle" / "wrapper" / "gradle-wrapper.jar").exists()


def test_app_sources_manifest_and_resources_agree():
    import re
    import xml.etree.ElementTree as ET

    android = "{http://schemas.android.com/apk/res/android}"
    kotlin = {path.stem: path.read_text() for path in (APP_MAIN / "java").rglob("*.kt")}
    manifest = ET.parse(APP_MAIN / "AndroidManifest.xml").getroot()
    permissions = {e.get(f"{android}name") for e in manifest.iter("uses-permission")}
    assert "android.permission.RECORD_AUDIO" in permissions
    activities = {e.get(f"{android}name"): e for e in manifest.iter("activity")}
    assert set(activities) == {".MainActivity", ".EvalActivity"}
    evaluation = activities[".EvalActivity"]
    assert evaluation.get(f"{android}exported") == "true"  # adb starts it
    # ... and only callers holding DUMP (the adb shell) may: no other app can make it run a model.
    assert evaluation.get(f"{android}permission") == "android.permission.DUMP"
    # singleTask sends a second start to onNewIntent, which must answer it.
    assert evaluation.get(f"{android}launchMode") == "singleTask"
    assert "override fun onNewIntent(intent: Intent)" in kotlin["EvalActivity"]
    assert "android:permission" not in ET.tostring(activities[".MainActivity"]).decode()
    for name in activities:
        assert re.search(rf"class {name[1:]}\b", kotlin[name[1:]]), name

    strings = {e.get("name") for e in ET.parse(APP_MAIN / "res/values/strings.xml").getroot()}
    styles = {e.get("name") for e in ET.parse(APP_MAIN / "res/values/themes.xml").getroot()}
    drawables = {path.stem for path in (APP_MAIN / "res/drawable").iterdir()}
    layouts = {path.stem: path.read_text() for path in (APP_MAIN / "res/layout").iterdir()}
    xml_texts = [(APP_MAIN / "AndroidManifest.xml").read_text(), *layouts.values()]
    for text in xml_texts:
        assert set(re.findall(r"@string/(\w+)", text)) <= strings
        assert set(re.findall(r"@style/([\w.]+)", text)) <= styles
        assert set(re.findall(r"@drawable/(\w+)", text)) <= drawables
    code = "\n".join(kotlin.values())
    assert set(re.findall(r"R\.string\.(\w+)", code)) <= strings

    # View binding: FooBarBinding belongs to layout foo_bar.xml and its fields are that layout's ids.
    def layout_of(binding: str) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", "_", binding[: -len("Binding")]).lower()

    for source in kotlin.values():
        bindings = set(re.findall(r"\b(\w+Binding)\.(?:inflate|bind)\(", source))
        ids = set()
        for binding in bindings:
            assert layout_of(binding) in layouts, binding
            ids |= set(re.findall(r'@\+id/(\w+)', layouts[layout_of(binding)]))
        if bindings:
            used = set(re.findall(r"\b(?:binding|row)\.(\w+)", source)) - {"root"}
            assert used <= ids, used - ids

    # Delegate set-up throws LinkageErrors too: the app never catches only Exception, and start/stop
    # never waits for a worker on the main thread (the decisions live in dev.lean.core, tested).
    assert "catch (e: Exception)" not in code
    assert ".join(" not in code
    assert "AcceleratorFallback.create(" in kotlin["AudioClassifierHelper"]
    assert "SessionLifecycle(" in kotlin["AudioClassifierHelper"]
    assert "EvalScheduler(" in kotlin["EvalActivity"]

    # Kotlin imports of the core module name classes that exist there.
    core_classes = {path.stem for path in (CORE / "src/main/java/dev/lean/core").glob("*.java")}
    imported = set(re.findall(r"^import dev\.lean\.core\.(\w+)", code, flags=re.MULTILINE))
    assert imported and imported <= core_classes, imported - core_classes


def test_kotlin_sources_and_gradle_scripts_parse():
    # No Kotlin 2 compiler here (Debian's is 1.3): a full Kotlin grammar at least rejects syntax errors.
    tree_sitter = pytest.importorskip("tree_sitter", reason="pip install tree-sitter tree-sitter-kotlin")
    kotlin_grammar = pytest.importorskip("tree_sitter_kotlin", reason="pip install tree-sitter-kotlin")
    parser = tree_sitter.Parser(tree_sitter.Language(kotlin_grammar.language()))
    sources = sorted(ANDROID.rglob("*.kt")) + sorted(ANDROID.rglob("*.gradle.kts"))
    assert len(sources) >= 8
    for path in sources:
        assert not parser.parse(path.read_bytes()).root_node.has_error, path
    broken = (APP_MAIN / "java/dev/lean/demo/MainActivity.kt").read_text().replace("onPause() {", "onPause( {", 1)
    assert parser.parse(broken.encode()).root_node.has_error


def test_core_main_uses_only_apis_android_24_has():
    # javac --release 8 checks the Java 8 API; Android 7.0 (API 24) lacks some of it (java.nio.file,
    # java.time, ...), so the app-side core code stays within these packages.
    import re

    allowed = ("java.io.", "java.nio.ByteBuffer", "java.nio.ByteOrder", "java.nio.channels.FileChannel",
               "java.nio.charset.StandardCharsets", "java.util.")
    for path in (CORE / "src/main/java").rglob("*.java"):
        for name in re.findall(r"^import\s+(?:static\s+)?([\w.]+);", path.read_text(), flags=re.MULTILINE):
            assert name.startswith(allowed), f"{path.name}: {name}"
