"""A certificate authority of the simulator's own (openssl CLI), a server
certificate for 127.0.0.1 and localhost, and a client certificate.

    pki = make_pki(dir, 'k8s-sim', client_subject='/O=system:masters/CN=zorch-admin')
    ctx = pki.server_context()      # TLS, client certificates optional and verified

Files in dir: ca.crt/ca.key, server.crt/server.key, client.crt/client.key.
"""
import os
import ssl
import subprocess


def openssl(*args, cwd):
    subprocess.run(['openssl'] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


class Pki:
    def __init__(self, d):
        self.dir = d
        for name in ('ca', 'server', 'client'):
            setattr(self, name + '_crt', os.path.join(d, name + '.crt'))
            setattr(self, name + '_key', os.path.join(d, name + '.key'))

    def server_context(self, client_certs=True):
        """The server's TLS context; with client_certs, a client may present
        a certificate signed by this CA (peer certificate in the request)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server_crt, self.server_key)
        if client_certs:
            ctx.load_verify_locations(self.ca_crt)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx


def make_pki(d, name, server_cn=None, client_subject=None, days=2):
    """Make the CA (CN NAME-ca), the server certificate (CN server_cn or
    NAME, for DNS:localhost and IP:127.0.0.1) and a client certificate
    (client_subject, e.g. '/O=group/CN=user'; CN NAME-client by default)."""
    os.makedirs(d, exist_ok=True)
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt',
            '-days', str(days), '-subj', '/CN=%s-ca' % name, cwd=d)
    for kind, subj, ext in (
            ('server', '/CN=%s' % (server_cn or name),
             'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'),
            ('client', client_subject or '/CN=%s-client' % name, 'extendedKeyUsage=clientAuth\n')):
        with open(os.path.join(d, kind + '.ext'), 'w') as f:
            f.write(ext)
        openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', kind + '.key', '-out', kind + '.csr',
                '-subj', subj, cwd=d)
        openssl('x509', '-req', '-in', kind + '.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
                '-out', kind + '.crt', '-days', str(days), '-extfile', kind + '.ext', cwd=d)
    return Pki(d)
