"""Kubernetes objects: the resources served, errors as meta/v1 Status,
label and field selectors, and the object store (simkit.Store with
uid, creationTimestamp, generateName and resourceVersion)."""
import re
import uuid

from simkit import HttpError, Store, now_iso

from .validation import check_label_key


# ---------------------------------------------------------------------------
# Errors as the API server reports them (meta/v1 Status)

REASONS = {400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound',
           405: 'MethodNotAllowed', 406: 'NotAcceptable', 409: 'Conflict', 410: 'Expired',
           415: 'UnsupportedMediaType', 422: 'Invalid', 429: 'TooManyRequests', 500: 'InternalError',
           503: 'ServiceUnavailable', 504: 'Timeout'}


def status(code, reason, message, details=None):
    s = {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
         'message': message, 'reason': reason, 'code': code}
    if details:
        s['details'] = details
    return s


class ApiError(HttpError):
    def __init__(self, code, reason, message, details=None, headers=()):
        super().__init__(code, message, reason, status(code, reason, message, details), headers)


def not_found(group, resource, name):
    gr = resource if not group else resource + '.' + group
    return ApiError(404, 'NotFound', '%s "%s" not found' % (gr, name),
                    {'name': name, 'group': group, 'kind': resource})


def invalid(kind, group, name, causes):
    what = '%s.%s' % (kind, group) if group else kind
    return ApiError(422, 'Invalid', '%s "%s" is invalid: %s' % (what, name, ', '.join(
        '%s: %s' % (c['field'], c['message']) for c in causes)),
        {'name': name, 'group': group, 'kind': kind,
         'causes': [{'reason': c.get('reason', 'FieldValueInvalid'), 'message': c['message'],
                     'field': c['field']} for c in causes]})


def bad_request(message):
    return ApiError(400, 'BadRequest', message)


# ---------------------------------------------------------------------------
# Resources this server knows

ALL_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']


class Res:
    def __init__(self, group, version, plural, kind, schema, namespaced=True, short=(), verbs=None,
                 status=False):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.schema, self.namespaced, self.short = schema, namespaced, list(short)
        self.verbs = verbs or ALL_VERBS
        self.status = status  # has the /status subresource (get, patch, update)

    @property
    def api_version(self):
        return self.version if not self.group else self.group + '/' + self.version

    @property
    def prefix(self):
        return '/api/' + self.version if not self.group else '/apis/%s/%s' % (self.group, self.version)


RESOURCES = [
    Res('', 'v1', 'pods', 'Pod', 'io.k8s.api.core.v1.Pod', short=['po'], status=True),
    Res('', 'v1', 'events', 'Event', 'io.k8s.api.core.v1.Event', short=['ev']),
    Res('', 'v1', 'namespaces', 'Namespace', 'io.k8s.api.core.v1.Namespace', namespaced=False, short=['ns'],
        verbs=['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'], status=True),
    Res('', 'v1', 'nodes', 'Node', 'io.k8s.api.core.v1.Node', namespaced=False, short=['no'],
        verbs=['get', 'list', 'watch']),
    Res('', 'v1', 'configmaps', 'ConfigMap', 'io.k8s.api.core.v1.ConfigMap', short=['cm']),
    Res('', 'v1', 'secrets', 'Secret', 'io.k8s.api.core.v1.Secret'),
    Res('', 'v1', 'serviceaccounts', 'ServiceAccount', 'io.k8s.api.core.v1.ServiceAccount', short=['sa']),
    Res('', 'v1', 'persistentvolumeclaims', 'PersistentVolumeClaim',
        'io.k8s.api.core.v1.PersistentVolumeClaim', short=['pvc'], status=True),
    Res('batch', 'v1', 'jobs', 'Job', 'io.k8s.api.batch.v1.Job', status=True),
    Res('batch', 'v1', 'cronjobs', 'CronJob', 'io.k8s.api.batch.v1.CronJob', short=['cj'], status=True),
]
BY_PATH = {(r.group, r.plural): r for r in RESOURCES}
GROUPS = {'': 'v1', 'batch': 'v1'}


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
            raise bad_request('unable to parse requirement: %s' % errs[0]['message'])
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
        elif '=' in part:
            k, v = part.replace('==', '=').split('=', 1)
            reqs.append((k, True, v))
        else:  # as the API server's fields.ParseSelector says it
            raise bad_request("invalid selector: '%s'; can't understand '%s'" % (s, part))
    return reqs


def field_match(obj, reqs):
    for k, eq, v in reqs:
        got = field_value(obj, k)
        got = '' if got is None else str(got)
        if (got == v) != eq:
            return False
    return True


def selector(q, name=None):
    """A predicate for the labelSelector and fieldSelector of a query (and a
    name, for a watch of one object)."""
    lsel = parse_label_selector(q.get('labelSelector'))
    fsel = parse_field_selector(q.get('fieldSelector'))
    if name:
        fsel.append(('metadata.name', True, name))
    return lambda o: label_match(o, lsel) and field_match(o, fsel)


# ---------------------------------------------------------------------------
# The store

def _stamp(obj, version):
    obj['metadata']['resourceVersion'] = version


class Objects(Store):
    """simkit.Store keyed by (plural, namespace, name), with the API
    server's metadata and errors."""

    def __init__(self):
        super().__init__(first_version=100, stamp=_stamp)

    def create(self, res, ns, obj):
        with self.lock:
            meta = obj.setdefault('metadata', {})
            if not meta.get('name') and meta.get('generateName'):
                meta['name'] = self.free_name(res.plural, ns, meta['generateName'])
            if res.namespaced:
                meta['namespace'] = ns
            meta['uid'] = str(uuid.uuid4())
            meta['creationTimestamp'] = now_iso()
            meta.pop('deletionTimestamp', None)
            obj['apiVersion'], obj['kind'] = res.api_version, res.kind
            o = self.insert(res.plural, ns, meta['name'], obj)
            if o is None:
                gr = res.plural if not res.group else res.plural + '.' + res.group
                raise ApiError(409, 'AlreadyExists', '%s "%s" already exists' % (gr, meta['name']),
                               {'name': meta['name'], 'group': res.group, 'kind': res.plural})
            return o

    def must_get(self, res, ns, name):
        o = self.get(res.plural, ns, name)
        if o is None:
            raise not_found(res.group, res.plural, name)
        return o
