#!/usr/bin/env bash
# End-to-end test of the iris example: run it twice in a fresh ZORCH_HOME.
#   run 1: exits 0, every step completed, test accuracy > 0.9
#   run 2: exits 0, every step cached, the same accuracy
# Usage: test-iris.sh PATH-TO-zorch-example-iris
set -euo pipefail

exe=${1:?usage: test-iris.sh PATH-TO-zorch-example-iris}
data=/usr/lib/python3/dist-packages/sklearn/datasets/data/iris.csv
if [[ ! -r $data ]]; then
  echo "SKIP: $data is missing (install python3-sklearn)"
  exit 77
fi

# shellcheck source=examples/test-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../test-lib.sh"
example_home iris-test

# Lines "  <step> <status> ..." of the step table, for steps load..evaluate.
statuses() { awk '$1 ~ /^(load|split|train|evaluate)$/ { print $1, $2 }' "$1"; }

for run in 1 2; do
  out=$home/run$run.out
  rc=0
  "$exe" >"$out" 2>&1 || rc=$?
  echo "---- run $run (exit $rc)"
  cat "$out"
  check "run $run exits 0" test "$rc" -eq 0
  want=completed
  [[ $run == 2 ]] && want=cached
  check "run $run: four steps, all $want" \
    test "$(statuses "$out" | awk -v w="$want" '$2 == w' | wc -l)" -eq 4
  check_accuracy "run $run" "$out"
done
check_same_accuracy "$home/run1.out" "$home/run2.out"

# A changed param re-runs exactly the steps that read it and those downstream.
out=$home/run3.out
rc=0
"$exe" --param epochs=200 >"$out" 2>&1 || rc=$?
echo "---- run 3, --param epochs=200 (exit $rc)"
cat "$out"
check "run 3 exits 0" test "$rc" -eq 0
check "run 3: load and split cached, train and evaluate completed" \
  test "$(statuses "$out" | tr '\n' ' ')" = "load cached split cached train completed evaluate completed "

# The data file's content, not its path, decides what runs: a copy of the
# file re-runs only `load` (same output, so the rest is cached); changed
# values in every row re-run everything downstream.
cp "$data" "$home/iris.csv"
rc=0
"$exe" --data "$home/iris.csv" >"$home/run5.out" 2>&1 || rc=$?
echo "---- run 5, --data <a copy of the file> (exit $rc)"
cat "$home/run5.out"
check "run 5 exits 0" test "$rc" -eq 0
check "run 5: load completed, the rest cached" \
  test "$(statuses "$home/run5.out" | tr '\n' ' ')" = "load completed split cached train cached evaluate cached "
awk -F, -v OFS=, 'NR > 1 { $1 += 0.01 } 1' "$data" >"$home/iris.csv"
rc=0
"$exe" --data "$home/iris.csv" >"$home/run6.out" 2>&1 || rc=$?
echo "---- run 6, the copy with every sepal length + 0.01 (exit $rc)"
cat "$home/run6.out"
check "run 6 exits 0" test "$rc" -eq 0
check "run 6: four steps, all completed" \
  test "$(statuses "$home/run6.out" | awk '$2 == "completed"' | wc -l)" -eq 4

# A bad param fails the run with a non-zero exit.
rc=0
"$exe" --param test_fraction=2 >"$home/run4.out" 2>&1 || rc=$?
echo "---- run 4, --param test_fraction=2 (exit $rc)"
cat "$home/run4.out"
check "run 4 (test_fraction=2) exits non-zero" test "$rc" -ne 0

exit "$fail"
