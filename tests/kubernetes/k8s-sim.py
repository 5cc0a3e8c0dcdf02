#!/usr/bin/python3
"""A Kubernetes API server simulator for zorch's tests (not shipped).

It serves the part of the Kubernetes REST API that the kubernetes flavor and
`kubectl get/describe pods` use, over HTTPS with a CA it makes itself, and
runs every Pod for real through Podman's Docker-compatible API, reporting
phases and container states as a kubelet would.

  * Every request body is checked against the OpenAPI v3 documents of the
    real API (/work/shared/specs/kubernetes/...): $refs resolved, types,
    required fields; unknown fields are rejected with 400 under
    fieldValidation=Strict and dropped with a Warning header otherwise
    (the API server's default, Warn).  Object names, label keys and values,
    container names, quantities, restart policies and cron schedules are
    validated as the API server does (422 Invalid with causes).
  * Requests need the bearer token or a client certificate signed by the
    simulator's CA (401 Unauthorized otherwise).
  * Objects carry uid, creationTimestamp and resourceVersion; list and
    watch (?watch=1, /watch/ paths, resourceVersion, label and field
    selectors, timeoutSeconds, bookmarks) behave as the API server's do;
    409 AlreadyExists, 404 NotFound, 410 Expired are Status objects.
  * The node: one simulated node with a capacity (--node-cpu,
    --node-memory) and labels.  A pod whose requests do not fit or whose
    nodeSelector does not match stays Pending with PodScheduled=False,
    reason Unschedulable.  Images come from the engine's local store (the
    node's "registry"): a missing image gives ErrImagePull, then
    ImagePullBackOff, and the pod stays Pending.  Memory limits are set on a
    pod cgroup, as the kubelet does; a container killed by the kernel's OOM
    killer is reported terminated with reason OOMKilled, exit code 137.
  * Pods use the host network; the kubelet injects KUBERNETES_SERVICE_HOST/
    PORT and mounts the service-account token, ca.crt and namespace at
    /var/run/secrets/kubernetes.io/serviceaccount, so code in a pod can use
    in-cluster config to talk back to the simulator.
  * Jobs (batch/v1): pods from the template, backoffLimit, status
    active/succeeded/failed, conditions Complete/Failed.  CronJobs are
    stored, listed, watched and deleted (not triggered).

Usage: k8s-sim.py --dir DIR --podman-socket PATH [--node-cpu 2]
                  [--node-memory 4Gi] [--spec-dir DIR]
Writes DIR/kubeconfig (token), DIR/kubeconfig-cert (client certificate),
DIR/ca.crt, DIR/token and DIR/ready (the URL, when serving).  SIGTERM stops
it and removes the containers it started.
"""
import argparse
import base64
import copy
import hashlib
import datetime
import http.client
import http.server
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import ssl
import string
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

SPEC_DIR_DEFAULT = '/work/shared/specs/kubernetes/openapi-spec/v3'


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def log(*a):
    print('k8s-sim:', *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Errors as the API server reports them (meta/v1 Status)

class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self):
        s = {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
             'message': self.message, 'reason': self.reason, 'code': self.code}
        if self.details:
            s['details'] = self.details
        return s


def not_found(group, resource, name):
    gr = resource if not group else resource + '.' + group
    return ApiError(404, 'NotFound', '%s "%s" not found' % (gr, name),
                    {'name': name, 'group': group, 'kind': resource})


def invalid(kind, group, name, causes):
    msg = '%s.%s "%s" is invalid: %s' % (kind, group, name, ', '.join(
        '%s: %s' % (c['field'], c['message']) for c in causes)) if group else \
        '%s "%s" is invalid: %s' % (kind, name, ', '.join('%s: %s' % (c['field'], c['message'])
                                                          for c in causes))
    return ApiError(422, 'Invalid', msg, {'name': name, 'group': group, 'kind': kind,
                                          'causes': [{'reason': c.get('reason', 'FieldValueInvalid'),
                                                      'message': c['message'], 'field': c['field']}
                                                     for c in causes]})


# ---------------------------------------------------------------------------
# OpenAPI schema checks

class Schemas:
    def __init__(self, spec_dir):
        self.s = {}
        self.docs = {}  # served at /openapi/v3/<path> (kubectl's field validation reads them)
        for f, key in (('api__v1_openapi.json', 'api/v1'), ('apis__batch__v1_openapi.json', 'apis/batch/v1')):
            with open(os.path.join(spec_dir, f), 'rb') as fh:
                data = fh.read()
            self.s.update(json.loads(data)['components']['schemas'])
            self.docs[key] = (hashlib.sha512(data).hexdigest().upper(), data)

    def resolve(self, sch):
        while True:
            if '$ref' in sch:
                sch = self.s[sch['$ref'].rsplit('/', 1)[1]]
            elif 'allOf' in sch and len(sch['allOf']) == 1 and 'type' not in sch:
                sch = sch['allOf'][0]
            else:
                return sch

    def check(self, obj, name, strict_unknown, path='', unknown=None, errors=None):
        """Type errors -> errors (a decoding error on a real server), unknown
        fields -> unknown.  Returns (unknown, errors)."""
        if unknown is None:
            unknown, errors = [], []
        sch = self.resolve(self.s[name] if isinstance(name, str) else name)
        self._check(obj, sch, path, unknown, errors)
        return unknown, errors

    def _check(self, v, sch, path, unknown, errors):
        sch = self.resolve(sch)
        if 'oneOf' in sch:  # Quantity, IntOrString
            for alt in sch['oneOf']:
                u, e = [], []
                self._check(v, alt, path, u, e)
                if not e:
                    return
            errors.append('%s: expected %s, got %s' % (path or '.', ' or '.join(
                a.get('type', '?') for a in sch['oneOf']), jtype(v)))
            return
        t = sch.get('type')
        if v is None:
            return  # null is accepted for any field (decoded as the zero value)
        if t == 'object' or (t is None and 'properties' in sch):
            if not isinstance(v, dict):
                errors.append('%s: expected object, got %s' % (path or '.', jtype(v)))
                return
            props = sch.get('properties', {})
            addl = sch.get('additionalProperties')
            for k, x in v.items():
                p = (path + '.' + k) if path else k
                if k in props:
                    self._check(x, props[k], p, unknown, errors)
                elif addl is not None and addl is not False:
                    if addl is not True:
                        self._check(x, addl, p, unknown, errors)
                elif not props and addl is None and t == 'object':
                    pass  # free-form object (RawExtension and the like)
                else:
                    unknown.append(p)
            for r in sch.get('required', []):
                if r not in v:
                    errors.append('%s: required field "%s" is missing' % (path or '.', r))
        elif t == 'array':
            if not isinstance(v, list):
                errors.append('%s: expected array, got %s' % (path, jtype(v)))
                return
            for i, x in enumerate(v):
                self._check(x, sch.get('items', {}), '%s[%d]' % (path, i), unknown, errors)
        elif t == 'string':
            if not isinstance(v, str):
                errors.append('%s: expected string, got %s' % (path, jtype(v)))
        elif t == 'integer':
            if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
                errors.append('%s: expected integer, got %s' % (path, jtype(v)))
            elif sch.get('format') == 'int32' and not -2**31 <= v < 2**31:
                errors.append('%s: %s overflows int32' % (path, v))
        elif t == 'number':
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                errors.append('%s: expected number, got %s' % (path, jtype(v)))
        elif t == 'boolean':
            if not isinstance(v, bool):
                errors.append('%s: expected boolean, got %s' % (path, jtype(v)))


def jtype(v):
    return {dict: 'object', list: 'array', str: 'string', bool: 'boolean', int: 'number',
            float: 'number', type(None): 'null'}.get(type(v), type(v).__name__)


DNS1123_LABEL = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')
DNS1123_SUBDOMAIN = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')
LABEL_VALUE = re.compile(r'^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$')
QUALIFIED_NAME = re.compile(r'^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$')
QUANTITY = re.compile(r'^([+-]?[0-9]+(\.[0-9]*)?|[+-]?\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$')
SUFFIX = {'Ki': 2**10, 'Mi': 2**20, 'Gi': 2**30, 'Ti': 2**40, 'Pi': 2**50, 'Ei': 2**60,
          'm': 1e-3, 'k': 1e3, 'M': 1e6, 'G': 1e9, 'T': 1e12, 'P': 1e15, 'E': 1e18, '': 1}


def quantity(q):
    """A Quantity as a float, or None when malformed."""
    if isinstance(q, (int, float)) and not isinstance(q, bool):
        return float(q)
    if not isinstance(q, str):
        return None
    m = QUANTITY.match(q)
    if not m:
        return None
    num, suf = float(m.group(1)), m.group(3) or ''
    if suf[:1] in ('e', 'E'):
        return num * 10 ** int(suf[1:])
    return num * SUFFIX[suf]


def check_name(name, field, causes, label=False, maxlen=253):
    rx, what = (DNS1123_LABEL, 'RFC 1123 label') if label else (DNS1123_SUBDOMAIN, 'RFC 1123 subdomain')
    if not isinstance(name, str) or not name:
        causes.append({'field': field, 'message': 'Required value: name or generateName is required',
                       'reason': 'FieldValueRequired'})
    elif len(name) > maxlen or not rx.match(name):
        causes.append({'field': field, 'message': 'Invalid value: "%s": a lowercase %s must consist of '
                       'lower case alphanumeric characters, \'-\' or \'.\', and must start and end with '
                       'an alphanumeric character (must be no more than %d characters)' % (name, what, maxlen)})


def check_meta(meta, causes, maxlen=253, label_name=False):
    name = meta.get('name')
    if not name and meta.get('generateName'):
        name = meta['generateName'] + 'xxxxx'
    check_name(name, 'metadata.name', causes, label=label_name, maxlen=maxlen)
    for k, v in (meta.get('labels') or {}).items():
        check_label_key(k, 'metadata.labels', causes)
        if len(v) > 63 or not LABEL_VALUE.match(v):
            causes.append({'field': 'metadata.labels', 'message': 'Invalid value: "%s": a valid label must be '
                           'an empty string or consist of alphanumeric characters, \'-\', \'_\' or \'.\', and '
                           'must start and end with an alphanumeric character (max 63 characters)' % v})
    for k in (meta.get('annotations') or {}):
        check_label_key(k, 'metadata.annotations', causes)


def check_label_key(k, field, causes):
    prefix, _, nm = k.rpartition('/')
    if (prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix))) or \
            not nm or len(nm) > 63 or not QUALIFIED_NAME.match(nm):
        causes.append({'field': field, 'message': 'Invalid value: "%s": name part must consist of '
                       'alphanumeric characters, \'-\', \'_\' or \'.\', and must start and end with an '
                       'alphanumeric character' % k})


def check_pod_spec(spec, f, causes, job=False):
    cs = spec.get('containers') or []
    if not cs:
        causes.append({'field': f + '.containers', 'message': 'Required value', 'reason': 'FieldValueRequired'})
    vols = set()
    for i, v in enumerate(spec.get('volumes') or []):
        check_name(v.get('name'), '%s.volumes[%d].name' % (f, i), causes, label=True, maxlen=63)
        if v.get('name') in vols:
            causes.append({'field': '%s.volumes[%d].name' % (f, i), 'message': 'Duplicate value: "%s"' % v['name'],
                           'reason': 'FieldValueDuplicate'})
        vols.add(v.get('name'))
        hp = v.get('hostPath')
        if hp is not None and not str(hp.get('path', '')).startswith('/'):
            causes.append({'field': '%s.volumes[%d].hostPath.path' % (f, i),
                           'message': 'Invalid value: "%s": must be an absolute path' % hp.get('path')})
    names = set()
    for i, c in enumerate(cs + (spec.get('initContainers') or [])):
        cf = '%s.containers[%d]' % (f, i)
        check_name(c.get('name'), cf + '.name', causes, label=True, maxlen=63)
        if c.get('name') in names:
            causes.append({'field': cf + '.name', 'message': 'Duplicate value: "%s"' % c.get('name'),
                           'reason': 'FieldValueDuplicate'})
        names.add(c.get('name'))
        if not c.get('image'):
            causes.append({'field': cf + '.image', 'message': 'Required value', 'reason': 'FieldValueRequired'})
        res = c.get('resources') or {}
        for kind in ('requests', 'limits'):
            for rname, q in (res.get(kind) or {}).items():
                if quantity(q) is None:
                    causes.append({'field': '%s.resources.%s[%s]' % (cf, kind, rname),
                                   'message': 'Invalid value: "%s": quantities must match the regular '
                                   'expression \'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$\'' % q})
        for rname, q in (res.get('requests') or {}).items():
            lim = (res.get('limits') or {}).get(rname)
            if lim is not None and quantity(q) is not None and quantity(lim) is not None and \
                    quantity(q) > quantity(lim):
                causes.append({'field': '%s.resources.requests' % cf,
                               'message': 'Invalid value: "%s": must be less than or equal to %s limit of %s'
                               % (q, rname, lim)})
        for j, m in enumerate(c.get('volumeMounts') or []):
            if m.get('name') not in vols:
                causes.append({'field': '%s.volumeMounts[%d].name' % (cf, j),
                               'message': 'Not found: "%s"' % m.get('name'), 'reason': 'FieldValueNotFound'})
            if not str(m.get('mountPath', '')).startswith('/'):
                causes.append({'field': '%s.volumeMounts[%d].mountPath' % (cf, j),
                               'message': 'Invalid value: "%s": must be an absolute path' % m.get('mountPath')})
        for j, e in enumerate(c.get('env') or []):
            if not e.get('name'):
                causes.append({'field': '%s.env[%d].name' % (cf, j), 'message': 'Required value',
                               'reason': 'FieldValueRequired'})
    rp = spec.get('restartPolicy', 'Always')
    allowed = ('OnFailure', 'Never') if job else ('Always', 'OnFailure', 'Never')
    if rp not in allowed:
        causes.append({'field': f + '.restartPolicy', 'message': 'Unsupported value: "%s": supported values: %s'
                       % (rp, ', '.join('"%s"' % a for a in allowed)), 'reason': 'FieldValueNotSupported'})
    for i, t in enumerate(spec.get('tolerations') or []):
        if t.get('operator', 'Equal') not in ('Equal', 'Exists'):
            causes.append({'field': '%s.tolerations[%d].operator' % (f, i),
                           'message': 'Unsupported value: "%s"' % t.get('operator'), 'reason': 'FieldValueNotSupported'})
        if t.get('effect') not in (None, '', 'NoSchedule', 'PreferNoSchedule', 'NoExecute'):
            causes.append({'field': '%s.tolerations[%d].effect' % (f, i),
                           'message': 'Unsupported value: "%s"' % t.get('effect'), 'reason': 'FieldValueNotSupported'})
    for i, s in enumerate(spec.get('imagePullSecrets') or []):
        if not s.get('name'):
            causes.append({'field': '%s.imagePullSecrets[%d].name' % (f, i), 'message': 'Required value',
                           'reason': 'FieldValueRequired'})
    sa = spec.get('serviceAccountName')
    if sa:
        check_name(sa, f + '.serviceAccountName', causes)


CRON_FIELD = re.compile(r'^(\*|[0-9]+(-[0-9]+)?)(/[0-9]+)?(,(\*|[0-9]+(-[0-9]+)?)(/[0-9]+)?)*$')
CRON_NAMED = re.compile(r'^[0-9A-Za-z*/,-]+$')
CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def cron_ok(s):
    if s.startswith('@'):
        return s in ('@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly')
    parts = s.split()
    if len(parts) != 5:
        return False
    for p, (lo, hi) in zip(parts, CRON_RANGES):
        if p == '?':
            continue
        if not CRON_FIELD.match(p):
            if not CRON_NAMED.match(p) or not re.search('[A-Za-z]', p):
                return False
            continue
        for n in re.findall(r'[0-9]+', re.sub(r'/[0-9]+', '', p)):
            if not lo <= int(n) <= hi:
                return False
    return True


def validate_object(kind, obj, causes):
    meta = obj.get('metadata') or {}
    spec = obj.get('spec') or {}
    if kind == 'Pod':
        check_meta(meta, causes)
        check_pod_spec(spec, 'spec', causes)
    elif kind == 'Job':
        check_meta(meta, causes, maxlen=63, label_name=True)
        tpl = spec.get('template') or {}
        check_pod_spec(tpl.get('spec') or {}, 'spec.template.spec', causes, job=True)
        if tpl.get('metadata'):
            check_meta(dict(tpl['metadata'], name=meta.get('name') or 'x'), causes)
        bl = spec.get('backoffLimit')
        if bl is not None and bl < 0:
            causes.append({'field': 'spec.backoffLimit', 'message': 'Invalid value: %d: must be greater than '
                           'or equal to 0' % bl})
    elif kind == 'CronJob':
        check_meta(meta, causes, maxlen=52, label_name=True)
        if not cron_ok(spec.get('schedule', '')):
            causes.append({'field': 'spec.schedule', 'message': 'Invalid value: "%s": unparseable cron '
                           'expression' % spec.get('schedule', '')})
        jt = (spec.get('jobTemplate') or {}).get('spec') or {}
        check_pod_spec((jt.get('template') or {}).get('spec') or {}, 'spec.jobTemplate.spec.template.spec',
                       causes, job=True)
    elif kind == 'Namespace':
        check_meta(meta, causes, maxlen=63, label_name=True)
    else:
        check_meta(meta, causes)


# ---------------------------------------------------------------------------
# Resources this server knows

class Res:
    def __init__(self, group, version, plural, kind, schema, namespaced=True, short=(), verbs=None):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.schema, self.namespaced, self.short = schema, namespaced, list(short)
        self.verbs = verbs or ['create', 'delete', 'deletecollection', 'get', 'list', 'watch']

    @property
    def api_version(self):
        return self.version if not self.group else self.group + '/' + self.version


RESOURCES = [
    Res('', 'v1', 'pods', 'Pod', 'io.k8s.api.core.v1.Pod', short=['po']),
    Res('', 'v1', 'events', 'Event', 'io.k8s.api.core.v1.Event', short=['ev']),
    Res('', 'v1', 'namespaces', 'Namespace', 'io.k8s.api.core.v1.Namespace', namespaced=False, short=['ns'],
        verbs=['create', 'delete', 'get', 'list', 'watch']),
    Res('', 'v1', 'nodes', 'Node', 'io.k8s.api.core.v1.Node', namespaced=False, short=['no'],
        verbs=['get', 'list', 'watch']),
    Res('', 'v1', 'secrets', 'Secret', 'io.k8s.api.core.v1.Secret'),
    Res('', 'v1', 'serviceaccounts', 'ServiceAccount', 'io.k8s.api.core.v1.ServiceAccount', short=['sa']),
    Res('', 'v1', 'persistentvolumeclaims', 'PersistentVolumeClaim',
        'io.k8s.api.core.v1.PersistentVolumeClaim', short=['pvc']),
    Res('batch', 'v1', 'jobs', 'Job', 'io.k8s.api.batch.v1.Job'),
    Res('batch', 'v1', 'cronjobs', 'CronJob', 'io.k8s.api.batch.v1.CronJob', short=['cj']),
]
BY_PATH = {(r.group, r.plural): r for r in RESOURCES}


# ---------------------------------------------------------------------------
# Selectors

def parse_label_selector(s):
    reqs = []
    if not s:
        return reqs
    for part in re.split(r',(?![^()]*\))', s):
        part = part.strip()
        m = re.match(r'^([^!=\s]+)\s+(in|notin)\s+\(([^)]*)\)$', part)
        if m:
            reqs.append((m.group(1), m.group(2), [x.strip() for x in m.group(3).split(',')]))
        elif '!=' in part:
            k, v = part.split('!=', 1)
            reqs.append((k.strip(), '!=', v.strip()))
        elif '==' in part:
            k, v = part.split('==', 1)
            reqs.append((k.strip(), '=', v.strip()))
        elif '=' in part:
            k, v = part.split('=', 1)
            reqs.append((k.strip(), '=', v.strip()))
        elif part.startswith('!'):
            reqs.append((part[1:], '!exists', None))
        elif part:
            reqs.append((part, 'exists', None))
    for k, _, _ in reqs:
        errs = []
        check_label_key(k, 'labelSelector', errs)
        if errs:
            raise ApiError(400, 'BadRequest', 'unable to parse requirement: %s' % errs[0]['message'])
    return reqs


def label_match(obj, reqs):
    labels = (obj.get('metadata') or {}).get('labels') or {}
    for k, op, v in reqs:
        if op == '=' and labels.get(k) != v:
            return False
        if op == '!=' and labels.get(k) == v:
            return False
        if op == 'in' and labels.get(k) not in v:
            return False
        if op == 'notin' and labels.get(k) in v:
            return False
        if op == 'exists' and k not in labels:
            return False
        if op == '!exists' and k in labels:
            return False
    return True


def field_value(obj, path):
    cur = obj
    for p in path.split('.'):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def parse_field_selector(s):
    reqs = []
    for part in (s or '').split(','):
        if not part:
            continue
        if '!=' in part:
            k, v = part.split('!=', 1)
            reqs.append((k, False, v))
        else:
            k, v = part.replace('==', '=').split('=', 1)
            reqs.append((k, True, v))
    return reqs


def field_match(obj, reqs):
    for k, eq, v in reqs:
        got = field_value(obj, k)
        got = '' if got is None else str(got)
        if (got == v) != eq:
            return False
    return True


# ---------------------------------------------------------------------------
# The store: objects, resourceVersions, watch history

class Store:
    HISTORY = 20000

    def __init__(self):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 100
        self.objs = {}      # (plural, ns, name) -> obj
        self.history = []   # (rv, plural, type, obj)
        self.oldest = self.rv

    def _bump(self):
        self.rv += 1
        return str(self.rv)

    def _record(self, plural, typ, obj):
        self.history.append((int(obj['metadata']['resourceVersion']), plural, typ, copy.deepcopy(obj)))
        if len(self.history) > self.HISTORY:
            drop = len(self.history) - self.HISTORY
            self.oldest = self.history[drop - 1][0]
            del self.history[:drop]
        self.cond.notify_all()

    def create(self, res, ns, obj):
        with self.lock:
            meta = obj.setdefault('metadata', {})
            if not meta.get('name') and meta.get('generateName'):
                while True:
                    meta['name'] = meta['generateName'] + ''.join(
                        random.choice('bcdfghjklmnpqrstvwxz2456789') for _ in range(5))
                    if (res.plural, ns, meta['name']) not in self.objs:
                        break
            key = (res.plural, ns, meta['name'])
            if key in self.objs:
                gr = res.plural if not res.group else res.plural + '.' + res.group
                raise ApiError(409, 'AlreadyExists', '%s "%s" already exists' % (gr, meta['name']),
                               {'name': meta['name'], 'group': res.group, 'kind': res.plural})
            if res.namespaced:
                meta['namespace'] = ns
            meta['uid'] = str(uuid.uuid4())
            meta['creationTimestamp'] = now_iso()
            meta['resourceVersion'] = self._bump()
            meta.pop('deletionTimestamp', None)
            obj['apiVersion'], obj['kind'] = res.api_version, res.kind
            self.objs[key] = obj
            self._record(res.plural, 'ADDED', obj)
            return copy.deepcopy(obj)

    def get(self, res, ns, name):
        with self.lock:
            o = self.objs.get((res.plural, ns, name))
            if o is None:
                raise not_found(res.group, res.plural, name)
            return copy.deepcopy(o)

    def peek(self, plural, ns, name):
        with self.lock:
            return self.objs.get((plural, ns, name))

    def update(self, plural, ns, name, fn):
        """Apply fn(obj) under the lock; record MODIFIED.  Returns the new copy or None."""
        with self.lock:
            o = self.objs.get((plural, ns, name))
            if o is None:
                return None
            if fn(o) is False:
                return copy.deepcopy(o)
            o['metadata']['resourceVersion'] = self._bump()
            self._record(plural, 'MODIFIED', o)
            return copy.deepcopy(o)

    def delete(self, plural, ns, name):
        with self.lock:
            o = self.objs.pop((plural, ns, name), None)
            if o is None:
                return None
            o['metadata']['resourceVersion'] = self._bump()
            self._record(plural, 'DELETED', o)
            return copy.deepcopy(o)

    def list(self, plural, ns, lsel=(), fsel=()):
        with self.lock:
            items = [copy.deepcopy(o) for (p, n, _), o in sorted(self.objs.items())
                     if p == plural and (ns is None or n == ns) and label_match(o, lsel)
                     and field_match(o, fsel)]
            return items, str(self.rv)


# ---------------------------------------------------------------------------
# Podman (Docker-compatible API) over a unix socket

class UnixConn(http.client.HTTPConnection):
    def __init__(self, path, timeout=None):
        super().__init__('localhost', timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout:
            self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Engine:
    def __init__(self, sock):
        self.sock = sock

    def call(self, method, path, body=None, timeout=120, raw=False):
        c = UnixConn(self.sock, timeout=timeout)
        try:
            hdr = {}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                hdr['Content-Type'] = 'application/json'
            c.request(method, '/v1.41' + path, body=data, headers=hdr)
            r = c.getresponse()
            out = r.read()
            if raw:
                return r.status, out
            try:
                return r.status, json.loads(out) if out else None
            except ValueError:
                return r.status, {'message': out.decode(errors='replace')}
        finally:
            c.close()

    def logs(self, cid):
        st, out = self.call('GET', '/containers/%s/logs?stdout=1&stderr=1&timestamps=0' % cid, raw=True)
        return demux(out) if st == 200 else b''


def demux(buf):
    out, i = [], 0
    while i + 8 <= len(buf):
        if buf[i] not in (0, 1, 2) or buf[i + 1:i + 4] != b'\0\0\0':
            return buf  # not multiplexed (tty)
        n = int.from_bytes(buf[i + 4:i + 8], 'big')
        out.append(buf[i + 8:i + 8 + n])
        i += 8 + n
    return b''.join(out)


# ---------------------------------------------------------------------------
# Pod cgroups (memory limits as the kubelet sets them; OOM detection)

class PodCgroup:
    V1 = '/sys/fs/cgroup/memory'

    def __init__(self, sim_id, pod_uid, limit):
        self.ok = False
        self.limit = limit
        self.rel = '/zorch-k8s-sim-%s/pod%s' % (sim_id, pod_uid)
        self.v2 = os.path.exists('/sys/fs/cgroup/cgroup.controllers')
        base = '/sys/fs/cgroup' if self.v2 else self.V1
        self.path = base + self.rel
        try:
            os.makedirs(self.path, exist_ok=True)
            if limit:
                if self.v2:
                    with open(os.path.join(os.path.dirname(self.path), 'cgroup.subtree_control'), 'w') as f:
                        f.write('+memory')
                    with open(self.path + '/memory.max', 'w') as f:
                        f.write(str(int(limit)))
                else:
                    with open(self.path + '/memory.limit_in_bytes', 'w') as f:
                        f.write(str(int(limit)))
            self.ok = True
        except OSError as e:
            log('pod cgroup %s: %s (memory limit set on the container instead)' % (self.path, e))

    def oom_killed(self):
        try:
            if self.v2:
                with open(self.path + '/memory.events') as f:
                    return any(l.split()[0] == 'oom_kill' and int(l.split()[1]) > 0 for l in f)
            with open(self.path + '/memory.oom_control') as f:
                if any(l.startswith('oom_kill ') and int(l.split()[1]) > 0 for l in f):
                    return True
            with open(self.path + '/memory.failcnt') as f:
                failcnt = int(f.read())
            with open(self.path + '/memory.max_usage_in_bytes') as f:
                peak = int(f.read())
            return failcnt > 0 and peak >= self.limit - 2**20
        except (OSError, ValueError):
            return False

    def remove(self):
        for _ in range(20):
            try:
                for d in sorted((os.path.join(r, x) for r, ds, _ in os.walk(self.path) for x in ds),
                                key=len, reverse=True):
                    os.rmdir(d)
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)


# ---------------------------------------------------------------------------
# The simulator: API server + scheduler + kubelet + job controller

class Sim:
    def __init__(self, args):
        self.args = args
        self.schemas = Schemas(args.spec_dir)
        self.store = Store()
        self.engine = Engine(args.podman_socket)
        self.id = secrets.token_hex(4)
        self.token = secrets.token_hex(24)
        self.node_cpu = quantity(args.node_cpu)
        self.node_mem = quantity(args.node_memory)
        self.node_name = 'zorch-sim-node'
        self.node_labels = {'kubernetes.io/hostname': self.node_name, 'kubernetes.io/os': 'linux',
                            'kubernetes.io/arch': 'amd64'}
        for kv in args.node_label or []:
            k, v = kv.split('=', 1)
            self.node_labels[k] = v
        self.pods = {}   # (ns, name) -> PodRunner
        self.plock = threading.Lock()
        self.stopping = False
        self.logs = {}   # pod uid -> {container: bytes}
        self.sa_dir = os.path.join(args.dir, 'serviceaccount')
        res = BY_PATH[('', 'namespaces')]
        for ns in ('default', 'kube-system', 'kube-public'):
            self.store.create(res, None, {'metadata': {'name': ns}, 'spec': {'finalizers': ['kubernetes']},
                                          'status': {'phase': 'Active'}})
        self.store.create(BY_PATH[('', 'nodes')], None, {
            'metadata': {'name': self.node_name, 'labels': self.node_labels},
            'status': {'capacity': {'cpu': args.node_cpu, 'memory': args.node_memory, 'pods': '110'},
                       'allocatable': {'cpu': args.node_cpu, 'memory': args.node_memory, 'pods': '110'},
                       'addresses': [{'type': 'InternalIP', 'address': '127.0.0.1'},
                                     {'type': 'Hostname', 'address': self.node_name}],
                       'conditions': [{'type': 'Ready', 'status': 'True', 'reason': 'KubeletReady',
                                       'message': 'kubelet is posting ready status',
                                       'lastHeartbeatTime': now_iso(), 'lastTransitionTime': now_iso()}],
                       'nodeInfo': {'kubeletVersion': 'v1.32.0-zorch-sim', 'containerRuntimeVersion':
                                    'podman://4', 'operatingSystem': 'linux', 'architecture': 'amd64',
                                    'osImage': 'zorch k8s simulator', 'kernelVersion': os.uname().release,
                                    'kubeProxyVersion': '', 'machineID': '', 'systemUUID': '',
                                    'bootID': ''}}})
        self.sched_cond = threading.Condition()
        threading.Thread(target=self.scheduler_loop, daemon=True).start()

    # ---- events -----------------------------------------------------------
    def event(self, obj, typ, reason, message, component='kubelet'):
        meta = obj['metadata']
        ev = {'metadata': {'name': '%s.%x' % (meta['name'], time.time_ns()), 'namespace': meta.get('namespace')},
              'involvedObject': {'kind': obj['kind'], 'namespace': meta.get('namespace'), 'name': meta['name'],
                                 'uid': meta['uid'], 'apiVersion': obj['apiVersion'],
                                 'resourceVersion': meta.get('resourceVersion')},
              'reason': reason, 'message': message, 'type': typ, 'count': 1,
              'source': {'component': component, 'host': self.node_name if component == 'kubelet' else None},
              'firstTimestamp': now_iso(), 'lastTimestamp': now_iso(), 'reportingComponent': component,
              'reportingInstance': self.node_name}
        if ev['source']['host'] is None:
            del ev['source']['host']
        try:
            self.store.create(BY_PATH[('', 'events')], meta.get('namespace'), ev)
        except ApiError:
            pass

    # ---- scheduling -------------------------------------------------------
    def pod_requests(self, spec):
        cpu = mem = 0.0
        for c in spec.get('containers') or []:
            r = c.get('resources') or {}
            req = dict(r.get('limits') or {})
            req.update(r.get('requests') or {})
            cpu += quantity(req.get('cpu', 0)) or 0
            mem += quantity(req.get('memory', 0)) or 0
        return cpu, mem

    def scheduler_loop(self):
        while not self.stopping:
            with self.sched_cond:
                self.sched_cond.wait(1.0)
            try:
                self.schedule_pending()
            except Exception as e:  # keep scheduling
                log('scheduler:', repr(e))

    def kick_scheduler(self):
        with self.sched_cond:
            self.sched_cond.notify_all()

    def schedule_pending(self):
        pods, _ = self.store.list('pods', None)
        used_cpu = used_mem = 0.0
        for p in pods:
            if p['spec'].get('nodeName') and p['status'].get('phase') in ('Pending', 'Running'):
                c, m = self.pod_requests(p['spec'])
                used_cpu += c
                used_mem += m
        for p in pods:
            if p['spec'].get('nodeName') or p['metadata'].get('deletionTimestamp'):
                continue
            cpu, mem = self.pod_requests(p['spec'])
            reasons = []
            ns_sel = p['spec'].get('nodeSelector') or {}
            if any(self.node_labels.get(k) != v for k, v in ns_sel.items()):
                reasons.append("1 node(s) didn't match Pod's node affinity/selector")
            if not reasons and not self.affinity_ok(p['spec'].get('affinity')):
                reasons.append("1 node(s) didn't match Pod's node affinity/selector")
            if cpu > self.node_cpu - used_cpu + 1e-9:
                reasons.append('1 Insufficient cpu')
            if mem > self.node_mem - used_mem + 0.5:
                reasons.append('1 Insufficient memory')
            name, ns = p['metadata']['name'], p['metadata']['namespace']
            if reasons:
                msg = '0/1 nodes are available: %s. preemption: 0/1 nodes are available: 1 No preemption ' \
                      'victims found for incoming pod.' % ', '.join(reasons)

                def unsched(o, msg=msg):
                    conds = o['status'].setdefault('conditions', [])
                    cur = [c for c in conds if c['type'] == 'PodScheduled']
                    if cur and cur[0]['message'] == msg:
                        return False
                    o['status']['conditions'] = [{'type': 'PodScheduled', 'status': 'False',
                                                  'reason': 'Unschedulable', 'message': msg,
                                                  'lastProbeTime': None, 'lastTransitionTime': now_iso()}]
                    return True
                before = self.store.peek('pods', ns, name)
                changed = before is not None and not any(
                    c.get('message') == msg for c in before['status'].get('conditions', []))
                o = self.store.update('pods', ns, name, unsched)
                if o and changed:
                    self.event(o, 'Warning', 'FailedScheduling', msg, component='default-scheduler')
                continue
            used_cpu += cpu
            used_mem += mem

            def bind(o):
                o['spec']['nodeName'] = self.node_name
                o['status']['conditions'] = [{'type': 'PodScheduled', 'status': 'True', 'lastProbeTime': None,
                                              'lastTransitionTime': now_iso()}]
            o = self.store.update('pods', ns, name, bind)
            if o:
                self.event(o, 'Normal', 'Scheduled', 'Successfully assigned %s/%s to %s'
                           % (ns, name, self.node_name), component='default-scheduler')
                runner = PodRunner(self, ns, name)
                with self.plock:
                    self.pods[(ns, name)] = runner
                runner.start()

    def affinity_ok(self, aff):
        req = (((aff or {}).get('nodeAffinity') or {}).get('requiredDuringSchedulingIgnoredDuringExecution')
               or {}).get('nodeSelectorTerms')
        if not req:
            return True
        for term in req:
            ok = True
            for e in term.get('matchExpressions') or []:
                v = self.node_labels.get(e.get('key'))
                op, vals = e.get('operator'), e.get('values') or []
                if (op == 'In' and v not in vals) or (op == 'NotIn' and v in vals) or \
                        (op == 'Exists' and v is None) or (op == 'DoesNotExist' and v is not None):
                    ok = False
            if ok:
                return True
        return False

    # ---- job controller ----------------------------------------------------
    def job_created(self, ns, name):
        threading.Thread(target=self.job_loop, args=(ns, name), daemon=True).start()

    def job_loop(self, ns, name):
        job = self.store.peek('jobs', ns, name)
        if job is None:
            return
        uid = job['metadata']['uid']
        backoff_limit = job['spec'].get('backoffLimit', 6)
        self.store.update('jobs', ns, name, lambda o: o['status'].update(startTime=now_iso(), active=0) and False)
        failed = succeeded = 0
        delay = self.args.job_backoff
        while not self.stopping:
            job = self.store.peek('jobs', ns, name)
            if job is None or job['metadata']['uid'] != uid:
                return
            pod = self.job_pod(job)
            self.store.update('jobs', ns, name, lambda o: o['status'].update(active=1, ready=0))
            phase, reason = self.wait_pod_end(ns, pod['metadata']['name'], uid)
            if phase is None:
                return  # job deleted
            if phase == 'Succeeded':
                succeeded += 1
                t = now_iso()

                def done(o):
                    o['status'].update(active=0, succeeded=succeeded, failed=failed or None,
                                       completionTime=t, ready=0)
                    o['status']['conditions'] = [
                        {'type': 'SuccessCriteriaMet', 'status': 'True', 'reason': 'CompletionsReached',
                         'message': 'Reached expected number of succeeded pods', 'lastProbeTime': t,
                         'lastTransitionTime': t},
                        {'type': 'Complete', 'status': 'True', 'reason': 'CompletionsReached',
                         'message': 'Reached expected number of succeeded pods', 'lastProbeTime': t,
                         'lastTransitionTime': t}]
                    if not o['status']['failed']:
                        del o['status']['failed']
                o = self.store.update('jobs', ns, name, done)
                if o:
                    self.event(o, 'Normal', 'Completed', 'Job completed', component='job-controller')
                return
            failed += 1
            if failed > backoff_limit:
                t = now_iso()

                def fail(o):
                    o['status'].update(active=0, failed=failed, ready=0)
                    o['status']['conditions'] = [
                        {'type': 'FailureTarget', 'status': 'True', 'reason': 'BackoffLimitExceeded',
                         'message': 'Job has reached the specified backoff limit', 'lastProbeTime': t,
                         'lastTransitionTime': t},
                        {'type': 'Failed', 'status': 'True', 'reason': 'BackoffLimitExceeded',
                         'message': 'Job has reached the specified backoff limit', 'lastProbeTime': t,
                         'lastTransitionTime': t}]
                o = self.store.update('jobs', ns, name, fail)
                if o:
                    self.event(o, 'Warning', 'BackoffLimitExceeded', 'Job has reached the specified backoff limit',
                               component='job-controller')
                return
            self.store.update('jobs', ns, name, lambda o: o['status'].update(active=0, failed=failed))
            time.sleep(delay)
            delay = min(delay * 2, 30)

    def job_pod(self, job):
        meta, tpl = job['metadata'], copy.deepcopy(job['spec']['template'])
        pm = tpl.setdefault('metadata', {})
        labels = pm.setdefault('labels', {})
        labels.update({'controller-uid': meta['uid'], 'job-name': meta['name'],
                       'batch.kubernetes.io/controller-uid': meta['uid'],
                       'batch.kubernetes.io/job-name': meta['name']})
        pm['generateName'] = meta['name'] + '-'
        pm.pop('name', None)
        pm['ownerReferences'] = [{'apiVersion': 'batch/v1', 'kind': 'Job', 'name': meta['name'],
                                  'uid': meta['uid'], 'controller': True, 'blockOwnerDeletion': True}]
        pod = {'metadata': pm, 'spec': tpl.get('spec') or {}}
        o = self.create_pod(meta['namespace'], pod)
        self.event(job, 'Normal', 'SuccessfulCreate', 'Created pod: %s' % o['metadata']['name'],
                   component='job-controller')
        return o

    def wait_pod_end(self, ns, name, job_uid):
        with self.store.cond:
            while not self.stopping:
                j = self.store.objs.get(('jobs', ns, self_job_name(self.store, ns, job_uid)))
                if j is None:
                    return None, None
                p = self.store.objs.get(('pods', ns, name))
                if p is None:
                    return 'Failed', 'Deleted'
                if p['status'].get('phase') in ('Succeeded', 'Failed'):
                    return p['status']['phase'], p['status'].get('reason')
                self.store.cond.wait(1.0)
        return None, None

    # ---- pods ----------------------------------------------------------------
    def create_pod(self, ns, pod):
        spec = pod.setdefault('spec', {})
        spec.setdefault('restartPolicy', 'Always')
        spec.setdefault('dnsPolicy', 'ClusterFirst')
        spec.setdefault('schedulerName', 'default-scheduler')
        spec.setdefault('terminationGracePeriodSeconds', 30)
        spec.setdefault('serviceAccountName', 'default')
        spec.setdefault('serviceAccount', spec['serviceAccountName'])
        spec.setdefault('securityContext', {})
        spec.setdefault('tolerations', [])
        spec['tolerations'] += [
            {'key': 'node.kubernetes.io/not-ready', 'operator': 'Exists', 'effect': 'NoExecute',
             'tolerationSeconds': 300},
            {'key': 'node.kubernetes.io/unreachable', 'operator': 'Exists', 'effect': 'NoExecute',
             'tolerationSeconds': 300}]
        for c in spec.get('containers', []):
            c.setdefault('imagePullPolicy', 'Always' if c['image'].endswith(':latest') or ':' not in
                         c['image'].rsplit('/', 1)[-1] else 'IfNotPresent')
            c.setdefault('terminationMessagePath', '/dev/termination-log')
            c.setdefault('terminationMessagePolicy', 'File')
            c.setdefault('resources', {})
            r = c['resources']
            if r.get('limits') and not r.get('requests'):
                r['requests'] = dict(r['limits'])
        cpu_req, mem_req = self.pod_requests(spec)
        limits_all = all((c.get('resources') or {}).get('limits', {}).get(k) for c in spec['containers']
                         for k in ('cpu', 'memory'))
        qos = 'BestEffort' if not cpu_req and not mem_req else ('Guaranteed' if limits_all else 'Burstable')
        pod['status'] = {'phase': 'Pending', 'qosClass': qos}
        o = self.store.create(BY_PATH[('', 'pods')], ns, pod)
        self.kick_scheduler()
        return o

    def delete_pod(self, ns, name, grace=None):
        def mark(o):
            if o['metadata'].get('deletionTimestamp'):
                return False
            o['metadata']['deletionTimestamp'] = now_iso()
            o['metadata']['deletionGracePeriodSeconds'] = grace if grace is not None else \
                o['spec'].get('terminationGracePeriodSeconds', 30)
        o = self.store.update('pods', ns, name, mark)
        if o is None:
            raise not_found('', 'pods', name)
        with self.plock:
            runner = self.pods.get((ns, name))
        if runner is None:
            self.store.delete('pods', ns, name)
        else:
            runner.kill(o['metadata']['deletionGracePeriodSeconds'])
        return o


def self_job_name(store, ns, uid):
    for (p, n, name), o in store.objs.items():
        if p == 'jobs' and n == ns and o['metadata']['uid'] == uid:
            return name
    return None


class PodRunner(threading.Thread):
    """The kubelet's work for one pod: pull, create, start, watch, report."""

    def __init__(self, sim, ns, name):
        super().__init__(daemon=True)
        self.sim, self.ns, self.name = sim, ns, name
        self.cids = {}
        self.killed = threading.Event()
        self.grace = 30
        self.cgroup = None

    def upd(self, fn):
        return self.sim.store.update('pods', self.ns, self.name, fn)

    def kill(self, grace):
        self.grace = grace
        self.killed.set()

    def cstatus(self, c, state, ready=False, started=False, restarts=0, image_id=''):
        return {'name': c['name'], 'image': c['image'], 'imageID': image_id, 'ready': ready,
                'restartCount': restarts, 'started': started, 'state': state,
                'lastState': {}, **({'containerID': 'podman://' + self.cids[c['name']]}
                                    if c['name'] in self.cids else {})}

    def run(self):
        try:
            self._run()
        except Exception as e:
            log('pod %s/%s: %r' % (self.ns, self.name, e))
            import traceback
            traceback.print_exc()
        finally:
            for cid in self.cids.values():
                self.sim.engine.call('DELETE', '/containers/%s?force=1&v=1' % cid)
            if self.cgroup:
                self.cgroup.remove()
            with self.sim.plock:
                self.sim.pods.pop((self.ns, self.name), None)
            if self.killed.is_set():
                self.sim.store.delete('pods', self.ns, self.name)
            self.sim.kick_scheduler()

    def _run(self):
        sim = self.sim
        pod = sim.store.get(BY_PATH[('', 'pods')], self.ns, self.name)
        spec, meta = pod['spec'], pod['metadata']
        cs = spec['containers']
        t0 = now_iso()

        def init(o):
            o['status'].update(hostIP='127.0.0.1', hostIPs=[{'ip': '127.0.0.1'}], podIP='127.0.0.1',
                               podIPs=[{'ip': '127.0.0.1'}], startTime=t0)
            o['status']['conditions'] = [
                {'type': 'PodReadyToStartContainers', 'status': 'False', 'lastProbeTime': None,
                 'lastTransitionTime': t0},
                {'type': 'Initialized', 'status': 'True', 'lastProbeTime': None, 'lastTransitionTime': t0},
                {'type': 'Ready', 'status': 'False', 'reason': 'ContainersNotReady', 'lastProbeTime': None,
                 'lastTransitionTime': t0, 'message': 'containers with unready status: [%s]'
                 % ' '.join(c['name'] for c in cs)},
                {'type': 'ContainersReady', 'status': 'False', 'reason': 'ContainersNotReady',
                 'lastProbeTime': None, 'lastTransitionTime': t0, 'message': 'containers with unready status: '
                 '[%s]' % ' '.join(c['name'] for c in cs)},
                {'type': 'PodScheduled', 'status': 'True', 'lastProbeTime': None, 'lastTransitionTime': t0}]
            o['status']['containerStatuses'] = [self.cstatus(c, {'waiting': {'reason': 'ContainerCreating'}})
                                                for c in cs]
        pod = self.upd(init)
        # Image "pull": the node's registry is the engine's local image store.
        image_ids = {}
        backoff = 1.0
        for c in cs:
            while True:
                if self.killed.is_set():
                    return
                st, info = sim.engine.call('GET', '/images/%s/json' % urllib.parse.quote(c['image'], safe=''))
                if st == 200:
                    image_ids[c['name']] = info.get('Id', '')
                    sim.event(pod, 'Normal', 'Pulled', 'Container image "%s" already present on machine'
                              % c['image'])
                    break
                msg = ('Failed to pull image "%s": rpc error: code = NotFound desc = failed to pull and unpack '
                       'image "%s": not found' % (c['image'], c['image']))
                for reason, m in (('ErrImagePull', msg),
                                  ('ImagePullBackOff', 'Back-off pulling image "%s"' % c['image'])):
                    def waiting(o, reason=reason, m=m, c=c):
                        for s in o['status']['containerStatuses']:
                            if s['name'] == c['name']:
                                s['state'] = {'waiting': {'reason': reason, 'message': m}}
                    pod = self.upd(waiting)
                    sim.event(pod, 'Warning', 'Failed' if reason == 'ErrImagePull' else 'BackOff',
                              m if reason == 'ErrImagePull' else m)
                    if self.killed.wait(backoff):
                        return
                backoff = min(backoff * 2, 10)
        # Service-account files and the pod's volumes.
        sa_dir = os.path.join(sim.sa_dir, meta['uid'])
        os.makedirs(sa_dir, exist_ok=True)
        for fname, content in (('token', sim.token), ('ca.crt', open(sim.args.ca_file).read()),
                               ('namespace', self.ns)):
            with open(os.path.join(sa_dir, fname), 'w') as f:
                f.write(content)
        vols = {}
        for v in spec.get('volumes') or []:
            if 'hostPath' in v:
                p = v['hostPath']['path']
                if v['hostPath'].get('type') in ('DirectoryOrCreate',):
                    os.makedirs(p, exist_ok=True)
                vols[v['name']] = p
            elif 'emptyDir' in v:
                p = os.path.join(sim.args.dir, 'emptydir', meta['uid'], v['name'])
                os.makedirs(p, exist_ok=True)
                vols[v['name']] = p
            elif 'persistentVolumeClaim' in v:
                claim = v['persistentVolumeClaim'].get('claimName')
                p = os.path.join(sim.args.dir, 'pv', self.ns, claim)
                pvc = sim.store.peek('persistentvolumeclaims', self.ns, claim)
                if pvc is not None:
                    p = ((pvc['metadata'].get('annotations') or {}).get('zorch-sim/host-path') or p)
                os.makedirs(p, exist_ok=True)
                vols[v['name']] = p
        mem_limit = sum(quantity((c.get('resources') or {}).get('limits', {}).get('memory', 0)) or 0 for c in cs)
        self.cgroup = PodCgroup(sim.id, meta['uid'], mem_limit)
        for c in cs:
            env = ['KUBERNETES_SERVICE_HOST=127.0.0.1', 'KUBERNETES_SERVICE_PORT=%d' % sim.port,
                   'KUBERNETES_SERVICE_PORT_HTTPS=%d' % sim.port, 'HOSTNAME=%s' % self.name]
            for e in c.get('env') or []:
                val = e.get('value', '')
                fr = (e.get('valueFrom') or {}).get('fieldRef')
                if fr:
                    val = str(field_value(pod, fr['fieldPath']) or '')
                env.append('%s=%s' % (e['name'], val))
            binds = ['%s:/var/run/secrets/kubernetes.io/serviceaccount:ro' % sa_dir]
            for m in c.get('volumeMounts') or []:
                binds.append('%s:%s%s' % (vols.get(m['name'], '/nonexistent'), m['mountPath'],
                                          ':ro' if m.get('readOnly') else ''))
            lim = (c.get('resources') or {}).get('limits') or {}
            hc = {'Binds': binds, 'NetworkMode': 'host'}
            if lim.get('cpu'):
                hc['NanoCpus'] = int(quantity(lim['cpu']) * 1e9)
            if lim.get('memory'):
                if self.cgroup.ok:
                    hc['CgroupParent'] = self.cgroup.rel
                else:
                    hc['Memory'] = int(quantity(lim['memory']))
            cmd = (c.get('command') or []) + (c.get('args') or [])
            body = {'Image': c['image'], 'Env': env, 'HostConfig': hc, 'Hostname': self.name,
                    'Labels': {'io.kubernetes.pod.name': self.name, 'io.kubernetes.pod.namespace': self.ns,
                               'io.kubernetes.container.name': c['name'], 'zorch-k8s-sim': sim.id}}
            if cmd:
                body['Cmd'] = cmd
                if c.get('command'):
                    body['Entrypoint'] = []
            if c.get('workingDir'):
                body['WorkingDir'] = c['workingDir']
            st, out = sim.engine.call('POST', '/containers/create?name=k8s_%s_%s_%s_%s' % (
                c['name'], self.name, self.ns, meta['uid'][:8]), body)
            if st != 201:
                msg = (out or {}).get('message', str(out))

                def cfgerr(o, msg=msg, c=c):
                    for s in o['status']['containerStatuses']:
                        if s['name'] == c['name']:
                            s['state'] = {'waiting': {'reason': 'CreateContainerError', 'message': msg}}
                p = self.upd(cfgerr)
                sim.event(p, 'Warning', 'Failed', 'Error: %s' % msg)
                self.killed.wait()
                return
            self.cids[c['name']] = out['Id']
            sim.event(pod, 'Normal', 'Created', 'Created container %s' % c['name'])
        start_errors = {}
        for c in cs:
            st, out = sim.engine.call('POST', '/containers/%s/start' % self.cids[c['name']])
            if st not in (204, 304):
                # as the kubelet reports a container the runtime could not start
                start_errors[c['name']] = (out or {}).get('message', str(out))
                sim.event(pod, 'Warning', 'Failed', 'Error: failed to start container "%s": %s'
                          % (c['name'], start_errors[c['name']]))
            else:
                sim.event(pod, 'Normal', 'Started', 'Started container %s' % c['name'])
        ts = now_iso()

        def running(o):
            o['status']['phase'] = 'Running'
            for cond in o['status']['conditions']:
                if cond['type'] in ('Ready', 'ContainersReady', 'PodReadyToStartContainers'):
                    cond.update(status='True', lastTransitionTime=ts)
                    cond.pop('reason', None)
                    cond.pop('message', None)
            o['status']['containerStatuses'] = [
                self.cstatus(c, {'running': {'startedAt': ts}}, ready=True, started=True,
                             image_id=image_ids.get(c['name'], '')) for c in cs]
        pod = self.upd(running)
        # Wait for every container; a deletion stops them with the grace period.
        results = {n: {'ExitCode': 128, 'StartError': m} for n, m in start_errors.items()}
        pending = set(self.cids) - set(start_errors)
        while pending:
            if self.killed.is_set():
                for n in list(pending):
                    sim.event(pod, 'Normal', 'Killing', 'Stopping container %s' % n)
                    sim.engine.call('POST', '/containers/%s/stop?t=%d' % (self.cids[n], min(self.grace, 5)))
            for n in list(pending):
                st, info = sim.engine.call('GET', '/containers/%s/json' % self.cids[n])
                state = (info or {}).get('State') or {}
                if st == 200 and state.get('Status') in ('exited', 'stopped', 'dead'):
                    results[n] = state
                    pending.discard(n)
                elif st == 404:  # removed behind our back
                    results[n] = {'ExitCode': 137, 'Lost': True}
                    pending.discard(n)
            if pending:
                self.killed.wait(0.25)
        logs = {n: sim.engine.logs(cid) for n, cid in self.cids.items()}
        sim.logs[meta['uid']] = logs
        oom = self.cgroup.oom_killed() if self.cgroup and mem_limit else False
        statuses, all_ok = [], True
        for c in cs:
            s = results[c['name']]
            code = s.get('ExitCode', 1)
            reason = 'Completed' if code == 0 else 'Error'
            # as containerd reports it: an OOM kill in the container's cgroup
            # (of its main process or of a child) makes the reason OOMKilled
            if code != 0 and (s.get('OOMKilled') or oom) and not self.killed.is_set():
                reason = 'OOMKilled'
            all_ok = all_ok and code == 0
            if s.get('StartError'):
                reason = 'StartError'
            elif s.get('Lost'):
                reason = 'ContainerStatusUnknown'
            term = {'exitCode': code, 'reason': reason, 'startedAt': ts, 'finishedAt': now_iso(),
                    'containerID': 'podman://' + self.cids[c['name']]}
            if s.get('StartError'):
                term['message'] = s['StartError']
                term['startedAt'] = '1970-01-01T00:00:00Z'
            statuses.append(self.cstatus(c, {'terminated': term}, image_id=image_ids.get(c['name'], ''),
                                         started=False))
        te = now_iso()

        def finished(o):
            o['status']['phase'] = 'Succeeded' if all_ok else 'Failed'
            o['status']['containerStatuses'] = statuses
            for cond in o['status']['conditions']:
                if cond['type'] in ('Ready', 'ContainersReady', 'PodReadyToStartContainers'):
                    cond.update(status='False', lastTransitionTime=te)
                    if cond['type'] != 'PodReadyToStartContainers':
                        cond.update(reason='PodCompleted')
        self.upd(finished)
        if self.killed.is_set():
            return
        # Keep the finished pod until it is deleted.
        self.killed.wait()


# ---------------------------------------------------------------------------
# HTTP

def table_for_pods(items, rv):
    rows = []
    for p in items:
        st = p.get('status') or {}
        cs = st.get('containerStatuses') or []
        ready = sum(1 for c in cs if c.get('ready'))
        status = st.get('phase', 'Pending')
        for c in cs:
            w = (c.get('state') or {}).get('waiting')
            t = (c.get('state') or {}).get('terminated')
            if w and w.get('reason'):
                status = w['reason']
            elif t and t.get('reason') and st.get('phase') == 'Failed':
                status = t['reason']
            elif t and t.get('reason'):
                status = t['reason']
        if p['metadata'].get('deletionTimestamp'):
            status = 'Terminating'
        age = '%ds' % max(0, int(time.time() - datetime.datetime.strptime(
            p['metadata']['creationTimestamp'], '%Y-%m-%dT%H:%M:%SZ').replace(
            tzinfo=datetime.timezone.utc).timestamp()))
        rows.append({'cells': [p['metadata']['name'], '%d/%d' % (ready, len(p['spec'].get('containers', []))),
                               status, sum(c.get('restartCount', 0) for c in cs), age,
                               st.get('podIP', '<none>'), p['spec'].get('nodeName', '<none>'), '<none>', '<none>'],
                     'object': {'kind': 'PartialObjectMetadata', 'apiVersion': 'meta.k8s.io/v1',
                                'metadata': p['metadata']}})
    cols = [('Name', 'string', 0), ('Ready', 'string', 0), ('Status', 'string', 0), ('Restarts', 'string', 0),
            ('Age', 'string', 0), ('IP', 'string', 1), ('Node', 'string', 1), ('Nominated Node', 'string', 1),
            ('Readiness Gates', 'string', 1)]
    return {'kind': 'Table', 'apiVersion': 'meta.k8s.io/v1', 'metadata': {'resourceVersion': rv},
            'columnDefinitions': [{'name': n, 'type': t, 'format': 'name' if n == 'Name' else '',
                                   'description': n, 'priority': pr} for n, t, pr in cols],
            'rows': rows}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'zorch-k8s-sim'

    def log_message(self, fmt, *a):
        if self.server.sim.args.verbose:
            log(fmt % a)

    # ---- plumbing
    def send_json(self, code, obj, headers=()):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def fail(self, e):
        self.send_json(e.code, e.status())

    def read_body(self):
        n = int(self.headers.get('Content-Length') or 0)
        data = self.rfile.read(n) if n else b''
        ct = (self.headers.get('Content-Type') or '').split(';')[0].strip()
        if data and ct and ct not in ('application/json', 'application/merge-patch+json',
                             'application/strategic-merge-patch+json', 'application/json-patch+json'):
            raise ApiError(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format - '
                           'accepted media types include: application/json, application/yaml, '
                           'application/vnd.kubernetes.protobuf')
        try:
            return json.loads(data) if data else None
        except ValueError as e:
            raise ApiError(400, 'BadRequest', "couldn't get version/kind; json parse error: %s" % e)

    def authenticate(self):
        auth = self.headers.get('Authorization') or ''
        sim = self.server.sim
        if auth.startswith('Bearer '):
            if secrets.compare_digest(auth[7:].strip(), sim.token):
                return 'system:serviceaccount:default:zorch'
            return None
        cert = self.connection.getpeercert() if hasattr(self.connection, 'getpeercert') else None
        if cert:
            for rdn in cert.get('subject', ()):
                for k, v in rdn:
                    if k == 'commonName':
                        return v
        return None

    def do_GET(self):
        self.handle_any('GET')

    def do_POST(self):
        self.handle_any('POST')

    def do_DELETE(self):
        self.handle_any('DELETE')

    def do_PUT(self):
        self.handle_any('PUT')

    def do_PATCH(self):
        self.handle_any('PATCH')

    def handle_any(self, method):
        sim = self.server.sim
        u = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query, keep_blank_values=True).items()}
        try:
            if self.authenticate() is None:
                self.send_json(401, {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
                                     'message': 'Unauthorized', 'reason': 'Unauthorized', 'code': 401})
                return
            self.route(method, u.path.rstrip('/') or '/', q)
        except ApiError as e:
            if self.server.sim.args.verbose:
                log('%s %s -> %d %s' % (method, self.path, e.code, e.message))
            self.fail(e)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # a bug: say so as a 500
            import traceback
            traceback.print_exc()
            try:
                self.fail(ApiError(500, 'InternalError', 'simulator error: %r' % e))
            except OSError:
                pass

    # ---- routing
    def route(self, method, path, q):
        sim = self.server.sim
        if path == '/version':
            return self.send_json(200, {'major': '1', 'minor': '32', 'gitVersion': 'v1.32.0-zorch-sim',
                                        'gitCommit': '', 'gitTreeState': 'clean', 'buildDate': now_iso(),
                                        'goVersion': 'go1.23', 'compiler': 'gc', 'platform': 'linux/amd64'})
        if path == '/api':
            return self.send_json(200, {'kind': 'APIVersions', 'versions': ['v1'], 'serverAddressByClientCIDRs':
                                        [{'clientCIDR': '0.0.0.0/0', 'serverAddress': '127.0.0.1:%d' % sim.port}]})
        if path == '/apis':
            return self.send_json(200, {'kind': 'APIGroupList', 'apiVersion': 'v1', 'groups': [
                {'name': 'batch', 'versions': [{'groupVersion': 'batch/v1', 'version': 'v1'}],
                 'preferredVersion': {'groupVersion': 'batch/v1', 'version': 'v1'}}]})
        if path in ('/api/v1', '/apis/batch/v1'):
            group = '' if path == '/api/v1' else 'batch'
            rl = []
            for r in RESOURCES:
                if r.group == group:
                    rl.append({'name': r.plural, 'singularName': r.kind.lower(), 'namespaced': r.namespaced,
                               'kind': r.kind, 'verbs': r.verbs, 'shortNames': r.short})
                    if r.plural == 'pods':
                        rl.append({'name': 'pods/log', 'singularName': '', 'namespaced': True, 'kind': 'Pod',
                                   'verbs': ['get']})
            return self.send_json(200, {'kind': 'APIResourceList', 'apiVersion': 'v1',
                                        'groupVersion': 'v1' if not group else 'batch/v1', 'resources': rl})
        if path == '/openapi/v3':
            return self.send_json(200, {'paths': {k: {'serverRelativeURL': '/openapi/v3/%s?hash=%s' % (k, h)}
                                                  for k, (h, _) in sim.schemas.docs.items()}})
        if path.startswith('/openapi/v3/') and path[len('/openapi/v3/'):] in sim.schemas.docs:
            data = sim.schemas.docs[path[len('/openapi/v3/'):]][1]
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if path.startswith('/openapi'):
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        parts = path.strip('/').split('/')
        # /api/v1/... or /apis/batch/v1/...
        if parts[0] == 'api' and len(parts) >= 3 and parts[1] == 'v1':
            group, rest = '', parts[2:]
        elif parts[0] == 'apis' and len(parts) >= 4 and parts[1] == 'batch' and parts[2] == 'v1':
            group, rest = 'batch', parts[3:]
        else:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        watch = False
        if rest and rest[0] == 'watch':
            watch, rest = True, rest[1:]
        ns = None
        if len(rest) >= 3 and rest[0] == 'namespaces':
            ns, rest = rest[1], rest[2:]
            if sim.store.peek('namespaces', None, ns) is None and method == 'POST':
                raise not_found('', 'namespaces', ns)
        if not rest:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        res = BY_PATH.get((group, rest[0]))
        if res is None or (res.namespaced and ns is None and method != 'GET') or \
                (not res.namespaced and ns is not None):
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if len(rest) > 3 or (sub and not (res.plural == 'pods' and sub in ('log', 'status'))):
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        if q.get('watch') in ('1', 'true'):
            watch = True
        if watch and method == 'GET':
            return self.do_watch(res, ns, name, q)
        if method == 'GET' and name is None:
            return self.do_list(res, ns, q)
        if method == 'GET' and sub == 'log':
            return self.do_log(ns, name, q)
        if method == 'GET':
            return self.send_json(200, sim.store.get(res, ns, name))
        if method == 'POST' and name is None:
            return self.do_create(res, ns, q)
        if method == 'DELETE' and name is None:
            return self.do_delete_collection(res, ns, q)
        if method == 'DELETE':
            return self.do_delete(res, ns, name, q)
        if method in ('PATCH', 'PUT') and res.plural in ('cronjobs', 'jobs') and name and not sub:
            return self.do_patch(res, ns, name, method, q)
        raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')

    # ---- verbs
    def decode(self, res, body, q, strict_default=False):
        if not isinstance(body, dict):
            raise ApiError(400, 'BadRequest', 'the request body must be a JSON object (%s)' % res.kind)
        fv = q.get('fieldValidation', 'Warn')
        if fv not in ('Strict', 'Warn', 'Ignore'):
            raise ApiError(400, 'BadRequest', 'fieldValidation parameter unsupported: %s' % fv)
        unknown, errors = self.server.sim.schemas.check(body, res.schema, False)
        if errors:
            raise ApiError(400, 'BadRequest', '%s in version "%s" cannot be handled as a %s: %s'
                           % (res.kind, res.version, res.kind, '; '.join(errors)))
        if body.get('apiVersion') not in (None, res.api_version) or body.get('kind') not in (None, res.kind):
            raise ApiError(400, 'BadRequest', 'the API version in the data (%s) does not match the expected API '
                           'version (%s)' % (body.get('apiVersion'), res.api_version)
                           if body.get('apiVersion') != res.api_version else
                           'the kind in the data (%s) does not match the expected kind (%s)'
                           % (body.get('kind'), res.kind))
        warnings = []
        if unknown:
            if fv == 'Strict':
                raise ApiError(400, 'BadRequest', 'strict decoding error: %s' % ', '.join(
                    'unknown field "%s"' % u for u in unknown))
            for u in unknown:
                drop(body, u)
            if fv == 'Warn':
                warnings = ['299 - "unknown field \\"%s\\""' % u for u in unknown]
        return body, warnings

    def do_create(self, res, ns, q):
        sim = self.server.sim
        body, warnings = self.decode(res, self.read_body(), q)
        if res.verbs and 'create' not in res.verbs:
            raise ApiError(405, 'MethodNotAllowed', 'create is not allowed on %s' % res.plural)
        causes = []
        validate_object(res.kind, body, causes)
        meta = body.get('metadata') or {}
        if meta.get('namespace') and ns and meta['namespace'] != ns:
            causes.append({'field': 'metadata.namespace', 'message': 'Invalid value: "%s": does not match the '
                           'namespace of the request (%s)' % (meta['namespace'], ns)})
        if causes:
            raise invalid(res.kind, res.group, meta.get('name') or meta.get('generateName') or '', causes)
        if q.get('dryRun') == 'All':
            return self.send_json(201, body, [('Warning', w) for w in warnings])
        body.pop('status', None)
        if res.plural == 'pods':
            o = sim.create_pod(ns, body)
        elif res.plural == 'jobs':
            spec = body['spec']
            spec.setdefault('backoffLimit', 6)
            spec.setdefault('completions', 1)
            spec.setdefault('parallelism', 1)
            spec.setdefault('completionMode', 'NonIndexed')
            spec.setdefault('suspend', False)
            spec.setdefault('podReplacementPolicy', 'TerminatingOrFailed')
            body['status'] = {}
            o = sim.store.create(res, ns, body)

            def selector(j):  # as the API server defaults it: the job's own uid
                uid = j['metadata']['uid']
                j['spec'].setdefault('selector', {'matchLabels': {'batch.kubernetes.io/controller-uid': uid}})
                lab = j['spec']['template'].setdefault('metadata', {}).setdefault('labels', {})
                lab.update({'batch.kubernetes.io/controller-uid': uid, 'controller-uid': uid,
                            'batch.kubernetes.io/job-name': j['metadata']['name'], 'job-name': j['metadata']['name']})
            o = sim.store.update('jobs', ns, o['metadata']['name'], selector)
            sim.job_created(ns, o['metadata']['name'])
        elif res.plural == 'cronjobs':
            spec = body['spec']
            spec.setdefault('concurrencyPolicy', 'Allow')
            spec.setdefault('suspend', False)
            spec.setdefault('successfulJobsHistoryLimit', 3)
            spec.setdefault('failedJobsHistoryLimit', 1)
            body['status'] = {}
            o = sim.store.create(res, ns, body)
        elif res.plural == 'namespaces':
            body['status'] = {'phase': 'Active'}
            o = sim.store.create(res, None, body)
        else:
            o = sim.store.create(res, ns, body)
        self.send_json(201, o, [('Warning', w) for w in warnings])

    def do_patch(self, res, ns, name, method, q):
        sim = self.server.sim
        body = self.read_body()
        ct = (self.headers.get('Content-Type') or '').split(';')[0].strip()
        cur = sim.store.get(res, ns, name)
        if method == 'PUT':
            new = body
        elif ct in ('application/merge-patch+json', 'application/strategic-merge-patch+json'):
            new = merge_patch(copy.deepcopy(cur), body)
        else:
            raise ApiError(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format - '
                           'accepted media types include: application/merge-patch+json')
        new, warnings = self.decode(res, new, q)
        causes = []
        validate_object(res.kind, new, causes)
        if res.plural == 'jobs':  # as the API server's job validation: these never change
            for f in ('template', 'selector'):
                if (new.get('spec') or {}).get(f) != cur['spec'].get(f):
                    causes.append({'field': 'spec.' + f, 'message': 'Invalid value: %s: field is immutable'
                                   % json.dumps((new.get('spec') or {}).get(f), sort_keys=True)})
        if causes:
            raise invalid(res.kind, res.group, name, causes)

        def apply(o):
            o['spec'] = new.get('spec', o['spec'])
            o['metadata']['labels'] = (new.get('metadata') or {}).get('labels', o['metadata'].get('labels'))
            o['metadata']['annotations'] = (new.get('metadata') or {}).get('annotations',
                                                                          o['metadata'].get('annotations'))
            for k in ('labels', 'annotations'):
                if o['metadata'][k] is None:
                    del o['metadata'][k]
        self.send_json(200, sim.store.update(res.plural, ns, name, apply), [('Warning', w) for w in warnings])

    def do_list(self, res, ns, q):
        sim = self.server.sim
        lsel = parse_label_selector(q.get('labelSelector'))
        fsel = parse_field_selector(q.get('fieldSelector'))
        items, rv = sim.store.list(res.plural, ns, lsel, fsel)
        if res.plural == 'pods' and 'as=Table' in (self.headers.get('Accept') or ''):
            return self.send_json(200, table_for_pods(items, rv))
        for it in items:
            it.pop('apiVersion', None)
            it.pop('kind', None)
        self.send_json(200, {'kind': res.kind + 'List', 'apiVersion': res.api_version,
                             'metadata': {'resourceVersion': rv}, 'items': items})

    def do_watch(self, res, ns, name, q):
        sim = self.server.sim
        store = sim.store
        lsel = parse_label_selector(q.get('labelSelector'))
        fsel = parse_field_selector(q.get('fieldSelector'))
        if name:
            fsel.append(('metadata.name', True, name))
        timeout = float(q.get('timeoutSeconds') or 1800)
        bookmarks = q.get('allowWatchBookmarks') in ('true', '1')
        rv = q.get('resourceVersion') or ''
        try:
            since = int(rv) if rv not in ('', '0') else None
        except ValueError:
            raise ApiError(400, 'BadRequest', 'invalid resource version: %s' % rv)
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Transfer-Encoding', 'chunked')
        self.end_headers()

        def chunk(obj):
            data = json.dumps(obj).encode() + b'\n'
            self.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))
            self.wfile.flush()

        deadline = time.time() + timeout
        with store.lock:
            if since is None:
                initial, cur = store.list(res.plural, ns, lsel, fsel)
                pos = len(store.history)
                cur = int(cur)
                events = [('ADDED', o) for o in initial]
            else:
                if since < store.oldest:
                    events = [('ERROR', {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
                                         'message': 'too old resource version: %d (%d)' % (since, store.oldest),
                                         'reason': 'Expired', 'code': 410})]
                    pos, cur = None, since
                else:
                    pos = 0
                    while pos < len(store.history) and store.history[pos][0] <= since:
                        pos += 1
                    events, cur = [], since
        try:
            for typ, o in events:
                chunk({'type': typ, 'object': o})
            if pos is None:
                self.wfile.write(b'0\r\n\r\n')
                return
            last_bookmark = time.time()
            while not sim.stopping:
                with store.lock:
                    if pos < len(store.history) and store.history[0][0] > cur + 1 and pos == 0 and since:
                        pass
                    batch = store.history[pos:]
                    pos = len(store.history)
                    if not batch:
                        left = deadline - time.time()
                        if left <= 0:
                            break
                        store.cond.wait(min(left, 1.0))
                        batch = store.history[pos:]
                        pos = len(store.history)
                for erv, plural, typ, o in batch:
                    cur = erv
                    if plural == res.plural and (ns is None or o['metadata'].get('namespace') == ns) and \
                            label_match(o, lsel) and field_match(o, fsel):
                        chunk({'type': typ, 'object': o})
                if bookmarks and time.time() - last_bookmark > 5:
                    chunk({'type': 'BOOKMARK', 'object': {'kind': res.kind, 'apiVersion': res.api_version,
                                                          'metadata': {'resourceVersion': str(cur)}}})
                    last_bookmark = time.time()
                if time.time() >= deadline:
                    break
            self.wfile.write(b'0\r\n\r\n')
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True

    def do_log(self, ns, name, q):
        sim = self.server.sim
        pod = sim.store.get(BY_PATH[('', 'pods')], ns, name)
        cs = [c['name'] for c in pod['spec']['containers']]
        c = q.get('container') or (cs[0] if len(cs) == 1 else None)
        if c is None:
            raise ApiError(400, 'BadRequest', 'a container name must be specified for pod %s, choose one of: [%s]'
                           % (name, ' '.join(cs)))
        if c not in cs:
            raise ApiError(400, 'BadRequest', 'container %s is not valid for pod %s' % (c, name))
        st = pod['status']
        cst = [x for x in st.get('containerStatuses') or [] if x['name'] == c]
        state = cst[0]['state'] if cst else {}
        if 'waiting' in state or not cst:
            w = state.get('waiting', {})
            raise ApiError(400, 'BadRequest', 'container "%s" in pod "%s" is waiting to start: %s'
                           % (c, name, w.get('reason', 'ContainerCreating')
                              if w.get('reason') != 'ContainerCreating' else 'ContainerCreating'))
        follow = q.get('follow') in ('true', '1')
        tail = q.get('tailLines')
        saved = sim.logs.get(pod['metadata']['uid'])
        if saved is not None or not follow:
            if saved is not None:
                data = saved.get(c, b'')
            else:
                with sim.plock:
                    runner = sim.pods.get((ns, name))
                cid = runner.cids.get(c) if runner else None
                data = sim.engine.logs(cid) if cid else b''
            if tail:
                lines = data.splitlines(True)
                data = b''.join(lines[-int(tail):]) if int(tail) > 0 else b''
            self.send_response(200)
            self.send_header('Content-Type', 'text/plain')
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        # follow a running container: stream from the engine
        with sim.plock:
            runner = sim.pods.get((ns, name))
        cid = runner.cids.get(c) if runner else None
        self.send_response(200)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Transfer-Encoding', 'chunked')
        self.end_headers()
        if cid:
            conn = UnixConn(sim.args.podman_socket, timeout=None)
            conn.request('GET', '/v1.41/containers/%s/logs?stdout=1&stderr=1&follow=1' % cid)
            r = conn.getresponse()
            buf = b''
            try:
                while True:
                    d = r.read1(65536) if hasattr(r, 'read1') else r.read(65536)
                    if not d:
                        break
                    buf += d
                    while len(buf) >= 8:
                        n = int.from_bytes(buf[4:8], 'big')
                        if len(buf) < 8 + n:
                            break
                        payload, buf = buf[8:8 + n], buf[8 + n:]
                        self.wfile.write(b'%x\r\n%s\r\n' % (len(payload), payload))
                        self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, OSError):
                self.close_connection = True
                return
            finally:
                conn.close()
        self.wfile.write(b'0\r\n\r\n')

    def do_delete(self, res, ns, name, q):
        sim = self.server.sim
        body = self.read_body() or {}
        grace = q.get('gracePeriodSeconds', body.get('gracePeriodSeconds'))
        grace = int(grace) if grace is not None else None
        prop = q.get('propagationPolicy') or body.get('propagationPolicy')
        if prop not in (None, 'Orphan', 'Background', 'Foreground'):
            raise ApiError(400, 'BadRequest', 'propagationPolicy %s is not supported' % prop)
        if res.plural == 'pods':
            o = sim.delete_pod(ns, name, grace)
            return self.send_json(200, o)
        cur = sim.store.get(res, ns, name)
        if res.plural == 'jobs':
            if prop is None:
                prop = 'Orphan' if q.get('orphanDependents', 'true') != 'false' else 'Background'
            if prop != 'Orphan':
                pods, _ = sim.store.list('pods', ns, [('batch.kubernetes.io/controller-uid', '=',
                                                        cur['metadata']['uid'])])
                for p in pods:
                    try:
                        sim.delete_pod(ns, p['metadata']['name'], grace)
                    except ApiError:
                        pass
        if res.plural == 'namespaces':
            raise ApiError(405, 'MethodNotAllowed', 'namespaces cannot be deleted on this simulator')
        o = sim.store.delete(res.plural, ns, name)
        if o is None:
            raise not_found(res.group, res.plural, name)
        self.send_json(200, {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Success',
                             'details': {'name': name, 'group': res.group, 'kind': res.plural,
                                         'uid': o['metadata']['uid']}})

    def do_delete_collection(self, res, ns, q):
        sim = self.server.sim
        if 'deletecollection' not in res.verbs:
            raise ApiError(405, 'MethodNotAllowed', 'deletecollection is not allowed on %s' % res.plural)
        lsel = parse_label_selector(q.get('labelSelector'))
        fsel = parse_field_selector(q.get('fieldSelector'))
        items, rv = sim.store.list(res.plural, ns, lsel, fsel)
        grace = q.get('gracePeriodSeconds')
        out = []
        for it in items:
            try:
                if res.plural == 'pods':
                    out.append(sim.delete_pod(ns, it['metadata']['name'], int(grace) if grace else None))
                else:
                    o = sim.store.delete(res.plural, ns, it['metadata']['name'])
                    if o:
                        out.append(o)
            except ApiError:
                pass
        self.send_json(200, {'kind': res.kind + 'List', 'apiVersion': res.api_version,
                             'metadata': {'resourceVersion': rv}, 'items': out})


def drop(obj, path):
    parts = re.findall(r'[^.\[\]]+|\[\d+\]', path)
    cur = obj
    for p in parts[:-1]:
        cur = cur[int(p[1:-1])] if p.startswith('[') else cur[p]
    last = parts[-1]
    if isinstance(cur, dict):
        cur.pop(last, None)


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = merge_patch(target.get(k), v)
    return target


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


# ---------------------------------------------------------------------------
# Certificates (openssl CLI) and kubeconfigs

def openssl(*args, cwd):
    subprocess.run(['openssl'] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_pki(d):
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt',
            '-days', '2', '-subj', '/CN=zorch-k8s-sim-ca', cwd=d)
    with open(os.path.join(d, 'san.ext'), 'w') as f:
        f.write('subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr',
            '-subj', '/CN=kube-apiserver', cwd=d)
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
            '-out', 'server.crt', '-days', '2', '-extfile', 'san.ext', cwd=d)
    with open(os.path.join(d, 'client.ext'), 'w') as f:
        f.write('extendedKeyUsage=clientAuth\n')
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'client.key', '-out', 'client.csr',
            '-subj', '/O=system:masters/CN=zorch-admin', cwd=d)
    openssl('x509', '-req', '-in', 'client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
            '-out', 'client.crt', '-days', '2', '-extfile', 'client.ext', cwd=d)


def write_kubeconfigs(d, url, token):
    def b64(f):
        with open(os.path.join(d, f), 'rb') as fh:
            return base64.b64encode(fh.read()).decode()
    tok = """apiVersion: v1
kind: Config
clusters:
- name: sim
  cluster:
    server: %s
    certificate-authority: %s
contexts:
- name: sim
  context:
    cluster: sim
    user: zorch
    namespace: default
current-context: sim
users:
- name: zorch
  user:
    token: %s
""" % (url, os.path.join(d, 'ca.crt'), token)
    cert = """apiVersion: v1
kind: Config
clusters:
- name: sim
  cluster:
    server: %s
    certificate-authority-data: %s
contexts:
- name: sim-admin
  context:
    cluster: sim
    user: admin
current-context: sim-admin
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
""" % (url, b64('ca.crt'), b64('client.crt'), b64('client.key'))
    for name, text in (('kubeconfig', tok), ('kubeconfig-cert', cert)):
        tmp = os.path.join(d, name + '.tmp')
        with open(tmp, 'w') as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.rename(tmp, os.path.join(d, name))
    with open(os.path.join(d, 'token'), 'w') as f:
        f.write(token)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dir', required=True)
    ap.add_argument('--podman-socket', required=True)
    ap.add_argument('--spec-dir', default=os.environ.get('ZORCH_K8S_SPEC_DIR', SPEC_DIR_DEFAULT))
    ap.add_argument('--node-cpu', default='2')
    ap.add_argument('--node-memory', default='4Gi')
    ap.add_argument('--node-label', action='append')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--job-backoff', type=float, default=1.0, help='seconds before a failed Job pod is replaced')
    ap.add_argument('--verbose', action='store_true')
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    make_pki(args.dir)
    args.ca_file = os.path.join(args.dir, 'ca.crt')
    sim = Sim(args)
    srv = Server(('127.0.0.1', args.port), Handler)
    srv.sim = sim
    sim.port = srv.server_address[1]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(args.dir, 'server.crt'), os.path.join(args.dir, 'server.key'))
    ctx.load_verify_locations(args.ca_file)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    url = 'https://127.0.0.1:%d' % sim.port
    write_kubeconfigs(args.dir, url, sim.token)

    def stop(*_):
        sim.stopping = True
        threading.Thread(target=srv.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with open(os.path.join(args.dir, 'ready.tmp'), 'w') as f:
        f.write(url + '\n')
    os.rename(os.path.join(args.dir, 'ready.tmp'), os.path.join(args.dir, 'ready'))
    log('serving', url)
    srv.serve_forever(poll_interval=0.2)
    # Clean up: every container this simulator started, and the pod cgroups.
    st, cs = sim.engine.call('GET', '/containers/json?all=1&filters=%s' % urllib.parse.quote(
        json.dumps({'label': ['zorch-k8s-sim=%s' % sim.id]})))
    for c in cs or []:
        sim.engine.call('DELETE', '/containers/%s?force=1&v=1' % c['Id'])
    for base in ('/sys/fs/cgroup/memory', '/sys/fs/cgroup'):
        p = '%s/zorch-k8s-sim-%s' % (base, sim.id)
        if os.path.isdir(p):
            for r, ds, _ in sorted(os.walk(p), key=lambda x: -len(x[0])):
                try:
                    os.rmdir(r)
                except OSError:
                    pass
    log('stopped')


if __name__ == '__main__':
    main()
