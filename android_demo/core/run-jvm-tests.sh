#!/usr/bin/env bash
# Compiles the core module (main + test sources) with javac and runs its JUnit 4 tests, without
# Gradle or Maven: CI has Debian's JDK and junit4 but no network access to Maven repositories.
#
# Usage: run-jvm-tests.sh [GOLDEN_DIR]
#   GOLDEN_DIR: files written by tests/android_golden.py; when given, the golden parity tests
#   must find them (they fail instead of being skipped).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
junit_jar=/usr/share/java/junit4.jar
hamcrest_jar=/usr/share/java/hamcrest-core.jar

if [[ ! -f "$junit_jar" || ! -f "$hamcrest_jar" ]]; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        apt-get install -y -q junit4 >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q junit4 >/dev/null; }
    else
        echo "junit4 is missing: install it with 'apt-get install junit4' (Debian)" >&2
        exit 3
    fi
fi
command -v javac >/dev/null || { echo "javac is missing: install openjdk-17-jdk-headless" >&2; exit 3; }

build="$(mktemp -d "${TMPDIR:-/tmp}/lean-core-jvm.XXXXXX")"
trap 'rm -rf "$build"' EXIT
classpath="$junit_jar:$hamcrest_jar"

# --release 8: the same language level and API surface the Android build compiles against.
javac --release 8 -Xlint:all -Werror -encoding UTF-8 -d "$build/main" \
    $(find "$here/src/main/java" -name '*.java')
javac --release 8 -Xlint:all -Werror -encoding UTF-8 -cp "$build/main:$classpath" \
    -d "$build/test" $(find "$here/src/test/java" -name '*.java')

tests=$(cd "$build/test" && find . -name '*Test.class' ! -name '*$*' | sed 's|^\./||; s|\.class$||; s|/|.|g' | sort)
properties=()
if [[ $# -ge 1 ]]; then
    properties+=("-Dlean.golden.dir=$(cd "$1" && pwd)" "-Dlean.golden.required=true")
fi
java "${properties[@]}" -cp "$build/main:$build/test:$classpath" org.junit.runner.JUnitCore $tests
