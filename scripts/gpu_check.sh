#!/usr/bin/env bash
# Proves the GPU path in one short run (under 8 minutes on one GPU): installs the [gpu] extra,
# trains `lean` on the demo data with mixed precision (windows/s and peak GPU memory), checks
# that its losses are finite and that its eval mAP is within 0.02 of a float32 run of the same
# seed, exports it to int8, and times the training step on the GPU against the input pipeline.
#
# Usage: bash scripts/gpu_check.sh [--dry-run] [OUT_DIR]      (default OUT_DIR: gpu_check/)
#   --dry-run  the same steps on the CPU with tiny settings, installing nothing (CI runs it):
#              the "mixed" run is float32 there, since mixed precision applies on a GPU only.
# Exit status 0: every check passed; 1: a check failed (the line above says which).
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
if [ "${1:-}" = "--dry-run" ]; then DRY_RUN=1; shift; fi
OUT=${1:-gpu_check}
MAP_TOLERANCE=0.02
# PY: the Python of the environment to check (default: the project's .venv, created if absent).
if [ -z "${PY:-}" ]; then
    [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
    PY=.venv/bin/python
fi
export PATH="$(cd "$(dirname "$PY")" && pwd):$PATH"
mkdir -p "$OUT"
fail() { echo "gpu_check: FAILED: $*" >&2; exit 1; }
step() { echo "== $1 ($SECONDS s so far)"; }

if [ "$DRY_RUN" = 1 ]; then
    export CUDA_VISIBLE_DEVICES=""
    step "1/6 install: skipped (--dry-run); a GPU run installs: pip install -e '.[gpu]'"
    "$PY" -c "import importlib.metadata as m, sys; sys.exit(not any('extra == \"gpu\"' in r \
        for r in m.requires('lean-audio') or []))" || fail "pyproject.toml has no [gpu] extra"
    # Tiny: a small LEAN, a few windows per epoch, few calibration windows; a one-epoch toy
    # cannot hold the export's default 0.01 mAP gate.
    MODEL=(--model lean --param lstm_units=8 --param lstm_layers=1 --param projection_units=16
           --param attention_units=8)
    TRAIN=(--epochs 2 --batch-size 16 --max-windows-per-epoch 64)
    EXPORT=(--calibration-windows 16 --held-out-windows 16 --max-drop 1)
    BENCH=(--model yamnet --cores 1 --repeats 1 --batch-size 16)
    EXPECT_POLICY=float32
else
    step "1/6 install the [gpu] extra (TensorFlow with its CUDA libraries)"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -e ".[gpu]"
    "$PY" -c "import tensorflow as tf, sys; gpus = tf.config.list_physical_devices('GPU'); \
        print('GPUs:', gpus); sys.exit(not gpus)" || fail "TensorFlow sees no GPU"
    # The paper's LEAN; the trunk fine-tunes, as the quickstart does without yamnet.h5.
    MODEL=(--model lean --finetune-yamnet)
    TRAIN=(--epochs 2 --batch-size 32 --lr 1e-3)
    # A two-epoch model scored on 52 val clips: the drop's bootstrap spread is about 0.013.
    EXPORT=(--max-drop 0.05)
    BENCH=(--model lean --cores "1,$(nproc)" --repeats 1 --train-on gpu)
    EXPECT_POLICY=mixed_float16
fi

step "2/6 demo dataset"
[ -f "$OUT/data/demo.json" ] || lean data demo "$OUT/data" --seed 0

# Trains one run in a Python process that then reports the epoch rate and the GPU's peak memory.
train() {  # NAME [lean train flags...]
    local name=$1; shift
    rm -rf "$OUT/$name"
    "$PY" - "$OUT/$name" train --data "$OUT/data" --out "$OUT/$name" --seed 0 --no-progress \
        --cache-dir "$OUT/cache" "${MODEL[@]}" "${TRAIN[@]}" "$@" <<'EOF'
import csv, json, math, sys
from pathlib import Path

from lean.cli import main

run = Path(sys.argv[1])
if main(sys.argv[2:]) != 0:
    sys.exit("gpu_check: FAILED: lean train " + " ".join(sys.argv[2:]))
import tensorflow as tf

rows = list(csv.DictReader(open(run / "history.csv")))
windows = json.loads((run / "data_summary.json").read_text())["splits"]["train"]["windows"]
options = json.loads((run / "checkpoints" / "state.json").read_text())["options"]
windows = min(windows, options["max_windows_per_epoch"] or windows)
losses = [float(row[key]) for row in rows for key in ("loss", "val_loss")]
last = rows[-1]
gpus = tf.config.list_physical_devices("GPU")
peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] if gpus else None
report = {"run": str(run), "losses_finite": all(map(math.isfinite, losses)),
          "epoch": int(last["epoch"]), "epoch_seconds": float(last["seconds"]),
          "train_windows_per_epoch": windows,
          "windows_per_second": round(windows / float(last["seconds"]), 1),
          "gpu_peak_memory_mib": None if peak is None else round(peak / 2**20, 1)}
(run / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
memory = "no GPU" if peak is None else f"{report['gpu_peak_memory_mib']} MiB peak GPU memory"
print(f"{run.name}: epoch {report['epoch']} (after the first, which traces the graphs): "
      f"{windows} windows in {report['epoch_seconds']} s with validation, "
      f"{report['windows_per_second']} windows/s; {memory}")
EOF
}

step "3/6 train with mixed precision, then float32, same seed"
train mixed 2>&1 | tee "$OUT/mixed.log"
train float32 --no-mixed-precision 2>&1 | tee "$OUT/float32.log"
grep -q "^lean train: training lean .*, $EXPECT_POLICY$" "$OUT/mixed.log" \
    || fail "the mixed-precision run did not train with $EXPECT_POLICY"
grep -q "^lean train: training lean .*, float32$" "$OUT/float32.log" \
    || fail "the --no-mixed-precision run did not train in float32"
"$PY" - "$OUT" "$EXPECT_POLICY" <<'EOF' || exit 1
import json, sys
from pathlib import Path
out, policy = Path(sys.argv[1]), sys.argv[2]
for name in ("mixed", "float32"):
    report = json.loads((out / name / "gpu_check.json").read_text())
    if not report["losses_finite"]:
        sys.exit(f"gpu_check: FAILED: {name}: a loss in history.csv is not finite")
print(f"losses finite in both runs; the mixed run trained with {policy}")
EOF

step "4/6 eval mAP: mixed precision against float32"
lean eval "$OUT/mixed" --data "$OUT/data" --split eval --json "$OUT/eval_mixed.json" --no-progress
lean eval "$OUT/float32" --data "$OUT/data" --split eval --json "$OUT/eval_float32.json" --no-progress
"$PY" - "$OUT" "$MAP_TOLERANCE" <<'EOF' || exit 1
import json, sys
from pathlib import Path
out, tolerance = Path(sys.argv[1]), float(sys.argv[2])
mixed, full = (json.loads((out / f"eval_{name}.json").read_text())["mAP"]
               for name in ("mixed", "float32"))
verdict = "within" if abs(mixed - full) <= tolerance else "NOT within"
print(f"eval mAP: mixed {mixed:.4f}, float32 {full:.4f}, difference {mixed - full:+.4f}, "
      f"{verdict} {tolerance}")
sys.exit(0 if verdict == "within" else "gpu_check: FAILED: mAP of the mixed-precision run")
EOF

step "5/6 int8 export of the mixed-precision run"
lean-export "$OUT/mixed" -o "$OUT/lean_int8.tflite" --int8 --quiet "${EXPORT[@]}"
echo "wrote $OUT/lean_int8.tflite ($(stat -c %s "$OUT/lean_int8.tflite") bytes) and its report"

step "6/6 training step rate against the input pipeline"
"$PY" benchmarks/suite/input_pipeline.py "${BENCH[@]}" --data "$OUT/data" \
    --json "$OUT/input_pipeline.json"
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
result = json.loads((Path(sys.argv[1]) / "input_pipeline.json").read_text())
cached = result["variants"]["cached"]
print(f"training step {result['training_windows_per_second']:,.0f} windows/s on "
      f"{result['train_on']}; the cached pipeline needs {cached['cores_for_gpu_rate']} core(s) "
      f"for {result['gpu_rate']:,.0f} windows/s")
EOF
echo "gpu_check: all checks passed in $SECONDS s; results in $OUT/"
