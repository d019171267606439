# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the integration tests: real peers, started for real, on loopback."""

import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ingot_lab.runner import collections_path

collections_path()   # .build/ansible_collections/ingot/metal -> this checkout (pytest.ini puts .build on sys.path)

BIN = os.path.dirname(sys.executable)


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_until(check, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as e:  # keep trying until the deadline
            last = e
        time.sleep(0.2)
    raise AssertionError('%s not ready within %s s (last error: %r)' % (what, timeout, last))


@pytest.fixture(scope='session')
def tls_cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (cert path, key path, sha256 fingerprint)."""
    d = tmp_path_factory.mktemp('tls')
    cert, key = str(d / 'cert.pem'), str(d / 'key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
                    '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
                   check=True, capture_output=True)
    der = ssl.PEM_cert_to_DER_cert(open(cert).read())
    import hashlib
    return cert, key, hashlib.sha256(der).hexdigest()


REDFISH_USER = 'rfadmin'
REDFISH_PASSWORD = 'Rf-s3cret-pw-93'


def _start_sushy(tmp_path_factory, tls_cert, name, extra_config=''):
    """sushy-tools' Redfish emulator (fake systems driver) over HTTPS, with basic auth and its own state."""
    import bcrypt

    d = tmp_path_factory.mktemp(name)
    cert, key = tls_cert[0], tls_cert[1]
    auth = d / 'htpasswd'
    auth.write_text('%s:%s\n' % (REDFISH_USER, bcrypt.hashpw(REDFISH_PASSWORD.encode(), bcrypt.gensalt(4)).decode()))
    conf = d / 'sushy.conf'
    # Its own state folder: two emulators with the default one share their systems.
    conf.write_text('SUSHY_EMULATOR_AUTH_FILE = %r\nSUSHY_EMULATOR_STATE_DIR = %r\n%s'
                    % (str(auth), str(d / 'state'), extra_config))
    port = free_port()
    log = open(d / 'sushy.log', 'w')
    proc = subprocess.Popen([os.path.join(BIN, 'sushy-emulator'), '--fake', '-i', '127.0.0.1', '-p', str(port),
                             '--ssl-certificate', cert, '--ssl-key', key, '--config', str(conf)],
                            stdout=log, stderr=subprocess.STDOUT)
    ctx = ssl.create_default_context(cafile=cert)

    def up():
        with urllib.request.urlopen('https://127.0.0.1:%d/redfish/v1/' % port, context=ctx, timeout=2) as r:
            return r.status == 200

    try:
        wait_until(up, 30, 'sushy-emulator')
        yield {'host': '127.0.0.1', 'port': port, 'user': REDFISH_USER, 'password': REDFISH_PASSWORD,
               'cert': cert, 'context': ctx}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope='session')
def sushy(tmp_path_factory, tls_cert):
    """sushy-tools' Redfish emulator with its default single system."""
    yield from _start_sushy(tmp_path_factory, tls_cert, 'sushy')


SUSHY_SYSTEMS = [
    {'uuid': '2f0c8a7e-5b1d-4d6e-9a43-000000000001', 'name': 'blade1', 'power_state': 'Off',
     'nics': [{'mac': '02:00:0a:fb:01:01', 'ip': '172.22.0.101'}]},
    {'uuid': '2f0c8a7e-5b1d-4d6e-9a43-000000000002', 'name': 'blade2', 'power_state': 'Off',
     'nics': [{'mac': '02:00:0a:fb:01:02', 'ip': '172.22.0.102'}]},
]


@pytest.fixture(scope='session')
def sushy_multi(tmp_path_factory, tls_cert):
    """A Redfish service managing two systems (a chassis of blades): the system must be named."""
    extra = 'SUSHY_EMULATOR_FAKE_SYSTEMS = %r\n' % (SUSHY_SYSTEMS,)
    for running in _start_sushy(tmp_path_factory, tls_cert, 'sushy-multi', extra):
        running['systems'] = [s['uuid'] for s in SUSHY_SYSTEMS]
        yield running


class _Garbage(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        body = b'<html><body>this is not Redfish {{{ garbage'
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture(scope='session')
def garbage_https(tls_cert):
    """An HTTPS server that answers every request with garbage claiming to be JSON."""
    cert, key = tls_cert[0], tls_cert[1]
    server = ThreadingHTTPServer(('127.0.0.1', 0), _Garbage)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield {'host': '127.0.0.1', 'port': server.server_address[1]}
    server.shutdown()
