#!/usr/bin/env bash
# The Kubernetes API simulator answers as an API server would and runs pods
# for real: auth, validation against the OpenAPI specs, status codes, watch,
# logs, OOM kills, image pull failures, unschedulable pods, Jobs, CronJobs,
# hostPath volumes; kubectl works against it.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/cluster.sh"
cluster_need kubectl curl
work=$(mktemp -d "${TMPDIR:-/tmp}/zorch-k8s-sim-test.XXXXXX")
trap 'cluster_stop; rm -rf "$work"' EXIT
cd "$work" || exit 1
cluster_start "$work/cluster" --node-cpu 2 --node-memory 2Gi --job-backoff 0.2
cluster_image simtest /bin/sh /usr/bin/yes /usr/bin/head /usr/bin/cat /usr/bin/sleep

fail=0
check() { if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
has() { grep -q -- "$2" <<<"$1"; }
tok=$(cat "$SIM_DIR/token")
api() { # api METHOD PATH [BODY] -> prints "CODE BODY"
  curl -s --cacert "$SIM_DIR/ca.crt" -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
    -X "$1" ${3:+--data "$3"} -w '\n%{http_code}' "$SIM_URL$2"
}
code() { tail -n1 <<<"$1"; }

# ---- authentication
r=$(curl -s --cacert "$SIM_DIR/ca.crt" -w '\n%{http_code}' "$SIM_URL/api/v1/namespaces/default/pods")
check "no credentials: 401 Status" test "$(code "$r")" = 401
check "  ... reason Unauthorized" has "$r" '"reason": "Unauthorized"'
r=$(curl -s --cacert "$SIM_DIR/ca.crt" -H 'Authorization: Bearer wrong' -w '\n%{http_code}' "$SIM_URL/api/v1/pods")
check "wrong token: 401" test "$(code "$r")" = 401
check "TLS is verified against the simulator's CA only" \
  bash -c "! curl -s -o /dev/null '$SIM_URL/version'"
check "client certificate (kubeconfig-cert) is accepted by kubectl" \
  kubectl --kubeconfig "$SIM_DIR/kubeconfig-cert" get pods -A

# ---- validation against the OpenAPI spec and the API server's rules
pod() { # pod NAME EXTRA-CONTAINER-JSON EXTRA-SPEC-JSON
  printf '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"%s"},"spec":{"restartPolicy":"Never","containers":[{"name":"main","image":"simtest:latest"%s}]%s}}' "$1" "${2:-}" "${3:-}"
}
r=$(api POST '/api/v1/namespaces/default/pods?fieldValidation=Strict' "$(pod strict ',"bogus":1')")
check "unknown field, fieldValidation=Strict: 400" test "$(code "$r")" = 400
check "  ... names the field" has "$r" 'unknown field \\"spec.containers\[0\].bogus\\"'
r=$(curl -s -D "$work/h" --cacert "$SIM_DIR/ca.crt" -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
  --data "$(pod warn ',"bogus":1,"command":["/bin/sh","-c","exit 0"]')" -w '\n%{http_code}' "$SIM_URL/api/v1/namespaces/default/pods")
check "unknown field by default (Warn): 201 with a Warning header, field dropped" \
  bash -c "test '$(code "$r")' = 201 && grep -qi '^Warning: 299' '$work/h' && ! grep -q bogus <<<'$(head -n -1 <<<"$r")'"
r=$(api POST /api/v1/namespaces/default/pods "$(pod Bad_Name)")
check "bad name: 422 Invalid" test "$(code "$r")" = 422
check "  ... cause on metadata.name" has "$r" '"field": "metadata.name"'
r=$(api POST /api/v1/namespaces/default/pods '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"noimage"},"spec":{"containers":[{"name":"main"}]}}')
check "missing image: 422 spec.containers[0].image Required value" \
  bash -c "test '$(code "$r")' = 422 && grep -q 'spec.containers\[0\].image: Required value' <<<'$r'"
r=$(api POST /api/v1/namespaces/default/pods '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"t"},"spec":{"containers":"x"}}')
check "wrong type: 400 BadRequest" test "$(code "$r")" = 400
r=$(api POST /api/v1/namespaces/default/pods "$(pod q ',"resources":{"limits":{"memory":"lots"}}')")
check "malformed quantity: 422" test "$(code "$r")" = 422
r=$(api POST /apis/batch/v1/namespaces/default/jobs '{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j"},"spec":{"template":{"spec":{"containers":[{"name":"m","image":"simtest"}]}}}}')
check "Job with restartPolicy Always: 422" test "$(code "$r")" = 422
r=$(api POST /apis/batch/v1/namespaces/default/cronjobs '{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"cj"},"spec":{"schedule":"61 * * * *","jobTemplate":{"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"m","image":"simtest"}]}}}}}}')
check "CronJob with a bad schedule: 422" test "$(code "$r")" = 422
r=$(api POST /apis/batch/v1/namespaces/default/cronjobs '{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"cj"},"spec":{"jobTemplate":{"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"m","image":"simtest"}]}}}}}}')
check "CronJob without schedule (required by the spec): 400" test "$(code "$r")" = 400
r=$(api POST /api/v1/namespaces/nowhere/pods "$(pod x)")
check "unknown namespace: 404" test "$(code "$r")" = 404
r=$(api GET /api/v1/namespaces/default/pods/ghost)
check "GET a missing pod: 404 NotFound Status" bash -c "test '$(code "$r")' = 404 && grep -q '\"reason\": \"NotFound\"' <<<'$r'"

# ---- pods run for real
mkdir -p "$work/vol"
rv=$(api GET /api/v1/namespaces/default/pods | head -n -1 | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["resourceVersion"])')
curl -s -N --cacert "$SIM_DIR/ca.crt" -H "Authorization: Bearer $tok" \
  "$SIM_URL/api/v1/namespaces/default/pods?watch=1&resourceVersion=$rv&labelSelector=app%3Dwatched&timeoutSeconds=20" >"$work/watch" &
wpid=$!
r=$(api POST /api/v1/namespaces/default/pods "$(printf '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"ok","labels":{"app":"watched"}},"spec":{"restartPolicy":"Never","volumes":[{"name":"v","hostPath":{"path":"%s"}}],"containers":[{"name":"main","image":"simtest:latest","command":["/bin/sh","-c","echo hello from the pod; echo data > /out/file"],"volumeMounts":[{"name":"v","mountPath":"/out"}]}]}}' "$work/vol")")
check "create pod: 201" test "$(code "$r")" = 201
api POST /api/v1/namespaces/default/pods "$(pod bad ',"command":["/bin/sh","-c","echo failing; exit 3"]')" >/dev/null
api POST /api/v1/namespaces/default/pods "$(pod oom ',"command":["/bin/sh","-c","x=$(yes | head -c 400000000)"],"resources":{"limits":{"memory":"64Mi"}}')" >/dev/null
api POST /api/v1/namespaces/default/pods '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"noimg"},"spec":{"containers":[{"name":"main","image":"no-such-image:1"}]}}' >/dev/null
api POST /api/v1/namespaces/default/pods "$(pod huge ',"resources":{"requests":{"memory":"64Gi"}}')" >/dev/null
api POST /api/v1/namespaces/default/pods "$(pod picky '' ',"nodeSelector":{"pool":"gpu"}')" >/dev/null
phase() { kubectl get pod "$1" -o jsonpath='{.status.phase}' 2>/dev/null; }
for i in $(seq 150); do
  [[ $(phase ok) == Succeeded && $(phase bad) == Failed && $(phase oom) == Failed ]] && break
  sleep 0.2
done
sleep 1
check "pod ok Succeeded" test "$(phase ok)" = Succeeded
check "kubectl logs ok" test "$(kubectl logs ok)" = "hello from the pod"
check "hostPath volume: the pod's file is on the host" test "$(cat "$work/vol/file" 2>/dev/null)" = data
check "pod bad Failed with exit code 3, reason Error" \
  test "$(kubectl get pod bad -o jsonpath='{.status.containerStatuses[0].state.terminated.exitCode}/{.status.containerStatuses[0].state.terminated.reason}')" = "3/Error"
check "pod oom: OOMKilled, exit code 137" \
  test "$(kubectl get pod oom -o jsonpath='{.status.containerStatuses[0].state.terminated.reason}/{.status.containerStatuses[0].state.terminated.exitCode}')" = "OOMKilled/137"
check "pod noimg stays Pending with ErrImagePull or ImagePullBackOff" \
  bash -c "test '$(phase noimg)' = Pending && kubectl get pod noimg -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}' | grep -Eq '^(ErrImagePull|ImagePullBackOff)$'"
check "pod huge: Pending, PodScheduled=False Unschedulable, Insufficient memory" \
  bash -c "test '$(phase huge)' = Pending && kubectl get pod huge -o jsonpath='{.status.conditions[0].reason}: {.status.conditions[0].message}' | grep -q 'Unschedulable: 0/1 nodes are available: 1 Insufficient memory'"
check "pod picky (nodeSelector pool=gpu): Unschedulable" \
  bash -c "kubectl get pod picky -o jsonpath='{.status.conditions[0].message}' | grep -q \"didn't match Pod's node affinity/selector\""
check "kubectl describe shows the FailedScheduling event" bash -c "kubectl describe pod huge | grep -q FailedScheduling"
kill $wpid 2>/dev/null; wait $wpid 2>/dev/null
check "watch from a resourceVersion streams ADDED then MODIFIED to Succeeded" \
  bash -c "grep -q '\"type\": \"ADDED\"' '$work/watch' && grep '\"type\": \"MODIFIED\"' '$work/watch' | grep -q '\"phase\": \"Succeeded\"'"
check "the watch's label selector keeps other pods out" bash -c "! grep -q '\"name\": \"bad\"' '$work/watch'"
r=$(api POST /api/v1/namespaces/default/pods "$(pod ok)")
check "create an existing name: 409 AlreadyExists" test "$(code "$r")" = 409

# ---- jobs: backoffLimit; cron jobs stored and deleted
r=$(api POST /apis/batch/v1/namespaces/default/jobs '{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"flaky"},"spec":{"backoffLimit":1,"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"m","image":"simtest:latest","command":["/bin/sh","-c","exit 1"]}]}}}}')
check "create job: 201" test "$(code "$r")" = 201
for i in $(seq 100); do
  [[ $(kubectl get job flaky -o jsonpath='{.status.failed}') == 2 ]] && break
  sleep 0.2
done
check "job with backoffLimit 1: 2 failed pods, condition Failed BackoffLimitExceeded" \
  test "$(kubectl get job flaky -o jsonpath='{.status.failed} {.status.conditions[?(@.type=="Failed")].reason}')" = "2 BackoffLimitExceeded"
check "its pods carry job-name" test "$(kubectl get pods -l job-name=flaky -o name | wc -l)" = 2
r=$(curl -s --cacert "$SIM_DIR/ca.crt" -H "Authorization: Bearer $tok" -H 'Content-Type: application/merge-patch+json' \
  -X PATCH --data '{"spec":{"template":{"spec":{"containers":[{"name":"m","image":"other:1"}]}}}}' \
  -w '\n%{http_code}' "$SIM_URL/apis/batch/v1/namespaces/default/jobs/flaky")
check "patching a Job's pod template: 422 field is immutable" \
  bash -c "test '$(code "$r")' = 422 && grep -q 'spec.template' <<<'$r' && grep -q 'field is immutable' <<<'$r'"
r=$(curl -s --cacert "$SIM_DIR/ca.crt" -H "Authorization: Bearer $tok" -H 'Content-Type: application/merge-patch+json' \
  -X PATCH --data '{"metadata":{"labels":{"team":"ml"}}}' -w '\n%{http_code}' "$SIM_URL/apis/batch/v1/namespaces/default/jobs/flaky")
check "patching a Job's labels: 200" test "$(code "$r")" = 200
r=$(api POST /apis/batch/v1/namespaces/default/cronjobs '{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"nightly"},"spec":{"schedule":"0 3 * * *","jobTemplate":{"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"m","image":"simtest"}]}}}}}}')
check "create cronjob: 201" test "$(code "$r")" = 201
check "kubectl get cronjobs lists it" bash -c "kubectl get cronjobs -o name | grep -qx cronjob.batch/nightly"
check "kubectl delete cronjob" kubectl delete cronjob nightly
check "deleting a pod stops and removes it" kubectl delete pod ok --wait=true --timeout=30s
check "... it is gone" bash -c "! kubectl get pod ok 2>/dev/null"

echo "---- simulator log (tail)"; tail -5 "$work/cluster/sim.log"
exit "$fail"
