"""Fixtures for the lab's tests: real vBMC servers on loopback, real clients (ipmitool, pyghmi,
community.general's modules, the lab's own RMCP+ client).  Nothing of the protocol is mocked."""

import shutil
import textwrap

import pytest

from ingot_lab.testing import start_lab
from lab_helpers import run_python

PASSWORD = 'lab-Secret-42'


def pytest_collection_modifyitems(config, items):
    if shutil.which('ipmitool') is None:
        skip = pytest.mark.skip(reason='ipmitool is not installed')
        for item in items:
            if 'ipmitool' in item.fixturenames:
                item.add_marker(skip)


@pytest.fixture(scope='session')
def ipmitool():
    return shutil.which('ipmitool')


@pytest.fixture(scope='session')
def lab(tmp_path_factory):
    """One lab for the session: 64 vBMCs (two NICs each), password PASSWORD, 60 s session timeout.
    Tests take their own vBMC with the ``bmc`` fixture, so they never see each other's state."""
    with start_lab(tmp_path_factory.mktemp('lab'), n=64, password=PASSWORD, nics=2) as running:
        running.unused = list(running.bmcs)
        yield running


@pytest.fixture
def bmc(lab):
    """A vBMC of the session lab that no other test uses (its machine is off, no override)."""
    info = lab.unused.pop(0)
    yield info
    if any(lab.config(info.name)['faults'].values()):
        lab.clear_faults(info.name)


@pytest.fixture
def pyghmi_client():
    """Run a pyghmi client script (stock pyghmi, no fixes) in its own process.

    The script gets BMC, PORT, USER, PASSWORD (str, as community.general passes them) and
    ``emit(obj)``, and runs with a deadline (quirk 2: a pyghmi login is not trusted to return).
    ``fixed=True`` applies the client-side fixes first (stock pyghmi stalls 0.5-1 s per lost
    wakeup, quirk 5, which makes long scripts slow but not wrong)."""
    def run(info, body, password=None, user=None, timeout=60, fixed=False):
        code = '''
import json, time
if %r:   # the collection's client-side fixes (quirks 5, 6): no lost-wakeup stalls
    from ingot_lab import apply_pyghmi_compat
    apply_pyghmi_compat(('client', 'io'))
from pyghmi.ipmi import command
from pyghmi import exceptions
BMC, PORT, USER, PASSWORD = %r, %d, %r, %r
def emit(obj):
    print(json.dumps(obj, default=str))
''' % (fixed, info.host, info.port, user or info.user, info.password if password is None else password)
        return run_python(code + textwrap.dedent(body), timeout=timeout)
    return run
