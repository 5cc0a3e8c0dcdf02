"""python3 -m k8s --dir DIR --podman-socket PATH [options]: serve the
simulated Kubernetes API until SIGTERM (see k8s/__init__.py)."""
import sys

import simkit

from . import __doc__ as DOC
from .api import KubeApi


def main(argv=None):
    ap = simkit.arg_parser(DOC.split('\n')[0], specs='kubernetes/openapi-spec/v3', prog='python3 -m k8s')
    ap.add_argument('--podman-socket', required=True, help="Podman's Docker-compatible API socket")
    ap.add_argument('--node-cpu', default='2')
    ap.add_argument('--node-memory', default='4Gi')
    ap.add_argument('--node-label', action='append', metavar='KEY=VALUE')
    ap.add_argument('--job-backoff', type=float, default=1.0, help='seconds before a failed Job pod is replaced')
    simkit.serve(KubeApi(simkit.parse_args(ap, argv)))


if __name__ == '__main__':
    sys.exit(main())
