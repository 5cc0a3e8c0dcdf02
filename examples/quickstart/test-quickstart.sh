#!/usr/bin/env bash
# The README's program runs, in a fresh ZORCH_HOME, to the output it promises.
# Usage: test-quickstart.sh PATH-TO-zorch-example-quickstart
set -euo pipefail
exe=${1:?usage: test-quickstart.sh PATH-TO-zorch-example-quickstart}
home=$(mktemp -d "${TMPDIR:-/tmp}/zorch-quickstart-test.XXXXXX")
trap 'rm -rf "$home"' EXIT
export ZORCH_HOME=$home

out=$("$exe")
printf '%s\n' "$out"
expected=$'greet  completed\nshout  completed\nHELLO, WORLD'
[[ $out == "$expected" ]] || { echo "FAIL: expected:"; printf '%s\n' "$expected"; exit 1; }
out=$("$exe")
printf '%s\n' "$out"
expected=$'greet  cached\nshout  cached\nHELLO, WORLD'
[[ $out == "$expected" ]] || { echo "FAIL: second run, expected:"; printf '%s\n' "$expected"; exit 1; }
echo "ok"
