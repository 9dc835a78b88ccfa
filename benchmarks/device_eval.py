"""`lean-bench adb-eval`: mAP of a .tflite scored on the phone, following benchmarks/DEVICE_EVAL.md."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from lean.errors import LeanError
from lean.io import atomic_write_text

from lean_bench.adb import Adb, quote, read_device_facts, select_devices
from lean_bench.report import describe_latency_coverage, format_value, latency_coverage

APP_PACKAGE = "dev.lean.demo"
DEVICE_EVAL_ROOT = f"/sdcard/Android/data/{APP_PACKAGE}/files/eval"
EVAL_ACTIVITY = f"{APP_PACKAGE}/.EvalActivity"
FORMAT_VERSION = 1
DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi")
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]+$")


_PROPERTY_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")
_ESCAPED_CHARACTERS = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str) -> str:
    """Undoes java.util.Properties.store escaping (`\\:`, `\\=`, `\\uXXXX`, `\\t`, ...)."""
    def replace(match):
        code = match.group(1)
        if len(code) == 5:
            return chr(int(code[1:], 16))
        return _ESCAPED_CHARACTERS.get(code, code)
    return _PROPERTY_ESCAPE.sub(replace, text)


def parse_properties(text: str) -> dict:
    """java.util.Properties `key=value` lines as `Properties.store` writes them -> dict.

    Comment lines (`#`, `!`) such as the date that store() adds are skipped; escapes are undone.
    """
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        match = re.match(r"((?:\\.|[^=:\\])*?)\s*[=:]\s*(.*)$", line)
        if match:
            values[_unescape(match.group(1).strip())] = _unescape(match.group(2))
    return values


def device_latency_coverage(status: dict, delegate: str) -> dict:
    """What the device's mean latency covers, from status.properties (benchmarks/DEVICE_EVAL.md).

    Args:
        status: the parsed status.properties.
        delegate: the delegate the job asked for.

    Returns:
        {"delegate", "latency_coverage", "delegated_nodes", "total_nodes"}; a status without these
        fields (an older app) is labelled from the requested delegate: gpu and nnapi numbers as
        possibly partial, never as pure delegate numbers.
    """
    ran_on = status.get("delegate") or delegate
    if ran_on != delegate:
        raise LeanError(f"the device ran the job on {ran_on}, not on the requested {delegate}: "
                        "its latency cannot be reported under that label")
    counts = []
    for key in ("delegated_nodes", "total_nodes"):
        text = status.get(key)
        counts.append(int(text) if text and text.isdigit() else None)
    # Derived here from the delegate and the counts, so a label is never taken on trust.
    coverage = latency_coverage(delegate, *counts)
    return {"delegate": ran_on, "latency_coverage": coverage, "delegated_nodes": counts[0],
            "total_nodes": counts[1]}


def format_properties(values: dict) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_job_id(model: Path, data_dir: Path, split: str, hop_fraction: float,
                   delegate: str = "cpu", threads: int = 1) -> str:
    """Same model, data, split, delegate and threads -> same job, so a rerun of the same command
    continues it; another delegate or thread count is another job (its latency is another
    number, and rows scored on one delegate must not be reported under another)."""
    key = f"{_file_digest(model)}|{Path(data_dir).resolve()}|{split}|{hop_fraction}"
    if (delegate, threads) != ("cpu", 1):  # the ids of earlier cpu, 1-thread jobs stay valid
        key += f"|{delegate}|{threads}"
    return f"{model.stem[:32]}-{split}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


class _WindowRecorder:
    """Stands in for a predictor while `lean.evaluate.score_windows` cuts the windows: it appends
    every window to windows.f32 and returns placeholder scores."""

    kind = "window-recorder"

    def __init__(self, reference, handle):
        self.labels, self.path, self.task = reference.labels, reference.path, reference.task
        self.window_samples, self.sample_rate = reference.window_samples, reference.sample_rate
        self.channels = reference.channels
        self.num_classes = reference.num_classes
        self._handle = handle

    def predict(self, windows: np.ndarray) -> np.ndarray:
        self._handle.write(np.ascontiguousarray(windows, dtype="<f4").tobytes())
        return np.zeros((len(windows), self.num_classes), dtype=np.float32)


class DeviceScoresPredictor:
    """Replays the device's window scores to `lean.evaluate.evaluate`, checking that each batch of
    windows it is asked about is exactly the batch that was pushed to the phone."""

    kind = "tflite-on-device"

    def __init__(self, reference, windows: np.ndarray, scores: np.ndarray):
        self.labels, self.path, self.task = reference.labels, reference.path, reference.task
        self.window_samples, self.sample_rate = reference.window_samples, reference.sample_rate
        self.channels = reference.channels
        self.num_classes = reference.num_classes
        self._windows, self._scores, self._cursor = windows, scores, 0

    def predict(self, windows: np.ndarray) -> np.ndarray:
        start, stop = self._cursor, self._cursor + len(windows)
        if stop > len(self._windows) or not np.array_equal(self._windows[start:stop], windows):
            raise LeanError(f"the windows cut now differ from the job's windows.f32 at window "
                            f"{start}: the data changed; delete the job folder and run again")
        self._cursor = stop
        return np.asarray(self._scores[start:stop], dtype=np.float32)


class DeviceEvalJob:
    """One evaluation job: its host folder (the source of truth) and its device folder."""

    def __init__(self, adb: Adb, job_dir: Path, job_id: str, device_root: str):
        if not _JOB_ID.match(job_id):
            raise LeanError(f"job id '{job_id}': use letters, digits, '-' and '_' only")
        self.adb, self.job_dir, self.job_id = adb, Path(job_dir), job_id
        self.remote_dir = f"{device_root.rstrip('/')}/{job_id}"
        self.properties = parse_properties((self.job_dir / "job.properties").read_text())
        self.num_windows = int(self.properties["num_windows"])
        self.window_samples = int(self.properties["window_samples"])

    @property
    def scores_path(self) -> Path:
        return self.job_dir / "scores.f32"

    def host_rows(self, num_classes: int) -> int:
        """Whole score rows kept on the host; a torn last row is cut off."""
        if not self.scores_path.exists():
            return 0
        row_bytes = 4 * num_classes
        size = self.scores_path.stat().st_size
        if size % row_bytes:
            with open(self.scores_path, "r+b") as handle:
                handle.truncate(size - size % row_bytes)
        return min(size // row_bytes, self.num_windows)

    def device_status(self) -> dict:
        status, output = self.adb.shell(f"cat {quote(self.remote_dir + '/status.properties')} "
                                        "2>/dev/null")
        return parse_properties(output) if status == 0 else {}

    def device_has_inputs(self) -> bool:
        """True when the device folder holds the job's model, windows and properties intact."""
        expected = (self.job_dir / "windows.f32").stat().st_size
        status, output = self.adb.shell(
            f"cd {quote(self.remote_dir)} 2>/dev/null && ls model.tflite job.properties >/dev/null "
            f"&& wc -c < windows.f32")
        return status == 0 and output.strip().isdigit() and int(output.strip()) == expected

    def device_score_bytes(self) -> Optional[int]:
        """Size of the device's scores.f32 (None when it cannot be read)."""
        _, output = self.adb.shell(f"wc -c < {quote(self.remote_dir + '/scores.f32')} 2>/dev/null")
        return int(output.strip()) if output.strip().isdigit() else None

    def device_rows_grow(self, before: Optional[int], wait_s: float, poll_s: float) -> bool:
        """True when the device's scores.f32 grows past `before` bytes within wait_s: a job from
        an earlier run is still going, and a second start would write the same file twice."""
        deadline = time.monotonic() + wait_s
        while before is not None:
            time.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))
            after = self.device_score_bytes()
            if after is not None and after > before:
                return True
            if time.monotonic() >= deadline:
                break
        return False

    def remove_device_folder(self) -> None:
        self.adb.shell(f"rm -rf {quote(self.remote_dir)}", timeout=120.0)

    def push_inputs(self, model: Path, num_classes: int) -> None:
        """Pushes model, windows and job.properties, and the rows already scored, so the device
        continues where the host's copy ends."""
        self.adb.shell(f"rm -rf {quote(self.remote_dir)} && mkdir -p {quote(self.remote_dir)}")
        self.adb.push(str(model), f"{self.remote_dir}/model.tflite")
        self.adb.push(str(self.job_dir / "windows.f32"), f"{self.remote_dir}/windows.f32")
        if self.host_rows(num_classes):
            self.adb.push(str(self.scores_path), f"{self.remote_dir}/scores.f32")
        # The properties go last: their presence means the inputs are complete.
        self.adb.push(str(self.job_dir / "job.properties"), f"{self.remote_dir}/job.properties")

    def pull_new_rows(self, num_classes: int) -> int:
        """Appends the device's whole rows beyond the host's copy; returns the host's row count."""
        row_bytes = 4 * num_classes
        have = self.host_rows(num_classes)
        data = self.adb.exec_out(f"dd if={quote(self.remote_dir + '/scores.f32')} bs={row_bytes} "
                                 f"skip={have} 2>/dev/null")
        whole = len(data) - len(data) % row_bytes
        if whole:
            with open(self.scores_path, "ab") as handle:
                handle.write(data[:whole])
                handle.flush()
                os.fsync(handle.fileno())
        return self.host_rows(num_classes)

    def start(self) -> str:
        # A status left by an earlier attempt (an error, say) must not be read as this run's.
        self.adb.shell(f"rm -f {quote(self.remote_dir + '/status.properties')}")
        status, output = self.adb.shell(f"am start -W -n {EVAL_ACTIVITY} --es job {self.job_id}")
        # Older am prints a refused start as a bare "java.lang.SecurityException: Permission Denial".
        denied = "Permission Denial" in output
        if status != 0 or denied or re.search(r"^(Error|Exception)", output, re.MULTILINE):
            line = next((line for line in output.splitlines() if line.startswith(("Error", "Exception"))),
                        output.strip().splitlines()[-1] if output.strip() else "no output")
            if denied:
                line = next(line for line in output.splitlines() if "Permission Denial" in line)
                raise LeanError(f"{self.adb.serial}: {EVAL_ACTIVITY} refused the start: it requires "
                                "android.permission.DUMP, which the adb shell holds on stock Android "
                                "but not on this device (benchmarks/DEVICE_EVAL.md, Entry point); "
                                f"am said: {line}")
            raise LeanError(f"{self.adb.serial}: could not start {EVAL_ACTIVITY} (is the Android demo "
                            f"app installed? see android_demo/README.md); am said: {line}")
        return output


def prepare_job_folder(model: Path, data_dir: Path, split: str, job_dir: Path, job_id: str,
                       threads: int, delegate: str, eval_config) -> dict:
    """Cuts the windows exactly as `lean eval` does (same decode, windowing and order) into
    job_dir/windows.f32 and writes job.properties; reuses a complete folder from an earlier run."""
    from lean.data.audio import AudioCache
    from lean.data.pipeline import decode_ahead, default_cache_dir
    from lean.evaluate import dataset_for, score_windows
    from lean.inference import load_predictor

    job_dir.mkdir(parents=True, exist_ok=True)
    properties_path = job_dir / "job.properties"
    identity_path = job_dir / "host_job.json"
    identity = {"job_id": job_id, "model_sha256": _file_digest(model),
                "data": str(Path(data_dir).resolve()), "split": split,
                "window_hop_fraction": eval_config.window_hop_fraction}
    if (delegate, threads) != ("cpu", 1):
        identity.update(delegate=delegate, threads=threads)
    reference = load_predictor(model)
    if reference.channels != 1:
        raise LeanError(f"{model}: a {reference.channels}-channel model; the Android demo app "
                        "runs mono models only (android_demo/README.md)")
    if properties_path.exists() and (job_dir / "windows.f32").exists() and identity_path.exists():
        if json.loads(identity_path.read_text()) != identity:
            raise LeanError(f"{job_dir}: this job folder belongs to another model, dataset, split, "
                            "delegate or thread count; choose another --job-dir or delete it")
        return parse_properties(properties_path.read_text())
    dataset = dataset_for(reference, data_dir)
    clips = dataset.clips(split)
    cache = AudioCache(default_cache_dir(), reference.sample_rate)
    temporary = job_dir / "windows.f32.partial"
    with open(temporary, "wb") as handle:
        recorder = _WindowRecorder(reference, handle)
        result = score_windows(recorder, decode_ahead(clips, lambda clip: cache.load(clip.path)),
                               eval_config.window_hop_fraction, total=len(clips),
                               desc=f"cutting {split} windows")
    if not result.keys:
        raise LeanError(f"{data_dir}: every {split} clip failed to decode")
    os.replace(temporary, job_dir / "windows.f32")
    properties = {
        "format_version": FORMAT_VERSION,
        "num_windows": result.num_windows,
        "window_samples": reference.window_samples,
        "sample_rate": reference.sample_rate,
        "threads": threads,
        "delegate": delegate,
    }
    atomic_write_text(properties_path, format_properties(properties))
    atomic_write_text(identity_path, json.dumps(identity, indent=2) + "\n")
    return parse_properties(properties_path.read_text())


def run_device_eval(model: str, data_dir: str, split: str = "eval", serial: Optional[str] = None,
                    job_dir: Optional[str] = None, threads: int = 1, delegate: str = "cpu",
                    adb_path: str = "adb", device_root: str = DEVICE_EVAL_ROOT,
                    poll_s: float = 2.0, stall_timeout_s: float = 600.0,
                    say: Callable[[str], None] = lambda text: print(text, file=sys.stderr)) -> dict:
    """Scores every eval window on the phone and computes the task's metrics on the host, as
    `lean eval` does.

    Args:
        model: the exported .tflite (float32 waveform in, probabilities out).
        data_dir: the dataset (any layout; the folds the model's run held out); split: the split
            evaluated.
        serial: the device (None: the only connected device).
        job_dir: host folder of the job (default: a per-job folder in ~/.cache/lean-bench).
        threads, delegate: written to job.properties for the app.
        adb_path: the adb client; device_root: the app's eval folder on the device.
        poll_s: seconds between status polls; stall_timeout_s: give up after this long without
            progress.
        say: where progress messages go.

    Returns:
        The `lean eval` report of the device's scores, with the device facts as place of
        measurement.
    """
    from tqdm import tqdm

    from lean.config import EvalConfig
    from lean.evaluate import dataset_for, evaluate
    from lean.inference import load_predictor

    model_path, data_path = Path(model), Path(data_dir)
    if not model_path.is_file():
        raise LeanError(f"{model}: no such model file")
    if delegate not in DELEGATES:
        raise LeanError(f"--delegate {delegate}: expected one of {', '.join(DELEGATES)}")
    eval_config = EvalConfig()
    server = Adb(adb_path)
    entries = select_devices(server.devices(), [serial] if serial else [])
    if len(entries) > 1:
        raise LeanError("several devices are connected ("
                        + ", ".join(entry.serial for entry in entries) + "): choose one with --serial")
    adb = server.for_device(entries[0].serial)
    facts = read_device_facts(adb)
    say(f"{adb.serial}: {facts.place}")

    job_id = default_job_id(model_path, data_path, split, eval_config.window_hop_fraction,
                            delegate, threads)
    job_path = Path(job_dir) if job_dir else _default_jobs_root() / job_id
    prepare_job_folder(model_path, data_path, split, job_path, job_id, threads, delegate,
                       eval_config)
    bind_job_to_device(job_path, facts)
    reference = load_predictor(model_path)
    num_classes = reference.num_classes
    job = DeviceEvalJob(adb, job_path, job_id, device_root)
    done = job.host_rows(num_classes)
    if done:
        say(f"{job_path}: continuing, {done} of {job.num_windows} windows already scored")
    started = time.monotonic()
    # A finished job's device status (its latency) is kept on the host for later reruns.
    status_path = job_path / "device_status.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {}
    try:
        if done < job.num_windows:
            if not job.device_has_inputs():
                job.push_inputs(model_path, num_classes)
            status = job.device_status()
            following = False
            if status.get("state") == "running":
                # A status left by an app that was killed also says running: only growth counts.
                wait_s = max(5.0, 3 * poll_s)
                before = job.device_score_bytes()
                say(f"{adb.serial}: the device reports this job as running; watching up to "
                    f"{wait_s:.0f} s whether it still scores")
                following = job.device_rows_grow(before, wait_s, poll_s)
            if following:
                say(f"{adb.serial}: the app is still scoring this job; following it")
            elif status.get("state") != "done":
                job.start()
            last_progress, last_done = time.monotonic(), done
            with tqdm(total=job.num_windows, initial=done, desc="device windows", unit="window",
                      file=sys.stderr) as progress:
                while True:
                    status = job.device_status()
                    done = job.pull_new_rows(num_classes)
                    progress.update(done - progress.n)
                    if status.get("state") == "error":
                        raise LeanError(f"{adb.serial}: the evaluation job failed on the device: "
                                        f"{status.get('error', 'no error line in status.properties')}")
                    if done >= job.num_windows:
                        break
                    if done > last_done:
                        last_progress, last_done = time.monotonic(), done
                    elif time.monotonic() - last_progress > stall_timeout_s:
                        raise LeanError(f"{adb.serial}: no progress for {stall_timeout_s:.0f} s "
                                        f"(device state {status.get('state', 'unknown')})")
                    time.sleep(poll_s)
            if not status.get("mean_latency_ms"):
                status = job.device_status()
    except LeanError as error:
        kept = job.host_rows(num_classes)
        raise LeanError(f"{error}; {kept} of {job.num_windows} windows are kept in {job_path}; "
                        "fix that and run the same command again to continue") from None
    device_seconds = time.monotonic() - started
    _write_host_status(job_path, status, job.num_windows)
    # Every row is on the host now: free the phone's storage (windows.f32 can be gigabytes).
    try:
        job.remove_device_folder()
    except LeanError as error:
        say(f"{adb.serial}: could not remove {job.remote_dir} ({error}); remove it by hand")

    # Memory-mapped: the full FSD50K eval split is about 130k windows (8 GB of float32).
    windows = np.memmap(job_path / "windows.f32", dtype="<f4", mode="r",
                        shape=(job.num_windows, job.window_samples))
    scores = np.memmap(job.scores_path, dtype="<f4", mode="r", shape=(job.num_windows, num_classes))
    replay = DeviceScoresPredictor(reference, windows, scores)
    report = evaluate(replay, dataset_for(reference, data_path), split, eval_config,
                      progress=False)
    # evaluate() timed the host's replay, not the phone: keep the device's own numbers instead.
    for key in ("host", "seconds", "windows_per_second"):
        report.pop(key, None)
    report.update({
        "kind": "adb-eval",
        "measured_on": facts.place,
        "scores_computed_on": "device" if not facts.stand_in else "STAND-IN device (not a phone)",
        "device": facts.to_dict(),
        "device_mean_latency_ms": _float_or_none(status.get("mean_latency_ms")),
        "device_latency_coverage": device_latency_coverage(status, delegate),
        "device_wall_seconds": round(device_seconds, 3),
        "job_id": job_id,
        "job_dir": str(job_path),
        "threads": threads,
        "delegate": delegate,
    })
    return report


def bind_job_to_device(job_path: Path, facts) -> None:
    """One job, one device: rows scored on two phones would make the report's place untrue."""
    identity = {"serial": facts.serial, "model": facts.model, "soc": facts.soc,
                "place": facts.place}
    device_file = job_path / "device.json"
    if device_file.exists():
        scored_on = json.loads(device_file.read_text())
        if {key: scored_on.get(key) for key in ("serial", "model", "soc")} != \
                {key: identity[key] for key in ("serial", "model", "soc")}:
            raise LeanError(f"{job_path}: this job was scored on {scored_on.get('place')}, not on "
                            f"{facts.place}; use another --job-dir or delete that folder")
    else:
        atomic_write_text(device_file, json.dumps(identity, indent=2) + "\n")


def _float_or_none(text: Optional[str]) -> Optional[float]:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _write_host_status(job_path: Path, status: dict, num_windows: int) -> None:
    atomic_write_text(job_path / "device_status.json",
                      json.dumps({"num_windows": num_windows, **status}, indent=2) + "\n")


def _default_jobs_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lean-bench" / "adb-eval"


def _coverage_line(report: dict) -> str:
    coverage = report.get("device_latency_coverage") or {
        "delegate": report["delegate"], "latency_coverage": latency_coverage(report["delegate"])}
    return describe_latency_coverage(coverage["delegate"], coverage["latency_coverage"],
                                     coverage.get("delegated_nodes"), coverage.get("total_nodes"))


def format_device_eval_report(report: dict) -> str:
    lines = [
        f"On-device evaluation measured on {report['measured_on']}",
        f"  scores computed on: {report['scores_computed_on']} ({report['delegate']}, "
        f"{report['threads']} thread(s)); clip pooling and metrics on the host (`lean eval` code)",
        f"  model {report['model']}, {report['split']} split of {report['data']}: "
        f"{report['num_clips']} clips, {report['num_windows']} windows, "
        f"{report['num_skipped']} skipped",
        (f"  mAP {format_value(report['mAP'], 4)}  mAUC {format_value(report['mAUC'], 4)}  "
         f"d' {format_value(report['d_prime'], 3)}" if report["task"] == "multilabel" else
         f"  accuracy {format_value(report['accuracy'], 4)}  macro recall "
         f"{format_value(report['macro_recall'], 4)}  macro F1 {format_value(report['macro_f1'], 4)}"),
        f"  device mean latency per window (ms): {format_value(report['device_mean_latency_ms'])}"
        f" ({_coverage_line(report)})",
    ]
    return "\n".join(lines)


__all__ = ["run_device_eval", "format_device_eval_report", "parse_properties",
           "device_latency_coverage", "DEVICE_EVAL_ROOT"]
