"""The Kubernetes simulator driven by the official Python client (Debian's
python3-kubernetes): namespaces, pods (watch, logs, status, patch),
jobs (watch, the /status subresource: read, strategic merge patch,
replace), cronjobs, configmaps, secrets, errors as ApiException, and
simkit's fault injection and request counts as a client sees them.

Run by test-official-clients.sh with /usr/bin/python3, KUBECONFIG and
SIM_DIR set and the image simtest:latest in the simulator's engine.
Prints ok:/FAIL: lines; exits 1 when a check failed."""
import base64
import json
import os
import ssl
import sys
import threading
import time
import urllib.request

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NS = 'official'
failed = []


def check(name, cond, detail=''):
    print('%s: %s%s' % ('ok' if cond else 'FAIL', name, '' if cond or not detail else ' (%s)' % (detail,)),
          flush=True)
    if not cond:
        failed.append(name)
    return cond


def error_of(fn, *a, **kw):
    """The ApiException fn raises (status, Status body), or None."""
    try:
        fn(*a, **kw)
    except ApiException as e:
        try:
            return e.status, json.loads(e.body or '{}')
        except ValueError:
            return e.status, {}
    return None


def wait_for(pred, timeout=30.0):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    return None


def admin(method, path, body=None):
    """simkit's admin endpoints (/_sim/...): request counts, faults."""
    sim_dir = os.environ['SIM_DIR']
    with open(os.path.join(sim_dir, 'admin-token')) as f:
        token = f.read().strip()
    with open(os.path.join(sim_dir, 'ready')) as f:
        url = f.read().strip()
    req = urllib.request.Request(url + path, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={'Authorization': 'Bearer ' + token,
                                          'Content-Type': 'application/json'})
    ctx = ssl.create_default_context(cafile=os.path.join(sim_dir, 'ca.crt'))
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        return json.load(r)


def pod_body(name, command, labels=None):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {}),
        spec=client.V1PodSpec(restart_policy='Never', containers=[
            client.V1Container(name='main', image='simtest:latest', command=command)]))


def collect(stream_fn, out, until, **kw):
    """Run a Watch().stream in a thread; events go to out until until(event)."""
    w = watch.Watch()

    def run():
        try:
            for ev in w.stream(stream_fn, **kw):
                out.append(ev)
                if until(ev):
                    w.stop()
        except Exception as e:  # the check that reads out reports it
            out.append({'type': 'EXCEPTION', 'object': e, 'raw_object': repr(e)})
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def namespaces(v1, batch):
    """Discovery; namespaces created, listed, their status read."""
    check('version: gitVersion', 'zorch-sim' in client.VersionApi().get_code().git_version)
    ns = v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS, labels={'team': 'ml'})))
    check('create_namespace: Active', ns.status.phase == 'Active')
    check('list_namespace(label_selector)',
          [n.metadata.name for n in v1.list_namespace(label_selector='team=ml').items] == [NS])
    check('read_namespace_status', v1.read_namespace_status(NS).status.phase == 'Active')


def pods(v1, batch):
    """Pods: a watch from the list's resourceVersion sees the pod run; logs,
    status, patches, errors, deletion."""
    rv = v1.list_namespaced_pod(NS).metadata.resource_version
    events = []
    t = collect(v1.list_namespaced_pod, events,
                lambda ev: ev['type'] == 'MODIFIED' and ev['object'].status.phase == 'Succeeded',
                namespace=NS, resource_version=rv, label_selector='app=hello', timeout_seconds=60)
    v1.create_namespaced_pod(NS, pod_body('other', ['/bin/sh', '-c', 'exit 0']))
    p = v1.create_namespaced_pod(NS, pod_body('hello', ['/bin/sh', '-c', 'echo hello'], {'app': 'hello'}))
    check('create_namespaced_pod: uid and Pending', bool(p.metadata.uid) and p.status.phase == 'Pending')
    t.join(60)
    types = [ev['type'] for ev in events]
    check('Watch().stream(list_namespaced_pod): events, not a list', bool(events) and
          'EXCEPTION' not in types, events[-1]['raw_object'] if events else 'no event')
    check('  ... ADDED first, then MODIFIED up to Succeeded', types[:1] == ['ADDED'] and
          events[-1]['type'] == 'MODIFIED' and events[-1]['object'].status.phase == 'Succeeded', types)
    check('  ... objects are V1Pod, only the selected pod', bool(events) and
          all(isinstance(ev['object'], client.V1Pod) and ev['object'].metadata.name == 'hello'
              for ev in events if ev['type'] != 'EXCEPTION'))
    versions = [int(ev['object'].metadata.resource_version) for ev in events if ev['type'] != 'EXCEPTION']
    check('  ... resourceVersions increase', len(versions) > 1 and versions == sorted(versions), versions)
    wait_for(lambda: v1.read_namespaced_pod('other', NS).status.phase == 'Succeeded')  # no more changes
    initial = [ev for ev in watch.Watch().stream(v1.list_namespaced_pod, namespace=NS, timeout_seconds=1)]
    check('watch without resourceVersion: ADDED for each pod, then ends at timeout_seconds',
          sorted(ev['object'].metadata.name for ev in initial) == ['hello', 'other'] and
          all(ev['type'] == 'ADDED' for ev in initial), [ev['type'] for ev in initial])
    raw = v1.list_namespaced_pod(NS, watch=True, timeout_seconds=1, _preload_content=False).data.decode()
    check('list_namespaced_pod(watch=True): a stream of JSON lines', all(
        json.loads(line).get('type') == 'ADDED' for line in raw.splitlines()) and raw.count('\n') == 2, raw[:200])
    check('read_namespaced_pod_log', v1.read_namespaced_pod_log('hello', NS) == 'hello\n')
    st = v1.read_namespaced_pod_status('hello', NS)
    check('read_namespaced_pod_status: terminated, exit code 0',
          st.status.container_statuses[0].state.terminated.exit_code == 0)
    p = v1.patch_namespaced_pod('hello', NS, {'metadata': {'labels': {'reviewed': 'yes'}}})
    check('patch_namespaced_pod (strategic merge): label added, others kept',
          p.metadata.labels == {'app': 'hello', 'reviewed': 'yes'}, p.metadata.labels)
    e = error_of(v1.patch_namespaced_pod, 'hello', NS, {'spec': {'restartPolicy': 'Always'}})
    check('patch_namespaced_pod of spec.restartPolicy: 422 Forbidden', e and e[0] == 422, e)
    e = error_of(v1.read_namespaced_pod, 'ghost', NS)
    check('read a missing pod: ApiException 404 NotFound', e and e[0] == 404 and e[1].get('reason') == 'NotFound')
    e = error_of(v1.create_namespaced_pod, NS, pod_body('hello', ['/bin/true']))
    check('create an existing pod: 409 AlreadyExists', e and e[0] == 409 and e[1].get('reason') == 'AlreadyExists')
    v1.delete_namespaced_pod('other', NS, grace_period_seconds=0)
    check('delete_namespaced_pod: gone', wait_for(lambda: error_of(v1.read_namespaced_pod, 'other', NS)))


def jobs(v1, batch):
    """Jobs and their /status subresource."""
    job = client.V1Job(metadata=client.V1ObjectMeta(name='train', labels={'kind': 'train'}),
                       spec=client.V1JobSpec(backoff_limit=0, template=client.V1PodTemplateSpec(
                           spec=client.V1PodSpec(restart_policy='Never', containers=[client.V1Container(
                               name='main', image='simtest:latest', command=['/bin/sh', '-c', 'echo trained'])]))))
    jevents = []
    t = collect(batch.list_namespaced_job, jevents, lambda ev: (ev['object'].status.succeeded or 0) >= 1,
                namespace=NS, field_selector='metadata.name=train', timeout_seconds=60)
    j = batch.create_namespaced_job(NS, job)
    check('create_namespaced_job: selector defaulted to its uid',
          j.spec.selector.match_labels == {'batch.kubernetes.io/controller-uid': j.metadata.uid})
    t.join(60)
    check('Watch().stream(list_namespaced_job): up to succeeded=1', bool(jevents) and
          getattr(jevents[-1]['object'], 'status', None) is not None and jevents[-1]['object'].status.succeeded == 1,
          [ev['type'] for ev in jevents])
    js = batch.read_namespaced_job_status('train', NS)
    check('read_namespaced_job_status: condition Complete',
          any(c.type == 'Complete' and c.status == 'True' for c in js.status.conditions or []))
    js = batch.patch_namespaced_job_status('train', NS, {'status': {'conditions': [
        {'type': 'Reviewed', 'status': 'True', 'reason': 'ByTest', 'message': 'checked'}]}})
    types = sorted(c.type for c in js.status.conditions)
    check('patch_namespaced_job_status (strategic merge): condition merged by type',
          'Reviewed' in types and 'Complete' in types, types)
    js.status.failed = 7  # (V1JobStatus of this client has no 'ready')
    js = batch.replace_namespaced_job_status('train', NS, js)
    check('replace_namespaced_job_status: status stored', batch.read_namespaced_job('train', NS).status.failed == 7)
    stale = batch.read_namespaced_job('train', NS)
    batch.patch_namespaced_job('train', NS, {'metadata': {'labels': {'stage': 'done'}}})
    stale.metadata.labels['stage'] = 'stale'
    e = error_of(batch.replace_namespaced_job, 'train', NS, stale)
    check('replace_namespaced_job with an old resourceVersion: 409 Conflict', e and e[0] == 409, e)
    e = error_of(batch.patch_namespaced_job_status, 'train', NS, {'spec': {'backoffLimit': 3}, 'status': {'failed': 1}})
    check('a status patch changes status only',
          e is None and batch.read_namespaced_job('train', NS).spec.backoff_limit == 0)
    e = error_of(batch.patch_namespaced_job, 'train', NS, [
        {'op': 'replace', 'path': '/spec/template/spec/containers/0/image', 'value': 'other:1'}])
    check('JSON patch of a Job template: 422 field is immutable', e and e[0] == 422 and
          'immutable' in e[1].get('message', ''), e)
    pods = v1.list_namespaced_pod(NS, label_selector='job-name=train').items
    check('the job pod carries job-name', len(pods) == 1)
    batch.delete_namespaced_job('train', NS, propagation_policy='Background')
    check('delete_namespaced_job (Background): the job and its pod go', wait_for(
        lambda: error_of(batch.read_namespaced_job, 'train', NS) and
        not v1.list_namespaced_pod(NS, label_selector='job-name=train').items))


def cronjobs(v1, batch):
    """CronJobs: stored, patched, validated, deleted."""
    cj = client.V1CronJob(metadata=client.V1ObjectMeta(name='nightly'), spec=client.V1CronJobSpec(
        schedule='0 3 * * *', job_template=client.V1JobTemplateSpec(spec=client.V1JobSpec(
            template=client.V1PodTemplateSpec(spec=client.V1PodSpec(restart_policy='Never', containers=[
                client.V1Container(name='main', image='simtest:latest')]))))))
    c = batch.create_namespaced_cron_job(NS, cj)
    check('create_namespaced_cron_job: defaults', c.spec.concurrency_policy == 'Allow' and c.spec.suspend is False)
    c = batch.patch_namespaced_cron_job('nightly', NS, {'spec': {'suspend': True}})
    check('patch_namespaced_cron_job: suspend', c.spec.suspend is True)
    check('read_namespaced_cron_job_status', batch.read_namespaced_cron_job_status('nightly', NS).metadata.name ==
          'nightly')
    cj.metadata.name = 'bad'
    cj.spec.schedule = '61 * * * *'
    e = error_of(batch.create_namespaced_cron_job, NS, cj)
    check('a bad cron schedule: 422 Invalid', e and e[0] == 422 and e[1].get('reason') == 'Invalid', e)
    batch.delete_namespaced_cron_job('nightly', NS)
    check('delete_namespaced_cron_job', [x.metadata.name for x in batch.list_namespaced_cron_job(NS).items] == [])


def configmaps_and_secrets(v1, batch):
    """ConfigMaps (replace, JSON patch) and Secrets (stringData, base64)."""
    v1.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name='cfg'),
                                                           data={'a': '1'}))
    cm = v1.read_namespaced_config_map('cfg', NS)
    cm.data['b'] = '2'
    cm = v1.replace_namespaced_config_map('cfg', NS, cm)
    check('replace_namespaced_config_map', cm.data == {'a': '1', 'b': '2'}, cm.data)
    cm = v1.patch_namespaced_config_map('cfg', NS, [{'op': 'remove', 'path': '/data/a'}])
    check('patch_namespaced_config_map (JSON patch)', cm.data == {'b': '2'}, cm.data)
    v1.create_namespaced_secret(NS, client.V1Secret(metadata=client.V1ObjectMeta(name='creds'),
                                                    string_data={'token': 's3cr3t'}))
    s = v1.read_namespaced_secret('creds', NS)
    check('a Secret\'s stringData is stored base64 in data',
          s.data == {'token': base64.b64encode(b's3cr3t').decode()} and not s.string_data, s.data)
    e = error_of(v1.create_namespaced_secret, NS, {'apiVersion': 'v1', 'kind': 'Secret',
                                                    'metadata': {'name': 'bad'}, 'data': {'k': 'not base64!'}})
    check('Secret data that is not base64: 400', e and e[0] == 400, e)
    e = error_of(v1.list_namespaced_config_map, NS, field_selector='metadata.name')
    check('a fieldSelector without an operator: 400 BadRequest', e and e[0] == 400 and
          e[1].get('reason') == 'BadRequest', e)
    e = error_of(v1.delete_namespaced_config_map, 'cfg', NS, grace_period_seconds='soon')
    check('gracePeriodSeconds that is not an integer: 400 BadRequest', e and e[0] == 400 and
          e[1].get('reason') == 'BadRequest', e)
    v1.delete_namespaced_config_map('cfg', NS)
    v1.delete_namespaced_secret('creds', NS)
    check('delete configmap and secret', not v1.list_namespaced_config_map(NS).items and
          not v1.list_namespaced_secret(NS).items)


def authentication(v1, batch):
    """A wrong token."""
    bad = client.Configuration.get_default_copy()
    bad.api_key = {'authorization': 'Bearer wrong'}
    e = error_of(client.CoreV1Api(client.ApiClient(bad)).list_namespaced_pod, NS)
    check('a wrong token: ApiException 401', e and e[0] == 401, e)


def faults(v1, batch):
    """simkit's request counts and fault injection, as the client sees them."""
    cms = '/api/v1/namespaces/%s/configmaps' % NS
    admin('DELETE', '/_sim/requests')
    admin('POST', '/_sim/faults', {'method': 'GET', 'path': cms, 'status': 500, 'count': 1})
    e = error_of(v1.list_namespaced_config_map, NS)
    check('an injected 500: ApiException 500 InternalError', e and e[0] == 500 and
          e[1].get('reason') == 'InternalError', e)
    check('  ... only the next request', error_of(v1.list_namespaced_config_map, NS) is None)
    counts = admin('GET', '/_sim/requests')['counts']
    check('request counts by method and path', counts == {'GET ' + cms: 2}, counts)
    admin('POST', '/_sim/faults', {'method': 'GET', 'path': cms, 'status': 503, 'count': 1})
    e = error_of(v1.list_namespaced_config_map, NS)
    counts = admin('GET', '/_sim/requests')['counts']
    check('an injected 503 with Retry-After: the client (urllib3) waits and tries again',
          e is None and counts == {'GET ' + cms: 4}, (e, counts))
    admin('POST', '/_sim/faults', {'method': 'GET', 'path': '/api/v1/namespaces/*/secrets', 'delay': 1.5})
    t0 = time.time()
    v1.list_namespaced_secret(NS)
    check('an injected delay', time.time() - t0 >= 1.4)


def namespace_deletion(v1, batch):
    """Deleting a namespace: Terminating, then gone; default is kept."""
    e = error_of(v1.delete_namespace, 'default')
    check('delete_namespace(default): 403 Forbidden', e and e[0] == 403, e)
    v1.create_namespaced_pod(NS, pod_body('sleeper', ['/bin/sh', '-c', 'sleep 60']))
    wait_for(lambda: v1.read_namespaced_pod('sleeper', NS).status.phase == 'Running')
    v1.delete_namespace(NS)
    phase = v1.read_namespace(NS).status.phase
    check('delete_namespace: Terminating while its pods end', phase == 'Terminating', phase)
    e = error_of(v1.create_namespaced_config_map, NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name='x')))
    check('  ... no new content in it: 403', e and e[0] == 403, e)
    check('  ... its pods end, then it is gone', wait_for(lambda: error_of(v1.read_namespace, NS), 60))


def main():
    config.load_kube_config(os.environ['KUBECONFIG'])
    v1, batch = client.CoreV1Api(), client.BatchV1Api()
    for part in (namespaces, pods, jobs, cronjobs, configmaps_and_secrets, authentication, faults,
                 namespace_deletion):
        try:
            part(v1, batch)
        except Exception as e:  # a check that could not run is a failed one; the next part goes on
            check('%s: ran to its end' % part.__name__, False, repr(e)[:300])
    print('%d checks failed' % len(failed) if failed else 'all checks passed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
