#!/usr/bin/env bash
# End-to-end tests of the local_docker flavor on a real engine: Podman's
# Docker-compatible API service, started here on a private socket and
# storage (tests/podman/podman-service.sh) and stopped at the end.
#
# Usage: test-local-docker.sh ZORCH_CLI IRIS_EXAMPLE PLUGIN_DIR...
# Covers: images built through the plugin's image builder (zorch image
# build); a function-step pipeline (the iris example) and a command-step
# pipeline end to end in containers with artifacts flowing; parallel
# independent steps; a failing step (exit code and last log lines); an
# OOM-killed step (exit 137); cancel (SIGINT) leaving no container; cache hits
# across local and local_docker runs both ways; the docker CLI seeing the
# labels; settings reaching the container; engine unreachable, image missing
# and API error bodies; no container left after any run.
set -uo pipefail

zorch=$(realpath "${1:?usage: test-local-docker.sh ZORCH_CLI IRIS_EXAMPLE PLUGIN_DIR...}")
iris=$(realpath "${2:?}")
shift 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
plugin_path=$(IFS=:; echo "$*")

if ! command -v docker >/dev/null 2>&1; then
  echo "${CI:+FAIL}${CI:-SKIP}: the docker CLI is missing (scripts/setup installs docker.io's client)"
  [[ ${CI:-} == true ]] && exit 1
  exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/zorch-docker-test.XXXXXX")
svc=$work/podman
cleanup() {
  "$here/podman-service.sh" stop "$svc" >/dev/null 2>&1
  [[ -d $work/tcp ]] && "$here/podman-service.sh" stop "$work/tcp" >/dev/null 2>&1
  [[ -n ${ZORCH_TEST_KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

out=$("$here/podman-service.sh" start "$svc")
rc=$?
if ((rc == 77)); then echo "SKIP: podman is not installed"; exit 77; fi
if ((rc != 0)); then echo "FAIL: cannot start the podman service: $out"; exit 1; fi
export "$out" # DOCKER_HOST=unix://...
export ZORCH_HOME=$work/home ZORCH_PLUGIN_PATH=$plugin_path ZORCH_PLUGIN_SYSTEM_PATH= ZORCH_COMMAND=$zorch
unset XDG_DATA_HOME

fails=0
passes=0
ok() { echo "ok: $1"; passes=$((passes + 1)); }
bad() { echo "FAIL: $1"; fails=$((fails + 1)); }
check() { if "${@:2}"; then ok "$1"; else bad "$1"; fi; }
has() { grep -qF -- "$2" "$1"; }
lacks() { ! grep -qF -- "$2" "$1"; }
leftovers() { docker ps -aq --filter label=zorch.run_id | wc -l; }
run_id() { sed -n 's/^Run: .* (id \([0-9a-f]*\)).*/\1/p' "$1" | head -1; }
status_of() { # status_of OUT STEP -> the STATUS column of STEP's row in the step table
  awk -v s="$2" '$1 == s && NF >= 3 { st = $2 } END { print st }' "$1"
}
t_start=$(date +%s.%N)

data=/usr/lib/python3/dist-packages/sklearn/datasets/data
"$zorch" orchestrator register dock --flavor local_docker \
  -c mounts="[\"$data:$data:ro\"]" >/dev/null || bad "register the local_docker orchestrator"
"$zorch" stack register dock -o dock >/dev/null || bad "register the dock stack"

# ---- 1. function steps: the iris example, local first, then in containers
if [[ -r $data/iris.csv ]]; then
  "$iris" >"$work/iris-local.out" 2>&1
  check "iris on local completes" has "$work/iris-local.out" "test accuracy: 1.000"
  "$iris" --stack dock --no-cache >"$work/iris-docker.out" 2>&1
  rc=$?
  check "iris in containers exits 0" test $rc -eq 0
  check "iris in containers: same accuracy" has "$work/iris-docker.out" "test accuracy: 1.000"
  check "iris in containers: the step image was built from the program" \
    test -n "$(docker images -q 'localhost/zorch-iris')"
  "$iris" --stack dock >"$work/iris-cached.out" 2>&1
  check "iris in containers again: every step cached (local results count)" \
    test "$(grep -cE '^ *(load|split|train|evaluate) +cached' "$work/iris-cached.out")" -eq 4
  check "no container left after the iris runs" test "$(leftovers)" -eq 0
else
  bad "the iris data ($data/iris.csv, python3-sklearn) is missing"
fi

# ---- 2. an image of tools for command steps
"$zorch" image build zorch-tools:test --program "$(command -v sh)" --add seq --add wc --add cat \
  --add tr --add sleep --add head --add id --add true >"$work/build.out" 2>&1
check "zorch image build makes an image" has "$work/build.out" "zorch-tools:test sha256:"
check "the image is in the engine under its tag" test -n "$(docker images -q zorch-tools:test)"
# the builder by name: the option, then the environment (the local_docker plugin's image builder)
"$zorch" image build zorch-named:test --builder local_docker --no-zorch --program "$(command -v sh)" \
  >"$work/named.out" 2>&1
check "zorch image build --builder local_docker makes an image" has "$work/named.out" "zorch-named:test sha256:"
ZORCH_IMAGE_BUILDER=local_docker "$zorch" image build zorch-named:env --no-zorch --program "$(command -v sh)" \
  >"$work/named-env.out" 2>&1
check "ZORCH_IMAGE_BUILDER=local_docker zorch image build makes an image" has "$work/named-env.out" "zorch-named:env sha256:"
# a relative --program lands at its absolute path, where the deployment names it
(cd "$(dirname "$iris")" && "$zorch" image build zorch-rel:test --program "./$(basename "$iris")") \
  >"$work/rel-build.out" 2>&1
check "zorch image build --program ./relative makes an image" has "$work/rel-build.out" "zorch-rel:test sha256:"
docker run --rm zorch-rel:test "$iris" --zorch-step >"$work/rel-run.out" 2>&1
check "... whose program runs at its absolute path (its own usage error)" \
  has "$work/rel-run.out" "--zorch-step needs a value"

# ---- 2b. --add DIR: the tree recursively, sane symlinks, ELF files with their libraries
tree=$work/tree
mkdir -p "$tree/sub/deep" "$tree/bin" "$tree/__pycache__" "$tree/sub/__pycache__"
echo top >"$tree/a.txt"
echo deep >"$tree/sub/deep/b.txt"
echo stale >"$tree/__pycache__/x.pyc"
echo stale >"$tree/sub/__pycache__/y.pyc"
ln -s a.txt "$tree/link-to-file"
ln -s sub "$tree/link-to-dir"
ln -s no-such-target "$tree/dangling"
# an ELF whose libraries (libcurl ...) nothing else in this image needs
cp "$(command -v curl)" "$tree/bin/curl"
sh_bin=$(realpath "$(command -v sh)")
t0=$(date +%s.%N)
"$zorch" image build zorch-tree:test --no-zorch --program "$sh_bin" --add "$tree" >"$work/tree-build.out" 2>&1
t1=$(date +%s.%N)
check "zorch image build --add DIR makes an image" has "$work/tree-build.out" "zorch-tree:test sha256:"
# (the image has no cat: the shell reads the files itself)
docker run --rm zorch-tree:test "$sh_bin" -c "c() { while IFS= read -r l; do echo \"\$l\"; done <\"\$1\"; }; \
  c $tree/a.txt; c $tree/sub/deep/b.txt; c $tree/link-to-file; c $tree/link-to-dir/deep/b.txt; \
  test -L $tree/link-to-dir && echo dir-link-kept; test -e $tree/__pycache__ || echo no-pycache; \
  test -e $tree/sub/__pycache__ || echo no-sub-pycache; test -e $tree/dangling || test -L $tree/dangling || echo no-dangling" \
  >"$work/tree-run.out" 2>&1
check "--add DIR: files of the tree and its subdirectories are in the image" \
  test "$(head -2 "$work/tree-run.out" | tr '\n' ' ')" = "top deep "
check "--add DIR: a symlink to a file holds the file" test "$(sed -n 3p "$work/tree-run.out")" = top
check "--add DIR: a symlink to a directory stays a symlink that resolves" \
  test "$(sed -n 4,5p "$work/tree-run.out" | tr '\n' ' ')" = "deep dir-link-kept "
check "--add DIR: __pycache__ and dangling symlinks are left out" \
  test "$(sed -n 6,8p "$work/tree-run.out" | tr '\n' ' ')" = "no-pycache no-sub-pycache no-dangling "
docker run --rm zorch-tree:test "$tree/bin/curl" --version >"$work/tree-curl.out" 2>&1
check "--add DIR: an ELF program inside runs (its library closure came along)" has "$work/tree-curl.out" "libcurl/"
echo "measured: --add DIR image build $(python3 -c "print('%.2f' % ($t1 - $t0))") s"
"$zorch" image build zorch-tree:bad --program "$sh_bin" --add "$work/no-such-dir" >"$work/tree-bad.out" 2>&1
check "--add: a missing directory is named" has "$work/tree-bad.out" "cannot add '$work/no-such-dir' to the image"
# Python's standard library as a tree: extension modules (lib-dynload) need libssl, libffi ...
py=$(realpath /usr/bin/python3)
pystd=$(/usr/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
t0=$(date +%s.%N)
"$zorch" image build zorch-py:test --no-zorch --program "$py" --add "$pystd" >"$work/py-build.out" 2>&1
t1=$(date +%s.%N)
check "zorch image build --add <python stdlib> makes an image" has "$work/py-build.out" "zorch-py:test sha256:"
docker run --rm zorch-py:test "$py" -c 'import ssl, ctypes, json, sqlite3, hashlib; print("imports", ssl.OPENSSL_VERSION.split()[0])' \
  >"$work/py-run.out" 2>&1
check "--add <python stdlib>: ssl, ctypes, sqlite3 import in the image" has "$work/py-run.out" "imports OpenSSL"
echo "measured: python3 + stdlib image build $(python3 -c "print('%.2f' % ($t1 - $t0))") s, $(docker image inspect zorch-py:test --format '{{.Size}}' | awk '{printf "%.1f MB", $1/1e6}')"

# ---- 3. command steps: artifacts flow; parallel independent steps; settings
cat >"$work/etl.json" <<'JSON'
{"zorch_pipeline": 1, "name": "etl", "params": {"rows": 100},
 "settings": {"image": "zorch-tools:test"},
 "steps": [
  {"name": "make", "command": ["sh", "-c", "seq $ZORCH_PARAM_ROWS > $ZORCH_OUTPUT_DATA; echo made rows"],
   "outputs": ["data"], "params": ["rows"]},
  {"name": "left", "command": ["sh", "-c", "sleep 2; wc -l < $ZORCH_INPUT_DATA | tr -d ' ' > $ZORCH_OUTPUT_N"],
   "inputs": {"data": "make.data"}, "outputs": ["n"]},
  {"name": "right", "command": ["sh", "-c", "sleep 2; head -n 1 $ZORCH_INPUT_DATA > $ZORCH_OUTPUT_FIRST; echo uid=$(id -u) env=$MY_SETTING"],
   "inputs": {"data": "make.data"}, "outputs": ["first"],
   "settings": {"env": {"MY_SETTING": "from-settings"}}},
  {"name": "report", "command": ["sh", "-c", "echo REPORT n=$(cat $ZORCH_INPUT_N) first=$(cat $ZORCH_INPUT_FIRST)"],
   "inputs": {"n": "left.n", "first": "right.first"}}
 ]}
JSON
"$zorch" pipeline run "$work/etl.json" --stack dock >"$work/etl.out" 2>&1
rc=$?
check "command pipeline in containers exits 0" test $rc -eq 0
id=$(run_id "$work/etl.out")
"$zorch" run logs "$id" report >"$work/report.log" 2>&1
check "artifacts flowed between containers (report saw n=100 first=1)" has "$work/report.log" "REPORT n=100 first=1"
"$zorch" run logs "$id" right >"$work/right.log" 2>&1
check "step env setting reached the container" has "$work/right.log" "env=from-settings"
check "the container ran as the caller's uid" has "$work/right.log" "uid=$(id -u)"
# left and right (2 s each) overlapped
python3 - "$ZORCH_HOME/store/runs/$id/journal.jsonl" >"$work/overlap.out" <<'PY'
import json, sys
t = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("status") == "completed":
        t[r["step"]] = (r["started"], r["finished"])
(a0, a1), (b0, b1) = t["left"], t["right"]
print("overlap" if a0 < b1 and b0 < a1 else "serial", t)
PY
check "independent steps ran in parallel containers" has "$work/overlap.out" "overlap"
check "no container left after the command run" test "$(leftovers)" -eq 0

# ---- 3b. no image named at all: built from the host (zorch) with image_add's tools
"$zorch" orchestrator register auto --flavor local_docker \
  -c image_add='["seq", "wc", "tr", "cat", "head", "sleep", "id"]' >/dev/null
"$zorch" stack register auto -o auto >/dev/null
sed 's/"image": "zorch-tools:test"//; s/"settings": {},//' "$work/etl.json" >"$work/etl-noimage.json"
"$zorch" pipeline run "$work/etl-noimage.json" --stack auto --no-cache >"$work/etl-auto.out" 2>&1
check "command pipeline in an image built from the host (image_add) completes" has "$work/etl-auto.out" "4 completed"
check "... that image is in the engine" test -n "$(docker images -q 'localhost/zorch-etl')"
"$zorch" orchestrator register autobad --flavor local_docker -c image_add='["no-such-tool-zorch"]' >/dev/null
"$zorch" stack register autobad -o autobad >/dev/null
"$zorch" pipeline run "$work/etl-noimage.json" --stack autobad >"$work/autobad.out" 2>&1
check "image_add: a missing tool is named" has "$work/autobad.out" "image_add: 'no-such-tool-zorch' is not a file or directory (nor a program in PATH)"

# ---- 4. cache hits across flavors: the local stack finds the container results
"$zorch" pipeline run "$work/etl.json" >"$work/etl-local.out" 2>&1
check "local run of the same pipeline: all 4 steps cached" has "$work/etl-local.out" "4 cached"

# ---- 5. the docker CLI sees the labels; settings in the container; cancel
cat >"$work/sleepy.json" <<'JSON'
{"zorch_pipeline": 1, "name": "sleepy",
 "settings": {"image": "zorch-tools:test"},
 "steps": [
  {"name": "nap", "command": ["sleep", "60"],
   "settings": {"resources": {"cpu": 0.5, "memory": "64MiB"},
                "flavor": {"local_docker": {"shm_size": 67108864, "environment": {"EXTRA": "yes"}}}}}
 ]}
JSON
"$zorch" pipeline run "$work/sleepy.json" --stack dock >"$work/sleepy.out" 2>&1 &
zpid=$!
cid=
for _ in $(seq 1 150); do
  cid=$(docker ps -q --filter label=zorch.step=nap --filter label=zorch.pipeline=sleepy)
  [[ -n $cid ]] && break
  sleep 0.1
done
check "docker ps finds the step's container by its labels" test -n "$cid"
if [[ -n $cid ]]; then
  docker inspect "$cid" >"$work/inspect.json" 2>&1
  python3 - "$work/inspect.json" "$ZORCH_HOME/store" >"$work/inspect.out" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))[0]
cfg, hc = c["Config"], c["HostConfig"]
labels = cfg.get("Labels") or {}
print("labels", labels.get("zorch.step"), labels.get("zorch.pipeline"), labels.get("zorch.run_id"))
print("memory", hc.get("Memory"), "nanocpus", hc.get("NanoCpus"), "shm", hc.get("ShmSize"))
print("env-extra", "EXTRA=yes" in (cfg.get("Env") or []))
print("store-bound", any(b.startswith(sys.argv[2] + ":" + sys.argv[2]) for b in hc.get("Binds") or []))
PY
  check "labels: step, pipeline and run id" grep -qE "^labels nap sleepy [0-9a-f]{32}$" "$work/inspect.out"
  check "resources: memory 64 MiB, 0.5 CPU, shm 64 MiB" \
    has "$work/inspect.out" "memory 67108864 nanocpus 500000000 shm 67108864"
  check "flavor setting environment reached the container" has "$work/inspect.out" "env-extra True"
  check "the artifact store is mounted at its own path" has "$work/inspect.out" "store-bound True"
fi
t0=$(date +%s.%N)
kill -INT $zpid
wait $zpid
rc=$?
t1=$(date +%s.%N)
check "Ctrl-C stops the run (exit 130)" test $rc -eq 130
check "cancel took under 10 s" python3 -c "import sys; sys.exit(0 if $t1 - $t0 < 10 else 1)"
sid=$(run_id "$work/sleepy.out")
check "cancel leaves no container of the run" test -z "$(docker ps -aq --filter label=zorch.run_id=$sid)"
"$zorch" run show "$sid" >"$work/sleepy-show.out" 2>&1
check "the cancelled run is recorded as stopped" grep -qE "Status: +stopped" "$work/sleepy-show.out"

# ---- 5b. GPUs (DeviceRequests) and free-form run_args in the create request
cat >"$work/gpu.json" <<'JSON'
{"zorch_pipeline": 1, "name": "gpu",
 "settings": {"image": "zorch-tools:test"},
 "steps": [
  {"name": "g", "command": ["sh", "-c", "pwd"],
   "settings": {"resources": {"gpu": 1},
                "flavor": {"local_docker": {"run_args": {"WorkingDir": "/tmp",
                                                         "HostConfig": {"CapAdd": ["SYS_NICE"]}}}}}}
 ]}
JSON
ZORCH_LOG_LEVEL=debug "$zorch" pipeline run "$work/gpu.json" --stack dock >"$work/gpu.out" 2>&1
rc=$?
check "GPU step: the engine accepted the request (Podman ignores GPUs it lacks)" test $rc -eq 0
check "GPU step: DeviceRequests from resources.gpu" \
  has "$work/gpu.out" '"DeviceRequests":[{"Driver":"","Count":1,"Capabilities":[["gpu"]]}]'
check "run_args merged into the request (top level and HostConfig)" \
  grep -qE '"WorkingDir":"/tmp".*"CapAdd":\["SYS_NICE"\]|"CapAdd":\["SYS_NICE"\].*"WorkingDir":"/tmp"' "$work/gpu.out"
"$zorch" run logs "$(run_id "$work/gpu.out")" g >"$work/gpu.log" 2>&1
check "run_args took effect (WorkingDir /tmp)" grep -qx "/tmp" "$work/gpu.log"

# ---- 6. a failing step and an OOM-killed one: exit codes and last log lines
cat >"$work/fail.json" <<'JSON'
{"zorch_pipeline": 1, "name": "fail",
 "settings": {"image": "zorch-tools:test"},
 "steps": [
  {"name": "bad", "command": ["sh", "-c", "echo context-line; echo LAST-LINE-MARKER; exit 7"]},
  {"name": "hog", "command": ["sh", "-c", "echo starting; x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived"],
   "settings": {"resources": {"memory": "32MiB"}}},
  {"name": "after", "command": ["true"], "after": ["bad"]}
 ]}
JSON
"$zorch" pipeline run "$work/fail.json" --stack dock >"$work/fail.out" 2>&1
rc=$?
check "a failing step fails the run (exit 1)" test $rc -eq 1
check "the failure names the exit code" has "$work/fail.out" "exited with status 7"
check "the failure shows the last log lines" has "$work/fail.out" "LAST-LINE-MARKER"
check "the OOM kill is named, with the limit" has "$work/fail.out" "killed for using too much memory (exit 137"
check "its downstream step is skipped" test "$(status_of "$work/fail.out" after)" = skipped
check "no container left after the failed run" test "$(leftovers)" -eq 0

# ---- 7. errors a user meets
DOCKER_HOST=unix://$work/no-engine.sock "$zorch" pipeline run "$work/etl.json" --stack dock \
  >"$work/noengine.out" 2>&1
check "engine unreachable: names the socket" has "$work/noengine.out" "$work/no-engine.sock"
check "engine unreachable: says how to start one" has "$work/noengine.out" "podman system service"
sed 's/zorch-tools:test/no-such-image:v1/' "$work/etl.json" >"$work/noimage.json"
"$zorch" pipeline run "$work/noimage.json" --stack dock >"$work/noimage.out" 2>&1
check "image missing: named, with the fix" has "$work/noimage.out" "image 'no-such-image:v1' of step 'make' is not in the Docker engine"
check "image missing: suggests zorch image build" has "$work/noimage.out" "zorch image build no-such-image:v1"
"$zorch" orchestrator register badnet --flavor local_docker -c network=no-such-network >/dev/null
"$zorch" stack register badnet -o badnet >/dev/null
"$zorch" pipeline run "$work/etl.json" --stack badnet --no-cache >"$work/badnet.out" 2>&1
check "API error bodies are shown (the engine's own words)" grep -qiE "no-such-network" "$work/badnet.out"
check "... with the HTTP status" grep -qE "answered HTTP [45][0-9][0-9]" "$work/badnet.out"
"$zorch" orchestrator register typo --flavor local_docker -c shm_sise=1 >"$work/typo.out" 2>&1
check "config schema: an unknown key is refused" has "$work/typo.out" "shm_sise"
"$zorch" orchestrator register badmount --flavor local_docker -c mounts='["data"]' >"$work/badmount.out" 2>&1
check "config check: a mount without a target is refused, with the form wanted" has "$work/badmount.out" "must be SRC:DST[:ro]"
check "no container left at the end" test "$(leftovers)" -eq 0

# ---- 7b. an engine over TCP (DOCKER_HOST=tcp://...), named in the orchestrator's config
tcp_host=$("$here/podman-service.sh" start "$work/tcp" tcp)
tcp_host=${tcp_host#DOCKER_HOST=}
check "a second engine listens on TCP" test "${tcp_host#tcp://}" != "$tcp_host"
"$zorch" image build zorch-tools:tcp --docker-host "$tcp_host" --program "$(command -v sh)" --add seq \
  --add wc --add cat --add tr --add sleep --add head --add id >"$work/tcp-build.out" 2>&1
check "zorch image build --docker-host tcp://..." has "$work/tcp-build.out" "zorch-tools:tcp sha256:"
"$zorch" orchestrator register tcpdock --flavor local_docker -c docker_host="$tcp_host" -c image=zorch-tools:tcp >/dev/null
"$zorch" stack register tcpdock -o tcpdock >/dev/null
sed 's/"image": "zorch-tools:test"//; s/"settings": {},//' "$work/etl.json" >"$work/etl-tcp.json"
"$zorch" pipeline run "$work/etl-tcp.json" --stack tcpdock --no-cache >"$work/etl-tcp.out" 2>&1
check "a command pipeline on the TCP engine completes" has "$work/etl-tcp.out" "4 completed"
check "... and says where it ran" has "$work/etl-tcp.out" "$tcp_host (given in the config)"
check "no container left on the TCP engine" test -z "$(DOCKER_HOST=$tcp_host docker ps -aq)"
"$here/podman-service.sh" stop "$work/tcp" >/dev/null 2>&1

# ---- 8. per-step container overhead: a chain of 5 'true' steps
python3 - >"$work/chain.json" <<'PY'
import json
steps = [{"name": "s%d" % i, "command": ["true"], "after": ["s%d" % (i - 1)] if i else []} for i in range(5)]
print(json.dumps({"zorch_pipeline": 1, "name": "chain", "settings": {"image": "zorch-tools:test"}, "steps": steps}))
PY
t0=$(date +%s.%N)
"$zorch" pipeline run "$work/chain.json" --stack dock --no-cache >"$work/chain.out" 2>&1
rc=$?
t1=$(date +%s.%N)
check "a chain of 5 containers completes" test $rc -eq 0
echo "measured: $(python3 -c "print('%.3f' % (($t1 - $t0) / 5))") s per step container (create, start, logs, wait, remove; chain of 5)"

echo "measured: whole test $(python3 -c "print('%.1f' % ($(date +%s.%N) - $t_start))") s"
echo "$passes checks passed, $fails failed"
((fails == 0))
