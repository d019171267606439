# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/provisioner in check mode on a host it never touched, through its Molecule scenario's playbooks.

The scenario itself (create, prepare, converge, idempotence, check, verify, cleanup, destroy) runs with
the real ``molecule test`` in ``make molecule`` (hack/run-molecule); this test covers what that sequence
does not: check mode on a new host, through ansible-runner with Molecule's inventory shape.

Docker comes from lab/docker/ensure-docker (installed and started by hand when missing) and is put
back as it was by lab/docker/teardown-docker; the image from lab/images/build-image (cached by
content hash). The test is skipped only when Docker cannot run here.
"""

import os
import subprocess
import sys
import time

import pytest
import yaml

from ingot_lab.runner import REPO, run_playbook

pytestmark = pytest.mark.timeout(2400)

SCENARIO = os.path.join(REPO, 'roles', 'provisioner', 'molecule', 'default')
ENSURE = os.path.join(REPO, 'lab', 'docker', 'ensure-docker')
TEARDOWN = os.path.join(REPO, 'lab', 'docker', 'teardown-docker')
BUILD_IMAGE = os.path.join(REPO, 'lab', 'images', 'build-image')


def _say(msg):
    print('[provisioner role] %s' % msg, flush=True)


@pytest.fixture(scope='module')
def docker_engine():
    """A Docker engine that answers (started here if need be, and then stopped again)."""
    if not sys.platform.startswith('linux'):
        pytest.skip('Docker cannot run here: not Linux')
    if os.geteuid() != 0:
        pytest.skip('Docker cannot run here: the role test needs root (dockerd, bridges, iptables)')
    start = time.monotonic()
    r = subprocess.run([ENSURE], capture_output=True, text=True, timeout=900, check=False)
    if r.returncode != 0:
        pytest.skip('Docker cannot run here: lab/docker/ensure-docker failed:\n%s%s' % (r.stdout, r.stderr[-3000:]))
    _say('%s (%.0f s)' % (r.stdout.strip(), time.monotonic() - start))
    started_here = 'nothing changed' not in r.stdout
    try:
        yield
    finally:
        if started_here:  # a daemon found running belongs to whoever started it
            r = subprocess.run([TEARDOWN], capture_output=True, text=True, timeout=300, check=False)
            _say('%s%s' % (r.stdout.strip(), ('\n' + r.stderr.strip()) if r.stderr.strip() else ''))


@pytest.fixture(scope='module')
def systemd_image(docker_engine):
    start = time.monotonic()
    r = subprocess.run([BUILD_IMAGE, 'debian-systemd'], capture_output=True, text=True, timeout=1200, check=False)
    assert r.returncode == 0, 'lab/images/build-image debian-systemd failed:\n%s%s' % (r.stdout, r.stderr[-4000:])
    _say('%s (%.0f s)' % (r.stdout.strip(), time.monotonic() - start))


class Scenario:
    """The Molecule scenario's playbooks, run through ansible-runner with Molecule's inventory shape."""

    def __init__(self, tmp):
        with open(os.path.join(SCENARIO, 'molecule.yml')) as f:
            self.molecule_yml = yaml.safe_load(f)
        self.tmp = tmp
        hosts = {p['name']: {'ansible_connection': 'community.docker.docker', 'ansible_pipelining': True,
                             'ansible_python_interpreter': '/usr/bin/python3'}
                 for p in self.molecule_yml['platforms']}
        self.inventory = {'all': {'hosts': hosts}}
        self.extravars = {'molecule_yml': self.molecule_yml, 'molecule_no_log': False}

    def run(self, name, check=False, timeout=1200):
        start = time.monotonic()
        r = run_playbook(os.path.join(SCENARIO, name), self.inventory, extravars=self.extravars, check=check,
                         timeout=timeout, workdir=os.path.join(self.tmp, '%s%s' % (name, '-check' if check else '')))
        _say('%-13s %s in %5.1f s, changed=%d' % (name + (' --check' if check else ''), r.status,
                                                  time.monotonic() - start, r.count('changed')))
        assert r.status == 'successful', '%s%s failed:\n%s' % (name, ' --check' if check else '', r.stdout[-8000:])
        return r

    def destroy(self):
        for p in self.molecule_yml['platforms']:
            subprocess.run(['docker', 'rm', '-f', p['name']], capture_output=True, timeout=120, check=False)


def test_check_mode_on_a_new_host(systemd_image, tmp_path):
    """Check mode on a host the role never touched: no failure, changes announced, nothing written."""
    scenario = Scenario(str(tmp_path))
    name = scenario.molecule_yml['platforms'][0]['name']
    try:
        scenario.destroy()
        scenario.run('create.yml')
        scenario.run('prepare.yml')
        # a new Debian host has package lists; the image has none (apt-get update in check mode would not fetch them)
        subprocess.run(['docker', 'exec', name, 'apt-get', 'update', '-qq'], check=True, capture_output=True, timeout=300)
        r = scenario.run('converge.yml', check=True)
        assert r.count('changed') > 0
        probe = subprocess.run(['docker', 'exec', name, 'sh', '-c',
                                'ls /opt/ingot-provisioner /etc/ingot-provisioner /etc/systemd/system/ingot-*.service'],
                               capture_output=True, text=True, timeout=60, check=False)
        assert probe.returncode != 0 and probe.stdout.strip() == '', 'check mode wrote files: %s' % probe.stdout
    finally:
        try:
            scenario.run('cleanup.yml')
        finally:
            scenario.destroy()
