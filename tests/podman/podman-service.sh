#!/usr/bin/env bash
# A private Podman API service (Docker-compatible Engine API) for tests.
#
#   podman-service.sh start DIR [tcp]   start it; prints DOCKER_HOST=unix://DIR/podman.sock
#                                       (with "tcp": DOCKER_HOST=tcp://127.0.0.1:PORT, a free port)
#   podman-service.sh stop DIR          stop it and delete its containers and storage
#   podman-service.sh env DIR           print the DOCKER_HOST line again
#
# Everything lives under DIR: containers.conf, storage (--root), run state
# (--runroot), the socket, the service's pid and log.  Nothing is shared with
# other tests or with the machine's own podman state, so several test suites
# may run at once.  `start` waits until the API answers /_ping (30 s at most)
# and exits 1 with the service's log when it does not.  Exit 77 when podman
# is not installed (unless CI=true: then 1, since CI must not skip).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z $cmd || -z $dir ]]; then
  echo "usage: $0 start|stop|env DIR [tcp]" >&2
  exit 2
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
sock=$dir/podman.sock
uri=unix://$sock
ping() { curl -sf --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; }
if [[ ${3:-} == tcp || ( $cmd != start && -f $dir/tcp-port ) ]]; then
  [[ -f $dir/tcp-port ]] || python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' >"$dir/tcp-port"
  uri=tcp://127.0.0.1:$(cat "$dir/tcp-port")
  ping() { curl -sf "http://${uri#tcp://}/_ping" >/dev/null 2>&1; }
fi

podman_cmd() {
  CONTAINERS_CONF=$dir/containers.conf podman --root "$dir/storage" --runroot "$dir/run" \
    --cgroup-manager=cgroupfs --events-backend=file "$@"
}

case $cmd in
start)
  if ! command -v podman >/dev/null 2>&1; then
    echo "podman is not installed (Debian package podman; see scripts/setup)" >&2
    [[ ${CI:-} == true ]] && exit 1
    exit 77
  fi
  if [[ -f $dir/podman.pid ]] && kill -0 "$(cat "$dir/podman.pid")" 2>/dev/null; then
    echo "DOCKER_HOST=$uri"
    exit 0
  fi
  cat >"$dir/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
  mkdir -p "$dir/storage" "$dir/run" "$dir/tmp"
  rm -f "$sock"
  TMPDIR=$dir/tmp setsid bash -c 'exec "$@"' _ env CONTAINERS_CONF="$dir/containers.conf" \
    podman --root "$dir/storage" --runroot "$dir/run" --cgroup-manager=cgroupfs \
    --events-backend=file --tmpdir "$dir/tmp" \
    system service --time=0 "$uri" >"$dir/podman.log" 2>&1 </dev/null &
  echo $! >"$dir/podman.pid"
  for _ in $(seq 1 300); do
    if ping; then
      echo "DOCKER_HOST=$uri"
      exit 0
    fi
    if ! kill -0 "$(cat "$dir/podman.pid")" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "the podman API service did not start; its log ($dir/podman.log):" >&2
  cat "$dir/podman.log" >&2 || true
  exit 1
  ;;
stop)
  if [[ -f $dir/podman.pid ]]; then
    pid=$(cat "$dir/podman.pid")
    # containers first (the service would leave them behind), then the service
    podman_cmd rm -af -t 0 >/dev/null 2>&1 || true
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/podman.pid"
  fi
  # storage holds overlay mounts: unmount them through podman before deleting
  podman_cmd system reset -f >/dev/null 2>&1 || true
  rm -rf "$dir/storage" "$dir/run" "$dir/tmp" "$sock" "$dir/tcp-port"
  ;;
env)
  echo "DOCKER_HOST=$uri"
  ;;
*)
  echo "usage: $0 start|stop|env DIR" >&2
  exit 2
  ;;
esac
