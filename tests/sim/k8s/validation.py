"""The API server's validation of objects (422 Invalid with causes): names,
labels and annotations, quantities, pod specs, restart policies, cron
schedules.  Types and unknown fields are the OpenAPI documents' part
(simkit.Schemas); these are the rules the documents cannot say."""
import re


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
