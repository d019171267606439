#!/usr/bin/env python
# Copyright: ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write ansible-test's pip bootstrap stand-in, so that ``ansible-test sanity --venv`` works offline.

``ansible-test ... --venv`` bootstraps pip in every virtualenv it creates with a ``get-pip`` script
that it downloads from a host this project cannot reach. Before downloading, it looks for a cached
copy at ``~/.ansible/test/cache/get_pip_<pip version with underscores>.py`` and runs it as
``__main__`` with pip's install arguments plus ``--no-setuptools --no-wheel``.

This script writes a stand-in there: it runs ``ensurepip`` in the new virtualenv, then
``pip install`` with the same arguments (minus the two that plain pip rejects), with ``PIP_CERT``
pointing at the system CA bundle (ansible-test runs pip with a cleaned environment).

The pip version comes from the installed ansible-test, so the file name follows ansible-core
upgrades. An existing file that this script did not write (a real get-pip script) is left alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys

MARKER = '# ingot.metal: offline get-pip stand-in'
DEFAULT_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt'

STAND_IN = '''{marker}
# Written by hack/ansible-test-pip-bootstrap.py; safe to delete (it is written again when needed).
"""Stand-in for ansible-test's get-pip {pip_version} bootstrap script: ensurepip, then pip install."""
import os
import subprocess
import sys

CA_BUNDLE = {ca_bundle!r}
REJECTED = ('--no-setuptools', '--no-wheel')


def main():
    args = [arg for arg in sys.argv[1:] if arg not in REJECTED]
    env = dict(os.environ)
    if not env.get('PIP_CERT') and CA_BUNDLE and os.path.exists(CA_BUNDLE):
        env['PIP_CERT'] = CA_BUNDLE
    subprocess.check_call([sys.executable, '-m', 'ensurepip'], env=env)
    subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args, env=env)


if __name__ == '__main__':
    main()
'''


def ansible_test_pip_version():
    """Return the pip version that the installed ansible-test bootstraps into its virtualenvs."""
    spec = importlib.util.find_spec('ansible_test')
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit('ansible-test is not installed in %s (run `make venv`)' % sys.executable)
    source = os.path.join(list(spec.submodule_search_locations)[0], '_internal', 'python_requirements.py')
    with open(source, encoding='utf-8') as handle:
        match = re.search(r"""\bpip=['"]([0-9][0-9.]*)['"]""", handle.read())
    if not match:
        raise SystemExit('cannot find the bootstrap pip version in %s' % source)
    return match.group(1)


def main():
    """Write the stand-in (idempotent) and print its path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cache-dir', default=os.path.expanduser('~/.ansible/test/cache'),
                        help='ansible-test cache directory (default: %(default)s)')
    parser.add_argument('--ca-bundle', default=os.environ.get('PIP_CERT') or DEFAULT_CA_BUNDLE,
                        help='CA bundle for pip (default: $PIP_CERT or %(default)s)')
    args = parser.parse_args()

    pip_version = ansible_test_pip_version()
    path = os.path.join(args.cache_dir, 'get_pip_%s.py' % pip_version.replace('.', '_'))
    content = STAND_IN.format(marker=MARKER, pip_version=pip_version, ca_bundle=args.ca_bundle)

    if os.path.exists(path):
        with open(path, encoding='utf-8') as handle:
            current = handle.read()
        if not current.startswith(MARKER):
            print('%s exists and is not ours: left alone' % path)
            return
        if current == content:
            print(path)
            return

    os.makedirs(args.cache_dir, exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as handle:
        handle.write(content)
    os.replace(tmp, path)
    print(path)


if __name__ == '__main__':
    main()
