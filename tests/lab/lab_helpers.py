"""Helpers shared by the lab's tests."""

import json
import os
import subprocess
import sys
import textwrap

LAB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'lab')


def run_python(code, timeout=60, env=None):
    """Run ``code`` in a fresh interpreter (pyghmi's client state is per process); the code prints
    one JSON document as its last line, which is returned.  The lab package is importable."""
    full_env = dict(os.environ)
    full_env['PYTHONPATH'] = LAB_DIR + (os.pathsep + full_env['PYTHONPATH'] if full_env.get('PYTHONPATH') else '')
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True, text=True, check=False,
                          timeout=timeout, env=full_env)
    assert proc.returncode == 0, 'client failed:\n%s\n%s' % (proc.stdout, proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])
