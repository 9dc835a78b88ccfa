"""STAND-IN benchmark_model for the loopback adb test: prints recorded real output, measures nothing.

It records how it was called (arguments, CPU affinity) for the test to check, prints the real
Android log from tests/fixtures/benchmark_model with this run's graph and thread count, prints the
real failure log for a model whose name contains "broken", "unplugs" the first adbd (kills it)
for a model whose name contains "unplug" when run through that adbd, and warms the stand-in battery up so
the harness has to wait for it to cool down.
"""

import os
import sys
from pathlib import Path

state = Path(os.environ["LEAN_STANDIN_STATE"])
fixtures = Path(os.environ["LEAN_STANDIN_FIXTURES"])
flags = dict(argument[2:].split("=", 1) for argument in sys.argv[1:] if argument.startswith("--"))
affinity = next((line.split(":", 1)[1].strip() for line in Path("/proc/self/status").read_text().splitlines()
                 if line.startswith("Cpus_allowed_list")), "")
with open(state / "benchmark_calls.log", "a") as log:
    log.write(f"{' '.join(sys.argv[1:])} affinity={affinity}\n")



def ancestors(pid):
    """Process ids above `pid`, nearest first."""
    chain = []
    while pid > 1:
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        chain.append(pid)
    return chain


graph = flags.get("graph", "")
adbd_pid_file = state / "adbd.pid"
if "unplug" in Path(graph).name and adbd_pid_file.exists():
    # The cable is pulled mid-run: kill the first adbd if it is the one running us.
    adbd_pid = int(adbd_pid_file.read_text())
    if adbd_pid in ancestors(os.getpid()):
        os.kill(adbd_pid, 9)
        sys.exit(1)
if "broken" in Path(graph).name:
    sys.stdout.write((fixtures / "benchmark_model_failure_real.txt").read_text())
    sys.exit(1)

temperature_file = state / "battery_temperature"
temperature = int(temperature_file.read_text()) if temperature_file.exists() else 305
temperature_file.write_text(f"{temperature + 60}\n")

lines = (fixtures / "benchmark_model_android_aarch64_real.txt").read_text().splitlines()
for line in lines:
    if line.startswith("INFO: Graph: ["):
        line = f"INFO: Graph: [{graph}]"
    elif line.startswith("INFO: Loaded model "):
        line = f"INFO: Loaded model {graph}"
    elif line.startswith("INFO: Min warmup runs:"):
        print(line)
        line = f"INFO: Num threads: [{flags.get('num_threads', '1')}]"
    print(line)

if flags.get("enable_op_profiling") == "true":
    # The real layout (tensorflow/core/util/stats_calculator.cc): tab-separated, right-aligned.
    def field(text, width):
        return "\t" + str(text).rjust(width)

    print("Operator-wise Profiling Info for Regular Benchmark Runs:")
    print("============================== Run Order ==============================")
    print(field("[node type]", 24) + field("[first]", 9) + field("[avg ms]", 9) + field("[%]", 8)
          + field("[cdf%]", 8) + field("[mem KB]", 10) + field("[times called]", 9) + "\t[Name]")
    rows = [("TfLiteXNNPackDelegate", 50.112, 49.871, 96.105, 96.105, 1, "[XNNPACK]:0"),
            ("RESHAPE", 2.031, 2.023, 3.895, 100.0, 1, "[model/reshape]:1")]
    for node_type, first, average, percent, cdf, called, name in rows:
        print(field(node_type, 24) + field(f"{first:.3f}", 9) + field(f"{average:.3f}", 9)
              + field(f"{percent:.3f}%", 8) + field(f"{cdf:.3f}%", 8) + field("0.000", 10)
              + field(called, 9) + f"\t{name}")
    print("")
    print("============================== Summary by node type ==============================")
    print(field("[Node type]", 24) + field("[count]", 9) + field("[avg ms]", 10) + field("[avg %]", 11)
          + field("[cdf %]", 11) + field("[mem KB]", 10) + field("[times called]", 10))
    for node_type, first, average, percent, cdf, called, name in rows:
        print(field(node_type, 24) + field(1, 9) + field(f"{average:.3f}", 10)
              + field(f"{percent:.3f}%", 11) + field(f"{cdf:.3f}%", 11) + field("0.000", 10)
              + field(called, 10))
    print("")
    print("Timings (microseconds): count=1000 first=52143 curr=51894 min=51022 max=60011 "
          "avg=51894.2 std=812")
    print("Memory (bytes): count=0")
    print("2 nodes observed")
