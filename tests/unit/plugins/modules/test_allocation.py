# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ingot.metal.allocation: allocate with constraints, idempotence, waiting for a node, release and its wait."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.ingot.metal.plugins.modules import allocation
from ansible_collections.ingot.metal.tests.unit.plugins.module_utils.provisioner_fake import install, run_module


@pytest.fixture
def fake(monkeypatch):
    fake = install(monkeypatch)
    fake.add_node('r3-n01', pool='rack3', tags=['ssd'], facts={'cpus': 4, 'memory_mib': 8192, 'disk_gib': 100})
    fake.add_node('r3-n02', pool='rack3', tags=['ssd', 'nvme'], facts={'cpus': 16, 'memory_mib': 65536, 'disk_gib': 900})
    fake.add_node('r4-n01', pool='rack4', tags=[], facts={'cpus': 32, 'memory_mib': 131072, 'disk_gib': 100})
    return fake


@pytest.fixture
def run(monkeypatch):
    def go(args, **kwargs):
        return run_module(allocation.main, args, monkeypatch=monkeypatch, **kwargs)
    return go


def test_allocate_with_constraints_then_nothing_changes(fake, run):
    args = dict(owner='ci', name='builder1', pool='rack3', tags=['ssd'], min_cpus=8)
    res = run(args, diff=True)
    assert res['changed'] and res['node']['name'] == 'r3-n02'
    assert fake.node('r3-n02')['owner'] == 'ci' and fake.node('r3-n02')['state'] == 'allocated'
    after = {'name': 'r3-n02', 'state': 'allocated', 'owner': 'ci', 'allocation_name': 'builder1'}
    assert res['diff'] == {'before': {}, 'after': after}
    body = [b for m, p, q, b in fake.requests if p == '/api/v1/allocations'][0]
    assert body == {'owner': 'ci', 'name': 'builder1', 'pool': 'rack3', 'tags': ['ssd'], 'min_cpus': 8}
    posts = len(fake.writes())
    again = run(args)
    assert not again['changed'] and again['node']['name'] == 'r3-n02'
    assert len(fake.writes()) == posts          # found by owner and name: nothing sent


def test_check_mode_predicts_and_allocates_nothing(fake, run):
    res = run(dict(owner='ci', name='builder1', pool='rack3', min_memory_mib=16384), check=True, diff=True)
    assert res['changed'] and res['candidates'] == 1 and res['node'] is None
    assert res['diff']['after']['owner'] == 'ci'
    assert fake.writes() == []


def test_check_mode_predicts_no_node_available(fake, run):
    res = run(dict(owner='ci', name='builder1', pool='rack3', min_cpus=64), check=True)
    assert res['failed'] and res['error_kind'] == 'no_node_available'
    assert "no ready node matches an allocation as 'builder1' for owner 'ci' with pool=rack3, min_cpus=64" in res['msg']
    assert fake.writes() == []


def test_no_node_available_fails_at_once_with_the_services_message(fake, run):
    res = run(dict(owner='ci', name='gpu1', tags=['gpu']))
    assert res['failed'] and res['error_kind'] == 'no_node_available' and res['status'] == 409
    assert "allocating a node as 'gpu1' for owner 'ci' with tags=gpu" in res['msg']
    assert 'no ready node matches' in res['msg']
    assert len(fake.paths('POST')) == 1


def test_maintenance_nodes_are_never_allocated(fake, run):
    for n in fake.nodes.values():
        n['maintenance'] = True
    assert run(dict(owner='ci', name='b1'))['error_kind'] == 'no_node_available'
    assert run(dict(owner='ci', name='b1'), check=True)['error_kind'] == 'no_node_available'


def test_wait_for_a_node_until_one_is_released(fake, run):
    for name in ('r3-n01', 'r3-n02', 'r4-n01'):
        fake.node(name).update(state='allocated', owner='other', allocation_name=name)
    polls = []

    def free_one_later(method_path):
        polls.append(1)
        if len(polls) == 3:
            fake.node('r4-n01').update(state='ready', owner=None, allocation_name=None)

    real = fake._allocate

    def allocate(body):
        free_one_later(None)
        return real(body)

    fake._allocate = allocate
    res = run(dict(owner='ci', name='b1', wait=True, wait_timeout=60, wait_interval=1))
    assert res['changed'] and res['node']['name'] == 'r4-n01'
    assert res['elapsed'] == pytest.approx(1.0)   # tried at once, polled at once, then after 1 s
    assert len(fake.paths('POST')) == 3


def test_wait_for_a_node_is_bounded(fake, run):
    for n in fake.nodes.values():
        n['state'] = 'deployed'
    res = run(dict(owner='ci', name='b1', wait=True, wait_timeout=20, wait_interval=2))
    assert res['failed'] and res['error_kind'] == 'timeout'
    assert res['msg'].startswith("waiting for a node for 'b1' of owner 'ci' did not finish within 20 s; the last "
                                 "answer was: no ready node matches")
    assert sum(fake.clock.sleeps) == pytest.approx(20)


def test_a_held_node_that_no_longer_matches_is_kept_with_a_warning(fake, run):
    fake.node('r3-n01').update(state='deployed', owner='ci', allocation_name='b1')
    res = run(dict(owner='ci', name='b1', min_cpus=8))
    assert not res['changed'] and res['node']['name'] == 'r3-n01'
    assert 'does not match the constraints with min_cpus=8 any more' in res['warnings'][0]


def test_release_of_an_allocated_node_is_immediate(fake, run):
    run(dict(owner='ci', name='b1', pool='rack4'))
    res = run(dict(owner='ci', name='b1', state='released'), diff=True)
    assert res['changed'] and res['node']['state'] == 'ready'
    assert res['diff'] == {'before': {'name': 'r4-n01', 'state': 'allocated', 'owner': 'ci', 'allocation_name': 'b1'},
                           'after': {'name': 'r4-n01', 'state': 'ready', 'owner': None, 'allocation_name': None}}
    assert fake.node('r4-n01')['owner'] is None
    assert not run(dict(owner='ci', name='b1', state='released'))['changed']


def test_release_of_a_deployed_node_wipes_and_waits(fake, run):
    fake.node('r3-n01').update(state='deployed', owner='ci', allocation_name='b1', image='debian-12')
    polls = []

    def on_poll(node):
        polls.append(node['state'])
        if len(polls) == 2:
            fake.finish('r3-n01')

    fake.on_poll = on_poll
    res = run(dict(owner='ci', name='b1', state='released', wait=True, wait_interval=1), diff=True)
    assert res['changed'] and res['node']['state'] == 'ready'
    body = [b for m, p, q, b in fake.requests if p.endswith('/release')][0]
    assert body == {'wipe': True}
    assert res['diff']['before']['state'] == 'deployed' and res['diff']['after']['state'] == 'ready'
    assert not run(dict(owner='ci', name='b1', state='released', wait=True))['changed']


def test_release_without_wait_returns_releasing(fake, run):
    fake.node('r3-n01').update(state='deployed', owner='ci', allocation_name='b1')
    res = run(dict(owner='ci', name='b1', state='released'))
    assert res['changed'] and res['node']['state'] == 'releasing'
    again = run(dict(owner='ci', name='b1', state='released'))
    assert not again['changed'] and again['node']['state'] == 'releasing'
    assert len(fake.paths('POST')) == 1


def test_release_failure_is_reported_with_the_last_error(fake, run):
    fake.node('r3-n01').update(state='deployed', owner='ci', allocation_name='b1')
    fake.on_poll = lambda node: fake.finish('r3-n01', ok=False, message='disk /dev/sda not found') \
        if node['state'] == 'releasing' else None
    res = run(dict(owner='ci', name='b1', state='released', wait=True))
    assert res['failed'] and res['changed']
    assert res['msg'] == 'releasing node r3-n01 failed: disk /dev/sda not found'
    # release_failed: a second run retries the release
    fake.on_poll = None
    retry = run(dict(owner='ci', name='b1', state='released'))
    assert retry['changed'] and retry['node']['state'] == 'releasing'


def test_release_during_a_deploy_abandons_it_and_wipes(fake, run):
    # an interrupted create leaves a node deploying: rm must still be able to give it back
    fake.node('r3-n01').update(state='deploying', owner='ci', allocation_name='b1')
    checked = run(dict(owner='ci', name='b1', state='released'), check=True)
    assert checked['changed'] and checked['node']['state'] == 'releasing' and fake.writes() == []
    res = run(dict(owner='ci', name='b1', state='released'))
    assert res['changed'] and res['node']['state'] == 'releasing'
    assert fake.node('r3-n01')['state'] == 'releasing'


def test_release_in_check_mode_changes_nothing(fake, run):
    fake.node('r3-n01').update(state='deployed', owner='ci', allocation_name='b1')
    res = run(dict(owner='ci', name='b1', state='released', wait=True), check=True, diff=True)
    assert res['changed'] and res['diff']['after']['state'] == 'releasing'
    assert fake.writes() == [] and fake.node('r3-n01')['state'] == 'deployed'
