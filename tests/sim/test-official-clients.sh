#!/usr/bin/env bash
# The Kubernetes simulator as the official clients see it: Debian's
# python3-kubernetes (check_k8s_python_client.py) and kubectl (watch,
# the /status subresource, strategic merge patch, apply, namespaces).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=../kubernetes/cluster.sh
. "$here/../kubernetes/cluster.sh"
cluster_need kubectl /usr/bin/python3
if ! /usr/bin/python3 -c 'import kubernetes' 2>/dev/null; then
  [[ ${CI:-} == true ]] && { echo "FAIL: python3-kubernetes is missing (scripts/setup installs it)"; exit 1; }
  echo "SKIP: python3-kubernetes is missing (scripts/setup installs it)"
  exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/zorch-k8s-clients.XXXXXX")
trap 'cluster_stop; rm -rf "$work"' EXIT
cd "$work" || exit 1
cluster_start "$work/cluster" --job-backoff 0.2
cluster_image simtest /bin/sh /usr/bin/sleep

fail=0
check() { if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }

echo "---- python3-kubernetes"
SIM_DIR=$SIM_DIR /usr/bin/python3 "$here/check_k8s_python_client.py" || fail=1

echo "---- kubectl"
# (kubectl create sends protobuf, which the simulator does not read: apply sends JSON)
printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: cli}\n' >"$work/ns.yaml"
kubectl apply -f "$work/ns.yaml" >/dev/null
timeout 20 kubectl -n cli get pods --watch-only -o name >"$work/watch" 2>"$work/watch.err" &
wpid=$!
sleep 1
cat >"$work/job.yaml" <<'YAML'
apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: main, image: "simtest:latest", command: ["/bin/sh", "-c", "exit 0"]}]
YAML
kubectl -n cli apply -f "$work/job.yaml" >/dev/null
check "kubectl wait for a Job's condition Complete" kubectl -n cli wait --for=condition=complete job/j --timeout=30s
kubectl -n cli label pod -l job-name=j seen=yes >/dev/null  # one more event, should the watch have started late
check "kubectl get --watch-only streams the job's pod" bash -c "sleep 1; grep -q '^pod/j-' '$work/watch'"
kill "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null
check "kubectl get --subresource=status" \
  test "$(kubectl -n cli get job j --subresource=status -o jsonpath='{.status.succeeded}')" = 1
check "kubectl patch --subresource=status" \
  kubectl -n cli patch job j --subresource=status --type=merge -p '{"status":{"ready":2}}'
check "  ... the status is changed" test "$(kubectl -n cli get job j -o jsonpath='{.status.ready}')" = 2
check "kubectl label (strategic merge patch)" kubectl -n cli label job j stage=done
check "  ... the label is there" test "$(kubectl -n cli get job j -o jsonpath='{.metadata.labels.stage}')" = 'done'
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: "1"}\n' >"$work/cm.yaml"
kubectl -n cli apply -f "$work/cm.yaml" >/dev/null
printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {b: "2"}\n' >"$work/cm.yaml"
check "kubectl apply of a changed ConfigMap" kubectl -n cli apply -f "$work/cm.yaml"
check "  ... the three-way merge dropped a and added b" \
  test "$(kubectl -n cli get configmap settings -o jsonpath='{.data}')" = '{"b":"2"}'
check "kubectl delete namespace (waits until it is gone)" kubectl delete namespace cli --timeout=60s
check "  ... it is gone" bash -c "! kubectl get namespace cli 2>/dev/null"

echo "---- simulator log (tail)"; tail -5 "$work/cluster/sim.log"
exit "$fail"
