"""End-to-end tests of the lab rack: ``ingot-lab up`` (Docker engine, images, bridge, the provisioner
host configured by roles/provisioner, vBMCs with node containers), driven only through IPMI
(ipmitool), DHCP, HTTP and the provisioner API, then ``ingot-lab down`` with a host comparison.

Needs root and a machine where Docker can run (LAB-NOTES.md); skipped otherwise.  One rack for the
session, in a temporary state directory; INGOT_E2E_NODES (default 3) nodes.
"""

import os
import shutil

import pytest

from ingot_lab import rack
from ingot_lab.rack_client import Rack
from ingot_chromium import browser_factory  # noqa: F401  pylint: disable=unused-import

NODES = int(os.environ.get('INGOT_E2E_NODES', '3'))
BASE_PORT = int(os.environ.get('INGOT_E2E_BASE_PORT', '16330'))
# The provisioner's deploy timeout in the e2e rack: short, so that the failure path (a node powered
# off in the middle of a deploy) ends in deploy_failed soon; long enough for a deploy of the real image.
DEPLOY_TIMEOUT = int(os.environ.get('INGOT_E2E_DEPLOY_TIMEOUT', '150'))


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
        running.up(NODES, BASE_PORT, DEPLOY_TIMEOUT)
        print('lab up: %.1f s' % running.up_seconds)
        yield running
    finally:
        running.down()
