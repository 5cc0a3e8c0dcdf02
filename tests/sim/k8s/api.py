"""The Kubernetes REST API on simkit: discovery, OpenAPI documents, and for
each resource in objects.RESOURCES the routes the API server installs
(collection, object, /status, /watch/..., pods/log), with its verbs."""
import base64
import copy
import datetime
import functools
import hashlib
import json
import os
import secrets
import time

from simkit import (App, BearerToken, ClientCert, Expired, PatchError, Schemas, drop_path,
                    json_patch, merge_patch, now_iso)

from .cluster import Cluster
from .objects import (BY_PATH, GROUPS, REASONS, RESOURCES, ApiError, bad_request, invalid,
                      not_found, selector, status)
from .patch import strategic_merge
from .validation import validate_object

JSON_TYPES = ('application/json', 'application/merge-patch+json', 'application/strategic-merge-patch+json',
              'application/json-patch+json')
UNDELETABLE = ('default', 'kube-system', 'kube-public')
# as the API server's pod update validation says it
POD_UPDATE = ('Forbidden: pod updates may not change fields other than `spec.containers[*].image`,'
              '`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions '
              'to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was '
              'previously negative)')
DOCS = (('api__v1_openapi.json', 'api/v1'), ('apis__batch__v1_openapi.json', 'apis/batch/v1'))


class KubeApi(App):
    name = 'zorch-k8s-sim'
    log_name = 'k8s-sim'
    pki_server_cn = 'kube-apiserver'
    pki_client_subject = '/O=system:masters/CN=zorch-admin'

    def __init__(self, args):
        super().__init__(args)
        self.schemas = Schemas()
        self.docs = {}  # served at /openapi/v3/<key> (kubectl's field validation reads them)
        for f, key in DOCS:
            path = os.path.join(args.spec_dir, f)
            self.schemas.load(path)
            data = self.schemas.raw[os.path.abspath(path)]
            self.docs[key] = (hashlib.sha512(data).hexdigest().upper(), data)
        self.token = secrets.token_hex(24)
        self.auth = [BearerToken(self.token, 'system:serviceaccount:default:zorch'), ClientCert()]
        self.cluster = Cluster(args, self.token, self.pki.ca_crt)
        self.store = self.cluster.store
        self.routes()

    # ---- the API server's answers
    def error_for_status(self, code, message=None):
        reason = REASONS.get(code, 'InternalError' if code >= 500 else 'BadRequest')
        headers = [('Retry-After', '1')] if code in (429, 503) else []
        details = {'retryAfterSeconds': 1} if headers else None
        return ApiError(code, reason, message or reason, details, headers)

    def unauthorized(self, req, why):
        return ApiError(401, 'Unauthorized', 'Unauthorized')

    def not_found(self, req):
        return ApiError(404, 'NotFound', 'the server could not find the requested resource')

    def method_not_allowed(self, req):
        return ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')

    def started(self):
        self.cluster.port = self.port
        write_kubeconfigs(self.args.dir, self.url, self.token, self.pki)

    def stop(self):
        super().stop()
        self.cluster.stop()

    def stopped(self):
        self.cluster.cleanup()

    # ---- routes
    def routes(self):
        r = self.route
        r('GET', '/version', self.version)
        r('GET', '/api', self.api_versions)
        r('GET', '/apis', self.api_groups)
        for group, version in GROUPS.items():
            r('GET', '/api/' + version if not group else '/apis/%s/%s' % (group, version),
              functools.partial(self.api_resources, group))
        r('GET', '/openapi/v3', self.openapi_index)
        for key in self.docs:
            r('GET', '/openapi/v3/' + key, functools.partial(self.openapi_doc, key))
        for res in RESOURCES:
            bind = functools.partial
            v = set(res.verbs)
            p = res.prefix
            colls = [(p + '/namespaces/{ns}/' + res.plural, p + '/watch/namespaces/{ns}/' + res.plural)]
            if res.namespaced:
                all_ns = p + '/' + res.plural
                if v & {'list', 'watch'}:
                    r('GET', all_ns, bind(self.list_or_watch, res))
                if 'watch' in v:
                    r('GET', p + '/watch/' + res.plural, bind(self.watch, res))
            else:
                colls = [(p + '/' + res.plural, p + '/watch/' + res.plural)]
            for coll, watch in colls:
                item = coll + '/{name}'
                if v & {'list', 'watch'}:
                    r('GET', coll, bind(self.list_or_watch, res))
                if 'watch' in v:
                    r('GET', watch, bind(self.watch, res))
                    r('GET', watch + '/{name}', bind(self.watch, res))
                if 'create' in v:
                    r('POST', coll, bind(self.create, res))
                if 'deletecollection' in v:
                    r('DELETE', coll, bind(self.delete_collection, res))
                if 'get' in v:
                    r('GET', item, bind(self.get, res))
                for method, verb in (('PUT', 'update'), ('PATCH', 'patch')):
                    if verb in v:
                        r(method, item, bind(self.update, res))
                        if res.status:
                            r(method, item + '/status', bind(self.update, res, sub='status'))
                if res.status:
                    r('GET', item + '/status', bind(self.get, res))
                if 'delete' in v:
                    r('DELETE', item, bind(self.delete, res))
                if res.plural == 'pods':
                    r('GET', item + '/log', self.pod_log)

    # ---- discovery
    def version(self, req):
        req.send_json(200, {'major': '1', 'minor': '32', 'gitVersion': 'v1.32.0-zorch-sim', 'gitCommit': '',
                            'gitTreeState': 'clean', 'buildDate': now_iso(), 'goVersion': 'go1.23',
                            'compiler': 'gc', 'platform': 'linux/amd64'})

    def api_versions(self, req):
        req.send_json(200, {'kind': 'APIVersions', 'versions': ['v1'], 'serverAddressByClientCIDRs':
                            [{'clientCIDR': '0.0.0.0/0', 'serverAddress': '127.0.0.1:%d' % self.port}]})

    def api_groups(self, req):
        req.send_json(200, {'kind': 'APIGroupList', 'apiVersion': 'v1', 'groups': [
            {'name': g, 'versions': [{'groupVersion': '%s/%s' % (g, v), 'version': v}],
             'preferredVersion': {'groupVersion': '%s/%s' % (g, v), 'version': v}}
            for g, v in GROUPS.items() if g]})

    def api_resources(self, group, req):
        rl = []
        for r in RESOURCES:
            if r.group != group:
                continue
            rl.append({'name': r.plural, 'singularName': r.kind.lower(), 'namespaced': r.namespaced,
                       'kind': r.kind, 'verbs': r.verbs, 'shortNames': r.short})
            if r.status:
                rl.append({'name': r.plural + '/status', 'singularName': '', 'namespaced': r.namespaced,
                           'kind': r.kind, 'verbs': ['get', 'patch', 'update']})
            if r.plural == 'pods':
                rl.append({'name': 'pods/log', 'singularName': '', 'namespaced': True, 'kind': 'Pod',
                           'verbs': ['get']})
        gv = GROUPS[group] if not group else '%s/%s' % (group, GROUPS[group])
        req.send_json(200, {'kind': 'APIResourceList', 'apiVersion': 'v1', 'groupVersion': gv, 'resources': rl})

    def openapi_index(self, req):
        req.send_json(200, {'paths': {k: {'serverRelativeURL': '/openapi/v3/%s?hash=%s' % (k, h)}
                                      for k, (h, _) in self.docs.items()}})

    def openapi_doc(self, key, req):
        req.send_bytes(200, self.docs[key][1])

    # ---- bodies
    def read_json(self, req):
        data = req.body()
        ct = req.content_type()
        if data and ct and ct not in JSON_TYPES:
            raise ApiError(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format - '
                           'accepted media types include: application/json, application/yaml, '
                           'application/vnd.kubernetes.protobuf')
        try:
            return json.loads(data) if data else None
        except ValueError as e:
            raise bad_request("couldn't get version/kind; json parse error: %s" % e)

    def decode(self, res, body, q):
        """Check body against the resource's OpenAPI schema as the API server
        decodes it: type errors are 400; unknown fields are 400 under
        fieldValidation=Strict, else dropped (with a Warning under Warn)."""
        if not isinstance(body, dict):
            raise bad_request('the request body must be a JSON object (%s)' % res.kind)
        fv = q.get('fieldValidation', 'Warn')
        if fv not in ('Strict', 'Warn', 'Ignore'):
            raise bad_request('fieldValidation parameter unsupported: %s' % fv)
        found = self.schemas.check(body, res.schema, types_only=True, null_ok=True)
        if found.errors:
            raise bad_request('%s in version "%s" cannot be handled as a %s: %s'
                              % (res.kind, res.version, res.kind, '; '.join(found.errors)))
        if body.get('apiVersion') not in (None, res.api_version) or body.get('kind') not in (None, res.kind):
            raise bad_request('the API version in the data (%s) does not match the expected API version (%s)'
                              % (body.get('apiVersion'), res.api_version)
                              if body.get('apiVersion') != res.api_version else
                              'the kind in the data (%s) does not match the expected kind (%s)'
                              % (body.get('kind'), res.kind))
        warnings = []
        if found.unknown:
            if fv == 'Strict':
                raise bad_request('strict decoding error: %s' % ', '.join(
                    'unknown field "%s"' % u for u in found.unknown))
            for u in found.unknown:
                drop_path(body, u)
            if fv == 'Warn':
                warnings = [('Warning', '299 - "unknown field \\"%s\\""' % u) for u in found.unknown]
        return body, warnings

    def namespace_open(self, ns):
        """404 for a namespace that does not exist, 403 for one being deleted."""
        o = self.store.get('namespaces', None, ns)
        if o is None:
            raise not_found('', 'namespaces', ns)
        if o['metadata'].get('deletionTimestamp'):
            raise ApiError(403, 'Forbidden', 'unable to create new content in namespace %s because it is being '
                           'terminated' % ns, {'name': ns, 'kind': 'namespaces'})

    # ---- verbs
    def list_or_watch(self, res, req, ns=None):
        if req.query_bool('watch'):
            return self.watch(res, req, ns)
        items, rv = self.store.list(res.plural, ns, selector(req.query))
        if res.plural == 'pods' and 'as=Table' in (req.headers.get('Accept') or ''):
            return req.send_json(200, table_for_pods(items, rv))
        for it in items:
            it.pop('apiVersion', None)
            it.pop('kind', None)
        req.send_json(200, {'kind': res.kind + 'List', 'apiVersion': res.api_version,
                            'metadata': {'resourceVersion': rv}, 'items': items})

    def get(self, res, req, name, ns=None):
        if req.query_bool('watch'):
            return self.watch(res, req, ns, name)
        req.send_json(200, self.store.must_get(res, ns, name))

    def watch(self, res, req, ns=None, name=None):
        q = req.query
        pred = selector(q, name)
        timeout = query_int(q, 'timeoutSeconds') or 1800
        bookmarks = req.query_bool('allowWatchBookmarks')
        rv = q.get('resourceVersion') or ''
        try:
            since = int(rv) if rv not in ('', '0') else None
        except ValueError:
            raise bad_request('invalid resource version: %s' % rv)

        def expired(since, oldest):
            return {'type': 'ERROR', 'object': status(410, 'Expired', 'too old resource version: %d (%d)'
                                                      % (since, oldest))}
        try:
            events = self.store.watch(res.plural, ns, pred, since, timeout, 5 if bookmarks else None)
        except Expired as e:
            events = iter([expired(e.since, e.oldest)])
        out = req.stream()
        try:
            for ev in events:
                if isinstance(ev, dict):
                    out.json_line(ev)
                elif ev.type == 'BOOKMARK':
                    out.json_line({'type': 'BOOKMARK', 'object': {'kind': res.kind, 'apiVersion': res.api_version,
                                                                  'metadata': {'resourceVersion': str(ev.version)}}})
                elif ev.type == 'ERROR':
                    out.json_line(expired(since or 0, ev.version))
                    break
                else:
                    out.json_line({'type': ev.type, 'object': ev.obj})
            out.end()
        except OSError:  # the client went away (broken pipe, reset, TLS)
            req.close_connection = True

    def create(self, res, req, ns=None):
        cluster = self.cluster
        if ns is not None:
            self.namespace_open(ns)
        body, warnings = self.decode(res, self.read_json(req), req.query)
        causes = []
        validate_object(res.kind, body, causes)
        meta = body.get('metadata') or {}
        if meta.get('namespace') and ns and meta['namespace'] != ns:
            causes.append({'field': 'metadata.namespace', 'message': 'Invalid value: "%s": does not match the '
                           'namespace of the request (%s)' % (meta['namespace'], ns)})
        if causes:
            raise invalid(res.kind, res.group, meta.get('name') or meta.get('generateName') or '', causes)
        if res.plural == 'secrets':
            string_data(body)
        if req.query.get('dryRun') == 'All':
            return req.send_json(201, body, warnings)
        body.pop('status', None)
        if res.plural == 'pods':
            o = cluster.create_pod(ns, body)
        elif res.plural == 'jobs':
            spec = body['spec']
            for k, v in (('backoffLimit', 6), ('completions', 1), ('parallelism', 1),
                         ('completionMode', 'NonIndexed'), ('suspend', False),
                         ('podReplacementPolicy', 'TerminatingOrFailed')):
                spec.setdefault(k, v)
            body['status'] = {}
            o = self.store.create(res, ns, body)

            def selector_for(j):  # as the API server defaults it: the job's own uid
                uid = j['metadata']['uid']
                j['spec'].setdefault('selector', {'matchLabels': {'batch.kubernetes.io/controller-uid': uid}})
                lab = j['spec']['template'].setdefault('metadata', {}).setdefault('labels', {})
                lab.update({'batch.kubernetes.io/controller-uid': uid, 'controller-uid': uid,
                            'batch.kubernetes.io/job-name': j['metadata']['name'], 'job-name': j['metadata']['name']})
            o = self.store.update('jobs', ns, o['metadata']['name'], selector_for)
            cluster.job_created(ns, o['metadata']['name'])
        elif res.plural == 'cronjobs':
            spec = body['spec']
            for k, v in (('concurrencyPolicy', 'Allow'), ('suspend', False), ('successfulJobsHistoryLimit', 3),
                         ('failedJobsHistoryLimit', 1)):
                spec.setdefault(k, v)
            body['status'] = {}
            o = self.store.create(res, ns, body)
        elif res.plural == 'namespaces':
            body.setdefault('spec', {'finalizers': ['kubernetes']})
            body['status'] = {'phase': 'Active'}
            o = self.store.create(res, None, body)
        else:
            o = self.store.create(res, ns, body)
        req.send_json(201, o, warnings)

    def update(self, res, req, name, ns=None, sub=None):
        """PUT (replace) or PATCH (merge, strategic merge or JSON patch) an
        object or its status.  The status subresource changes only status;
        the object itself keeps its status and its system metadata."""
        body = self.read_json(req)
        ct = req.content_type()
        cur = self.store.must_get(res, ns, name)
        if req.method == 'PUT':
            new = body
            rv = ((body or {}).get('metadata') or {}).get('resourceVersion') if isinstance(body, dict) else None
            if rv and rv != cur['metadata']['resourceVersion']:
                raise ApiError(409, 'Conflict', 'Operation cannot be fulfilled on %s "%s": the object has been '
                               'modified; please apply your changes to the latest version and try again'
                               % (res.plural if not res.group else res.plural + '.' + res.group, name),
                               {'name': name, 'group': res.group, 'kind': res.plural})
        elif ct == 'application/merge-patch+json':
            new = merge_patch(copy.deepcopy(cur), body)
        elif ct == 'application/strategic-merge-patch+json':
            sch, base = self.schemas.schema(res.schema)
            new = strategic_merge(self.schemas, copy.deepcopy(cur), body, sch, base)
        elif ct == 'application/json-patch+json':
            try:
                new = json_patch(cur, body)
            except PatchError as e:
                raise ApiError(422, 'Invalid', 'the server rejected our request due to an error in our '
                               'request: %s' % e)
        else:
            raise ApiError(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format - '
                           'accepted media types include: application/json-patch+json, '
                           'application/merge-patch+json, application/strategic-merge-patch+json')
        new, warnings = self.decode(res, new, req.query)
        new_name = (new.get('metadata') or {}).get('name')
        if new_name not in (None, name):
            raise bad_request('the name of the object (%s) does not match the name on the URL (%s)'
                              % (new_name, name))
        if sub == 'status':
            def apply(o):
                o['status'] = new.get('status') or {}
        else:
            causes = []
            validate_object(res.kind, new, causes)
            causes += immutable(res, cur, new)
            if causes:
                raise invalid(res.kind, res.group, name, causes)
            if res.plural == 'secrets':
                string_data(new)

            def apply(o):
                for k in set(o) | set(new):
                    if k not in ('metadata', 'status', 'apiVersion', 'kind'):
                        if k in new:
                            o[k] = new[k]
                        else:
                            del o[k]
                meta = new.get('metadata') or {}
                for k in ('labels', 'annotations'):
                    if meta.get(k) is not None:
                        o['metadata'][k] = meta[k]
                    else:
                        o['metadata'].pop(k, None)
        req.send_json(200, self.store.update(res.plural, ns, name, apply), warnings)

    def delete(self, res, req, name, ns=None):
        cluster = self.cluster
        body = self.read_json(req) or {}
        q = req.query
        grace = query_int(q, 'gracePeriodSeconds', body.get('gracePeriodSeconds'))
        prop = q.get('propagationPolicy') or body.get('propagationPolicy')
        if prop not in (None, 'Orphan', 'Background', 'Foreground'):
            raise bad_request('propagationPolicy %s is not supported' % prop)
        if res.plural == 'pods':
            return req.send_json(200, cluster.delete_pod(ns, name, grace))
        if res.plural == 'namespaces':
            if name in UNDELETABLE:
                raise ApiError(403, 'Forbidden', 'namespaces "%s" is forbidden: this namespace may not be deleted'
                               % name, {'name': name, 'kind': 'namespaces'})
            return req.send_json(200, cluster.delete_namespace(name))
        cur = self.store.must_get(res, ns, name)
        if res.plural == 'jobs':
            if prop is None:
                prop = 'Orphan' if req.query_bool('orphanDependents', True) else 'Background'
            if prop != 'Orphan':
                uid = cur['metadata']['uid']
                pods, _ = self.store.list('pods', ns, lambda p: (p['metadata'].get('labels') or {}).get(
                    'batch.kubernetes.io/controller-uid') == uid)
                for p in pods:
                    try:
                        cluster.delete_pod(ns, p['metadata']['name'], grace)
                    except ApiError:
                        pass
        o = self.store.delete(res.plural, ns, name)
        if o is None:
            raise not_found(res.group, res.plural, name)
        req.send_json(200, {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Success',
                            'details': {'name': name, 'group': res.group, 'kind': res.plural,
                                        'uid': o['metadata']['uid']}})

    def delete_collection(self, res, req, ns=None):
        items, rv = self.store.list(res.plural, ns, selector(req.query))
        grace = query_int(req.query, 'gracePeriodSeconds')
        out = []
        for it in items:
            try:
                if res.plural == 'pods':
                    out.append(self.cluster.delete_pod(ns, it['metadata']['name'], grace))
                else:
                    o = self.store.delete(res.plural, ns, it['metadata']['name'])
                    if o:
                        out.append(o)
            except ApiError:
                pass
        req.send_json(200, {'kind': res.kind + 'List', 'apiVersion': res.api_version,
                            'metadata': {'resourceVersion': rv}, 'items': out})

    def pod_log(self, req, ns, name):
        cluster, q = self.cluster, req.query
        pod = self.store.must_get(BY_PATH[('', 'pods')], ns, name)
        cs = [c['name'] for c in pod['spec']['containers']]
        c = q.get('container') or (cs[0] if len(cs) == 1 else None)
        if c is None:
            raise bad_request('a container name must be specified for pod %s, choose one of: [%s]'
                              % (name, ' '.join(cs)))
        if c not in cs:
            raise bad_request('container %s is not valid for pod %s' % (c, name))
        cst = [x for x in pod['status'].get('containerStatuses') or [] if x['name'] == c]
        state = cst[0]['state'] if cst else {}
        if 'waiting' in state or not cst:
            raise bad_request('container "%s" in pod "%s" is waiting to start: %s'
                              % (c, name, state.get('waiting', {}).get('reason') or 'ContainerCreating'))
        follow = req.query_bool('follow')
        tail = query_int(q, 'tailLines')
        saved = cluster.logs.get(pod['metadata']['uid'])
        with cluster.plock:
            runner = cluster.pods.get((ns, name))
        cid = runner.cids.get(c) if runner else None
        if saved is not None or not follow:
            data = saved.get(c, b'') if saved is not None else cluster.engine.logs(cid) if cid else b''
            if tail is not None:
                lines = data.splitlines(True)
                data = b''.join(lines[-tail:]) if tail > 0 else b''
            return req.send_bytes(200, data, 'text/plain')
        out = req.stream(content_type='text/plain')  # follow a running container
        try:
            for chunk in cluster.engine.follow_logs(cid) if cid else ():
                out.write(chunk)
            out.end()
        except OSError:
            req.close_connection = True


def query_int(q, name, default=None):
    """An integer query parameter (default when absent): one that is not an
    integer is the API server's 400 BadRequest, not a simulator error."""
    v = q.get(name)
    if v is None:
        v = default
    if v is None:
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        raise bad_request('strconv.ParseInt: parsing %s: invalid syntax' % json.dumps(str(v)))


def string_data(secret):
    """A Secret's stringData goes into data, base64-encoded (write-only)."""
    sd = secret.pop('stringData', None)
    if sd:
        data = secret.setdefault('data', {})
        for k, v in sd.items():
            data[k] = base64.b64encode(v.encode()).decode()


def immutable(res, cur, new):
    """The causes of an update that changes what never changes."""
    causes = []
    if res.plural == 'jobs':  # as the API server's job validation: these never change
        for f in ('template', 'selector'):
            if (new.get('spec') or {}).get(f) != cur['spec'].get(f):
                causes.append({'field': 'spec.' + f, 'message': 'Invalid value: %s: field is immutable'
                               % json.dumps((new.get('spec') or {}).get(f), sort_keys=True)})
    elif res.plural == 'pods':
        def fixed(spec):  # what a pod update may not change (the simulator restarts no containers)
            s = dict(spec or {})
            s.pop('activeDeadlineSeconds', None)
            s.pop('tolerations', None)
            return s
        kept = (new.get('spec') or {}).get('tolerations') or []
        if fixed(new.get('spec')) != fixed(cur.get('spec')) or \
                any(t not in kept for t in cur['spec'].get('tolerations') or []):
            causes.append({'field': 'spec', 'message': POD_UPDATE, 'reason': 'FieldValueForbidden'})
    return causes


def table_for_pods(items, rv):
    rows = []
    for p in items:
        st = p.get('status') or {}
        cs = st.get('containerStatuses') or []
        ready = sum(1 for c in cs if c.get('ready'))
        phase = st.get('phase', 'Pending')
        for c in cs:
            w = (c.get('state') or {}).get('waiting')
            t = (c.get('state') or {}).get('terminated')
            if w and w.get('reason'):
                phase = w['reason']
            elif t and t.get('reason'):
                phase = t['reason']
        if p['metadata'].get('deletionTimestamp'):
            phase = 'Terminating'
        age = '%ds' % max(0, int(time.time() - datetime.datetime.strptime(
            p['metadata']['creationTimestamp'], '%Y-%m-%dT%H:%M:%SZ').replace(
            tzinfo=datetime.timezone.utc).timestamp()))
        rows.append({'cells': [p['metadata']['name'], '%d/%d' % (ready, len(p['spec'].get('containers', []))),
                               phase, sum(c.get('restartCount', 0) for c in cs), age,
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


KUBECONFIG_TOKEN = """apiVersion: v1
kind: Config
clusters:
- name: sim
  cluster:
    server: {url}
    certificate-authority: {ca_file}
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
    token: {token}
"""
KUBECONFIG_CERT = """apiVersion: v1
kind: Config
clusters:
- name: sim
  cluster:
    server: {url}
    certificate-authority-data: {ca}
contexts:
- name: sim-admin
  context:
    cluster: sim
    user: admin
current-context: sim-admin
users:
- name: admin
  user:
    client-certificate-data: {crt}
    client-key-data: {key}
"""


def write_kubeconfigs(d, url, token, pki):
    """DIR/kubeconfig (the bearer token), DIR/kubeconfig-cert (the client
    certificate) and DIR/token."""
    def b64(f):
        with open(f, 'rb') as fh:
            return base64.b64encode(fh.read()).decode()
    texts = (('kubeconfig', KUBECONFIG_TOKEN.format(url=url, ca_file=pki.ca_crt, token=token)),
             ('kubeconfig-cert', KUBECONFIG_CERT.format(url=url, ca=b64(pki.ca_crt), crt=b64(pki.client_crt),
                                                        key=b64(pki.client_key))))
    for name, text in texts:
        tmp = os.path.join(d, name + '.tmp')
        with open(tmp, 'w') as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.rename(tmp, os.path.join(d, name))
    with open(os.path.join(d, 'token'), 'w') as f:
        f.write(token)
