"""Small helpers every simulator needs: time stamps, logging, Go-style query
booleans, JSON merge patch (RFC 7386) and JSON patch (RFC 6902)."""
import copy
import datetime
import re
import sys

_log_name = ['sim']


def set_log_name(name):
    """The prefix of every log line (App does it with its log_name)."""
    _log_name[0] = name


def now_iso():
    """The current UTC time as RFC 3339 with seconds (2024-05-01T12:00:00Z)."""
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def log(*a):
    """One line on stderr, prefixed with the simulator's name."""
    print(_log_name[0] + ':', *a, file=sys.stderr, flush=True)


GO_TRUE = ('1', 't', 'T', 'TRUE', 'true', 'True')
GO_FALSE = ('0', 'f', 'F', 'FALSE', 'false', 'False')


def parse_bool(s):
    """A boolean as Go's strconv.ParseBool reads it (Kubernetes, and most
    Go API servers, parse query parameters with it).  None for anything
    else: the caller reports the error in its API's own shape."""
    if s in GO_TRUE:
        return True
    if s in GO_FALSE:
        return False
    return None


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch: returns the patched value (target is changed
    in place when it is an object)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = merge_patch(target.get(k), v)
    return target


class PatchError(ValueError):
    """A JSON patch that cannot be applied (bad operation, missing path,
    failed test)."""


def _pointer(path):
    if path == '':
        return []
    if not path.startswith('/'):
        raise PatchError('invalid JSON pointer: %r' % path)
    return [p.replace('~1', '/').replace('~0', '~') for p in path[1:].split('/')]


def _walk(doc, parts):
    cur = doc
    for p in parts:
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            raise PatchError('path not found: /%s' % '/'.join(parts))
    return cur


def _put(doc, parts, value, insert):
    if not parts:
        return value
    parent, last = _walk(doc, parts[:-1]), parts[-1]
    if isinstance(parent, dict):
        if not insert and last not in parent:
            raise PatchError('path not found: /%s' % '/'.join(parts))
        parent[last] = value
    elif isinstance(parent, list):
        if last == '-' and insert:
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent) - (0 if insert else 1):
            if insert:
                parent.insert(int(last), value)
            else:
                parent[int(last)] = value
        else:
            raise PatchError('index out of range: /%s' % '/'.join(parts))
    else:
        raise PatchError('cannot set a member of a scalar: /%s' % '/'.join(parts))
    return doc


def _remove(doc, parts):
    if not parts:
        raise PatchError('cannot remove the whole document')
    parent, last = _walk(doc, parts[:-1]), parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise PatchError('path not found: /%s' % '/'.join(parts))


def json_patch(doc, ops):
    """RFC 6902 JSON patch: returns the patched copy of doc."""
    if not isinstance(ops, list):
        raise PatchError('a JSON patch is an array of operations')
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or 'op' not in op or 'path' not in op:
            raise PatchError('a JSON patch operation needs "op" and "path": %r' % (op,))
        kind, parts = op['op'], _pointer(op['path'])
        if kind in ('add', 'replace', 'test') and 'value' not in op:
            raise PatchError('operation %s needs a "value"' % kind)
        if kind == 'add':
            doc = _put(doc, parts, copy.deepcopy(op['value']), True)
        elif kind == 'replace':
            doc = _put(doc, parts, copy.deepcopy(op['value']), False)
        elif kind == 'remove':
            _remove(doc, parts)
        elif kind in ('move', 'copy'):
            src = _pointer(op.get('from', ''))
            value = _remove(doc, src) if kind == 'move' else copy.deepcopy(_walk(doc, src))
            doc = _put(doc, parts, value, True)
        elif kind == 'test':
            if _walk(doc, parts) != op['value']:
                raise PatchError('test failed at %s' % op['path'])
        else:
            raise PatchError('unknown JSON patch operation: %r' % kind)
    return doc


def drop_path(obj, path):
    """Remove the member at a dotted path as the validator reports it
    ('spec.containers[0].bogus')."""
    parts = re.findall(r'[^.\[\]]+|\[\d+\]', path)
    cur = obj
    for p in parts[:-1]:
        cur = cur[int(p[1:-1])] if p.startswith('[') else cur[p]
    if isinstance(cur, dict):
        cur.pop(parts[-1], None)
