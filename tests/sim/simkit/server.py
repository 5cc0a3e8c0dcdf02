"""The HTTP(S) frame of a simulator: an App with routes, auth hooks, error
shapes, request counting and fault injection, served over TLS with the
simulator's own CA.

    class Api(App):
        name = 'vertex-sim'
        def __init__(self, args):
            super().__init__(args)
            self.auth = [BearerToken(self.token)]
            self.route('POST', '/v1/projects/{project}/locations/{location}/customJobs', self.create_job)
        def create_job(self, req, project, location):
            body = req.json()
            ...
            req.send_json(200, job)
        def error_body(self, err):                         # the API's own error shape
            return {'error': {'code': err.code, 'message': err.message, 'status': err.reason}}

    serve(Api(arg_parser('Vertex AI simulator').parse_args()))

Route patterns are paths whose {name} segments become keyword arguments
({name*} takes the rest of the path, slashes included).  A path that
matches no pattern is the API's 404 (App.not_found), one that matches with
another method its 405 (App.method_not_allowed).
"""
import argparse
import http.server
import json
import os
import re
import secrets
import signal
import ssl
import threading
import traceback
import urllib.parse

from . import auth as _auth
from .faults import Faults, Rule, parse_rule
from .pki import make_pki
from .util import log, parse_bool, set_log_name

SPECS_ENV = 'ZORCH_SPECS_DIR'


def specs_dir(*sub):
    """The official API documents: $ZORCH_SPECS_DIR, else ../shared/specs
    beside the project's source tree (this file is tests/sim/simkit/...)."""
    root = os.environ.get(SPECS_ENV)
    if not root:
        project = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        root = os.path.join(os.path.dirname(project), 'shared', 'specs')
    return os.path.join(root, *sub)


class HttpError(Exception):
    """An error answer.  body: the JSON the API answers with (None: the
    App's error_body(err) makes it); reason: a short word for it."""

    def __init__(self, code, message, reason=None, body=None, headers=()):
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason
        self.body, self.headers = body, list(headers)


class Router:
    def __init__(self):
        self.routes = []   # (compiled pattern, pattern, {method: fn})
        self.by_pattern = {}

    def add(self, method, pattern, fn):
        methods = self.by_pattern.get(pattern)
        if methods is None:
            rx = '^' + re.sub(r'\\\{(\w+)(\\\*)?\\\}', lambda m: '(?P<%s>%s)' % (
                m.group(1), '.*' if m.group(2) else '[^/]+'), re.escape(pattern.rstrip('/') or '/')) + '$'
            methods = self.by_pattern[pattern] = {}
            self.routes.append((re.compile(rx), pattern, methods))
        if method in methods:
            raise ValueError('route %s %s registered twice' % (method, pattern))
        methods[method] = fn

    def match(self, method, path):
        """(fn, params), or (None, 404) / (None, 405)."""
        found = False
        for rx, _, methods in self.routes:
            m = rx.match(path)
            if m:
                if method in methods:
                    return methods[method], m.groupdict()
                found = True
        return None, 405 if found else 404


class Request(http.server.BaseHTTPRequestHandler):
    """One request as a route sees it: method, path_only (the path without
    query and trailing slash; path is the raw request target), query
    (name -> last value), query_all (name -> values),
    headers, principal (what the auth hook returned), body(), json(); and
    the ways to answer: send_json, send_bytes, stream."""
    protocol_version = 'HTTP/1.1'

    @property
    def app(self):
        return self.server.app

    def version_string(self):
        return self.app.name

    def log_message(self, fmt, *a):
        if self.app.args.verbose:
            log(fmt % a)

    # ---- reading
    def body(self):
        """The request body's bytes (read once)."""
        if self._body is None:
            n = int(self.headers.get('Content-Length') or 0)
            self._body = self.rfile.read(n) if n else b''
        return self._body

    def content_type(self):
        return (self.headers.get('Content-Type') or '').split(';')[0].strip().lower()

    def json(self):
        """The body decoded as JSON (None when empty); malformed: the API's 400."""
        data = self.body()
        try:
            return json.loads(data) if data else None
        except ValueError as e:
            raise self.app.error_for_status(400, 'json parse error: %s' % e)

    def query_bool(self, name, default=False):
        """A boolean query parameter as Go servers parse it (strconv.ParseBool);
        another value is the API's 400."""
        if name not in self.query:
            return default
        v = parse_bool(self.query[name])
        if v is None:
            raise self.app.error_for_status(400, 'invalid value for query parameter %s: '
                                            'strconv.ParseBool: parsing "%s": invalid syntax'
                                            % (name, self.query[name]))
        return v

    # ---- answering
    def send_bytes(self, code, data, content_type='application/json', headers=()):
        self.send_response(code)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.answered = True

    def send_json(self, code, obj, headers=()):
        self.send_bytes(code, json.dumps(obj).encode(), 'application/json', headers)

    def stream(self, code=200, content_type='application/json', headers=()):
        """Start a chunked answer; returns a Stream (write, json_line, end)."""
        self.send_response(code)
        self.send_header('Content-Type', content_type)
        self.send_header('Transfer-Encoding', 'chunked')
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.answered = True
        return Stream(self)

    def send_error_answer(self, err):
        body = err.body if err.body is not None else self.app.error_body(err)
        self.send_json(err.code, body, err.headers)

    # ---- dispatch
    def do_GET(self):
        self.dispatch('GET')

    def do_POST(self):
        self.dispatch('POST')

    def do_PUT(self):
        self.dispatch('PUT')

    def do_PATCH(self):
        self.dispatch('PATCH')

    def do_DELETE(self):
        self.dispatch('DELETE')

    def dispatch(self, method):
        app = self.app
        self._body, self.answered, self.principal = None, False, None
        u = urllib.parse.urlsplit(self.path)
        self.method, self.path_only = method, u.path.rstrip('/') or '/'
        self.query_all = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        self.query = {k: v[-1] for k, v in self.query_all.items()}
        try:
            if self.path_only.startswith('/_sim/'):
                return app.admin(self)
            fault = app.faults.request(method, self.path_only)
            if fault is not None:
                if fault.delay and app.stopped_event.wait(fault.delay):
                    return
                if fault.status == 0:
                    self.close_connection = True
                    return
                if fault.status is not None:
                    raise app.error_for_status(fault.status, 'injected fault: %s %s -> %d'
                                               % (method, self.path_only, fault.status))
            try:
                self.principal = app.authenticate(self)
            except _auth.Unauthorized as e:
                raise app.unauthorized(self, str(e))
            if self.principal is None:
                raise app.unauthorized(self, 'no credentials')
            fn, params = app.router.match(method, self.path_only)
            if fn is None:
                raise app.not_found(self) if params == 404 else app.method_not_allowed(self)
            fn(self, **params)
        except HttpError as e:
            if app.args.verbose:
                log('%s %s -> %d %s' % (method, self.path, e.code, e.message))
            if not self.answered:
                self.send_error_answer(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        except Exception as e:  # a bug in the simulator: say so as a 500
            traceback.print_exc()
            try:
                if not self.answered:
                    self.send_error_answer(app.error_for_status(500, 'simulator error: %r' % e))
            except OSError:
                pass
        finally:
            if self._body is None and not self.close_connection:
                try:
                    self.body()  # drain what the route did not read, for the next request
                except OSError:
                    self.close_connection = True


class Stream:
    """A chunked answer (watches, followed logs)."""

    def __init__(self, req):
        self.req = req

    def write(self, data):
        if data:
            self.req.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))
            self.req.wfile.flush()

    def json_line(self, obj):
        self.write(json.dumps(obj).encode() + b'\n')

    def end(self):
        self.req.wfile.write(b'0\r\n\r\n')
        self.req.wfile.flush()


class App:
    """A simulated API.  Subclasses set name, register routes and auth
    hooks, and may override error_body, error_for_status, unauthorized,
    not_found, method_not_allowed, started, stop and stopped."""
    name = 'sim'
    log_name = None  # the prefix of its log lines (default: name)
    tls = True
    pki_server_cn = None
    pki_client_subject = None

    def __init__(self, args):
        set_log_name(self.log_name or self.name)
        self.args = args
        self.router = Router()
        self.faults = Faults()
        for text in getattr(args, 'fault', None) or []:
            self.faults.add(parse_rule(text))
        self.auth = []
        self.stopping = False
        self.stopped_event = threading.Event()
        self.port = self.url = None
        self.admin_token = secrets.token_hex(16)
        os.makedirs(args.dir, exist_ok=True)
        self.pki = make_pki(args.dir, self.name, self.pki_server_cn, self.pki_client_subject) \
            if self.tls else None

    def route(self, method, pattern, fn):
        self.router.add(method, pattern, fn)

    def authenticate(self, req):
        """The principal of the first hook that accepts the request, or None."""
        for hook in self.auth:
            p = hook(req)
            if p is not None:
                return p
        return None

    # ---- the API's answers (override for its shapes)
    def error_body(self, err):
        return {'error': {'code': err.code, 'message': err.message, 'status': err.reason}}

    def error_for_status(self, status, message=None):
        reason = http.server.BaseHTTPRequestHandler.responses.get(status, ('Error',))[0]
        return HttpError(status, message or reason, reason)

    def unauthorized(self, req, why):
        return self.error_for_status(401, 'Unauthorized')

    def not_found(self, req):
        return self.error_for_status(404, 'the server could not find the requested resource')

    def method_not_allowed(self, req):
        return self.error_for_status(405, 'the server does not allow this method on the requested resource')

    def started(self):
        """Serving at self.url: write the clients' configuration files."""

    def stop(self):
        """SIGTERM or SIGINT: end what runs (watches, controllers); the
        server stops answering next."""
        self.stopping = True
        self.stopped_event.set()

    def stopped(self):
        """The server has stopped: remove what the simulator started."""

    # ---- admin endpoints (faults.py)
    def admin(self, req):
        if (req.headers.get('Authorization') or '') != 'Bearer ' + self.admin_token:
            return req.send_json(401, {'error': 'the admin endpoints need DIR/admin-token as a bearer token'})
        key = (req.method, req.path_only)
        if key == ('GET', '/_sim/requests'):
            return req.send_json(200, self.faults.snapshot())
        if key == ('DELETE', '/_sim/requests'):
            self.faults.reset_counts()
            return req.send_json(200, self.faults.snapshot())
        if key == ('GET', '/_sim/faults'):
            return req.send_json(200, self.faults.armed())
        if key == ('DELETE', '/_sim/faults'):
            self.faults.clear()
            return req.send_json(200, self.faults.armed())
        if key == ('POST', '/_sim/faults'):
            try:
                spec = json.loads(req.body() or b'{}')
                self.faults.add(Rule(**{k: spec[k] for k in Rule.FIELDS if k in spec}))
            except (ValueError, TypeError) as e:
                return req.send_json(400, {'error': str(e)})
            return req.send_json(201, self.faults.armed())
        return req.send_json(404, {'error': 'no admin endpoint %s %s' % key})


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def arg_parser(description, specs=None, prog=None):
    """The options every simulator takes: --dir, --port, --spec-dir (default
    specs_dir(specs)), --fault, --verbose."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument('--dir', required=True, help='where the simulator writes its CA, keys, '
                    'client configuration, admin-token and ready (the URL, once serving)')
    ap.add_argument('--port', type=int, default=0, help='the port on 127.0.0.1 (default: any free one)')
    if specs is not None:
        ap.add_argument('--spec-dir', default=None, help='the API documents (default: $%s/%s, '
                        'else ../shared/specs/%s beside the source tree)' % (SPECS_ENV, specs, specs))
        ap.set_defaults(_specs=specs)
    ap.add_argument('--fault', action='append', default=[], metavar='"METHOD PATH key=value..."',
                    help='make matching requests fail or wait: keys status, count, delay (faults.py)')
    ap.add_argument('--verbose', action='store_true')
    return ap


def parse_args(ap, argv=None):
    args = ap.parse_args(argv)
    if getattr(args, '_specs', None) is not None and not args.spec_dir:
        args.spec_dir = specs_dir(args._specs)
    return args


def make_server(app):
    """The server for app, listening (not serving yet): sets app.port and
    app.url, writes DIR/admin-token, calls app.started()."""
    args = app.args
    srv = Server(('127.0.0.1', args.port), Request)
    srv.app = app
    app.port = srv.server_address[1]
    app.url = '%s://127.0.0.1:%d' % ('https' if app.tls else 'http', app.port)
    if app.tls:
        srv.socket = app.pki.server_context().wrap_socket(srv.socket, server_side=True)
    with open(os.path.join(args.dir, 'admin-token'), 'w') as f:
        f.write(app.admin_token)
    app.started()
    return srv


def serve(app):
    """Serve app until SIGTERM or SIGINT; writes DIR/admin-token, then
    DIR/ready (the URL) once requests are answered."""
    args = app.args
    srv = make_server(app)

    def stop(*_):
        app.stop()
        threading.Thread(target=srv.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    tmp = os.path.join(args.dir, 'ready.tmp')
    with open(tmp, 'w') as f:
        f.write(app.url + '\n')
    os.rename(tmp, os.path.join(args.dir, 'ready'))
    log('serving', app.url)
    srv.serve_forever(poll_interval=0.2)
    app.stopped()
    log('stopped')
