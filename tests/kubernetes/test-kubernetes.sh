#!/usr/bin/env bash
# End-to-end: the kubernetes flavor against the Kubernetes API simulator,
# whose pods run for real in Podman.
#   - the iris example in client mode and in orchestrator mode (artifacts
#     flow through the store mounted by hostPath); kubectl lists and
#     describes the run's pods with the same kubeconfig
#   - resources and pod settings in the pods' specs, step logs
#   - a failing step, retries, an OOM kill, a pod Pending forever, an image
#     that does not exist, max_parallelism, cancel (Ctrl-C deletes the pods)
#   - a cron schedule: CronJob created, its job template starts a new run,
#     listed, deleted
#   - a bad kubeconfig and a wrong token fail with clear errors
# Usage: test-kubernetes.sh ZORCH-CLI IRIS-EXAMPLE PLUGIN-DIR...
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cluster.sh"
cluster_need kubectl
zorch=$(realpath "${1:?usage: test-kubernetes.sh ZORCH-CLI IRIS-EXAMPLE PLUGIN-DIR...}")
iris=$(realpath "${2:?}")
shift 2
data=/usr/lib/python3/dist-packages/sklearn/datasets/data/iris.csv
if [[ ! -r $data ]]; then
  [[ ${CI:-} == true ]] && { echo "FAIL: $data is missing (python3-sklearn)"; exit 1; }
  echo "SKIP: $data is missing (python3-sklearn)"
  exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/zorch-k8s-test.XXXXXX")
trap 'cluster_stop; rm -rf "$work"' EXIT
cd "$work" || exit 1
cluster_start "$work/cluster" --node-cpu 2 --node-memory 3Gi --node-label disk=ssd --job-backoff 0.2
export ZORCH_HOME=$work/home ZORCH_COMMAND=$zorch ZORCH_PLUGIN_SYSTEM_PATH=
ZORCH_PLUGIN_PATH=$(for d in "$@"; do realpath "$d"; done | paste -sd:)
export ZORCH_PLUGIN_PATH
unset XDG_DATA_HOME

fail=0
check() { if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
contains() { grep -q -- "$2" "$1"; }
statuses() { awk '$1 ~ /^(load|split|train|evaluate)$/ { print $1, $2 }' "$1"; }
run_id_of() { sed -n 's/^run [^ ]* (\([0-9a-f]*\)) on stack.*/\1/p' "$1" | head -1; }
pods_of() { kubectl get pods -l "zorch.dev/run-id=$1" -o name | sort; }
pod_json() { kubectl get pods -l "zorch.dev/run-id=$1,zorch.dev/step=$2" -o json; }
jq_py() { /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# ---- the image: the iris program, zorch, the plugins, the data, a shell
# (built by the local_docker plugin's image builder)
t0=$(date +%s.%N)
"$zorch" image build zorch-k8s-test --program "$iris" --add "$data" --add /bin/sh --add /usr/bin/yes \
  --add /usr/bin/head --add /usr/bin/cat --add /usr/bin/sleep --add /usr/bin/touch --add /usr/bin/true >"$work/image.out" 2>&1
check "zorch image build (the pods' image)" test $? -eq 0
cat "$work/image.out"

register() { # register NAME CONFIG-JSON
  "$zorch" orchestrator register "$1" --flavor kubernetes --config "$2" --replace >/dev/null &&
    "$zorch" stack register "$1" -o "$1" --replace >/dev/null
}
base='"image":"zorch-k8s-test:latest","kubeconfig":"'$KUBECONFIG'"'
register kc "{$base,\"mode\":\"client\",\"pending_timeout\":60}"
register ko "{$base,\"mode\":\"orchestrator\"}"

# ---- 1. iris, client mode
rc=0
"$iris" --stack kc >"$work/c1.out" 2>&1 || rc=$?
cat "$work/c1.out"
check "client mode: iris exits 0" test $rc -eq 0
check "client mode: four steps completed" test "$(statuses "$work/c1.out" | awk '$2 == "completed"' | wc -l)" -eq 4
check "client mode: test accuracy > 0.9 (artifacts flowed from pod to pod)" \
  awk -v a="$(sed -n 's/^test accuracy: \([0-9.]*\).*/\1/p' "$work/c1.out")" 'BEGIN { exit !(a > 0.9) }'
rid=$(run_id_of "$work/c1.out")
check "client mode: one pod per step, labelled with the run id" test "$(pods_of "$rid" | wc -l)" -eq 4
kubectl get pods -l "zorch.dev/run-id=$rid" >"$work/kubectl-get.out" 2>&1
cat "$work/kubectl-get.out"
check "kubectl get pods (same kubeconfig) lists them as Completed" \
  test "$(grep -c Completed "$work/kubectl-get.out")" -eq 4
train_pod=$(kubectl get pods -l "zorch.dev/run-id=$rid,zorch.dev/step=train" -o name | head -1)
kubectl describe "$train_pod" >"$work/describe.out" 2>&1
check "kubectl describe pod shows the step, its image, command and events" \
  bash -c "grep -q 'zorch.dev/step-name: train' '$work/describe.out' && grep -q 'zorch-k8s-test:latest' '$work/describe.out' &&
           grep -q -- '--zorch-step' '$work/describe.out' && grep -q 'Started container main' '$work/describe.out'"
check "the store is mounted at its own path (hostPath)" \
  bash -c "grep -q 'Type:          HostPath' '$work/describe.out' && grep -q 'Path:          $ZORCH_HOME/store' '$work/describe.out'"

# ---- 2. iris, orchestrator mode (new params: train and evaluate run again)
rc=0
"$iris" --stack ko --param epochs=150 >"$work/o1.out" 2>&1 || rc=$?
cat "$work/o1.out"
check "orchestrator mode: iris exits 0" test $rc -eq 0
check "orchestrator mode: load, split cached; train, evaluate completed" \
  test "$(statuses "$work/o1.out" | tr '\n' ' ')" = "load cached split cached train completed evaluate completed "
rid2=$(run_id_of "$work/o1.out")
check "orchestrator mode: an orchestrator Job for the run" \
  test "$(kubectl get jobs -l "zorch.dev/run-id=$rid2,zorch.dev/role=orchestrator" -o name | wc -l)" -eq 1
check "orchestrator mode: the orchestrator pod created the step pods of train and evaluate" \
  test "$(kubectl get pods -l "zorch.dev/run-id=$rid2,zorch.dev/role=step" -o name | wc -l)" -eq 2
opod=$(kubectl get pods -l "zorch.dev/run-id=$rid2,zorch.dev/role=orchestrator" -o name | head -1)
kubectl get "$opod" -o json >"$work/opod.json"
check "orchestrator pod: zorch deployment run with in-cluster config" \
  bash -c "grep -q '\"deployment\"' '$work/opod.json' && grep -q 'incluster' '$work/opod.json' && grep -q '\"--config-env\"' '$work/opod.json'"
kubectl logs "$opod" >"$work/opod.log" 2>&1
check "orchestrator pod's log: the run completed" contains "$work/opod.log" "completed"
rc=0
"$iris" --stack ko --no-cache >"$work/o2.out" 2>&1 || rc=$?
check "orchestrator mode --no-cache: the four steps run again in the cluster" \
  test "$rc $(statuses "$work/o2.out" | awk '$2 == "completed"' | wc -l)" = "0 4"

# ---- 3. a command-step pipeline with resources and pod settings
mkdir -p "$work/data"
echo 41 >"$work/data/seed"
cat >"$work/spec.json" <<EOF
{"zorch_pipeline": 1, "name": "k8s-demo",
 "settings": {"resources": {"cpu": 0.5, "memory": "256MiB"},
   "flavor": {"kubernetes": {
     "node_selector": {"disk": "ssd"},
     "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
     "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms":
        [{"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}}},
     "service_account_name": "runner", "image_pull_secrets": ["regcred"],
     "labels": {"team": "ml"}, "annotations": {"owner": "alice"},
     "volumes": [{"name": "data", "hostPath": {"path": "$work/data"}}],
     "volume_mounts": [{"name": "data", "mountPath": "/data"}]}}},
 "steps": [
   {"name": "make", "command": ["sh", "-c", "echo making; read n < /data/seed; echo \$((n + 1)) > \$ZORCH_OUTPUT_N"],
    "outputs": ["n"]},
   {"name": "use", "command": ["sh", "-c", "echo \"got \$(cat \$ZORCH_INPUT_N)\""], "inputs": {"n": "make.n"}}
 ]}
EOF
rc=0
"$zorch" pipeline run "$work/spec.json" --stack kc >"$work/s1.out" 2>&1 || rc=$?
cat "$work/s1.out"
check "command steps with pod settings: completed" test $rc -eq 0
rid3=$(sed -n 's/^Run: .* (id \([0-9a-f]*\))$/\1/p' "$work/s1.out")
"$zorch" run logs "$rid3" use >"$work/s1.log" 2>&1
check "the pod's output is in the step's log (zorch run logs)" contains "$work/s1.log" "got 42"
pod_json "$rid3" make >"$work/make.json"
spec() { jq_py "$1" <"$work/make.json"; }
check "resources: requests and limits cpu 500m, memory 256Mi" \
  test "$(spec "[i['spec']['containers'][0]['resources'] for i in d['items']][0]")" = \
  "{'limits': {'cpu': '500m', 'memory': '256Mi'}, 'requests': {'cpu': '500m', 'memory': '256Mi'}}"
check "node selector" test "$(spec "d['items'][0]['spec']['nodeSelector']")" = "{'disk': 'ssd'}"
check "tolerations" test "$(spec "d['items'][0]['spec']['tolerations'][0]['key']")" = dedicated
check "affinity" test "$(spec "d['items'][0]['spec']['affinity']['nodeAffinity']['requiredDuringSchedulingIgnoredDuringExecution']['nodeSelectorTerms'][0]['matchExpressions'][0]['key']")" = kubernetes.io/os
check "service account" test "$(spec "d['items'][0]['spec']['serviceAccountName']")" = runner
check "image pull secrets" test "$(spec "d['items'][0]['spec']['imagePullSecrets']")" = "[{'name': 'regcred'}]"
check "labels and annotations" \
  test "$(spec "d['items'][0]['metadata']['labels']['team'] + ' ' + d['items'][0]['metadata']['annotations']['owner']")" = "ml alice"
check "user volume mounted (the step read /data/seed)" \
  test "$(spec "[m['mountPath'] for m in d['items'][0]['spec']['containers'][0]['volumeMounts']]")" = "['$ZORCH_HOME/store', '/data']"

# ---- 4. failures: a failing step, retries, OOM, Pending forever, a missing image
register kf "{$base,\"mode\":\"client\",\"pending_timeout\":4}"
step() { # step NAME COMMAND [SETTINGS-JSON]
  printf '{"name": "%s", "command": ["sh", "-c", "%s"]%s}' "$1" "$2" "${3:+, \"settings\": $3}"
}
cat >"$work/fail.json" <<EOF
{"zorch_pipeline": 1, "name": "k8s-failures",
 "settings": {"flavor": {"kubernetes": {"volumes": [{"name": "data", "hostPath": {"path": "$work/data"}}],
                                        "volume_mounts": [{"name": "data", "mountPath": "/data"}]}}},
 "steps": [
  $(step bad "echo about to fail; exit 3"),
  {"name": "after_bad", "command": ["true"], "inputs": {"x": "bad.x"}},
  $(step flaky "if [ -f /data/flaky-once ]; then echo second try; else touch /data/flaky-once; exit 1; fi" '{"retries": {"max": 2, "delay": 0.2}}'),
  $(step oom 'x=$(yes | head -c 400000000); echo survived' '{"resources": {"memory": "64MiB"}}'),
  $(step huge "echo never" '{"resources": {"memory": "64GiB"}}'),
  $(step noimage "echo never" '{"image": "no-such-image:1"}')
 ]}
EOF
sed -i 's/"name": "bad", "command": \[\(.*\)\]}/"name": "bad", "command": [\1], "outputs": ["x"]}/' "$work/fail.json"
t1=$(date +%s)
rc=0
"$zorch" pipeline run "$work/fail.json" --stack kf >"$work/f1.out" 2>&1 || rc=$?
cat "$work/f1.out"
t2=$(date +%s)
check "failures: the run fails (exit 1)" test $rc -eq 1
st() { awk -v s="$1" '$1 == s { print $2 "/" $3 }' "$work/f1.out"; }
check "a failing step: failed, its downstream skipped" \
  test "$(st bad) $(awk '$1 == "after_bad" { print $2 }' "$work/f1.out")" = "failed/1 skipped"
check "  ... the message says the command exited with status 3" contains "$work/f1.out" "exited with status 3"
check "  ... and shows the last lines of its log (the pod's output)" \
  bash -c "grep -q 'last lines of its log' '$work/f1.out' && grep -q '^about to fail' '$work/f1.out'"
check "retries: flaky completed on its second attempt (a new pod)" test "$(st flaky)" = "completed/2"
check "OOM: the step failed, saying it was OOM-killed and its limit" \
  bash -c "test '$(st oom)' = failed/1 && grep -q 'was OOM-killed' '$work/f1.out' && grep -q 'memory limit of 64Mi' '$work/f1.out'"
check "Pending forever: failed after pending_timeout with the scheduler's reason" \
  bash -c "grep -q 'stayed Pending for more than 4 s' '$work/f1.out' && grep -q 'Insufficient memory' '$work/f1.out'"
check "missing image: failed with ErrImagePull" \
  bash -c "grep -q 'cannot start: \\(ErrImagePull\\|ImagePullBackOff\\)' '$work/f1.out'"
check "failures ended within 60 s (nothing hangs)" test $((t2 - t1)) -lt 60
rid4=$(sed -n 's/^Run: .* (id \([0-9a-f]*\))$/\1/p' "$work/f1.out")
check "the stuck pods were deleted" \
  test "$(kubectl get pods -l "zorch.dev/run-id=$rid4,zorch.dev/step in (huge,noimage)" -o name | wc -l)" -eq 0

# ---- 5. max_parallelism and cancel
register kp "{$base,\"mode\":\"client\",\"max_parallelism\":1}"
cat >"$work/par.json" <<EOF
{"zorch_pipeline": 1, "name": "k8s-par", "settings": {"cache": false}, "steps": [
  $(step a "sleep 1"), $(step b "sleep 1"), $(step c "sleep 1")]}
EOF
"$zorch" pipeline run "$work/par.json" --stack kp >"$work/p1.out" 2>&1
rid5=$(sed -n 's/^Run: .* (id \([0-9a-f]*\))$/\1/p' "$work/p1.out")
kubectl get pods -l "zorch.dev/run-id=$rid5" -o json >"$work/par-pods.json"
check "max_parallelism 1: no two step pods ran at once" /usr/bin/python3 -c "
import json, sys
ps = json.load(open('$work/par-pods.json'))['items']
iv = sorted((c['state']['terminated']['startedAt'], c['state']['terminated']['finishedAt'])
            for p in ps for c in p['status']['containerStatuses'])
sys.exit(not (len(iv) == 3 and all(iv[i][1] <= iv[i + 1][0] for i in range(2))))"
cat >"$work/slow.json" <<EOF
{"zorch_pipeline": 1, "name": "k8s-slow", "settings": {"cache": false}, "steps": [$(step slow "sleep 60")]}
EOF
"$zorch" pipeline run "$work/slow.json" --stack kc >"$work/cancel.out" 2>&1 &
zpid=$!
for i in $(seq 100); do
  [[ $(kubectl get pods -l zorch.dev/step=slow -o jsonpath='{.items[*].status.phase}' 2>/dev/null) == Running ]] && break
  sleep 0.2
done
check "cancel: the step pod is running" \
  test "$(kubectl get pods -l zorch.dev/step=slow -o jsonpath='{.items[*].status.phase}')" = Running
kill -INT $zpid
rc=0
wait $zpid || rc=$?
cat "$work/cancel.out"
check "cancel: Ctrl-C stops the run (exit 130)" test $rc -eq 130
for i in $(seq 50); do
  [[ -z $(kubectl get pods -l zorch.dev/step=slow -o name) ]] && break
  sleep 0.2
done
check "cancel: the run's pods are deleted" test -z "$(kubectl get pods -l zorch.dev/step=slow -o name)"
rid6=$(sed -n 's/^Run: .* (id \([0-9a-f]*\))$/\1/p' "$work/cancel.out")
check "cancel: the run is recorded as stopped" bash -c "'$zorch' run show '$rid6' | grep -qE '^Status: +stopped'"

# orchestrator mode: Ctrl-C deletes the orchestrator Job and the step pods
"$zorch" pipeline run "$work/slow.json" --stack ko >"$work/ocancel.out" 2>&1 &
zpid=$!
for i in $(seq 150); do
  [[ $(kubectl get pods -l zorch.dev/step=slow -o jsonpath='{.items[*].status.phase}' 2>/dev/null) == Running ]] && break
  sleep 0.2
done
check "orchestrator mode cancel: the orchestrator pod started the step pod" \
  test "$(kubectl get pods -l zorch.dev/step=slow -o jsonpath='{.items[*].status.phase}')" = Running
orid=$(kubectl get pods -l zorch.dev/step=slow -o jsonpath='{.items[0].metadata.labels.zorch\.dev/run-id}')
kill -INT $zpid
rc=0
wait $zpid || rc=$?
check "orchestrator mode cancel: exit 130" test $rc -eq 130
for i in $(seq 50); do
  [[ -z $(kubectl get pods,jobs -l "zorch.dev/run-id=$orid" -o name) ]] && break
  sleep 0.2
done
check "orchestrator mode cancel: the run's Job and pods are deleted" \
  test -z "$(kubectl get pods,jobs -l "zorch.dev/run-id=$orid" -o name)"
check "orchestrator mode cancel: recorded as stopped" bash -c "'$zorch' run show '$orid' | grep -qE '^Status: +stopped'"

# orchestrator mode: the client may go away; the run goes on in the cluster
"$iris" --stack ko --param epochs=170 >"$work/gone.out" 2>&1 &
zpid=$!
for i in $(seq 150); do
  gid=$(kubectl get jobs -l zorch.dev/role=orchestrator -o json | jq_py "sorted(d['items'], key=lambda j: j['metadata']['creationTimestamp'] + j['metadata']['resourceVersion'].zfill(12))[-1]['metadata']['labels']['zorch.dev/run-id']")
  [[ -n $gid && $gid != "$rid2" && $gid != "$orid" ]] && grep -q . <<<"$(kubectl get pods -l "zorch.dev/run-id=$gid,zorch.dev/role=orchestrator" -o name)" && break
  sleep 0.2
done
kill -9 $zpid
wait $zpid 2>/dev/null
for i in $(seq 200); do
  [[ $(kubectl get jobs -l "zorch.dev/run-id=$gid,zorch.dev/role=orchestrator" -o jsonpath='{.items[0].status.succeeded}') == 1 ]] && break
  sleep 0.2
done
check "orchestrator mode: with its client killed (-9) the run completes in the cluster" \
  bash -c "'$zorch' run show '$gid' | grep -qE '^Status: +completed'"

# ---- 6. schedules: CronJobs
rc=0
"$zorch" pipeline schedule "$work/spec.json" --stack ko --cron "*/10 * * * *" --name nightly-demo >"$work/sch.out" 2>&1 || rc=$?
cat "$work/sch.out"
check "zorch pipeline schedule: a CronJob" \
  bash -c "test $rc -eq 0 && kubectl get cronjob nightly-demo -o jsonpath='{.spec.schedule}' | grep -qx '\*/10 \* \* \* \*'"
"$zorch" schedule list --stack ko >"$work/sch-list.out" 2>&1
cat "$work/sch-list.out"
check "zorch schedule list shows it" bash -c "grep -q 'nightly-demo  \*/10 \* \* \* \*  k8s-demo' '$work/sch-list.out'"
# What the CronJob starts at its time: a Job from its job template (a new run)
kubectl get cronjob nightly-demo -o json | /usr/bin/python3 -c "
import json, sys
cj = json.load(sys.stdin)
jt = cj['spec']['jobTemplate']
print(json.dumps({'apiVersion': 'batch/v1', 'kind': 'Job', 'metadata': {'name': 'nightly-demo-manual',
      'labels': jt['metadata'].get('labels', {})}, 'spec': jt['spec']}))" >"$work/manual-job.json"
runs_before=$("$zorch" run list --pipeline k8s-demo | tail -n +2 | wc -l)
kubectl create -f "$work/manual-job.json" >/dev/null
for i in $(seq 300); do
  [[ -n $(kubectl get job nightly-demo-manual -o jsonpath='{.status.succeeded}{.status.failed}') ]] && break
  sleep 0.2
done
kubectl logs job/nightly-demo-manual 2>&1 | tail -20
check "the CronJob's job template starts a new run that completes" \
  bash -c "test '$(kubectl get job nightly-demo-manual -o jsonpath='{.status.succeeded}')' = 1 &&
           test \$('$zorch' run list --pipeline k8s-demo | tail -n +2 | wc -l) -eq $((runs_before + 1))"
"$zorch" schedule delete nightly-demo --stack ko >/dev/null
check "zorch schedule delete removes the CronJob" bash -c "! kubectl get cronjob nightly-demo 2>/dev/null"
rc=0
"$zorch" schedule delete nightly-demo --stack ko >"$work/sch-del.out" 2>&1 || rc=$?
check "deleting it again: a clear not-found error" \
  bash -c "test $rc -eq 1 && grep -q \"no schedule 'nightly-demo'\" '$work/sch-del.out'"

# ---- 7. other credentials and units: an exec credential plugin (as GKE's and
# EKS's), Jobs as the step unit, the store through a PersistentVolumeClaim,
# a client certificate
cat >"$work/exec-plugin" <<EOF
#!/bin/sh
echo called >> "$work/exec-plugin.calls"
printf '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"%s"}}' "\$(cat "$SIM_DIR/token")"
EOF
chmod +x "$work/exec-plugin"
cat >"$work/exec-kubeconfig" <<EOF
apiVersion: v1
kind: Config
current-context: exec
clusters:
- name: sim
  cluster: {server: "$SIM_URL", certificate-authority: "$SIM_DIR/ca.crt"}
contexts:
- name: exec
  context: {cluster: sim, user: cloud}
users:
- name: cloud
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: ./exec-plugin
      interactiveMode: Never
EOF
kubectl create -f - >/dev/null <<EOF
{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
 "metadata": {"name": "zorch-store", "annotations": {"zorch-sim/host-path": "$ZORCH_HOME/store"}},
 "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}
EOF
register kj "{\"image\":\"zorch-k8s-test:latest\",\"kubeconfig\":\"$work/exec-kubeconfig\",\"mode\":\"client\",\"step_unit\":\"job\",\"store_volume\":{\"type\":\"pvc\",\"claim_name\":\"zorch-store\"}}"
rc=0
"$zorch" pipeline run "$work/spec.json" --stack kj --no-cache >"$work/j1.out" 2>&1 || rc=$?
cat "$work/j1.out"
check "exec credential plugin + Jobs + PVC store: completed" test $rc -eq 0
check "  ... the exec plugin gave the token" test -s "$work/exec-plugin.calls"
rid7=$(sed -n 's/^Run: .* (id \([0-9a-f]*\))$/\1/p' "$work/j1.out")
check "  ... one Job per step, backoffLimit 0 (zorch retries)" \
  test "$(kubectl get jobs -l "zorch.dev/run-id=$rid7" -o jsonpath='{.items[*].spec.backoffLimit}')" = "0 0"
check "  ... the store is the PVC, mounted at the store's path" \
  test "$(pod_json "$rid7" use | jq_py "[v['persistentVolumeClaim']['claimName'] for v in d['items'][0]['spec']['volumes'] if 'persistentVolumeClaim' in v]")" = "['zorch-store']"
"$zorch" run logs "$rid7" use >"$work/j1.log" 2>&1
check "  ... artifacts flowed (got 42)" contains "$work/j1.log" "got 42"
register kcert "{\"image\":\"zorch-k8s-test:latest\",\"kubeconfig\":\"$SIM_DIR/kubeconfig-cert\",\"mode\":\"client\"}"
rc=0
"$zorch" pipeline run "$work/spec.json" --stack kcert --no-cache >"$work/cert.out" 2>&1 || rc=$?
check "client certificate kubeconfig: completed" test $rc -eq 0

# ---- 8. bad kubeconfig, wrong token
echo "clusters: [" >"$work/bad-kubeconfig"
register kb "{\"image\":\"zorch-k8s-test:latest\",\"kubeconfig\":\"$work/bad-kubeconfig\"}"
rc=0
"$zorch" pipeline run "$work/spec.json" --stack kb >"$work/bad.out" 2>&1 || rc=$?
cat "$work/bad.out"
check "a bad kubeconfig: the run fails naming the file and the YAML error" \
  bash -c "test $rc -eq 1 && grep -q 'kubeconfig $work/bad-kubeconfig is not valid YAML' '$work/bad.out'"
sed "s/token: .*/token: not-the-token/" "$KUBECONFIG" >"$work/wrong-token"
register kw "{\"image\":\"zorch-k8s-test:latest\",\"kubeconfig\":\"$work/wrong-token\"}"
rc=0
"$zorch" pipeline run "$work/spec.json" --stack kw >"$work/wrong.out" 2>&1 || rc=$?
cat "$work/wrong.out"
check "a wrong token: 401, the credentials were rejected, which kubeconfig" \
  bash -c "test $rc -eq 1 && grep -q '401' '$work/wrong.out' && grep -q 'rejected the credentials of kubeconfig $work/wrong-token' '$work/wrong.out'"

echo "---- $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
exit "$fail"
