#!/bin/sh
# A stand-in for a batch submitter: `queue-wrapper.sh QUEUE COMMAND...`
# records the submission in $QUEUE_LOG (default: queue.log next to this
# script) and runs COMMAND in its place, as `sbatch --wait` or `ssh host`
# would elsewhere.
queue=$1
shift
log=${QUEUE_LOG:-$(dirname "$0")/queue.log}
echo "queue=$queue pid=$$ argv=$*" >>"$log"
echo "[queue-wrapper] running on queue $queue" >&2
exec "$@"
