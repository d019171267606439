"""The power state of a container-backed lab node comes from the engine's container list (`docker ps`),
which never waits for a container's lock, and not from `docker inspect`, which does (one vBMC process
answers for every node of its shard, so a read that waits makes all of them silent). Logic only: the
engine is replaced by recorded answers; tests/e2e/test_rack.py drives real node containers."""

import subprocess

import pytest

from ingot_lab import container_machine


class Engine:
    """Answers `docker ps` with LINES (or fails it with rc PS_RC) and records every command."""

    def __init__(self, lines, ps_rc=0, inspect_running=None):
        self.lines, self.ps_rc, self.inspect_running, self.calls = lines, ps_rc, inspect_running, []

    def __call__(self, argv, check=True, timeout=None, input_text=None):
        self.calls.append(argv[:2])
        if argv[1] == 'ps':
            return subprocess.CompletedProcess(argv, self.ps_rc, '\n'.join(self.lines) + '\n', '')
        if argv[1] == 'inspect' and self.inspect_running is not None:
            return subprocess.CompletedProcess(
                argv, 0, '[{"State": {"Running": %s}}]' % ('true' if self.inspect_running else 'false'), '')
        return subprocess.CompletedProcess(argv, 1, '', 'No such container')


@pytest.mark.parametrize('lines, expected', [
    (['ingot-node-n001 running'], True),
    (['ingot-node-n001 paused'], True),
    (['ingot-node-n001 exited'], False),
    (['ingot-node-n001 created'], False),
    ([], False),                                    # no container yet: off
    (['ingot-node-n0011 running'], False),          # another node whose name starts the same
])
def test_power_state_from_the_container_list(monkeypatch, tmp_path, lines, expected):
    engine = Engine(lines)
    monkeypatch.setattr(container_machine, '_run', engine)
    machine = container_machine.ContainerMachine('n001', str(tmp_path / 'machines' / 'n001.json'), {}, readonly=True)
    assert machine.running() is expected
    assert machine.get_power_state() == ('on' if expected else 'off')
    assert ['docker', 'inspect'] not in engine.calls


def test_falls_back_to_inspect_when_the_list_fails(monkeypatch, tmp_path):
    engine = Engine([], ps_rc=1, inspect_running=True)
    monkeypatch.setattr(container_machine, '_run', engine)
    machine = container_machine.ContainerMachine('n001', str(tmp_path / 'machines' / 'n001.json'), {}, readonly=True)
    assert machine.running() is True
    assert engine.calls == [['docker', 'ps'], ['docker', 'inspect']]
