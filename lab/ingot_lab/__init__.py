"""ingot_lab: virtual metal for the ingot.metal collection.

The first piece is a virtual BMC (``ingot_lab.vbmc``) speaking IPMI 2.0 lanplus on loopback, built on
pyghmi's BMC server side, one process serving many BMCs.  Run it as ``lab/ingot-lab vbmc ...`` or
``PYTHONPATH=lab python -m ingot_lab vbmc ...``; tests use :func:`ingot_lab.testing.start_lab`.
"""

import importlib.util
import os
import sys
import threading

__version__ = '0.1.0'

#: The collection's module of every pyghmi patch (client and server side), relative to the repository.
PYGHMI_COMPAT_PATH = os.path.join('plugins', 'module_utils', 'pyghmi_compat.py')
#: Set to 1 to apply the pyghmi patches to a pyghmi they were not tested on (to re-check them).
FORCE_PYGHMI_FIXES_ENV = 'INGOT_LAB_FORCE_PYGHMI_FIXES'
_PYGHMI_COMPAT_NAME = 'ingot_metal_pyghmi_compat'
_load_lock = threading.Lock()


def pyghmi_compat_path():
    """Where the collection's pyghmi patches live (the repository root is ``lab/..``)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, PYGHMI_COMPAT_PATH)


def load_pyghmi_compat():
    """The collection's ``plugins/module_utils/pyghmi_compat.py``, loaded by path once per process
    (the lab runs without Ansible; that file imports nothing from it)."""
    with _load_lock:
        module = sys.modules.get(_PYGHMI_COMPAT_NAME)
        if module is None:
            spec = importlib.util.spec_from_file_location(_PYGHMI_COMPAT_NAME, pyghmi_compat_path())
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[_PYGHMI_COMPAT_NAME] = module
        return module


def apply_pyghmi_compat(groups):
    """Apply the pyghmi patches of ``groups`` in this process (see pyghmi_compat.apply), only on a
    tested pyghmi unless INGOT_LAB_FORCE_PYGHMI_FIXES=1; returns what pyghmi_compat applied."""
    compat = load_pyghmi_compat()
    return compat.apply(groups, force=os.environ.get(FORCE_PYGHMI_FIXES_ENV) == '1')
