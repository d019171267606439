# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the unit tests, and the check that ``ansible_collections.ingot.metal`` is this checkout.

The collection is importable in two layouts, neither set up here:

* ``make unit`` (hack/run-pytest): pytest.ini puts ``.build`` on ``sys.path``, where ``make collection``
  links ``.build/ansible_collections/ingot/metal`` to the repository root;
* ``ansible-test units``: the checkout itself is at ``.../ansible_collections/ingot/metal`` and ansible-test
  puts the folder above ``ansible_collections`` on ``sys.path``.

Either way the collection that gets imported must be this checkout; the session stops with a clear
message otherwise.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import os

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))          # not resolved: keeps a symlinked layout
REPO = os.path.dirname(os.path.dirname(_HERE))             # <repo>/tests/unit -> <repo>


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


if not _imported_from_here():
    raise pytest.UsageError('ansible_collections.ingot.metal is not imported from this checkout (%s): run '
                            '`make collection` (it links .build/ansible_collections/ingot/metal here; pytest.ini '
                            'puts .build on sys.path), and remove any other copy from sys.path' % REPO)

from ansible_collections.ingot.metal.plugins.module_utils import bmc, pyghmi_compat  # noqa: E402
from ansible_collections.ingot.metal.tests.unit.fakes import FakeLab  # noqa: E402


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
