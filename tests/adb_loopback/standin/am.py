"""STAND-IN `am` for the loopback adb test: starts the stand-in evaluation job in the background.

Only `am start -W -n dev.lean.demo/.EvalActivity --es job JOB` is understood, which is the entry
point benchmarks/DEVICE_EVAL.md defines; anything else fails the way am does for a missing app.
"""

import os
import subprocess
import sys
from pathlib import Path

arguments = sys.argv[1:]
component = arguments[arguments.index("-n") + 1] if "-n" in arguments else ""
job = arguments[arguments.index("job") + 1] if "job" in arguments else ""
if arguments[:1] != ["start"] or component != "dev.lean.demo/.EvalActivity" or not job:
    print(f"Starting: Intent {{ cmp={component} }}")
    print(f"Error type 3\nError: Activity class {{{component}}} does not exist.")
    sys.exit(1)

job_dir = Path(os.environ["LEAN_STANDIN_EVAL_ROOT"]) / job
state = Path(os.environ["LEAN_STANDIN_STATE"])
process = subprocess.Popen(
    [sys.executable, str(Path(__file__).with_name("eval_job.py")), str(job_dir)],
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    stderr=open(state / "eval_job.stderr", "a"), start_new_session=True)
(state / "eval_job.pid").write_text(f"{process.pid}\n")
print("Starting: Intent { cmp=dev.lean.demo/.EvalActivity (has extras) }")
print("Status: ok\nLaunchState: COLD\nActivity: dev.lean.demo/.EvalActivity\nTotalTime: 40\n"
      "WaitTime: 42\nComplete")
