"""End-to-end tests of the lab rack: ``ingot-lab up`` (Docker engine, images, bridge, the provisioner
host configured by roles/provisioner, vBMCs with node containers), driven only through IPMI
(ipmitool), DHCP, HTTP and the provisioner API, then ``ingot-lab down`` with a host comparison.

Needs root and a machine where Docker can run (LAB-NOTES.md); skipped otherwise.  One rack for the
session, in a temporary state directory; INGOT_E2E_NODES (default 3) nodes.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB_DIR = os.path.join(ROOT, 'lab')
for _path in (LAB_DIR, os.path.join(ROOT, 'tests')):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from ingot_lab import rack  # noqa: E402
from ingot_lab import manage  # noqa: E402
from ingot_lab.state import Lab  # noqa: E402
from ingot_testlib.chromium import browser_factory  # noqa: E402,F401  pylint: disable=unused-import

NODES = int(os.environ.get('INGOT_E2E_NODES', '3'))
BASE_PORT = int(os.environ.get('INGOT_E2E_BASE_PORT', '16330'))
# The provisioner's deploy timeout in the e2e rack: short, so that the failure path (a node powered
# off in the middle of a deploy) ends in deploy_failed soon; long enough for a deploy of the real image.
DEPLOY_TIMEOUT = int(os.environ.get('INGOT_E2E_DEPLOY_TIMEOUT', '150'))


def host_snapshot(state_dir):
    """What the lab may change on the host: its iptables rules, links, cgroup mounts, and mounts
    under its state directory (other engineers' bridges and containers are not the lab's business)."""
    rules = [line for line in subprocess.run(['iptables-save'], capture_output=True, text=True,
                                             check=True).stdout.splitlines()
             if rack.BRIDGE in line or rack.RULE_COMMENT in line or line.startswith(':FORWARD')]
    links = [line.split(':')[1].strip().split('@')[0] for line in subprocess.run(
        ['ip', '-o', 'link'], capture_output=True, text=True, check=True).stdout.splitlines()]
    links = sorted(n for n in links if n.startswith(('ingotlab', 'inv', 'vinglab')) or n == rack.BRIDGE)
    mounts = sorted(line for line in subprocess.run(['findmnt', '-rn', '-o', 'TARGET,FSTYPE,OPTIONS'],
                                                    capture_output=True, text=True, check=True).stdout.splitlines()
                    if line.startswith('/sys/fs/cgroup') or str(state_dir) in line)
    with open('/proc/sys/net/ipv4/ip_forward') as handle:
        forward = handle.read().strip()
    return {'iptables': rules, 'links': links, 'mounts': mounts, 'ip_forward': forward}


class Rack:
    def __init__(self, state_dir):
        self.state_dir = str(state_dir)
        self.lab = Lab(self.state_dir)
        self.before = host_snapshot(self.state_dir)
        self.up_seconds = None

    def up(self):
        start = time.monotonic()
        rack.up(self.lab, NODES, base_port=BASE_PORT, deploy_timeout=DEPLOY_TIMEOUT)
        self.up_seconds = time.monotonic() - start

    def down(self):
        rack.down(self.lab)

    @property
    def config(self):
        return self.lab.load()['bmcs']

    def token(self):
        with open(os.path.join(self.state_dir, 'rack.json')) as handle:
            return json.load(handle)['token']

    def view_token(self):
        """The read-only token of the provisioner's web view (the rack sets provisioner_view_token)."""
        with open(os.path.join(self.state_dir, 'rack.json')) as handle:
            return json.load(handle)['view_token']

    def ipmitool(self, name, *args, password=None, check=True):
        entry = self.config[name]
        argv = ['ipmitool', '-I', 'lanplus', '-H', entry.get('address', '127.0.0.1'), '-p', str(entry['port']),
                '-U', entry['user'], '-P', password or entry['password'], '-R', '2', '-N', '2'] + list(args)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc

    def power(self, name):
        out = self.ipmitool(name, 'power', 'status').stdout
        return 'on' if out.strip().endswith('on') else 'off'

    def machine(self, name):
        return manage.machine(self.lab, name)

    def console(self, name):
        return self.machine(name).console()

    def api(self, path, method='GET', body=None):
        req = urllib.request.Request(rack.provisioner_url() + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={'Authorization': 'Bearer %s' % self.token(),
                                              'Content-Type': 'application/json'})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b'null')

    def macs(self, name):
        return self.config[name]['machine']['macs']


def wait_for(predicate, timeout, interval=0.25, what='condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError('timed out after %.0f s waiting for %s' % (timeout, what))


def _tail(path, lines):
    try:
        with open(path, errors='replace') as handle:
            return ''.join(handle.readlines()[-lines:])
    except OSError as exc:
        return '(%s)\n' % exc


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used the rack carries the end of the vBMC logs and of dockerd's log: a BMC that
    stops answering or a node container that will not stop is seen there, and the rack is gone after the
    session."""
    outcome = yield
    report = outcome.get_result()
    running = item.funcargs.get('lab_rack') if hasattr(item, 'funcargs') else None
    if report.when != 'call' or not report.failed or running is None:
        return
    logs = os.path.join(running.state_dir, 'logs')
    for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else ():
        if name.endswith('.log'):
            report.sections.append(('lab log %s (last 80 lines)' % name, _tail(os.path.join(logs, name), 80)))
    docker_log = os.path.join(rack.docker_state_dir(running.lab), 'dockerd.log')
    report.sections.append(('dockerd.log (last 40 lines)', _tail(docker_log, 40)))


def pytest_collection_modifyitems(items):
    """test_rack.py's tests first (they expect fresh nodes), then the other files, and the test that
    takes the rack down and compares the host last of all."""
    def key(item):
        if item.name == 'test_zz_down_restores_the_host':
            return 2
        return 0 if item.fspath.basename == 'test_rack.py' else 1
    items.sort(key=key)   # stable: each group keeps its order


@pytest.fixture(scope='session')
def lab_rack(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip('the lab rack needs root')
    for tool in ('ipmitool', 'ip', 'iptables', 'nsenter'):
        if shutil.which(tool) is None:
            pytest.skip('%s is not installed' % tool)
    reuse = os.environ.get('INGOT_E2E_LAB_DIR')
    if reuse:   # a rack already up there (lab/ingot-lab --state-dir DIR up), for development: used, left up
        yield Rack(reuse)
        return
    running = Rack(tmp_path_factory.mktemp('rack'))
    try:
        running.up()
        print('lab up: %.1f s' % running.up_seconds)
        yield running
    finally:
        running.down()
