"""Request bodies checked against the official API documents.

`Schemas` loads API documents in the shapes the official specs come in:
  * OpenAPI v3: named schemas under components/schemas;
  * OpenAPI v2 (Swagger): named schemas under definitions;
  * Google API discovery documents: named schemas under schemas, and $refs
    that are bare schema names;
  * plain JSON Schema: the document under its file name, plus its $defs and
    definitions;
JSON, or YAML when PyYAML is installed.  It resolves $ref (JSON pointers
in the same document, other files relative to the referring one, bare
names), and checks a value against a schema:

    schemas = Schemas()
    schemas.load(specs_dir('vertex-ai/aiplatform.v1.json'))
    res = schemas.check(body, 'GoogleCloudAiplatformV1CustomJob')
    if res.errors: ...      # wrong types, missing required fields, enum, ...
    if res.unknown: ...     # fields the schema does not define

Unknown fields are reported apart from errors, so that an API can reject
them (most do), drop them with a warning (Kubernetes' default) or ignore
them.  An object schema with properties and no additionalProperties is
closed (its other fields are unknown) unless check(..., closed=False), as
JSON Schema reads it; additionalProperties: false always closes it.
"""
import base64
import binascii
import json
import os
import re


class Result:
    """What check() found: errors (strings naming the path) and unknown
    (the dotted paths of fields the schema does not define)."""

    def __init__(self):
        self.errors, self.unknown = [], []

    @property
    def ok(self):
        return not self.errors

    def __repr__(self):
        return 'Result(errors=%r, unknown=%r)' % (self.errors, self.unknown)


def _is_base64(s):
    try:
        base64.b64decode(s, validate=True)
        return True
    except (binascii.Error, ValueError):
        return False


def jtype(v):
    """The JSON type name of a decoded value."""
    return {dict: 'object', list: 'array', str: 'string', bool: 'boolean', int: 'number',
            float: 'number', type(None): 'null'}.get(type(v), type(v).__name__)


_STRUCTURAL = ('type', 'properties', 'items', 'oneOf', 'anyOf', 'enum', 'additionalProperties')
_INT_RANGES = {'int32': (-2**31, 2**31), 'int64': (-2**63, 2**63), 'uint32': (0, 2**32),
               'uint64': (0, 2**64)}


class Schemas:
    def __init__(self):
        self.docs = {}      # absolute path -> parsed document
        self.raw = {}       # absolute path -> the file's bytes (to serve the document itself)
        self.named = {}     # schema name -> (schema, path of its document)
        self._views = {}

    # ---- loading -----------------------------------------------------------
    def load(self, path):
        """Load one document (and index its named schemas); returns it."""
        path = os.path.abspath(path)
        if path in self.docs:
            return self.docs[path]
        with open(path, 'rb') as f:
            data = f.read()
        if path.endswith(('.yaml', '.yml')):
            import yaml  # PyYAML (Debian python3-yaml), only for YAML documents
            doc = yaml.safe_load(data)
        else:
            doc = json.loads(data)
        self.docs[path], self.raw[path] = doc, data
        if not isinstance(doc, dict):
            return doc
        if 'openapi' in doc:
            names = (doc.get('components') or {}).get('schemas') or {}
        elif 'swagger' in doc:
            names = doc.get('definitions') or {}
        elif 'discoveryVersion' in doc:
            names = doc.get('schemas') or {}
        else:
            names = dict(doc.get('definitions') or {}, **(doc.get('$defs') or {}))
            names[os.path.splitext(os.path.basename(path))[0]] = doc
        for name, sch in names.items():
            self.named[name] = (sch, path)
        return doc

    def schema(self, name):
        """A named schema and the path of its document: (schema, base)."""
        try:
            return self.named[name]
        except KeyError:
            raise KeyError('no schema named %r in the loaded documents' % name) from None

    # ---- $ref --------------------------------------------------------------
    def deref(self, ref, base):
        """The schema a $ref names, seen from the document at base."""
        file, _, frag = ref.partition('#')
        if file and not frag and file in self.named and not os.path.exists(
                os.path.join(os.path.dirname(base or '.'), file)):
            return self.named[file]  # a discovery document's bare name
        if file:
            base = os.path.normpath(os.path.join(os.path.dirname(base or '.'), file))
            doc = self.load(base)
        else:
            doc = self.docs[base]
        cur = doc
        for part in frag.split('/')[1:] if frag else []:
            part = part.replace('~1', '/').replace('~0', '~')
            cur = cur[int(part)] if isinstance(cur, list) else cur[part]
        return cur, base

    def resolve(self, sch, base):
        """Follow $refs and single-element allOf wrappers (as OpenAPI v3 uses
        them to add a default or a description to a $ref)."""
        while True:
            if '$ref' in sch:
                sch, base = self.deref(sch['$ref'], base)
            elif 'allOf' in sch and len(sch['allOf']) == 1 and not any(k in sch for k in _STRUCTURAL):
                sch = sch['allOf'][0]
            else:
                return sch, base

    def view(self, sch, base):
        """An object schema with its allOf parts merged: properties (name ->
        (schema, base)), required, additionalProperties."""
        key = (id(sch), base)
        v = self._views.get(key)
        if v is None:
            props, required, addl = {}, [], None
            for k, p in (sch.get('properties') or {}).items():
                props[k] = (p, base)
            required += sch.get('required') or []
            if 'additionalProperties' in sch:
                addl = (sch['additionalProperties'], base)
            for part in sch.get('allOf') or []:
                ps, pb = self.resolve(part, base)
                pp, pr, pa = self.view(ps, pb)
                props.update(pp)
                required += pr
                addl = addl or pa
            v = self._views[key] = (props, required, addl)
        return v

    def subtype(self, sch, base, v):
        """The schema that v's discriminator value picks (OpenAPI v3: the
        mapping, else the schema of that name; v2: the schema of that name or
        with that x-ms-discriminator-value, whose allOf names this one); None
        to check v against sch itself; a message for an unknown value."""
        disc = sch['discriminator']
        prop = disc if isinstance(disc, str) else disc.get('propertyName')
        val = v.get(prop)
        if not isinstance(val, str):
            return None
        mapping = disc.get('mapping') if isinstance(disc, dict) else None
        if mapping and val in mapping:
            return self.resolve(*self.deref(mapping[val], base))
        key = ('subtypes', id(sch))
        subs = self._views.get(key)
        if subs is None:
            subs = self._views[key] = {}
            for name, (cand, cbase) in self.named.items():
                for part in cand.get('allOf') or []:
                    if '$ref' in part and self.resolve(part, cbase)[0] is sch:
                        subs[cand.get('x-ms-discriminator-value', name)] = (cand, cbase)
        if val in subs:
            return subs[val]
        if subs and val != sch.get('x-ms-discriminator-value') and self.named.get(val, (None,))[0] is not sch:
            return '%s "%s" is not one of %s' % (prop, val, ', '.join(sorted(subs)))
        return None

    # ---- checking ----------------------------------------------------------
    def check(self, value, schema, base=None, types_only=False, null_ok=False, closed=True):
        """Check value against a schema (a name, or a schema dict with the path
        of its document as base).  types_only: check what a decoder checks
        (types, required fields), not enum, bounds or patterns.  null_ok: null
        is accepted for any field (Go decodes it as the zero value)."""
        if isinstance(schema, str):
            schema, base = self.schema(schema)
        res = Result()
        self._check(value, schema, base, '', res, (types_only, null_ok, closed))
        return res

    def _check(self, v, sch, base, path, res, opts):
        sch, base = self.resolve(sch, base)
        types_only, null_ok, closed = opts
        where = path or '.'
        alts = sch.get('oneOf') or sch.get('anyOf')
        if alts:  # oneOf is read as anyOf: the first alternative that fits wins
            best = None
            for alt in alts:
                r = Result()
                self._check(v, alt, base, path, r, opts)
                if r.ok and (best is None or len(r.unknown) < len(best.unknown)):
                    best = r
            if best is None:
                names = [self.resolve(a, base)[0].get('type', '?') for a in alts]
                res.errors.append('%s: expected %s, got %s' % (where, ' or '.join(
                    n if isinstance(n, str) else '/'.join(n) for n in names), jtype(v)))
                return
            res.unknown += best.unknown
        t = sch.get('type')
        types = t if isinstance(t, list) else [t] if t else []
        if v is None:
            if null_ok or not types or 'null' in types or sch.get('nullable') or sch.get('x-nullable'):
                return
            res.errors.append('%s: expected %s, got null' % (where, '/'.join(types)))
            return
        if len(types) > 1:  # JSON Schema's list of types: the value's own decides
            own = {'object': dict, 'array': list, 'string': str, 'boolean': bool}
            fit = [x for x in types if x not in own or isinstance(v, own[x])]
            t = fit[0] if fit else types[0]
        if t == 'object' or (t is None and ('properties' in sch or 'allOf' in sch)):
            if not isinstance(v, dict):
                res.errors.append('%s: expected object, got %s' % (where, jtype(v)))
                return
            if sch.get('discriminator'):
                sub = self.subtype(sch, base, v)
                if isinstance(sub, str):
                    res.errors.append('%s: %s' % (where, sub))
                    return
                if sub is not None and sub[0] is not sch:
                    return self._check(v, sub[0], sub[1], path, res, opts)
            props, required, addl = self.view(sch, base)
            for k, x in v.items():
                p = (path + '.' + k) if path else k
                if k in props:
                    self._check(x, props[k][0], props[k][1], p, res, opts)
                elif addl is not None and isinstance(addl[0], dict):
                    self._check(x, addl[0], addl[1], p, res, opts)
                elif addl is not None and addl[0] is not False:
                    pass  # additionalProperties: true
                elif addl is None and (not props or not closed):
                    pass  # a free-form object (RawExtension and the like), or an open one
                else:
                    res.unknown.append(p)
            for r in required:
                if r not in v:
                    res.errors.append('%s: required field "%s" is missing' % (where, r))
        elif t == 'array':
            if not isinstance(v, list):
                res.errors.append('%s: expected array, got %s' % (path, jtype(v)))
                return
            for i, x in enumerate(v):
                self._check(x, sch.get('items') or {}, base, '%s[%d]' % (path, i), res, opts)
            if not types_only:
                self._bounds(len(v), sch, 'minItems', 'maxItems', path, res, 'items')
        elif t == 'string':
            if not isinstance(v, str):
                res.errors.append('%s: expected string, got %s' % (path, jtype(v)))
                return
            if sch.get('format') == 'byte' and not _is_base64(v):  # a decoder's error too
                res.errors.append('%s: illegal base64 data' % path)
            if not types_only:
                self._bounds(len(v), sch, 'minLength', 'maxLength', path, res, 'characters')
                if sch.get('pattern') and not re.search(sch['pattern'], v):
                    res.errors.append('%s: %r does not match %s' % (path, v, sch['pattern']))
        elif t == 'integer':
            if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
                res.errors.append('%s: expected integer, got %s' % (path, jtype(v)))
                return
            lo, hi = _INT_RANGES.get(sch.get('format'), (None, None))
            if lo is not None and not lo <= v < hi:
                res.errors.append('%s: %s overflows %s' % (path, v, sch['format']))
            if not types_only:
                self._bounds(v, sch, 'minimum', 'maximum', path, res)
        elif t == 'number':
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                res.errors.append('%s: expected number, got %s' % (path, jtype(v)))
                return
            if not types_only:
                self._bounds(v, sch, 'minimum', 'maximum', path, res)
        elif t == 'boolean':
            if not isinstance(v, bool):
                res.errors.append('%s: expected boolean, got %s' % (path, jtype(v)))
                return
        elif t == 'null':
            res.errors.append('%s: expected null, got %s' % (where, jtype(v)))
            return
        if not types_only and 'enum' in sch and v not in sch['enum']:
            res.errors.append('%s: %s is not one of %s' % (where, json.dumps(v), json.dumps(sch['enum'])))

    @staticmethod
    def _bounds(n, sch, lo_key, hi_key, path, res, unit=''):
        lo, hi = sch.get(lo_key), sch.get(hi_key)
        if lo is not None and (n < lo or (sch.get('exclusiveMinimum') is True and n == lo)):
            res.errors.append('%s: %s below the %s %s %s' % (path, n, lo_key, lo, unit))
        if hi is not None and (n > hi or (sch.get('exclusiveMaximum') is True and n == hi)):
            res.errors.append('%s: %s above the %s %s %s' % (path, n, hi_key, hi, unit))
