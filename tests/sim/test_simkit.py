"""The kit's own checks (no Podman): schema documents of each kind, patches,
Go booleans, the router, the store's watches, faults, and a small App served
over TLS (auth hooks, error shapes, admin endpoints).  Run with
/usr/bin/python3 tests/sim/test_simkit.py (meson test simkit)."""
import importlib.util
import json
import os
import ssl
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import simkit  # noqa: E402
from simkit import (App, BearerToken, ClientCert, Expired, HttpError, PatchError, Router, Schemas,  # noqa: E402
                    Store, json_patch, merge_patch, parse_bool, parse_rule, specs_dir)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CI = os.environ.get('CI') == 'true'


def spec(*sub):
    path = specs_dir(*sub)
    if not os.path.exists(path):
        if CI:
            raise AssertionError('%s is missing: the specs are ../shared/specs beside the source tree' % path)
        raise unittest.SkipTest('%s is missing' % path)
    return path


class SpecsDir(unittest.TestCase):
    def test_beside_the_source_tree(self):
        saved = os.environ.pop(simkit.server.SPECS_ENV, None)
        try:
            self.assertEqual(specs_dir('kubernetes'), os.path.join(os.path.dirname(ROOT), 'shared', 'specs',
                                                                   'kubernetes'))
            os.environ[simkit.server.SPECS_ENV] = '/elsewhere'
            self.assertEqual(specs_dir('gcs', 'storage.v1.json'), '/elsewhere/gcs/storage.v1.json')
        finally:
            os.environ.pop(simkit.server.SPECS_ENV, None)
            if saved is not None:
                os.environ[simkit.server.SPECS_ENV] = saved


class OpenApiV3(unittest.TestCase):
    """Kubernetes' documents, read as its API server decodes (types only)."""

    @classmethod
    def setUpClass(cls):
        cls.s = Schemas()
        cls.s.load(spec('kubernetes/openapi-spec/v3/api__v1_openapi.json'))

    def check(self, body, **kw):
        return self.s.check(body, 'io.k8s.api.core.v1.Pod', types_only=True, null_ok=True, **kw)

    def test_good_pod(self):
        r = self.check({'metadata': {'name': 'a', 'labels': {'x': 'y'}}, 'spec': {'containers': [
            {'name': 'm', 'image': 'i', 'resources': {'limits': {'memory': '1Gi', 'cpu': 2}}}]}})
        self.assertEqual((r.errors, r.unknown), ([], []))

    def test_type_error_and_unknown_field_have_paths(self):
        r = self.check({'spec': {'containers': [{'name': 'm', 'image': 5, 'bogus': 1}]}})
        self.assertEqual(r.errors, ['spec.containers[0].image: expected string, got number'])
        self.assertEqual(r.unknown, ['spec.containers[0].bogus'])

    def test_required_and_int_or_string(self):
        r = self.check({'spec': {'containers': [{'image': 'i', 'ports': [{'containerPort': 'x'}]}]}})
        self.assertIn('spec.containers[0]: required field "name" is missing', r.errors)
        self.assertIn('spec.containers[0].ports[0].containerPort: expected integer, got string', r.errors)
        r = self.check({'spec': {'containers': [{'name': 'm', 'resources': {'limits': {'cpu': [1]}}}]}})
        self.assertEqual(r.errors, ['spec.containers[0].resources.limits.cpu: expected string or number, '
                                    'got array'])

    def test_byte_format(self):
        s = 'io.k8s.api.core.v1.Secret'
        self.assertTrue(self.s.check({'data': {'k': 'aGk='}}, s).ok)
        self.assertFalse(self.s.check({'data': {'k': 'not base64!'}}, s).ok)


class OpenApiV2(unittest.TestCase):
    """Azure ML's Swagger: $refs into other files, allOf inheritance and
    discriminators (x-ms-discriminator-value)."""

    @classmethod
    def setUpClass(cls):
        cls.s = Schemas()
        cls.s.load(spec('azure-ml/swagger/specification/machinelearningservices/resource-manager/'
                        'Microsoft.MachineLearningServices/stable/2025-12-01/mfe.json'))

    def job(self, **extra):
        return dict({'jobType': 'Command', 'command': 'python train.py', 'environmentId': 'env:1',
                     'computeId': 'cpu'}, **extra)

    def test_subtype_by_discriminator(self):
        r = self.s.check({'properties': self.job()}, 'JobBaseResource')
        self.assertEqual((r.errors, r.unknown), ([], []))

    def test_subtype_fields_checked(self):
        r = self.s.check({'properties': self.job(command=3, bogus=True)}, 'JobBaseResource')
        self.assertEqual(r.errors, ['properties.command: expected string, got number'])
        self.assertEqual(r.unknown, ['properties.bogus'])

    def test_required_from_the_subtype_and_unknown_discriminator_value(self):
        r = self.s.check({'properties': {'jobType': 'Command'}}, 'JobBaseResource')
        self.assertIn('properties: required field "command" is missing', r.errors)
        r = self.s.check({'properties': {'jobType': 'Nonsense'}}, 'JobBaseResource')
        self.assertTrue(any('jobType "Nonsense" is not one of' in e for e in r.errors), r.errors)

    def test_enum_unless_types_only(self):
        body = {'properties': self.job(jobType='Command', status='Sleeping')}
        self.assertFalse(self.s.check(body, 'JobBaseResource').ok)
        self.assertTrue(self.s.check(body, 'JobBaseResource', types_only=True).ok)

    def test_ref_into_another_file(self):
        r = self.s.check({'properties': self.job(), 'systemData': {'createdBy': 7}}, 'JobBaseResource')
        self.assertEqual(r.errors, ['systemData.createdBy: expected string, got number'])
        self.assertTrue(self.s.schema('systemData')[1].endswith('common-types/resource-management/v3/types.json'))


class YamlV2AndDiscovery(unittest.TestCase):
    def test_docker_engine_yaml(self):
        if importlib.util.find_spec('yaml') is None:
            raise unittest.SkipTest('no PyYAML')
        s = Schemas()
        s.load(spec('docker-engine/v1.44.yaml'))
        r = s.check({'Image': 'x', 'Cmd': 'not a list', 'HostConfig': {'Memory': 'lots'}}, 'ContainerConfig')
        self.assertIn('Cmd: expected array, got string', r.errors)

    def test_discovery_bare_refs(self):
        s = Schemas()
        s.load(spec('vertex-ai/aiplatform.v1.json'))
        good = {'displayName': 'j', 'jobSpec': {'workerPoolSpecs': [
            {'machineSpec': {'machineType': 'n1-standard-4'}, 'replicaCount': '1',
             'containerSpec': {'imageUri': 'gcr.io/x', 'args': ['a']}}]}}
        r = s.check(good, 'GoogleCloudAiplatformV1CustomJob')
        self.assertEqual((r.errors, r.unknown), ([], []))
        good['jobSpec']['workerPoolSpecs'][0]['containerSpec']['args'] = 'a'
        good['jobSpec']['bogus'] = 1
        r = s.check(good, 'GoogleCloudAiplatformV1CustomJob')
        self.assertEqual(r.errors, ['jobSpec.workerPoolSpecs[0].containerSpec.args: expected array, got string'])
        self.assertEqual(r.unknown, ['jobSpec.bogus'])


class JsonSchema(unittest.TestCase):
    def setUp(self):
        self.d = tempfile.mkdtemp(prefix='simkit-test-')
        with open(os.path.join(self.d, 'common.json'), 'w') as f:
            json.dump({'$defs': {'Name': {'type': 'string', 'pattern': '^[a-z]+$', 'maxLength': 8}}}, f)
        with open(os.path.join(self.d, 'run.json'), 'w') as f:
            json.dump({'type': 'object', 'required': ['name'], 'additionalProperties': False, 'properties': {
                'name': {'$ref': 'common.json#/$defs/Name'},
                'retries': {'type': 'integer', 'minimum': 0, 'maximum': 5},
                'note': {'type': ['string', 'null']},
                'tags': {'type': 'object', 'additionalProperties': {'type': 'string'}},
                'step': {'oneOf': [{'type': 'string'}, {'$ref': '#/$defs/Step'}]}},
                '$defs': {'Step': {'type': 'object', 'properties': {'image': {'type': 'string'}}}}}, f)
        self.s = Schemas()
        self.s.load(os.path.join(self.d, 'run.json'))

    def test_good(self):
        r = self.s.check({'name': 'abc', 'retries': 2, 'note': None, 'tags': {'a': 'b'},
                          'step': {'image': 'x', 'extra': 1}}, 'run', closed=False)
        self.assertEqual((r.errors, r.unknown), ([], []))

    def test_closed_object_by_default(self):
        r = self.s.check({'name': 'abc', 'step': {'image': 'x', 'extra': 1}}, 'run')
        self.assertEqual(r.unknown, ['step.extra'])

    def test_each_keyword(self):
        r = self.s.check({'name': 'ABCDEFGHIJ', 'retries': 9, 'tags': {'a': 1}, 'step': 3, 'more': 1}, 'run')
        self.assertEqual(len(r.errors), 5, r.errors)  # pattern, maxLength, maximum, tags.a, step
        self.assertEqual(r.unknown, ['more'])  # additionalProperties: false
        self.assertIn('.: required field "name" is missing', self.s.check({}, 'run').errors)


class Patches(unittest.TestCase):
    def test_merge_patch(self):
        self.assertEqual(merge_patch({'a': {'b': 1, 'c': 2}, 'l': [1]}, {'a': {'b': None, 'd': 3}, 'l': [2]}),
                         {'a': {'c': 2, 'd': 3}, 'l': [2]})

    def test_json_patch(self):
        doc = {'a': [1, 2], 'b': {'c': 1}}
        out = json_patch(doc, [{'op': 'add', 'path': '/a/-', 'value': 3}, {'op': 'remove', 'path': '/b/c'},
                               {'op': 'replace', 'path': '/a/0', 'value': 0}, {'op': 'copy', 'from': '/a',
                                                                               'path': '/b/x'},
                               {'op': 'move', 'from': '/b/x', 'path': '/y'}, {'op': 'test', 'path': '/y/2',
                                                                             'value': 3}])
        self.assertEqual(out, {'a': [0, 2, 3], 'b': {}, 'y': [0, 2, 3]})
        self.assertEqual(doc, {'a': [1, 2], 'b': {'c': 1}})
        for bad in ([{'op': 'remove', 'path': '/zz'}], [{'op': 'test', 'path': '/a/0', 'value': 9}],
                    [{'op': 'replace', 'path': '/a/5', 'value': 1}], {'op': 'add'}):
            with self.assertRaises(PatchError):
                json_patch(doc, bad)

    def test_go_booleans(self):
        for s in ('1', 't', 'T', 'TRUE', 'true', 'True'):
            self.assertIs(parse_bool(s), True)
        for s in ('0', 'f', 'F', 'FALSE', 'false', 'False'):
            self.assertIs(parse_bool(s), False)
        for s in ('', 'yes', 'tRUE', '2'):
            self.assertIsNone(parse_bool(s))


class Routing(unittest.TestCase):
    def test_patterns(self):
        r = Router()
        r.add('GET', '/v1/jobs/{name}', 'get')
        r.add('DELETE', '/v1/jobs/{name}', 'delete')
        r.add('GET', '/v1/files/{path*}', 'file')
        self.assertEqual(r.match('GET', '/v1/jobs/a'), ('get', {'name': 'a'}))
        self.assertEqual(r.match('GET', '/v1/files/a/b/c'), ('file', {'path': 'a/b/c'}))
        self.assertEqual(r.match('POST', '/v1/jobs/a'), (None, 405))
        self.assertEqual(r.match('GET', '/v1/jobs/a/b'), (None, 404))
        with self.assertRaises(ValueError):
            r.add('GET', '/v1/jobs/{name}', 'again')


class Watches(unittest.TestCase):
    def test_versions_events_and_expiry(self):
        st = Store(stamp=lambda o, v: o.__setitem__('v', v))
        st.HISTORY = 3
        self.assertIsNotNone(st.insert('jobs', 'a', 'j1', {'n': 1}))
        self.assertIsNone(st.insert('jobs', 'a', 'j1', {'n': 1}))
        v0 = st.version
        st.update('jobs', 'a', 'j1', lambda o: o.__setitem__('n', 2))
        st.update('jobs', 'a', 'j1', lambda o: False)  # no change, no event
        st.insert('jobs', 'b', 'j2', {})
        st.delete('jobs', 'a', 'j1')
        evs = list(st.watch('jobs', 'a', since=v0, timeout=0.2))
        self.assertEqual([(e.type, e.obj.get('n')) for e in evs], [('MODIFIED', 2), ('DELETED', 2)])
        self.assertEqual(evs[0].obj['v'], str(v0 + 1))
        with self.assertRaises(Expired):
            st.watch('jobs', None, since=v0 - 1)
        slow = st.watch('jobs', None, since=st.version, timeout=1)
        for i in range(5):  # more than the history keeps, before the watcher reads
            st.insert('jobs', 'c', 'x%d' % i, {})
        self.assertEqual([e.type for e in slow], ['ERROR'])

    def test_follow_and_bookmarks(self):
        st = Store()
        st.insert('jobs', None, 'old', {})
        got = []
        stream = st.watch('jobs', pred=lambda o: o.get('keep'), timeout=2.5, bookmark_every=0.5)
        t = threading.Thread(target=lambda: got.extend(stream))
        t.start()
        time.sleep(0.2)
        st.insert('jobs', None, 'skip', {})
        st.insert('jobs', None, 'keep', {'keep': True})
        time.sleep(1.2)
        st.close()
        t.join(5)
        self.assertFalse(t.is_alive())
        self.assertEqual([e.type for e in got if e.type != 'BOOKMARK'], ['ADDED'])
        self.assertIn('BOOKMARK', [e.type for e in got])


class FaultRules(unittest.TestCase):
    def test_rules(self):
        f = simkit.Faults()
        f.add(parse_rule('GET /v1/jobs/* status=503 count=2'))
        self.assertEqual(f.request('GET', '/v1/jobs/a').status, 503)
        self.assertIsNone(f.request('POST', '/v1/jobs/a'))
        self.assertEqual(f.request('GET', '/v1/jobs/b').status, 503)
        self.assertIsNone(f.request('GET', '/v1/jobs/c'))
        self.assertEqual(f.snapshot()['counts']['GET /v1/jobs/a'], 1)
        self.assertEqual(f.snapshot()['total'], 4)
        for bad in ('GET /x', 'GET /x status=abc', 'GET /x colour=red', 'GET /x count=0 status=500'):
            with self.assertRaises(ValueError):
                parse_rule(bad)


class Toy(App):
    """The smallest simulator: one resource, a token, its own error shape."""
    name = 'toy-sim'

    def __init__(self, args):
        super().__init__(args)
        self.auth = [BearerToken('secret', 'alice'), ClientCert()]
        self.jobs = {}
        self.route('POST', '/v1/jobs', self.create)
        self.route('GET', '/v1/jobs/{name}', self.get)

    def error_body(self, err):
        return {'error': {'code': err.code, 'message': err.message}}

    def create(self, req):
        body = req.json()
        if not isinstance(body, dict) or 'name' not in body:
            raise HttpError(400, 'a job needs a name')
        self.jobs[body['name']] = dict(body, owner=req.principal, watch=req.query_bool('watch'))
        req.send_json(201, self.jobs[body['name']])

    def get(self, req, name):
        if name not in self.jobs:
            raise HttpError(404, 'job %s not found' % name)
        req.send_json(200, self.jobs[name])


class ServedApp(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix='simkit-app-')
        args = simkit.parse_args(simkit.arg_parser('toy'), ['--dir', cls.dir, '--fault',
                                                            'POST /v1/jobs status=500 count=1'])
        cls.app = Toy(args)
        cls.srv = simkit.make_server(cls.app)
        threading.Thread(target=cls.srv.serve_forever, kwargs={'poll_interval': 0.1}, daemon=True).start()
        cls.ctx = ssl.create_default_context(cafile=cls.app.pki.ca_crt)

    @classmethod
    def tearDownClass(cls):
        cls.srv.shutdown()
        cls.srv.server_close()

    def call(self, method, path, body=None, token='secret', ctx=None):
        req = urllib.request.Request(self.app.url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={'Content-Type': 'application/json'})
        if token:
            req.add_header('Authorization', 'Bearer ' + token)
        try:
            with urllib.request.urlopen(req, context=ctx or self.ctx, timeout=10) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def test_1_cli_fault_then_routes(self):
        self.assertEqual(self.call('POST', '/v1/jobs', {'name': 'a'})[0], 500)  # --fault, once
        code, job = self.call('POST', '/v1/jobs?watch=True', {'name': 'a'})
        self.assertEqual((code, job['owner'], job['watch']), (201, 'alice', True))
        self.assertEqual(self.call('GET', '/v1/jobs/a')[1]['name'], 'a')
        self.assertEqual(self.call('GET', '/v1/jobs/zz'), (404, {'error': {'code': 404,
                                                                           'message': 'job zz not found'}}))
        self.assertEqual(self.call('DELETE', '/v1/jobs/a')[0], 405)
        self.assertEqual(self.call('GET', '/v2/nothing')[0], 404)
        self.assertEqual(self.call('POST', '/v1/jobs?watch=yes', {'name': 'b'})[0], 400)

    def test_auth(self):
        self.assertEqual(self.call('GET', '/v1/jobs/a', token=None)[0], 401)
        self.assertEqual(self.call('GET', '/v1/jobs/a', token='wrong')[0], 401)
        ctx = ssl.create_default_context(cafile=self.app.pki.ca_crt)
        ctx.load_cert_chain(self.app.pki.client_crt, self.app.pki.client_key)
        self.assertIn(self.call('GET', '/v1/jobs/zz', token=None, ctx=ctx)[0], (404,))  # the certificate is enough
        with self.assertRaises(urllib.error.URLError):  # only the simulator's CA is trusted
            urllib.request.urlopen(self.app.url + '/v1/jobs/a', timeout=5)

    def test_admin_counts_and_faults(self):
        admin = self.app.admin_token
        self.assertEqual(self.call('GET', '/_sim/requests', token='secret')[0], 401)
        self.call('DELETE', '/_sim/requests', token=admin)
        code, _ = self.call('POST', '/_sim/faults', {'method': 'GET', 'path': '/v1/jobs/*', 'status': 429,
                                                     'count': 2}, token=admin)
        self.assertEqual(code, 201)
        self.assertEqual(self.call('GET', '/v1/jobs/x')[0], 429)
        self.assertEqual(self.call('GET', '/_sim/faults', token=admin)[1]['faults'][0]['count'], 1)
        self.assertEqual(self.call('DELETE', '/_sim/faults', token=admin)[1], {'faults': []})
        self.assertEqual(self.call('GET', '/v1/jobs/x')[0], 404)
        self.assertEqual(self.call('POST', '/_sim/faults', {'status': 700}, token=admin)[0], 400)
        self.call('POST', '/_sim/faults', {'path': '/v1/jobs/x', 'status': 0}, token=admin)
        with self.assertRaises((urllib.error.URLError, ConnectionError)):  # the connection dropped
            self.call('GET', '/v1/jobs/x')
        counts = self.call('GET', '/_sim/requests', token=admin)[1]
        self.assertEqual(counts, {'counts': {'GET /v1/jobs/x': 3}, 'total': 3})
        with open(os.path.join(self.dir, 'admin-token')) as f:
            self.assertEqual(f.read(), admin)


if __name__ == '__main__':
    unittest.main(verbosity=2)
