# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real provisioner service for the integration tests and the inventory benchmark.

:class:`Service` runs ``python -m ingot_provisioner serve --config <file>`` (uvicorn) on a free
loopback port, from the collection tree (``provisioner/src``), with a private
SQLite registry and image store. :class:`Agent` plays the node side of a deploy or a wipe over the
real protocol: the iPXE script for the node's MAC (which mints the one-time token), the manifest,
progress reports and the final report.

The service runs under the interpreter named by ``INGOT_PROVISIONER_PYTHON``, else under this one;
that interpreter needs the service's dependencies (FastAPI, uvicorn, SQLAlchemy, Alembic, ...).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PKG_DIR = os.path.join(REPO, 'provisioner', 'src')
ADMIN_TOKEN = 'integration-admin-token-5f1c9a7e2b'


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def service_python():
    """An interpreter that can run the service; a clear error (never a skip) when there is none."""
    candidates = [os.environ.get('INGOT_PROVISIONER_PYTHON'), sys.executable]
    errors = []
    for python in [c for c in candidates if c]:
        probe = subprocess.run([python, '-c', 'import fastapi, uvicorn, sqlalchemy, alembic, ingot_provisioner'],
                               env=dict(os.environ, PYTHONPATH=PKG_DIR), capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return python
        errors.append('%s: %s' % (python, (probe.stderr.strip().splitlines() or ['?'])[-1]))
    raise RuntimeError('no interpreter can run the provisioner service (%s); install its dependencies '
                       '(pip install -r %s/requirements.txt) into this interpreter, or point INGOT_PROVISIONER_PYTHON at one that '
                       'has them' % ('; '.join(errors), os.path.dirname(PKG_DIR)))


class Service:
    """The provisioner under uvicorn on loopback, with a private registry."""

    def __init__(self, workdir=None, **settings):
        self.workdir = workdir or tempfile.mkdtemp(prefix='ingot-provisioner-')
        self.port = free_port()
        self.url = 'http://127.0.0.1:%d' % self.port
        self.token = ADMIN_TOKEN
        self.db_path = os.path.join(self.workdir, 'registry.db')
        self.settings = {
            'listen_address': '127.0.0.1', 'port': self.port, 'admin_token': ADMIN_TOKEN,
            'database_url': 'sqlite:///%s' % self.db_path,
            'image_dir': os.path.join(self.workdir, 'images'), 'ramdisk_dir': os.path.join(self.workdir, 'ramdisk'),
            'access_log': False, 'log_level': 'warning', 'timeout_check_interval': 0.5,
        }
        self.settings.update(settings)
        self.proc = None
        self.log_path = os.path.join(self.workdir, 'service.log')

    def start(self, timeout=60):
        os.makedirs(self.settings['image_dir'], exist_ok=True)
        os.makedirs(self.settings['ramdisk_dir'], exist_ok=True)
        config = os.path.join(self.workdir, 'config.yml')
        with open(config, 'w') as f:
            yaml.safe_dump(self.settings, f)
        env = dict(os.environ, PYTHONPATH=PKG_DIR)
        for key in list(env):
            if key.startswith('INGOT_PROVISIONER_') and key not in ('INGOT_PROVISIONER_PYTHON',):
                del env[key]   # the config file is the whole configuration
        self._log = open(self.log_path, 'w')
        self.proc = subprocess.Popen([service_python(), '-m', 'ingot_provisioner', 'serve', '--config', config],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('the provisioner exited with %s:\n%s' % (self.proc.returncode, self.log()))
            try:
                with urllib.request.urlopen(self.url + '/api/v1/health', timeout=2) as r:
                    if r.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError('the provisioner did not answer within %s s:\n%s' % (timeout, self.log()))

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()[-4000:]
        except OSError:
            return ''

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, '_log', None):
            self._log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------ HTTP
    def api(self, method, path, body=None, token=None, expect=None):
        """One admin request; returns (status, decoded JSON or text)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header('Authorization', 'Bearer %s' % (token or self.token))
        if data is not None:
            req.add_header('Content-Type', 'application/json')
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            out = json.loads(raw) if raw else None
        except ValueError:
            out = raw.decode('utf-8', 'replace')
        if expect is not None and status != expect:
            raise AssertionError('%s %s: expected %s, got %s: %s' % (method, path, expect, status, out))
        return status, out

    def node(self, name):
        status, out = self.api('GET', '/api/v1/nodes/%s' % name)
        return out if status == 200 else None

    def register(self, name, mac, **fields):
        body = dict(name=name, macs=[mac], **fields)
        return self.api('POST', '/api/v1/nodes', body, expect=201)[1]

    def env(self):
        return {'INGOT_PROVISIONER_URL': self.url, 'INGOT_PROVISIONER_TOKEN': self.token}


class Agent:
    """The node side of a deploy or wipe, over the real protocol, for the node with ``mac``."""

    def __init__(self, service, mac):
        self.service = service
        self.mac = mac
        self.token = None
        self.manifest = None

    def _agent(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.service.url + path, data=data, method=method)
        req.add_header('Authorization', 'Bearer %s' % self.token)
        if data is not None:
            req.add_header('Content-Type', 'application/json')
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def boot(self):
        """PXE: fetch the iPXE script for the MAC; returns the ingot.mode it asks for (None: local disk)."""
        with urllib.request.urlopen(self.service.url + '/boot/ipxe?mac=%s' % self.mac, timeout=30) as r:
            script = r.read().decode()
        mode = re.search(r'ingot\.mode=(\S+)', script)
        token = re.search(r'ingot\.token=(\S+)', script)
        self.token = token.group(1) if token else None
        return mode.group(1) if mode else None

    def fetch_manifest(self):
        self.manifest = self._agent('GET', '/agent/manifest')
        return self.manifest

    def report(self, status, message='', **extra):
        return self._agent('POST', '/agent/report', dict(status=status, message=message, **extra))

    def wait_for_mode(self, mode, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.boot() == mode:
                return
            time.sleep(0.3)
        raise AssertionError('node with MAC %s never asked for %s mode' % (self.mac, mode))

    def deploy(self, ip_address='10.0.3.31', steps=3, step_seconds=0.3, fail=None):
        """Wait until the node is deploying, then write the image: progress reports and the result."""
        self.wait_for_mode('deploy')
        manifest = self.fetch_manifest()
        size = manifest['image'].get('size') or 3 * 2 ** 20
        for i in range(1, steps + 1):
            self.report('progress', 'writing image', bytes_written=size * i // steps)
            time.sleep(step_seconds)
        if fail:
            return self.report('failed', fail)
        return self.report('succeeded', 'image written, seed written, rebooting', sha256=manifest['image']['sha256'],
                           bytes_written=size, ip_address=ip_address)

    def wipe(self):
        self.wait_for_mode('wipe')
        self.fetch_manifest()
        self.report('progress', 'erasing disk', bytes_written=0)
        return self.report('succeeded', 'disk erased')
