"""The cluster behind the API: one node, its scheduler, its kubelet
(PodRunner: every pod's containers run for real in Podman), the job
controller and the namespace controller.  It changes objects only through
the store, as the real controllers do through the API server."""
import copy
import os
import secrets
import threading
import time

from simkit import Engine, MemoryCgroup, log, now_iso

from .objects import BY_PATH, RESOURCES, ApiError, Objects, field_value, not_found
from .validation import quantity

LABEL = 'zorch-k8s-sim'  # on every container, its value the simulator's id


class Cluster:
    def __init__(self, args, token, ca_file):
        self.args, self.token, self.ca_file = args, token, ca_file
        self.store = Objects()
        self.engine = Engine(args.podman_socket)
        self.id = secrets.token_hex(4)
        self.port = None  # the API server's, set when serving
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

    def stop(self):
        self.stopping = True
        self.store.close()

    def cleanup(self):
        """Every container this simulator started, and the pod cgroups."""
        self.engine.remove_labelled(LABEL, self.id)
        MemoryCgroup.remove_parent('%s-%s' % (LABEL, self.id))

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
        pods, _ = self.store.list('pods')
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
                if not any(p == 'jobs' and n == ns and o['metadata']['uid'] == job_uid
                           for (p, n, _), o in self.store.objs.items()):
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




    # ---- namespace controller -------------------------------------------------
    def delete_namespace(self, name):
        """Mark the namespace Terminating; its contents go, then it does."""
        def mark(o):
            if o['metadata'].get('deletionTimestamp'):
                return False
            o['metadata']['deletionTimestamp'] = now_iso()
            o.setdefault('status', {})['phase'] = 'Terminating'
        o = self.store.update('namespaces', None, name, mark)
        if o is None:
            raise not_found('', 'namespaces', name)
        threading.Thread(target=self.finalize_namespace, args=(name,), daemon=True).start()
        return o

    def finalize_namespace(self, ns):
        def purge():
            for res in RESOURCES:
                if res.namespaced and res.plural != 'pods':
                    for o in self.store.list(res.plural, ns)[0]:
                        self.store.delete(res.plural, ns, o['metadata']['name'])
        purge()
        for p in self.store.list('pods', ns)[0]:
            try:
                self.delete_pod(ns, p['metadata']['name'])
            except ApiError:
                pass
        deadline = time.time() + 60
        with self.store.cond:
            while not self.stopping and time.time() < deadline and \
                    any(k == 'pods' and n == ns for (k, n, _) in self.store.objs):
                self.store.cond.wait(1.0)
        purge()  # the events of the pods' ends
        self.store.delete('namespaces', None, ns)


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
                self.sim.engine.remove(cid)
            if self.cgroup:
                self.cgroup.remove()
            with self.sim.plock:
                self.sim.pods.pop((self.ns, self.name), None)
            if self.killed.is_set():
                self.sim.store.delete('pods', self.ns, self.name)
            self.sim.kick_scheduler()

    def _run(self):
        sim = self.sim
        pod = sim.store.must_get(BY_PATH[('', 'pods')], self.ns, self.name)
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
                image_id = sim.engine.image_id(c['image'])
                if image_id is not None:
                    image_ids[c['name']] = image_id
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
        for fname, content in (('token', sim.token), ('ca.crt', open(sim.ca_file).read()),
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
        self.cgroup = MemoryCgroup('%s-%s' % (LABEL, sim.id), 'pod' + meta['uid'], mem_limit)
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
                               'io.kubernetes.container.name': c['name'], LABEL: sim.id}}
            if cmd:
                body['Cmd'] = cmd
                if c.get('command'):
                    body['Entrypoint'] = []
            if c.get('workingDir'):
                body['WorkingDir'] = c['workingDir']
            ok, out = sim.engine.create('k8s_%s_%s_%s_%s' % (c['name'], self.name, self.ns, meta['uid'][:8]),
                                        body)
            if not ok:
                msg = out

                def cfgerr(o, msg=msg, c=c):
                    for s in o['status']['containerStatuses']:
                        if s['name'] == c['name']:
                            s['state'] = {'waiting': {'reason': 'CreateContainerError', 'message': msg}}
                p = self.upd(cfgerr)
                sim.event(p, 'Warning', 'Failed', 'Error: %s' % msg)
                self.killed.wait()
                return
            self.cids[c['name']] = out
            sim.event(pod, 'Normal', 'Created', 'Created container %s' % c['name'])
        start_errors = {}
        for c in cs:
            err = sim.engine.start(self.cids[c['name']])
            if err is not None:
                # as the kubelet reports a container the runtime could not start
                start_errors[c['name']] = err
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
                    sim.engine.stop(self.cids[n], min(self.grace, 5))
            for n in list(pending):
                state = sim.engine.state(self.cids[n])
                if sim.engine.exited(state):
                    results[n] = state
                    pending.discard(n)
                elif state is None:  # removed behind our back
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


