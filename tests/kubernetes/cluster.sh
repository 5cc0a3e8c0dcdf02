# Sourced by the kubernetes tests: a private Podman service and the
# Kubernetes API simulator on top of it, both stopped on exit.
#   cluster_start DIR [SIMULATOR-ARGS...]   sets SIM_DIR, KUBECONFIG, PODMAN_SOCK, SIM_URL
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
  [[ -n ${PODMAN_PID:-} ]] && kill "$PODMAN_PID" 2>/dev/null && wait "$PODMAN_PID" 2>/dev/null
  if [[ -n ${CLUSTER_DIR:-} && -d $CLUSTER_DIR/storage ]]; then
    CONTAINERS_CONF=$CLUSTER_DIR/containers.conf podman --root "$CLUSTER_DIR/storage" \
      --runroot "$CLUSTER_DIR/run" rm -af >/dev/null 2>&1 || true
    CONTAINERS_CONF=$CLUSTER_DIR/containers.conf podman --root "$CLUSTER_DIR/storage" \
      --runroot "$CLUSTER_DIR/run" system reset -f >/dev/null 2>&1 || true
  fi
  SIM_PID= PODMAN_PID=
}

cluster_start() {
  CLUSTER_DIR=$1
  shift
  cluster_need podman runc openssl /usr/bin/python3
  mkdir -p "$CLUSTER_DIR"
  cat >"$CLUSTER_DIR/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
  export CONTAINERS_CONF=$CLUSTER_DIR/containers.conf
  PODMAN_SOCK=$CLUSTER_DIR/podman.sock
  podman --root "$CLUSTER_DIR/storage" --runroot "$CLUSTER_DIR/run" system service --time=0 \
    "unix://$PODMAN_SOCK" >"$CLUSTER_DIR/podman.log" 2>&1 &
  PODMAN_PID=$!
  local i
  for i in $(seq 100); do
    curl -sf --unix-socket "$PODMAN_SOCK" http://d/v1.41/_ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  if ! curl -sf --unix-socket "$PODMAN_SOCK" http://d/v1.41/_ping >/dev/null; then
    echo "FAIL: podman service did not start:"; cat "$CLUSTER_DIR/podman.log"; exit 1
  fi
  SIM_DIR=$CLUSTER_DIR/sim
  /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/k8s-sim.py" --dir "$SIM_DIR" \
    --podman-socket "$PODMAN_SOCK" "$@" >"$CLUSTER_DIR/sim.log" 2>&1 &
  SIM_PID=$!
  for i in $(seq 200); do
    [[ -f $SIM_DIR/ready ]] && break
    kill -0 "$SIM_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [[ ! -f $SIM_DIR/ready ]]; then
    echo "FAIL: the simulator did not start:"; cat "$CLUSTER_DIR/sim.log"; exit 1
  fi
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
