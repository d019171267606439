# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ingot.metal.node_info: read-only, filters, one node, events."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.ingot.metal.plugins.modules import node_info
from ansible_collections.ingot.metal.tests.unit.plugins.module_utils.provisioner_fake import install, run_module


@pytest.fixture
def fake(monkeypatch):
    fake = install(monkeypatch)
    fake.add_node('b', pool='rack3', tags=['ssd', 'nvme'])
    fake.add_node('a', pool='rack3', tags=['ssd'], maintenance=True)
    fake.add_node('c', pool='rack4', state='deployed', owner='ci', allocation_name='builder1')
    fake.add_node('d', pool='rack4', state='discovered')
    return fake


@pytest.fixture
def run(monkeypatch):
    def go(args, **kwargs):
        return run_module(node_info.main, args, monkeypatch=monkeypatch, **kwargs)
    return go


def names(res):
    return [n['name'] for n in res['nodes']]


def test_all_sorted_and_read_only(fake, run):
    res = run({}, check=True)
    assert not res['changed'] and names(res) == ['a', 'b', 'c', 'd']
    assert fake.writes() == []


@pytest.mark.parametrize('filters, expected', [
    ({'state': 'ready'}, ['a', 'b']),
    ({'pool': 'rack4'}, ['c', 'd']),
    ({'owner': 'ci'}, ['c']),
    ({'owner': 'ci', 'allocation_name': 'builder1'}, ['c']),
    ({'allocation_name': 'nope'}, []),
    ({'tags': ['ssd']}, ['a', 'b']),
    ({'tags': ['ssd', 'nvme']}, ['b']),
    ({'maintenance': True}, ['a']),
    ({'maintenance': False, 'pool': 'rack3'}, ['b']),
])
def test_filters(fake, run, filters, expected):
    assert names(run(filters)) == expected


def test_server_side_filters_are_sent(fake, run):
    run({'state': 'ready', 'pool': 'rack3'})
    query = [q for m, p, q, b in fake.requests if p == '/api/v1/nodes'][0]
    assert query['state'] == 'ready' and query['pool'] == 'rack3'


def test_one_node_with_events(fake, run):
    res = run({'name': 'c', 'events': True})
    assert names(res) == ['c'] and res['nodes'][0]['events'][0]['kind'] == 'registered'


def test_an_unknown_node_is_an_empty_list(fake, run):
    res = run({'name': 'zz'})
    assert res['nodes'] == [] and not res.get('failed')


def test_wrong_token_fails_clearly(fake, run):
    res = run({'provisioner_token': 'not-the-token'})
    assert res['failed'] and res['error_kind'] == 'auth' and 'not-the-token' not in repr(res)
