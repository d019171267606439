# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection tarball ``ansible-galaxy collection build`` makes from this checkout (what ``make ee`` and a
Galaxy upload ship): it holds what a user runs, and none of the development folders galaxy.yml leaves out."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess
import sys
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# what a user of the collection runs or reads
SHIPPED = ('MANIFEST.json', 'meta/runtime.yml', 'README.md', 'LICENSE', 'bindep.txt',
           'requirements.txt', 'plugins/modules/bmc_power.py', 'plugins/inventory/provisioner.py',
           'plugins/module_utils/bmc.py', 'roles/machine/tasks/main.yml', 'roles/machine/meta/argument_specs.yml',
           'roles/docker_host/tasks/main.yml', 'roles/provisioner/tasks/main.yml', 'playbooks/create.yml',
           'playbooks/rm.yml', 'inventories/lab/lab.ingot.yml', 'docs/provisioner-api.md')
# development only: never in the tarball
LEFT_OUT = ('lab', 'demo', 'tests', 'hack', 'Makefile', '.ci', '.venv', '.lab', '.build', '.runner', '.git')


def _galaxy():
    found = shutil.which('ansible-galaxy') or os.path.join(os.path.dirname(sys.executable), 'ansible-galaxy')
    assert os.path.exists(found), 'ansible-galaxy is not installed (make venv)'
    return found


@pytest.fixture(scope='module')
def members(tmp_path_factory):
    out = tmp_path_factory.mktemp('dist')
    proc = subprocess.run([_galaxy(), 'collection', 'build', '--output-path', str(out), REPO],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr or proc.stdout
    tarballs = [f for f in os.listdir(str(out)) if f.endswith('.tar.gz')]
    assert len(tarballs) == 1, tarballs
    with tarfile.open(os.path.join(str(out), tarballs[0])) as tar:
        return [m.name[2:] if m.name.startswith('./') else m.name for m in tar.getmembers()]


def test_the_tarball_holds_what_a_user_runs(members):
    missing = [path for path in SHIPPED if path not in members]
    assert not missing, 'not in the collection tarball: %s' % missing


def test_the_tarball_leaves_out_the_development_folders(members):
    leaked = sorted(m for m in members if m.split('/')[0] in LEFT_OUT)
    assert not leaked, 'development files in the collection tarball: %s' % leaked[:20]
    assert not [m for m in members if '__pycache__' in m or m.endswith('.pyc')]
