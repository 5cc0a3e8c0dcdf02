#!/usr/bin/env bash
# End-to-end test of the Python iris example, in a fresh ZORCH_HOME:
#   run 1: every step completed, test accuracy > 0.9
#   run 2: every step cached, the same accuracy
#   run 3 (--C 0.05): load, split, scale cached; train and evaluate again
#   run 4 (--test-fraction 2): exits 1, the step's Python traceback shown
#   then one step run again as a remote flavor would: `python3 -m zorch`
#   with the deployment's command, and the zorch CLI lists the runs.
# Usage: test-iris.sh PYTHON EXAMPLE ZORCH_CLI
set -euo pipefail

py=${1:?usage: test-iris.sh PYTHON EXAMPLE ZORCH_CLI}
example=${2:?usage: test-iris.sh PYTHON EXAMPLE ZORCH_CLI}
cli=${3:?usage: test-iris.sh PYTHON EXAMPLE ZORCH_CLI}
data=/usr/lib/python3/dist-packages/sklearn/datasets/data/iris.csv
if [[ ! -r $data ]] || ! "$py" -c 'import sklearn, numpy' 2>/dev/null; then
  if [[ ${CI:-} == true ]]; then
    echo "FAIL: python3-sklearn (iris data, numpy, scikit-learn) is missing"
    exit 1
  fi
  echo "SKIP: python3-sklearn is missing"
  exit 77
fi

# shellcheck source=examples/test-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../test-lib.sh"
example_home iris-py-test
statuses() { awk '$1 ~ /^(load|split|scale|train|evaluate)$/ { printf "%s %s ", $1, $2 }' "$1"; }

for run in 1 2; do
  out=$home/run$run.out
  rc=0
  "$py" "$example" >"$out" 2>&1 || rc=$?
  echo "---- run $run (exit $rc)"
  cat "$out"
  check "run $run exits 0" test "$rc" -eq 0
  want=completed
  [[ $run == 2 ]] && want=cached
  check "run $run: five steps, all $want" \
    test "$(statuses "$out")" = "load $want split $want scale $want train $want evaluate $want "
  check_accuracy "run $run" "$out"
done
check_same_accuracy "$home/run1.out" "$home/run2.out"

out=$home/run3.out
rc=0
"$py" "$example" --C 0.05 >"$out" 2>&1 || rc=$?
echo "---- run 3, --C 0.05 (exit $rc)"
cat "$out"
check "run 3 exits 0" test "$rc" -eq 0
check "run 3: only train and evaluate run again" \
  test "$(statuses "$out")" = "load cached split cached scale cached train completed evaluate completed "

out=$home/run4.out
rc=0
"$py" "$example" --test-fraction 2 >"$out" 2>&1 || rc=$?
echo "---- run 4, --test-fraction 2 (exit $rc)"
cat "$out"
check "run 4 exits 1" test "$rc" -eq 1
check "run 4: split failed, downstream skipped" \
  test "$(statuses "$out")" = "load cached split failed scale skipped train skipped evaluate skipped "
check "run 4: the step log has the Python traceback" \
  grep -q 'ValueError: test_fraction must be between 0 and 1, not 2.0' "$out"
check "run 4: ... with the line that raised" grep -q 'raise ValueError(f"test_fraction' "$out"

# The first run's evaluate step again, in a new process, as a remote flavor runs it.
run1=$(sed -n 's/^run \([^ ]*\) on stack .*/\1/p' "$home/run1.out")
mapfile -t cmd < <("$py" - "$home/store/runs" "$run1" <<'PY'
import glob, json, os, sys
for path in glob.glob(os.path.join(sys.argv[1], "*", "deployment.json")):
    d = json.load(open(path))
    if d["run"]["name"] == sys.argv[2]:
        print("\n".join(a.replace("{step}", "evaluate") for a in d["entrypoint"]["function"]))
PY
)
echo "---- ${cmd[*]}"
rc=0
"${cmd[@]}" || rc=$?
check "the evaluate step runs again through python3 -m zorch" test "$rc" -eq 0
check "the zorch CLI lists the four Python runs" test "$("$cli" run list | grep -c '  iris  ')" -eq 4
"$cli" run show "$run1" | tee "$home/show.out"
check "the run record shows evaluate's second attempt" \
  grep -Eq '^evaluate +completed +2 ' "$home/show.out"
exit "$fail"
