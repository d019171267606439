# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Playbook runs from Python, for the lab rack, the demo, the benchmarks and the tests.

Playbooks run through ansible-runner: its events give per-host results,
``changed`` counts and progress, and its artifacts keep every run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def collections_path() -> str:
    """A directory where ``ansible_collections/ingot/metal`` is this checkout."""
    base = os.path.join(REPO, '.build')
    link = os.path.join(base, 'ansible_collections', 'ingot', 'metal')
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        try:
            os.symlink(REPO, link)
        except FileExistsError:
            pass
    return base


def ansible_env(extra: dict | None = None) -> dict:
    """Environment for ansible runs: this collection first, then the installed ones."""
    paths = [collections_path()]
    existing = os.environ.get('ANSIBLE_COLLECTIONS_PATH')
    if existing:
        paths.extend(p for p in existing.split(':') if p and p not in paths)
    env = {
        'ANSIBLE_COLLECTIONS_PATH': ':'.join(paths),
        'ANSIBLE_HOST_KEY_CHECKING': 'False',
        'ANSIBLE_RETRY_FILES_ENABLED': 'False',
        'ANSIBLE_LOCALHOST_WARNING': 'False',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'False',
        'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
        'ANSIBLE_DEPRECATION_WARNINGS': 'False',
        'ANSIBLE_NOCOLOR': 'True',
        'ANSIBLE_FORCE_COLOR': 'False',
    }
    if extra:
        env.update(extra)
    return env


@dataclass
class TaskResult:
    host: str
    task: str
    status: str  # ok, changed, failed, unreachable, skipped
    result: dict


@dataclass
class RunResult:
    status: str
    rc: int
    stats: dict
    results: list = field(default_factory=list)
    stdout: str = ''
    seconds: float = 0.0
    artifact_dir: str = ''

    def for_task(self, name: str) -> list:
        return [r for r in self.results if r.task == name]

    def one(self, name: str, host: str | None = None) -> TaskResult:
        found = [r for r in self.for_task(name) if host is None or r.host == host]
        if len(found) != 1:
            raise AssertionError('expected one result of task %r%s, got %d:\n%s'
                                 % (name, '' if host is None else ' on ' + host, len(found), self.stdout[-4000:]))
        return found[0]

    def count(self, key: str) -> int:
        """Total of a stats key (ok, changed, failures, dark, skipped) over all hosts."""
        return sum((self.stats or {}).get(key, {}).values())


def unwrap_unsafe(value):
    """ansible-inventory (2.19+) writes a value that is not trusted as a template as {"__ansible_unsafe": ...};
    VALUE with every such wrapper replaced by what it wraps."""
    if isinstance(value, dict):
        if set(value) == {'__ansible_unsafe'}:
            return value['__ansible_unsafe']
        return {k: unwrap_unsafe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_unsafe(v) for v in value]
    return value


def write_inventory(path: str, inventory: dict) -> str:
    with open(path, 'w') as f:
        yaml.safe_dump(inventory, f, default_flow_style=False)
    os.chmod(path, 0o600)
    return path


def run_playbook(playbook, inventory, extravars=None, forks=5, verbosity=0, check=False, diff=False,
                 timeout=600, progress=False, workdir=None, envvars=None, limit=None, cancel_when=None) -> RunResult:
    """Run a playbook (a path, or a list of plays) with ansible-runner and collect its events.
    CANCEL_WHEN (a callable, polled by ansible-runner every few seconds) kills the run when it returns true, as
    a user's Ctrl-C or a dead controller would: the result's status is then ``canceled``."""
    import ansible_runner

    workdir = workdir or tempfile.mkdtemp(prefix='ingot-run-')
    os.makedirs(workdir, exist_ok=True)
    # ansible-runner reads env/envvars, env/extravars... of an earlier run in the same workdir and lets them
    # win over the arguments given here (a cached workdir made by another checkout then points Ansible at
    # that checkout's collection): every run starts from this call's arguments only.
    shutil.rmtree(os.path.join(workdir, 'env'), ignore_errors=True)
    if not isinstance(playbook, str):
        path = os.path.join(workdir, 'playbook.yml')
        with open(path, 'w') as f:
            yaml.safe_dump(playbook, f, default_flow_style=False, sort_keys=False)
        playbook = path
    if isinstance(inventory, dict):
        inventory = write_inventory(os.path.join(workdir, 'inventory.yml'), inventory)
    results = []

    def on_event(event):
        kind = event.get('event', '')
        data = event.get('event_data', {})
        if progress and kind == 'playbook_on_task_start':
            print('  .. %s' % data.get('task'), flush=True)
        status = {
            'runner_on_ok': 'ok', 'runner_on_failed': 'failed', 'runner_on_unreachable': 'unreachable',
            'runner_on_skipped': 'skipped',
        }.get(kind)
        if status:
            res = data.get('res', {}) or {}
            if status == 'ok' and res.get('changed'):
                status = 'changed'
            if status == 'failed' and data.get('ignore_errors'):
                status = 'failed'
            results.append(TaskResult(data.get('host'), data.get('task'), status, res))
        return True

    cmdline = []
    if check:
        cmdline.append('--check')
    if diff:
        cmdline.append('--diff')
    if limit:
        cmdline += ['--limit', limit]
    start = time.monotonic()
    if not re.match(r'^[a-z0-9_]+\.[a-z0-9_]+\.[a-z0-9_]+$', playbook):  # not a collection playbook's FQCN
        playbook = os.path.abspath(playbook)
    r = ansible_runner.run(
        private_data_dir=workdir, playbook=playbook, inventory=os.path.abspath(inventory),
        extravars=extravars or {}, envvars=ansible_env(envvars), forks=forks, verbosity=verbosity,
        cmdline=' '.join(cmdline) or None, quiet=True, event_handler=on_event, timeout=timeout,
        rotate_artifacts=0, cancel_callback=(lambda: bool(cancel_when())) if cancel_when else None)
    seconds = time.monotonic() - start
    stdout = r.stdout.read() if r.stdout else ''
    return RunResult(status=r.status, rc=r.rc, stats=r.stats or {}, results=results, stdout=stdout,
                     seconds=seconds, artifact_dir=r.config.artifact_dir if r.config else '')


def dump(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)
