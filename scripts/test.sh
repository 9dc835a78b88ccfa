#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: installs system and Python dependencies first.
# Usage: bash scripts/test.sh [--repeat N] [pytest args...]
#   --repeat N  runs pytest N times in a row (a flakiness check), stops at the first failing
#               round and prints one summary line per round.
set -euo pipefail
cd "$(dirname "$0")/.."

repeat=1
pytest_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --repeat) repeat="${2:-}"; shift $(( $# > 1 ? 2 : 1 )) ;;
        --repeat=*) repeat="${1#--repeat=}"; shift ;;
        *) pytest_args+=("$1"); shift ;;
    esac
done
if ! [[ "$repeat" =~ ^[1-9][0-9]*$ ]]; then
    echo "test.sh: --repeat needs a positive count, not '${repeat}'" >&2
    exit 2
fi

# System packages: JDK + JUnit 4 for the Android demo's JVM module, adb for the harness tests.
# (The loopback adbd itself is fetched by its test from Debian bookworm-backports.)
need_apt=()
command -v javac >/dev/null || need_apt+=(openjdk-17-jdk-headless)
[ -f /usr/share/java/junit4.jar ] || need_apt+=(junit4)
command -v adb >/dev/null || need_apt+=(adb)
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v ip >/dev/null || need_apt+=(iproute2)
# Real recordings (CC-BY/CC-BY-SA/GPL) that `lean data demo` mixes into its dataset.
[ -d /usr/share/sounds/freedesktop ] || need_apt+=(sound-theme-freedesktop)
# The recorded demo (`lean data demo --classes N`): GM instruments, speech, sound icons.
command -v fluidsynth >/dev/null || need_apt+=(fluidsynth)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need_apt+=(fluid-soundfont-gm)
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
[ -d /usr/share/sounds/sound-icons ] || need_apt+=(sound-icons)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
    else
        echo "note: not root, cannot install ${need_apt[*]}; the tests needing them will skip" >&2
    fi
fi

# Python environment: a venv in .venv with the project (editable) and its test extras.
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"

pytest=(.venv/bin/python -m pytest -q -p no:cacheprovider ${pytest_args[@]+"${pytest_args[@]}"})
if [ "$repeat" = 1 ]; then
    exec "${pytest[@]}"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
summaries=()
for round in $(seq 1 "$repeat"); do
    started=$SECONDS
    status=0
    "${pytest[@]}" 2>&1 | tee "$log" || status=${PIPESTATUS[0]}
    # pytest's own last line, e.g. "226 passed, 2 deselected in 181.41s (0:03:01)".
    summary="round ${round}/${repeat}: exit ${status} in $((SECONDS - started)) s: $(tail -n 1 "$log")"
    summaries+=("$summary")
    echo "test.sh: ${summary}" >&2
    if [ "$status" != 0 ]; then
        break
    fi
done
printf 'test.sh: %s\n' "${summaries[@]}" >&2
exit "$status"
