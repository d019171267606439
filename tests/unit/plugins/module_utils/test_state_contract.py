# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The contract between the provisioner service's state machine and what the collection assumes of it.

Three parties name the node states and transitions: the service (its ``states.py``, the one table every endpoint
goes through), the modules (the state constants of plugins/module_utils/provisioner.py) and the unit tests' fake
provisioner (provisioner_fake.py). These tests fail as soon as a state or an allowed transition is added to,
removed from or changed in one of them and not the others, so the fake cannot drift from the service.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import json
import os

import pytest

from ansible.module_utils.six.moves.urllib.error import HTTPError

from ansible_collections.ingot.metal.plugins.module_utils import provisioner as p
from ansible_collections.ingot.metal.tests.unit.plugins.module_utils import provisioner_fake as fake_module

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def service_states():
    """The service's state machine module, imported from its file (its package needs the service's dependencies).

    The one place that knows where the service's source lives.
    """
    path = os.path.join(REPO, 'provisioner', 'src', 'ingot_provisioner', 'states.py')
    spec = importlib.util.spec_from_file_location('_ingot_provisioner_states_under_contract', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SERVICE = service_states()


def service_table():
    """The service's transitions as {(state, action): new state}, in plain strings."""
    return dict(((s.value, a.value), new.value) for (s, a), new in SERVICE.TRANSITIONS.items())


def fake_table():
    return dict(((state, action), new) for action, table in fake_module.TRANSITIONS.items()
                for state, new in table.items())


def from_states(action):
    """The states from which the service allows ``action``."""
    return set(s for (s, a) in service_table() if a == action)


def test_the_modules_know_every_state_of_the_service_and_no_other():
    assert set(p.STATES) == set(s.value for s in SERVICE.State)
    assert len(p.STATES) == len(set(p.STATES))


def test_the_fake_allows_exactly_the_transitions_of_the_service():
    fake, service = fake_table(), service_table()
    assert sorted(set(fake.items()) - set(service.items())) == [], 'the fake allows what the service refuses'
    assert sorted(set(service.items()) - set(fake.items())) == [], 'the service allows what the fake refuses'
    assert set(fake_module.TRANSITIONS) == set(a.value for a in SERVICE.Action)


def test_the_state_sets_of_the_modules_follow_from_the_service():
    assert set(p.REMOVABLE) == set(s.value for s in SERVICE.DELETABLE) == set(fake_module.DELETABLE)
    assert set(p.DEPLOYABLE) == from_states(SERVICE.Action.DEPLOY.value)
    assert set(p.RELEASABLE) == from_states(SERVICE.Action.RELEASE.value)
    # Held: from an allocation until a release, whatever the deploys and their agents and timeouts do.
    held, todo = set(), [SERVICE.State.ALLOCATED.value]
    releases = (SERVICE.Action.RELEASE.value, SERVICE.Action.RELEASE_NOWIPE.value)
    while todo:
        state = todo.pop()
        held.add(state)
        todo.extend(new for (s, a), new in service_table().items() if s == state and a not in releases
                    and new not in held)
    assert set(p.HELD) == held


def _act(fake, name, action):
    """Do ``action`` to node ``name`` through the fake as a client (or the agent, or the clock) would."""
    node = fake.node(name)
    if action in ('agent_succeeded', 'agent_failed'):
        fake.finish(name, ok=action == 'agent_succeeded')
        return
    if action == 'timeout':
        fake.expire(name)
        return
    if action == 'allocate':
        method, path, body = 'POST', '/api/v1/allocations', {'owner': 'contract', 'name': 'a1'}
    elif action.startswith('release'):
        method, path, body = 'POST', '/api/v1/nodes/%s/release' % node['id'], {'wipe': action == 'release'}
    else:
        method, path, body = 'POST', '/api/v1/nodes/%s/%s' % (node['id'], action), {}
        if action == 'deploy':
            body = {'image': 'debian-12'}
    try:
        fake.open_url(fake.url + path, data=json.dumps(body).encode('utf-8'), method=method,
                      headers={'Authorization': 'Bearer %s' % fake.token, 'Content-Type': 'application/json'})
    except HTTPError as e:
        assert e.code == 409, 'the fake refused %s from %s with %s, not 409' % (action, node['state'], e.code)


@pytest.mark.parametrize('state', [s.value for s in SERVICE.State])
@pytest.mark.parametrize('action', [a.value for a in SERVICE.Action])
def test_the_fake_moves_a_node_as_the_service_does(state, action):
    """Every (state, action) pair, done through the fake's API, agent and clock: the state it ends in is the one
    the service's table gives, and a pair the table lacks leaves the node where it was."""
    fake = fake_module.FakeProvisioner()
    fake.add_image('debian-12')
    held = state in p.HELD or state in (p.RELEASING, p.RELEASE_FAILED)
    fake.add_node('n1', state=state, owner='contract' if held else None, allocation_name='a1' if held else None)
    _act(fake, 'n1', action)
    expected = SERVICE.target_state(state, action)
    assert fake.node('n1')['state'] == (expected.value if expected is not None else state)
