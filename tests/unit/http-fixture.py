#!/usr/bin/python3
"""A small HTTP(S) server for the HTTP client's tests (tests/unit/test-http.c).

Usage: http-fixture.py PORT_FILE [CERT KEY]
Listens on 127.0.0.1 (a free port, written to PORT_FILE), with TLS when a
certificate and key are given.  Endpoints:
  GET  /json          200 {"ok": true, "auth": <Authorization header>, "x": <X-Test header>}
  GET  /missing       404 {"message": "no such thing: missing"}
  GET  /text-error    500 plain text (first line is the message)
  GET  /flaky/ID      503 twice per ID, then 200 {"attempts": 3}
  POST /flaky/ID      always 503 (a POST is not retried)
  GET  /limited/ID    429 with Retry-After: 1 once per ID, then 200
  POST /echo          200 echoing the JSON body under "got"
  GET  /stream        200, five chunks "line N\n" 50 ms apart
  GET  /forever       200, a chunk every 100 ms until the client goes away
  GET  /headers       200 {"headers": {name: value, ...}} of the request, with the
                      response headers ETag: "v1", Location: /things/1 and
                      X-Continue: tok-2 (and X-Multi twice)
  GET  /connections   200 {"connections": N, "resumed": R}: TCP connections accepted
                      so far (R of them resumed a TLS session)
  GET  /tokened       200 {"auth": <Authorization>} when the header is "Bearer T"
                      for a T listed in the file $FIXTURE_TOKENS (one per line,
                      re-read per request), else 401
A fake Docker Engine API (/version, /v1.41/...) and Kubernetes API
(/api/v1/...) just deep enough for a flavor plugin to submit a run and
launch steps (tests/unit/test-flavor-launch.c): every container and pod
created is answered as a success and its body kept;
  GET  /recorded      200 {"bodies": [{"path": ..., "body": ...}, ...]}
"""
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counts = {}
recorded = []
lock = threading.Lock()
conns = {"n": 0, "resumed": 0}


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def setup(self):
        # one handler per TCP connection: count them (and TLS resumptions)
        with lock:
            conns["n"] += 1
            if getattr(self.request, "session_reused", False):
                conns["resumed"] += 1
        super().setup()

    def send_json(self, code, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def bump(self):
        with lock:
            counts[self.path] = counts.get(self.path, 0) + 1
            return counts[self.path]

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        p = self.path
        if p == "/json":
            self.send_json(200, {"ok": True, "auth": self.headers.get("Authorization"),
                                 "x": self.headers.get("X-Test")})
        elif p == "/headers":
            body = json.dumps({"headers": {k: v for k, v in self.headers.items()}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", '"v1"')
            self.send_header("location", "/things/1")
            self.send_header("X-Continue", "tok-2")
            self.send_header("X-Multi", "first")
            self.send_header("X-Multi", "second")
            self.end_headers()
            self.wfile.write(body)
        elif p == "/connections":
            with lock:
                self.send_json(200, {"connections": conns["n"], "resumed": conns["resumed"]})
        elif p == "/tokened":
            auth = self.headers.get("Authorization") or ""
            try:
                with open(os.environ["FIXTURE_TOKENS"]) as f:
                    valid = {"Bearer " + t.strip() for t in f if t.strip()}
            except (KeyError, OSError):
                valid = set()
            if auth in valid:
                self.send_json(200, {"auth": auth})
            else:
                self.send_json(401, {"message": "Unauthorized", "got": auth})
        elif p == "/recorded":
            with lock:
                self.send_json(200, {"bodies": list(recorded)})
        elif self.fake_api_get(p):
            pass
        elif p == "/missing":
            self.send_json(404, {"message": "no such thing: missing"})
        elif p == "/text-error":
            body = b"plain failure here\nsecond line\n"
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif p.startswith("/flaky/"):
            n = self.bump()
            if n <= 2:
                self.send_json(503, {"message": "busy %d" % n})
            else:
                self.send_json(200, {"attempts": n})
        elif p.startswith("/limited/"):
            n = self.bump()
            if n == 1:
                self.send_json(429, {"message": "slow down"}, {"Retry-After": "1"})
            else:
                self.send_json(200, {"attempts": n})
        elif p in ("/stream", "/forever"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                i = 0
                while p == "/forever" or i < 5:
                    self.chunk(b"line %d\n" % i)
                    i += 1
                    time.sleep(0.05 if p == "/stream" else 0.1)
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            self.send_json(404, {"message": "unknown path " + p})

    # ---- the fake Docker and Kubernetes APIs ----

    def fake_api_get(self, p):
        path = p.split("?")[0]
        if path == "/version":
            self.send_json(200, {"ApiVersion": "1.41", "Version": "0.0", "Components": [{"Name": "Fake Engine"}]})
        elif path.startswith("/v1.41/images/"):
            self.send_json(200, {"Id": "sha256:fake"})
        elif path.startswith("/v1.41/containers/") and path.endswith("/logs"):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path.startswith("/v1.41/containers/") and path.endswith("/json"):
            if path == "/v1.41/containers/json":
                self.send_json(200, [])
            else:
                self.send_json(200, {"State": {"ExitCode": 0, "OOMKilled": False}})
        elif path.startswith("/api/v1/namespaces/") and path.endswith("/pods"):
            if "watch=1" in p:
                time.sleep(0.2)  # a watch that sees nothing and ends
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_json(200, {"kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": []})
        elif path.startswith("/api/v1/namespaces/"):
            self.send_json(200, {"kind": "Namespace", "metadata": {"name": path.split("/")[4]}})
        else:
            return False
        return True

    def fake_api_post(self, body):
        path = self.path.split("?")[0]
        if path == "/v1.41/containers/create" or (path.startswith("/api/") and path.endswith("/pods")) or \
                path.startswith("/apis/batch/v1/"):
            with lock:
                recorded.append({"path": self.path, "body": json.loads(body or b"null")})
            if path.startswith("/v1.41/"):
                self.send_json(201, {"Id": "c0ffee", "Warnings": []})
            else:
                self.send_json(201, json.loads(body or b"{}"))
        elif path.startswith("/v1.41/containers/") and path.endswith("/wait"):
            self.send_json(200, {"StatusCode": 0})
        elif path.startswith("/v1.41/containers/"):
            self.send_response(204)
            self.end_headers()
        else:
            return False
        return True

    def do_DELETE(self):
        if self.path.startswith("/v1.41/containers/"):
            self.send_response(204)
            self.end_headers()
        else:
            self.send_json(200, {"kind": "Status", "status": "Success"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.fake_api_post(body):
            pass
        elif self.path.startswith("/flaky/"):
            self.bump()
            self.send_json(503, {"message": "busy"})
        elif self.path == "/echo":
            self.send_json(200, {"got": json.loads(body or b"null"),
                                 "type": self.headers.get("Content-Type")})
        elif self.path == "/count":
            self.send_json(200, {"count": counts.get(self.headers.get("X-Path"), 0)})
        else:
            self.send_json(404, {"message": "unknown path"})


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    if len(sys.argv) > 3:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = sys.argv[1] + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, sys.argv[1])
    srv.serve_forever()


main()
