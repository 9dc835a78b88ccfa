"""STAND-IN for the Android demo's EvalActivity job, run with LiteRT on this host (not a phone).

Follows benchmarks/DEVICE_EVAL.md: reads job.properties, model.tflite and windows.f32, keeps the
whole rows of scores.f32 already present, appends one row per window, and rewrites
status.properties atomically (via status.properties.tmp). For the disconnection test it can kill
adbd after a given number of windows ($LEAN_STANDIN_STATE/disconnect_after), fail with a given
error line ($LEAN_STANDIN_STATE/eval_error), and stay "running" after a given number of windows
until the test releases it ($LEAN_STANDIN_STATE/hold_after).
"""

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

job_dir = Path(sys.argv[1])
state = Path(os.environ["LEAN_STANDIN_STATE"])


def read_properties(path):
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def write_status(values):
    temporary = job_dir / "status.properties.tmp"
    temporary.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    os.replace(temporary, job_dir / "status.properties")


job = read_properties(job_dir / "job.properties")
num_windows, window_samples = int(job["num_windows"]), int(job["window_samples"])
forced_error = state / "eval_error"
if forced_error.exists():  # e.g. a delegate the "device" cannot apply
    write_status({"state": "error", "windows_done": 0, "num_windows": num_windows,
                  "num_classes": 0, "error": forced_error.read_text().strip()})
    sys.exit(1)
try:
    interpreter = Interpreter(model_path=str(job_dir / "model.tflite"), num_threads=int(job["threads"]))
    interpreter.allocate_tensors()
except Exception as error:  # the app reports any load failure as one line
    write_status({"state": "error", "windows_done": 0, "num_windows": num_windows,
                  "num_classes": 0, "error": f"cannot load model.tflite: {error}"})
    sys.exit(1)
model_input = interpreter.get_input_details()[0]
model_output = interpreter.get_output_details()[0]
num_classes = int(model_output["shape"][-1])
if int(model_input["shape"][-1]) != window_samples:
    write_status({"state": "error", "windows_done": 0, "num_windows": num_windows,
                  "num_classes": num_classes,
                  "error": f"window_samples={window_samples} but the model takes {model_input['shape'][-1]}"})
    sys.exit(1)

windows = np.memmap(job_dir / "windows.f32", dtype="<f4", mode="r", shape=(num_windows, window_samples))
scores_path = job_dir / "scores.f32"
row_bytes = 4 * num_classes
kept = scores_path.stat().st_size // row_bytes if scores_path.exists() else 0
with open(scores_path, "ab") as handle:
    handle.truncate(kept * row_bytes)  # only whole rows count
with open(state / "eval_starts.log", "a") as log:
    log.write(f"{kept}\n")

delay_file, disconnect_file = state / "eval_delay_s", state / "disconnect_after"
delay = float(delay_file.read_text()) if delay_file.exists() else 0.0
# "K [HOST_SCORES]": unplug after K windows, once the host's copy (if named) holds a whole row,
# so the test does not depend on how fast a loaded machine polls.
disconnect_after, host_scores = None, None
if disconnect_file.exists():
    fields = disconnect_file.read_text().split()
    disconnect_after = int(fields[0])
    host_scores = Path(fields[1]) if len(fields) > 1 else None
# "K RELEASE": after K windows, stay running until the file RELEASE exists, so a test can act
# while the job is certainly still going, however slow or fast the machine is.
hold_file = state / "hold_after"
hold_after, release = None, None
if hold_file.exists():
    fields = hold_file.read_text().split()
    hold_after, release = int(fields[0]), Path(fields[1])
latencies = []
# As the app does: the delegate that ran, and that this host's runtime reports no node counts.
coverage = "cpu" if job["delegate"] in ("cpu", "xnnpack") else "possibly-partial"
status = {"state": "running", "windows_done": kept, "num_windows": num_windows,
          "num_classes": num_classes, "mean_latency_ms": "0", "delegate": job["delegate"],
          "latency_coverage": coverage}
write_status(status)
with open(scores_path, "ab") as handle:
    for index in range(kept, num_windows):
        interpreter.set_tensor(model_input["index"],
                               np.asarray(windows[index], dtype=np.float32).reshape(model_input["shape"]))
        started = time.perf_counter()
        interpreter.invoke()
        latencies.append((time.perf_counter() - started) * 1000.0)
        row = interpreter.get_tensor(model_output["index"]).reshape(num_classes)
        handle.write(np.asarray(row, dtype="<f4").tobytes())
        handle.flush()
        status.update(windows_done=index + 1, mean_latency_ms=f"{np.mean(latencies):.4f}")
        if (index + 1) % 5 == 0:
            write_status(status)
        if hold_after is not None and index + 1 == hold_after:
            write_status(status)
            deadline = time.monotonic() + 600  # only a guard against a test that died
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        if disconnect_after is not None and index + 1 >= disconnect_after:
            write_status(status)
            deadline = time.monotonic() + 60
            while host_scores is not None and time.monotonic() < deadline and (
                    not host_scores.exists() or host_scores.stat().st_size < row_bytes):
                time.sleep(0.05)
            os.kill(int((state / "adbd.pid").read_text()), signal.SIGKILL)
            sys.exit(0)
        time.sleep(delay)
status["state"] = "done"
write_status(status)
