"""Request counting and fault injection.

Every request (but the admin ones) is counted by "METHOD PATH" (the path
without its query).  A fault rule makes the next `count` requests whose
method and path match fail with `status`, or wait `delay` seconds first
(status None: then served as usual), or lose their connection (status 0).
Paths match as shell patterns (fnmatch: * also matches /).

Rules come from the command line (--fault, see parse_rule) or from the
admin endpoints, which need the admin token (DIR/admin-token) as a bearer
token:

    GET    /_sim/requests   {"counts": {"GET /api/v1/pods": 3, ...}, "total": 5}
    DELETE /_sim/requests   reset the counts
    GET    /_sim/faults     {"faults": [rules still armed]}
    POST   /_sim/faults     {"method": "GET", "path": "/api/v1/*", "status": 503, "count": 2, "delay": 0.5}
    DELETE /_sim/faults     disarm every rule

The error body of a fault is the API's own (App.error_for_status).
"""
import collections
import fnmatch
import threading


class Rule:
    FIELDS = ('method', 'path', 'status', 'count', 'delay')

    def __init__(self, method='*', path='*', status=None, count=1, delay=0.0):
        if status is None and not delay:
            raise ValueError('a fault needs a status or a delay')
        if status is not None and not (status == 0 or 100 <= int(status) <= 599):
            raise ValueError('a fault status is 0 (drop the connection) or an HTTP status')
        if int(count) < 1:
            raise ValueError('a fault count is at least 1')
        self.method, self.path = method.upper(), path
        self.status = None if status is None else int(status)
        self.count, self.delay = int(count), float(delay)

    def matches(self, method, path):
        return self.method in ('*', method) and fnmatch.fnmatchcase(path, self.path)

    def as_dict(self):
        return {k: getattr(self, k) for k in self.FIELDS}


def parse_rule(text):
    """A rule from the command line: 'METHOD PATH key=value...', keys
    status, count, delay ('GET /api/v1/namespaces/*/pods status=503 count=2')."""
    words = text.split()
    if len(words) < 3:
        raise ValueError('a fault is "METHOD PATH key=value..." (status, count, delay): %r' % text)
    kw = {}
    for w in words[2:]:
        k, sep, v = w.partition('=')
        if not sep or k not in ('status', 'count', 'delay'):
            raise ValueError('unknown fault setting %r (status, count, delay)' % w)
        kw[k] = v
    return Rule(words[0], words[1], **kw)


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.counts = collections.Counter()

    def add(self, rule):
        with self.lock:
            self.rules.append(rule)

    def clear(self):
        with self.lock:
            self.rules = []

    def reset_counts(self):
        with self.lock:
            self.counts.clear()

    def request(self, method, path):
        """Count one request; returns the fault rule it takes, or None."""
        with self.lock:
            self.counts['%s %s' % (method, path)] += 1
            for r in self.rules:
                if r.matches(method, path):
                    r.count -= 1
                    if r.count == 0:
                        self.rules.remove(r)
                    return r
        return None

    def snapshot(self):
        with self.lock:
            return {'counts': dict(self.counts), 'total': sum(self.counts.values())}

    def armed(self):
        with self.lock:
            return {'faults': [r.as_dict() for r in self.rules]}
