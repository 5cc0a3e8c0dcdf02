"""Running the submitted work for real: containers through Podman's
Docker-compatible API on a unix socket, and memory cgroups around them.

    engine = Engine(args.podman_socket)
    if engine.image_id('trainer:1') is None: ...            # not in the local store
    ok, cid = engine.create('job-1-main', {'Image': 'trainer:1', 'Cmd': [...],
                            'Labels': {LABEL: sim_id}, 'HostConfig': {'NetworkMode': 'host'}})
    err = engine.start(cid)                                  # None, or the engine's message
    state = engine.state(cid)                                # State of inspect, None when gone
    data = engine.logs(cid)                                  # stdout+stderr, demultiplexed
    engine.remove_labelled(LABEL, sim_id)                    # on shutdown

A simulator labels every container it creates with its own id, so that
stopping it removes exactly those.
"""
import http.client
import json
import os
import socket
import time
import urllib.parse

from .util import log


class UnixConn(http.client.HTTPConnection):
    def __init__(self, path, timeout=None):
        super().__init__('localhost', timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout:
            self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def demux(buf):
    """The payload of a multiplexed (non-tty) log stream: 8-byte frame
    headers dropped, stdout and stderr in order."""
    out, i = [], 0
    while i + 8 <= len(buf):
        if buf[i] not in (0, 1, 2) or buf[i + 1:i + 4] != b'\0\0\0':
            return buf  # not multiplexed (tty)
        n = int.from_bytes(buf[i + 4:i + 8], 'big')
        out.append(buf[i + 8:i + 8 + n])
        i += 8 + n
    return b''.join(out)


class Engine:
    API = '/v1.41'

    def __init__(self, sock):
        self.sock = sock

    def call(self, method, path, body=None, timeout=120, raw=False):
        """(status, decoded JSON body) of one request; raw: the body's bytes."""
        c = UnixConn(self.sock, timeout=timeout)
        try:
            hdr, data = {}, None
            if body is not None:
                data = json.dumps(body).encode()
                hdr['Content-Type'] = 'application/json'
            c.request(method, self.API + path, body=data, headers=hdr)
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

    def image_id(self, image):
        """The image's id when the engine's local store has it, else None."""
        st, info = self.call('GET', '/images/%s/json' % urllib.parse.quote(image, safe=''))
        return (info or {}).get('Id', '') if st == 200 else None

    def create(self, name, body):
        """Create a container: (True, id) or (False, the engine's message)."""
        st, out = self.call('POST', '/containers/create?name=%s' % urllib.parse.quote(name, safe=''), body)
        if st != 201:
            return False, (out or {}).get('message', str(out))
        return True, out['Id']

    def start(self, cid):
        """None when started, else the engine's message."""
        st, out = self.call('POST', '/containers/%s/start' % cid)
        return None if st in (204, 304) else (out or {}).get('message', str(out))

    def state(self, cid):
        """The State of the container's inspect, or None when it is gone."""
        st, info = self.call('GET', '/containers/%s/json' % cid)
        if st == 404:
            return None
        return (info or {}).get('State') or {}

    @staticmethod
    def exited(state):
        return state is not None and state.get('Status') in ('exited', 'stopped', 'dead')

    def stop(self, cid, grace):
        self.call('POST', '/containers/%s/stop?t=%d' % (cid, grace))

    def remove(self, cid):
        self.call('DELETE', '/containers/%s?force=1&v=1' % cid)

    def logs(self, cid):
        """stdout and stderr so far, demultiplexed."""
        st, out = self.call('GET', '/containers/%s/logs?stdout=1&stderr=1&timestamps=0' % cid, raw=True)
        return demux(out) if st == 200 else b''

    def follow_logs(self, cid):
        """Yield the container's output as it comes, until it exits."""
        conn = UnixConn(self.sock, timeout=None)
        try:
            conn.request('GET', self.API + '/containers/%s/logs?stdout=1&stderr=1&follow=1' % cid)
            r = conn.getresponse()
            buf = b''
            while True:
                d = r.read1(65536)
                if not d:
                    break
                buf += d
                while len(buf) >= 8:
                    n = int.from_bytes(buf[4:8], 'big')
                    if len(buf) < 8 + n:
                        break
                    payload, buf = buf[8:8 + n], buf[8 + n:]
                    yield payload
        finally:
            conn.close()

    def remove_labelled(self, label, value):
        """Remove every container labelled label=value (a simulator's own)."""
        st, cs = self.call('GET', '/containers/json?all=1&filters=%s' % urllib.parse.quote(
            json.dumps({'label': ['%s=%s' % (label, value)]})))
        for c in cs or []:
            self.remove(c['Id'])


class MemoryCgroup:
    """A cgroup with a memory limit that containers are started under
    (HostConfig.CgroupParent = cg.rel), as a kubelet's pod cgroup, and the
    OOM kills in it.  Works on cgroup v2 and v1; when it cannot be made
    (no permission), ok is False and the caller limits each container
    instead."""
    V1 = '/sys/fs/cgroup/memory'

    def __init__(self, parent, name, limit):
        self.ok, self.limit = False, limit
        self.rel = '/%s/%s' % (parent, name)
        self.v2 = os.path.exists('/sys/fs/cgroup/cgroup.controllers')
        self.path = ('/sys/fs/cgroup' if self.v2 else self.V1) + self.rel
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
            log('cgroup %s: %s (memory limit set on the container instead)' % (self.path, e))

    def oom_killed(self):
        try:
            if self.v2:
                with open(self.path + '/memory.events') as f:
                    return any(ln.split()[0] == 'oom_kill' and int(ln.split()[1]) > 0 for ln in f)
            with open(self.path + '/memory.oom_control') as f:
                if any(ln.startswith('oom_kill ') and int(ln.split()[1]) > 0 for ln in f):
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

    @staticmethod
    def remove_parent(parent):
        """Remove what is left of a parent cgroup and its children."""
        for base in (MemoryCgroup.V1, '/sys/fs/cgroup'):
            p = '%s/%s' % (base, parent)
            if os.path.isdir(p):
                for r, _, _ in sorted(os.walk(p), key=lambda x: -len(x[0])):
                    try:
                        os.rmdir(r)
                    except OSError:
                        pass
