"""Objects with versions, and watches over their changes.

`Store` keeps objects keyed by (kind, scope, name); every change takes the
next value of one counter (as etcd's revision, Kubernetes' resourceVersion),
is recorded as an ADDED, MODIFIED or DELETED event, and wakes the watchers.
An API layer decides where the version shows in an object (the stamp
callback) and what its names and errors look like:

    store = Store(stamp=lambda obj, v: obj.setdefault('metadata', {}).update(resourceVersion=v))
    store.insert('jobs', 'ns1', 'train', {...})          # None when the name is taken
    store.update('jobs', 'ns1', 'train', lambda o: o['status'].update(state='RUNNING'))
    for ev in store.watch('jobs', 'ns1', since=None, timeout=30):
        ...   # ev.type in ADDED/MODIFIED/DELETED/BOOKMARK, ev.obj, ev.version

Objects handed out are copies; fn in update() runs under the store's lock
on the live object.
"""
import copy
import random
import threading
import time


class Expired(Exception):
    """A watch from a version older than the history kept (HTTP 410 Gone in
    most APIs)."""

    def __init__(self, since, oldest):
        super().__init__('too old resource version: %d (%d)' % (since, oldest))
        self.since, self.oldest = since, oldest


class Event:
    __slots__ = ('type', 'obj', 'version')

    def __init__(self, typ, obj, version):
        self.type, self.obj, self.version = typ, obj, version


class Store:
    HISTORY = 20000

    def __init__(self, first_version=100, stamp=None):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.version = first_version
        self.objs = {}       # (kind, scope, name) -> obj
        self.history = []    # (version, kind, scope, type, obj copy)
        self.dropped = 0     # events trimmed from the front of history
        self.oldest = first_version
        self.closed = False
        self.stamp = stamp or (lambda obj, version: None)

    def close(self):
        """End every watch (the server is stopping)."""
        with self.lock:
            self.closed = True
            self.cond.notify_all()

    def _change(self, kind, scope, typ, obj):
        self.version += 1
        self.stamp(obj, str(self.version))
        self.history.append((self.version, kind, scope, typ, copy.deepcopy(obj)))
        if len(self.history) > self.HISTORY:
            drop = len(self.history) - self.HISTORY
            self.oldest = self.history[drop - 1][0]
            self.dropped += drop
            del self.history[:drop]
        self.cond.notify_all()

    def free_name(self, kind, scope, prefix, alphabet='bcdfghjklmnpqrstvwxz2456789', n=5):
        """prefix plus n random characters, not taken yet (Kubernetes'
        generateName)."""
        with self.lock:
            while True:
                name = prefix + ''.join(random.choice(alphabet) for _ in range(n))
                if (kind, scope, name) not in self.objs:
                    return name

    def insert(self, kind, scope, name, obj):
        """Add obj; returns a copy, or None when the name is taken."""
        with self.lock:
            key = (kind, scope, name)
            if key in self.objs:
                return None
            self.objs[key] = obj
            self._change(kind, scope, 'ADDED', obj)
            return copy.deepcopy(obj)

    def get(self, kind, scope, name):
        """A copy of the object, or None."""
        with self.lock:
            o = self.objs.get((kind, scope, name))
            return copy.deepcopy(o) if o is not None else None

    def peek(self, kind, scope, name):
        """The live object (read it under store.lock, never change it)."""
        with self.lock:
            return self.objs.get((kind, scope, name))

    def update(self, kind, scope, name, fn):
        """Apply fn(obj) under the lock and record MODIFIED, unless fn returns
        False (nothing changed).  Returns the new copy, or None when absent."""
        with self.lock:
            o = self.objs.get((kind, scope, name))
            if o is None:
                return None
            if fn(o) is not False:
                self._change(kind, scope, 'MODIFIED', o)
            return copy.deepcopy(o)

    def delete(self, kind, scope, name):
        """Remove the object and record DELETED; returns it, or None."""
        with self.lock:
            o = self.objs.pop((kind, scope, name), None)
            if o is None:
                return None
            self._change(kind, scope, 'DELETED', o)
            return copy.deepcopy(o)

    def list(self, kind, scope=None, pred=None):
        """(copies of the matching objects sorted by scope and name, the
        current version).  scope None: every scope."""
        with self.lock:
            items = [copy.deepcopy(o) for (k, s, _), o in sorted(self.objs.items(), key=lambda x: (
                x[0][1] or '', x[0][2])) if k == kind and (scope is None or s == scope)
                and (pred is None or pred(o))]
            return items, str(self.version)

    def watch(self, kind, scope=None, pred=None, since=None, timeout=1800.0, bookmark_every=None):
        """The events on kind (in scope, when not None) that pred accepts.
        since None: first an ADDED for each current object, then the changes;
        since a version: the changes after it (raises Expired at once when the
        history no longer reaches back to it).  Ends after timeout seconds or
        on close().  With bookmark_every, a BOOKMARK event (obj None) carries
        the current version at most that often."""
        with self.lock:
            if since is None:
                initial, _ = self.list(kind, scope, pred)
                start = [Event('ADDED', o, self.version) for o in initial]
                pos, cur = self.dropped + len(self.history), self.version
            else:
                if since < self.oldest:
                    raise Expired(since, self.oldest)
                pos = self.dropped
                while pos - self.dropped < len(self.history) and self.history[pos - self.dropped][0] <= since:
                    pos += 1
                start, cur = [], since
        return self._follow(kind, scope, pred, start, pos, cur, time.time() + timeout, bookmark_every)

    def _follow(self, kind, scope, pred, start, pos, cur, deadline, bookmark_every):
        yield from start
        last_bookmark = time.time()
        while True:
            with self.lock:
                if self.closed:
                    return
                if pos >= self.dropped and pos - self.dropped == len(self.history):  # nothing new
                    left = deadline - time.time()
                    if left <= 0:
                        return
                    self.cond.wait(min(left, 1.0))
                trimmed = pos < self.dropped  # under a slow watcher
                batch = [] if trimmed or self.closed else self.history[pos - self.dropped:]
                pos += len(batch)
                oldest = self.oldest
            if trimmed:
                yield Event('ERROR', None, oldest)
                return
            for version, k, s, typ, o in batch:
                cur = version
                if k == kind and (scope is None or s == scope) and (pred is None or pred(o)):
                    yield Event(typ, o, version)
            if bookmark_every and time.time() - last_bookmark > bookmark_every:
                yield Event('BOOKMARK', None, cur)
                last_bookmark = time.time()
            if time.time() >= deadline:
                return
