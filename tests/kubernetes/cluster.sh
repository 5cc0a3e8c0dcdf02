# shellcheck shell=bash
# Sourced by the kubernetes tests: a private Podman service and the
# Kubernetes API simulator (tests/sim/k8s) on top of it, both stopped on exit.
#   cluster_start DIR [SIMULATOR-ARGS...]   sets SIM_DIR, KUBECONFIG, DOCKER_HOST, PODMAN_SOCK, SIM_URL
# (Podman comes from tests/podman/podman-service.sh.)
#   cluster_image NAME FILE...              imports an image holding FILE... and their libraries
# Under CI (CI=true) a missing tool is a failure; elsewhere the test is skipped (77).

cluster_need() {
  local t
  for t in "$@"; do
    if ! command -v "$t" >/dev/null 2>&1; then
      if [[ ${CI:-} == true ]]; then
        echo "FAIL: $t is missing (scripts/setup installs it)"
        exit 1
      fi
      echo "SKIP: $t is missing (scripts/setup installs it)"
      exit 77
    fi
  done
}

cluster_stop() {
  [[ -n ${SIM_PID:-} ]] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
  SIM_PID=
  [[ -n ${CLUSTER_DIR:-} ]] && "$CLUSTER_FIXTURES/podman/podman-service.sh" stop "$CLUSTER_DIR/podman" >/dev/null 2>&1
  return 0
}

CLUSTER_FIXTURES=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

cluster_start() {
  CLUSTER_DIR=$1
  shift
  cluster_need podman runc openssl /usr/bin/python3 curl
  mkdir -p "$CLUSTER_DIR"
  local line
  line=$("$CLUSTER_FIXTURES/podman/podman-service.sh" start "$CLUSTER_DIR/podman") || {
    echo "FAIL: podman service did not start: $line"
    exit 1
  }
  export DOCKER_HOST=${line#DOCKER_HOST=}
  PODMAN_SOCK=${DOCKER_HOST#unix://}
  SIM_DIR=$CLUSTER_DIR/sim
  PYTHONPATH=$CLUSTER_FIXTURES/sim /usr/bin/python3 -m k8s --dir "$SIM_DIR" \
    --podman-socket "$PODMAN_SOCK" "$@" >"$CLUSTER_DIR/sim.log" 2>&1 &
  SIM_PID=$!
  for _ in $(seq 200); do
    [[ -f $SIM_DIR/ready ]] && break
    kill -0 "$SIM_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [[ ! -f $SIM_DIR/ready ]]; then
    echo "FAIL: the simulator did not start:"
    cat "$CLUSTER_DIR/sim.log"
    exit 1
  fi
  # shellcheck disable=SC2034 # read by the tests that source this file
  SIM_URL=$(cat "$SIM_DIR/ready")
  export KUBECONFIG=$SIM_DIR/kubeconfig
}

# cluster_image NAME FILE...: a root filesystem with each FILE at its own
# path plus its shared libraries, imported as NAME:latest.
cluster_image() {
  local name=$1 root=$CLUSTER_DIR/rootfs-$1 f l
  shift
  rm -rf "$root"
  mkdir -p "$root/tmp"
  for f in "$@"; do
    for l in "$f" $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true); do
      mkdir -p "$root$(dirname "$l")"
      cp -L "$l" "$root$l"
    done
  done
  tar -C "$root" -cf "$root.tar" .
  curl -sf --unix-socket "$PODMAN_SOCK" -X POST -H 'Content-Type: application/x-tar' \
    --data-binary @"$root.tar" "http://d/v1.41/images/create?fromSrc=-&repo=$name" >/dev/null
}
