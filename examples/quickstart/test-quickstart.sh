#!/usr/bin/env bash
# The README's program is quickstart.c, and it runs, in a fresh ZORCH_HOME, to
# the output it promises: first run completed, second run cached.
# Usage: test-quickstart.sh PATH-TO-zorch-example-quickstart SOURCE_ROOT
set -euo pipefail
exe=${1:?usage: test-quickstart.sh PATH-TO-zorch-example-quickstart SOURCE_ROOT}
src=${2:?usage: test-quickstart.sh PATH-TO-zorch-example-quickstart SOURCE_ROOT}

# README.md's first C block is quickstart.c without its header comment.
if ! diff -u <(awk '/^```c$/ { f = 1; next } f && /^```$/ { exit } f' "$src/README.md") \
  <(sed '1,/\*\//d' "$src/examples/quickstart/quickstart.c"); then
  echo "FAIL: README.md's C example and examples/quickstart/quickstart.c differ"
  exit 1
fi

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
