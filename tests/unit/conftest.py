# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make ``ansible_collections.ingot.metal`` importable for the unit tests.

Two layouts are supported:

* the repository checked out (or linked, as ``make collection`` does with
  ``.build/ansible_collections/ingot/metal``) at a path ending in
  ``ansible_collections/ingot/metal``, as ``ansible-test units`` runs it: the
  directory above ``ansible_collections`` goes on ``sys.path``;
* a plain checkout anywhere else: a session temporary directory gets
  ``ansible_collections/ingot/metal`` as a symlink to the repository root, and
  goes first on ``sys.path``. It is removed when the session ends.

Either way the collection that gets imported must be this checkout; the
session stops with a clear message otherwise.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import os
import shutil
import sys
import tempfile

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))          # not resolved: keeps a symlinked layout
REPO = os.path.dirname(os.path.dirname(_HERE))             # <repo>/tests/unit -> <repo>
_TMP_ROOT = None


def _collection_root():
    parts = REPO.split(os.sep)
    if parts[-3:] == ['ansible_collections', 'ingot', 'metal']:
        return os.sep.join(parts[:-3]) or os.sep
    global _TMP_ROOT
    _TMP_ROOT = tempfile.mkdtemp(prefix='ingot-metal-unit-')
    ns = os.path.join(_TMP_ROOT, 'ansible_collections', 'ingot')
    os.makedirs(ns)
    os.symlink(os.path.realpath(REPO), os.path.join(ns, 'metal'))
    return _TMP_ROOT


def _imported_from_here():
    """Whether ``ansible_collections.ingot.metal`` imports, and from this checkout (without running its code)."""
    try:
        spec = importlib.util.find_spec('ansible_collections.ingot.metal.plugins.module_utils.bmc')
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.origin:
        return False
    want = os.path.realpath(os.path.join(REPO, 'plugins', 'module_utils', 'bmc.py'))
    return os.path.realpath(spec.origin) == want


def _setup_path():
    if _imported_from_here():
        return  # ansible-test units, or a path already set up for this checkout
    root = _collection_root()
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    # A collection of the same name imported earlier from elsewhere would shadow this checkout.
    for mod in list(sys.modules):
        if (mod == 'ansible_collections.ingot' or mod.startswith('ansible_collections.ingot.')) and mod != __name__:
            del sys.modules[mod]
    if not _imported_from_here():
        raise pytest.UsageError('ansible_collections.ingot.metal cannot be imported from this checkout (%s); '
                                'remove the other copy from sys.path' % REPO)


def _cleanup():
    global _TMP_ROOT
    if _TMP_ROOT is None:
        return
    link = os.path.join(_TMP_ROOT, 'ansible_collections', 'ingot', 'metal')
    if os.path.islink(link):
        os.unlink(link)  # the link first: never walk into the repository
    shutil.rmtree(_TMP_ROOT, ignore_errors=True)
    _TMP_ROOT = None


_setup_path()

from ansible_collections.ingot.metal.plugins.module_utils import bmc, pyghmi_compat  # noqa: E402
from ansible_collections.ingot.metal.tests.unit.fakes import FakeLab  # noqa: E402


def pytest_unconfigure(config):
    _cleanup()


@pytest.fixture(autouse=True)
def _isolated_session_policy():
    """The session policy table and the per-BMC command pacing are process-wide: each test starts afresh."""
    saved = dict(pyghmi_compat._POLICY)
    bmc.PACER.reset()
    yield
    pyghmi_compat._POLICY.clear()
    pyghmi_compat._POLICY.update(saved)
    bmc.PACER.reset()


def _no_real_bmc(*args, **kwargs):
    raise AssertionError('a unit test tried to reach a real BMC through pyghmi: use the lab fixture')


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No unit test talks to a real BMC (nor starts pyghmi's I/O thread) by accident."""
    from pyghmi.ipmi.private import session
    monkeypatch.setattr(bmc.ipmi_command, 'Command', _no_real_bmc)
    monkeypatch.setattr(bmc.redfish_command, 'Command', _no_real_bmc)
    yield
    assert session.iothread is None, "a unit test started pyghmi's I/O thread (real IPMI sessions)"


@pytest.fixture
def lab(monkeypatch, _offline):
    """Fake BMCs behind pyghmi's IPMI and Redfish ``Command`` classes (nothing else is faked)."""
    fake = FakeLab()
    monkeypatch.setattr(bmc.ipmi_command, 'Command', fake.ipmi_command)
    monkeypatch.setattr(bmc.redfish_command, 'Command', fake.redfish_command)
    yield fake
    fake.release()
