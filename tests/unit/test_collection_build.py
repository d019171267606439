# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection tarball ``ansible-galaxy collection build`` makes from this checkout (what ``make ee`` and a
Galaxy upload ship): it holds what a user runs, and none of the development folders galaxy.yml leaves out; the
provisioner service goes in as its wheel (``make collection`` builds it from provisioner/), never as source, and
the wheel's version is the collection's."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROVISIONER = os.path.join(REPO, 'provisioner')
with open(os.path.join(REPO, 'galaxy.yml')) as _galaxy_file:
    VERSION = yaml.safe_load(_galaxy_file)['version']
WHEEL = 'roles/provisioner/files/ingot_provisioner-%s-py3-none-any.whl' % VERSION
PINS = 'roles/provisioner/files/ingot_provisioner-requirements.txt'

# what a user of the collection runs or reads
SHIPPED = ('MANIFEST.json', 'meta/runtime.yml', 'README.md', 'LICENSE', 'bindep.txt',
           'requirements.txt', 'plugins/modules/bmc_power.py', 'plugins/inventory/provisioner.py',
           'plugins/module_utils/bmc.py', 'roles/machine/tasks/main.yml', 'roles/machine/meta/argument_specs.yml',
           'roles/docker_host/tasks/main.yml', 'roles/provisioner/tasks/main.yml', 'playbooks/create.yml',
           'playbooks/rm.yml', 'inventories/lab/lab.ingot.yml', 'docs/provisioner-api.md', WHEEL, PINS)
# development only: never in the tarball
LEFT_OUT = ('provisioner', 'lab', 'demo', 'tests', 'hack', 'Makefile', '.ci', '.venv', '.lab', '.build', '.runner', '.git')


def _galaxy():
    found = shutil.which('ansible-galaxy') or os.path.join(os.path.dirname(sys.executable), 'ansible-galaxy')
    assert os.path.exists(found), 'ansible-galaxy is not installed (make venv)'
    return found


@pytest.fixture(scope='module')
def tarball(tmp_path_factory):
    assert os.path.exists(os.path.join(REPO, WHEEL)), '%s is not built: make collection' % WHEEL
    out = tmp_path_factory.mktemp('dist')
    proc = subprocess.run([_galaxy(), 'collection', 'build', '--output-path', str(out), REPO],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr or proc.stdout
    tarballs = [f for f in os.listdir(str(out)) if f.endswith('.tar.gz')]
    assert len(tarballs) == 1, tarballs
    return os.path.join(str(out), tarballs[0])


@pytest.fixture(scope='module')
def members(tarball):
    with tarfile.open(tarball) as tar:
        return [m.name[2:] if m.name.startswith('./') else m.name for m in tar.getmembers()]


def _read_member(tarball, name):
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            if member.name in (name, './' + name):
                return tar.extractfile(member).read()
    raise AssertionError('%s is not in %s' % (name, tarball))


def _build_wheel(project, out):
    proc = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps', '--no-build-isolation',
                           '--wheel-dir', str(out), str(project)], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr or proc.stdout
    return sorted(os.listdir(str(out)))


def _service_version(pythonpath):
    proc = subprocess.run([sys.executable, '-m', 'ingot_provisioner', 'version'], env=dict(os.environ, PYTHONPATH=pythonpath),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_tarball_holds_what_a_user_runs(members):
    missing = [path for path in SHIPPED if path not in members]
    assert not missing, 'not in the collection tarball: %s' % missing


def test_the_tarball_leaves_out_the_development_folders(members):
    leaked = sorted(m for m in members if m.split('/')[0] in LEFT_OUT)
    assert not leaked, 'development files in the collection tarball: %s' % leaked[:20]
    assert not [m for m in members if '__pycache__' in m or m.endswith('.pyc')]


def test_the_tarball_carries_the_provisioner_as_its_wheel_not_its_source(tarball, members):
    assert not [m for m in members if m.startswith('provisioner/') or '/ingot_provisioner/' in m]
    assert sorted(m for m in members if m.startswith('roles/provisioner/files/')) == sorted([WHEEL, PINS])
    with open(os.path.join(PROVISIONER, 'requirements.txt'), 'rb') as pins:
        assert _read_member(tarball, PINS) == pins.read()
    wheel = os.path.join(os.path.dirname(tarball), 'shipped.whl')
    with open(wheel, 'wb') as out:
        out.write(_read_member(tarball, WHEEL))
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        metadata = whl.read('ingot_provisioner-%s.dist-info/METADATA' % VERSION).decode()
    assert 'Version: %s' % VERSION in metadata.splitlines()
    for path in ('ingot_provisioner/api.py', 'ingot_provisioner/agent/agent.sh', 'ingot_provisioner/web/view.js',
                 'ingot_provisioner/templates/ipxe-agent.ipxe.j2', 'ingot_provisioner/migrations/script.py.mako',
                 'ingot_provisioner/migrations/versions/0001_initial.py'):
        assert path in names, '%s is not in the wheel' % path


def test_the_service_reports_the_collection_version_from_source_and_from_its_wheel(tmp_path):
    assert _service_version(os.path.join(PROVISIONER, 'src')) == VERSION
    target = tmp_path / 'site'
    proc = subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps', '--no-index',
                           '--target', str(target), os.path.join(REPO, WHEEL)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert _service_version(str(target)) == VERSION


def test_a_new_collection_version_is_the_version_of_the_wheel_and_the_service(tmp_path):
    """The one source: change galaxy.yml's version, and the wheel and ``ingot_provisioner version`` follow."""
    checkout = tmp_path / 'checkout'
    shutil.copytree(PROVISIONER, str(checkout / 'provisioner'),
                    ignore=shutil.ignore_patterns('__pycache__', 'build', '*.egg-info'))
    with open(os.path.join(REPO, 'galaxy.yml')) as handle:
        galaxy = handle.read()
    bumped = '%s.dev7' % VERSION
    assert ('\nversion: %s\n' % VERSION) in galaxy
    (checkout / 'galaxy.yml').write_text(galaxy.replace('\nversion: %s\n' % VERSION, '\nversion: %s\n' % bumped))
    assert _build_wheel(checkout / 'provisioner', tmp_path / 'dist') == [
        'ingot_provisioner-%s-py3-none-any.whl' % bumped]
    assert _service_version(str(checkout / 'provisioner' / 'src')) == bumped
