# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ingot.metal.node: register, update, enroll, maintenance, remove; check mode, diff, idempotence."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.ingot.metal.plugins.modules import node as node_module
from ansible_collections.ingot.metal.tests.unit.plugins.module_utils.provisioner_fake import TOKEN, install, run_module

NEW = dict(name='r3-n01', macs=['02:00:0A:FB:00:11'], bmc={'address': '10.0.3.101', 'port': 623, 'protocol': 'ipmi'},
           pool='rack3', tags=['ssd'], facts={'cpus': 16, 'memory_mib': 65536})


@pytest.fixture
def fake(monkeypatch):
    return install(monkeypatch)


@pytest.fixture
def run(monkeypatch):
    def go(args, **kwargs):
        return run_module(node_module.main, args, monkeypatch=monkeypatch, **kwargs)
    return go


def test_register_then_nothing_changes(fake, run):
    first = run(NEW, diff=True)
    assert first['changed'] and not first.get('failed')
    rec = fake.node('r3-n01')
    assert rec['state'] == 'ready' and rec['macs'] == ['02:00:0a:fb:00:11'] and rec['pool'] == 'rack3'
    assert first['node']['id'] == rec['id']
    assert first['diff']['before'] == {}
    assert first['diff']['after']['macs'] == ['02:00:0a:fb:00:11'] and first['diff']['after']['state'] == 'ready'
    writes = len(fake.writes())
    second = run(NEW, diff=True)
    assert not second['changed'] and second['diff'] == {'before': {}, 'after': {}}
    assert len(fake.writes()) == writes


def test_check_mode_registers_nothing(fake, run):
    res = run(NEW, check=True, diff=True)
    assert res['changed'] and res['node']['name'] == 'r3-n01'
    assert fake.nodes == {} and fake.writes() == []


def test_registering_without_macs_is_left_to_the_service(fake, run):
    res = run({'name': 'r3-n02', 'pool': 'rack3'})
    assert res['failed'] and res['error_kind'] == 'invalid'
    assert res['msg'].startswith('the provisioner refused registering node r3-n02: macs: field required')


def test_update_sends_only_the_difference_with_a_diff(fake, run):
    fake.add_node('r3-n01', macs=['02:00:0a:fb:00:11'], pool='rack3', tags=['ssd'], facts={'cpus': 16, 'x': 1})
    res = run(dict(name='r3-n01', tags=['ssd', 'nvme'], facts={'cpus': 16}, pool='rack3', maintenance=True,
                   maintenance_reason='DIMM errors'), diff=True)
    assert res['changed']
    method, path, query, body = fake.requests[-1]
    assert method == 'PATCH' and body == {'tags': ['ssd', 'nvme'], 'maintenance': True,
                                          'maintenance_reason': 'DIMM errors'}
    assert res['diff'] == {
        'before': {'name': 'r3-n01', 'tags': ['ssd'], 'maintenance': False, 'maintenance_reason': None},
        'after': {'name': 'r3-n01', 'tags': ['ssd', 'nvme'], 'maintenance': True, 'maintenance_reason': 'DIMM errors'}}
    assert fake.node('r3-n01')['maintenance'] is True


def test_update_in_check_mode_shows_the_diff_and_writes_nothing(fake, run):
    fake.add_node('r3-n01', pool='rack3')
    res = run(dict(name='r3-n01', pool='rack4'), check=True, diff=True)
    assert res['changed'] and res['node']['pool'] == 'rack4'
    assert res['diff'] == {'before': {'name': 'r3-n01', 'pool': 'rack3'}, 'after': {'name': 'r3-n01', 'pool': 'rack4'}}
    assert fake.writes() == [] and fake.node('r3-n01')['pool'] == 'rack3'


def test_no_diff_without_diff_mode(fake, run):
    fake.add_node('r3-n01', pool='rack3')
    assert 'diff' not in run(dict(name='r3-n01', pool='rack4'))


def test_bmc_and_facts_are_merged(fake, run):
    fake.add_node('r3-n01', bmc={'address': '10.0.3.101', 'port': 623, 'protocol': 'ipmi'})
    res = run(dict(name='r3-n01', bmc={'port': 6230}))
    assert res['changed']
    assert fake.node('r3-n01')['bmc'] == {'address': '10.0.3.101', 'port': 6230, 'protocol': 'ipmi'}
    assert not run(dict(name='r3-n01', bmc={'port': 6230, 'protocol': 'ipmi'}))['changed']


def test_discovered_node_is_enrolled_once(fake, run):
    fake.add_node('disc-0a1b', state='discovered', pool='default')
    res = run(dict(name='disc-0a1b', pool='rack3'), diff=True)
    assert res['changed'] and res['node']['state'] == 'ready' and res['node']['pool'] == 'rack3'
    assert ('POST', '/api/v1/nodes/disc-0a1b/enroll') in fake.writes()
    assert res['diff']['before'] == {'name': 'disc-0a1b', 'state': 'discovered', 'pool': 'default'}
    assert res['diff']['after'] == {'name': 'disc-0a1b', 'state': 'ready', 'pool': 'rack3'}
    assert not run(dict(name='disc-0a1b', pool='rack3'))['changed']


def test_enrolled_false_leaves_a_discovered_node_alone(fake, run):
    fake.add_node('disc-0a1b', state='discovered')
    assert not run(dict(name='disc-0a1b', enrolled=False))['changed']
    res = run(dict(name='new-one', macs=['02:00:00:00:99:99'], enrolled=False))
    assert res['node']['state'] == 'discovered'


def test_maintenance_and_docker_url_on_registration(fake, run):
    res = run(dict(NEW, maintenance=True, docker_url='tcp://10.0.3.31:2376'))
    assert res['changed']
    rec = fake.node('r3-n01')
    assert rec['maintenance'] is True and rec['docker_url'] == 'tcp://10.0.3.31:2376'
    assert not run(dict(NEW, maintenance=True, docker_url='tcp://10.0.3.31:2376'))['changed']


def test_a_mac_taken_by_another_node_is_a_clear_conflict(fake, run):
    fake.add_node('other', macs=['02:00:0a:fb:00:11'])
    res = run(NEW)
    assert res['failed'] and res['error_kind'] == 'conflict' and res['status'] == 409
    assert 'MAC 02:00:0a:fb:00:11 is already registered to node other' in res['msg']
    assert 'registering node r3-n01' in res['msg']


def test_absent_removes_then_nothing(fake, run):
    fake.add_node('r3-n01', pool='rack3')
    res = run(dict(name='r3-n01', state='absent'), diff=True)
    assert res['changed'] and res['node'] is None and fake.node('r3-n01') is None
    assert res['diff']['before']['pool'] == 'rack3' and res['diff']['after'] == {}
    assert not run(dict(name='r3-n01', state='absent'))['changed']


def test_absent_of_a_deployed_node_is_refused_unless_forced(fake, run):
    fake.add_node('r3-n01', state='deployed', owner='ci', allocation_name='b1')
    res = run(dict(name='r3-n01', state='absent'))
    assert res['failed'] and res['error_kind'] == 'illegal_transition'
    assert 'node r3-n01 is deployed' in res['msg']
    checked = run(dict(name='r3-n01', state='absent'), check=True)
    assert checked['failed'] and 'force=true' in checked['msg']
    assert run(dict(name='r3-n01', state='absent', force=True))['changed']
    assert fake.node('r3-n01') is None


def test_absent_in_check_mode_removes_nothing(fake, run):
    fake.add_node('r3-n01')
    assert run(dict(name='r3-n01', state='absent'), check=True)['changed']
    assert fake.node('r3-n01') is not None


def test_token_is_no_log_and_never_in_the_result(fake, run):
    res = run(dict(NEW, provisioner_token=TOKEN))
    assert TOKEN not in repr(res)


def test_unreachable_service(fake, run):
    fake.faults = ['refused'] * 10
    res = run(dict(name='x', provisioner_retries=1))
    assert res['failed'] and res['error_kind'] == 'unreachable'
    assert res['msg'].startswith('the provisioner at http://provisioner.test:8080 refused the connection while '
                                 'reading node x (after 2 attempts)')
