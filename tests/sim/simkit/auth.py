"""Authentication hooks.

A hook is a callable hook(req) that returns
  * the principal (any value but None: a user name, a dict) when the
    request carries its kind of credential and it is right;
  * None when the request does not carry its kind of credential (the next
    hook is asked);
  * or raises Unauthorized when the credential is there but wrong.
App.auth is the list of hooks, asked in order; a request no hook accepts
gets the API's 401 (App.unauthorized).  Schemes that sign the request
(AWS SigV4, Azure SharedKey) are hooks too: req.body() gives the bytes to
hash, req.headers, req.method, req.path (the raw target) and req.query the rest.
"""
import secrets


class Unauthorized(Exception):
    """Raised by a hook: the credential presented is wrong."""


class BearerToken:
    """Authorization: Bearer TOKEN, compared in constant time."""

    def __init__(self, token, principal='user'):
        self.token, self.principal = token, principal

    def __call__(self, req):
        auth = req.headers.get('Authorization') or ''
        if not auth.startswith('Bearer '):
            return None
        if secrets.compare_digest(auth[7:].strip().encode(), self.token.encode()):
            return self.principal
        raise Unauthorized('invalid bearer token')


class ClientCert:
    """A TLS client certificate signed by the simulator's CA (the server
    context verifies it): the principal is its subject's common name."""

    def __call__(self, req):
        cert = req.connection.getpeercert() if hasattr(req.connection, 'getpeercert') else None
        for rdn in (cert or {}).get('subject', ()):
            for k, v in rdn:
                if k == 'commonName':
                    return v
        return None
