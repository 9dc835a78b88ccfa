#!/usr/bin/env bash
# The quickstart, end to end on a CPU: demo data -> train LEAN and the YAMNet-only baseline ->
# evaluate -> export int8 TFLite with metadata -> host benchmark of LEAN vs YAMNet-only.
# Usage: bash scripts/quickstart.sh [OUT_DIR]   (default: quickstart/)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-quickstart}
EPOCHS=${EPOCHS:-6}

# Real recordings that `lean data demo` uses for five of its classes (Debian package).
if [ ! -d /usr/share/sounds/freedesktop ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sound-theme-freedesktop
    else
        echo "note: sound-theme-freedesktop is not installed; the demo data will be all synthetic" >&2
    fi
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p "$OUT"

echo "== 1/6 demo dataset"
lean data demo "$OUT/data" --seed 0

# With the official yamnet.h5 (YAMNET_WEIGHTS=path) the trunk stays frozen, as in the paper.
# Without it (nothing can be downloaded here) a frozen random trunk is useless, so the quickstart
# fine-tunes the trunk too.
if [ -n "${YAMNET_WEIGHTS:-}" ]; then
    trunk=(--yamnet-weights "$YAMNET_WEIGHTS")
else
    trunk=(--finetune-yamnet)
fi
echo "== 2/6 train LEAN and the YAMNet-only baseline ($EPOCHS epochs each, CPU, ${trunk[*]})"
lean train --data "$OUT/data" --out "$OUT/run_lean" --model lean --epochs "$EPOCHS" --batch-size 32 --lr 1e-3 "${trunk[@]}"
lean train --data "$OUT/data" --out "$OUT/run_yamnet" --model yamnet --epochs "$EPOCHS" --batch-size 32 --lr 1e-3 "${trunk[@]}"

echo "== 3/6 evaluate on the eval split"
lean eval "$OUT/run_yamnet" --data "$OUT/data" --split eval --json "$OUT/eval_yamnet.json"
lean eval "$OUT/run_lean" --data "$OUT/data" --split eval --json "$OUT/eval_lean.json" --plots "$OUT/plots"
lean compare "$OUT/eval_yamnet.json" "$OUT/eval_lean.json"

echo "== 4/6 export: LEAN int8 and YAMNet-only float32, each with metadata and a report"
lean-export "$OUT/run_lean" -o "$OUT/lean_int8.tflite" --int8
lean-export "$OUT/run_yamnet" -o "$OUT/yamnet_float32.tflite" --float32

echo "== 5/6 tag a clip with the exported model"
first_clip=$(ls "$OUT"/data/eval_audio/*.wav | head -n 1)
lean tag "$OUT/lean_int8.tflite" "$first_clip" --top-k 3

echo "== 6/6 host benchmark: YAMNet-only float32 vs LEAN int8"
lean-bench host "$OUT/yamnet_float32.tflite" "$OUT/lean_int8.tflite" --threads 1,2 \
    --data "$OUT/data" --split eval --json "$OUT/bench_host.json" --plot "$OUT/bench_host.png"
echo "quickstart done: results in $OUT/"
