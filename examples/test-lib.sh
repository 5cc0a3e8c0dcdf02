# Shared by the examples' end-to-end tests (sourced, not run).
#   example_home NAME   a fresh ZORCH_HOME in $home, removed on exit
#   check DESCRIPTION COMMAND...   prints ok:/FAIL:, sets fail=1 on failure
#   accuracy FILE       the "test accuracy: X" value an iris example printed
#   check_accuracy LABEL FILE   check that it is above 0.9
#   check_same_accuracy FILE1 FILE2   check that two runs printed the same one
# shellcheck shell=bash

fail=0
home=

example_home() {
  home=$(mktemp -d "${TMPDIR:-/tmp}/zorch-$1.XXXXXX")
  trap 'rm -rf "$home"' EXIT
  export ZORCH_HOME=$home
  unset XDG_DATA_HOME
}

check() { # check DESCRIPTION COMMAND...
  if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi
}

accuracy() { sed -n 's/^test accuracy: \([0-9.]*\).*/\1/p' "$1"; }

check_accuracy() {
  local acc
  acc=$(accuracy "$2")
  check "$1: test accuracy '$acc' > 0.9" awk -v a="$acc" 'BEGIN { exit !(a != "" && a > 0.9) }'
}

check_same_accuracy() {
  check "both runs report the same accuracy" test "$(accuracy "$1")" = "$(accuracy "$2")"
}
