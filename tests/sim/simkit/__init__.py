"""simkit: what every API simulator of zorch's tests needs (not shipped).

A simulator stands in for a control plane that cannot run on a test
machine (Kubernetes' API server, KFP, Vertex AI, SageMaker, ...).  It must
be faithful to the official API documents in ../shared/specs and run the
submitted work for real.  The kit gives it:

  server.py  App (routes by method and path pattern, auth hooks, the API's
             error shapes), Request (query, body, JSON, Go booleans,
             send_json, chunked streams), serve(), arg_parser(), specs_dir()
  pki.py     its own CA, a server certificate for 127.0.0.1/localhost and a
             client certificate (make_pki)
  auth.py    auth hooks: BearerToken, ClientCert (and how to write others)
  schema.py  Schemas: OpenAPI v2/v3, discovery and JSON Schema documents,
             $ref resolution, checks of request bodies
  store.py   Store: objects with versions, events, watches (Expired)
  engine.py  Engine: containers through Podman's Docker API; MemoryCgroup
  faults.py  request counts and fault injection (--fault, /_sim/...)
  util.py    now_iso, log, parse_bool, merge_patch, json_patch, drop_path

tests/sim/README.md says how to write a new simulator; tests/sim/k8s is
the Kubernetes one.
"""
from .auth import BearerToken, ClientCert, Unauthorized
from .engine import Engine, MemoryCgroup, demux
from .faults import Faults, Rule, parse_rule
from .pki import Pki, make_pki
from .schema import Result, Schemas, jtype
from .server import (App, HttpError, Request, Router, Stream, arg_parser, make_server, parse_args, serve,
                     specs_dir)
from .store import Event, Expired, Store
from .util import (PatchError, drop_path, json_patch, log, merge_patch, now_iso, parse_bool)

__all__ = ['App', 'BearerToken', 'ClientCert', 'Engine', 'Event', 'Expired', 'Faults', 'HttpError',
           'MemoryCgroup', 'PatchError', 'Pki', 'Request', 'Result', 'Router', 'Rule', 'Schemas', 'Store',
           'Stream', 'Unauthorized', 'arg_parser', 'demux', 'drop_path', 'jtype', 'json_patch', 'log',
           'make_pki', 'make_server', 'merge_patch', 'now_iso', 'parse_args', 'parse_bool', 'parse_rule', 'serve',
           'specs_dir']
