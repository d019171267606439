# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ingot.metal.deployment: start a deploy, follow it with progress and a bounded wait, failures, idempotence."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible_collections.ingot.metal.plugins.modules import deployment
from ansible_collections.ingot.metal.tests.unit.plugins.module_utils.provisioner_fake import install, run_module

KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKx ci@ctl'


@pytest.fixture
def fake(monkeypatch):
    fake = install(monkeypatch)
    fake.add_image('debian-12')
    fake.add_node('r3-n01', state='allocated', owner='ci', allocation_name='builder1')
    return fake


@pytest.fixture
def run(monkeypatch):
    def go(args, **kwargs):
        return run_module(deployment.main, args, monkeypatch=monkeypatch, **kwargs)
    return go


def agent(fake, name, steps):
    """The deploy agent, played on the node's polls: ``steps`` is a list of callables run one per poll."""
    steps = list(steps)

    def on_poll(node):
        if steps and node['state'] == 'deploying':
            steps.pop(0)()
    fake.on_poll = on_poll


def test_deploy_and_follow_to_deployed_with_progress(fake, run):
    agent(fake, 'r3-n01', [lambda: None,
                           lambda: fake.report('r3-n01', 'writing image', 100 * 2 ** 20),
                           lambda: fake.report('r3-n01', 'writing image', 500 * 2 ** 20),
                           lambda: fake.finish('r3-n01')])
    res = run(dict(owner='ci', allocation='builder1', image='debian-12', ssh_keys=[KEY],
                   user_data={'packages': ['curl']}, wait_interval=1), diff=True)
    assert not res.get('failed'), res
    assert res['changed'] and res['node']['state'] == 'deployed' and res['node']['ip_address'] == '10.0.3.31'
    assert res['node']['ssh_host_keys']['ed25519'].startswith('ssh-ed25519 ')
    body = [b for m, p, q, b in fake.requests if p.endswith('/deploy')][0]
    assert body['image'] == 'debian-12' and body['ssh_keys'] == [KEY]
    assert body['user_data'].startswith('#cloud-config\n')
    assert json.loads(body['user_data'].split('\n', 1)[1]) == {'packages': ['curl']}
    kinds = [e['kind'] for e in res['events']]
    assert 'registered' not in kinds                   # only events since this deploy started
    assert kinds.count('progress') == 2 and kinds[-1] == 'transition'
    assert res['progress'] == {'message': 'writing image', 'bytes_written': 500 * 2 ** 20}
    assert res['diff'] == {'before': {'name': 'r3-n01', 'state': 'allocated', 'image': None},
                           'after': {'name': 'r3-n01', 'state': 'deployed', 'image': 'debian-12'}}
    # second run: deployed with this image, nothing sent
    writes = len(fake.writes())
    again = run(dict(owner='ci', allocation='builder1', image='debian-12'))
    assert not again['changed'] and len(fake.writes()) == writes


def test_start_without_waiting_then_follow(fake, run):
    res = run(dict(node='r3-n01', owner='ci', image='debian-12', wait=False))
    assert res['changed'] and res['node']['state'] == 'deploying' and 'events' not in res
    agent(fake, 'r3-n01', [lambda: fake.report('r3-n01', 'writing image', 42), lambda: fake.finish('r3-n01')])
    follow = run(dict(node='r3-n01', image='debian-12', wait_interval=1))
    assert not follow['changed'] and follow['node']['state'] == 'deployed'
    assert len(fake.paths('POST')) == 1               # a running deploy is followed, not started again
    assert [e['message'] for e in follow['events'] if e['kind'] == 'progress'] == ['writing image']


def test_the_wait_is_bounded_and_says_where_it_stood(fake, run):
    agent(fake, 'r3-n01', [lambda: fake.report('r3-n01', 'writing image', 1234)] + [lambda: None] * 1000)
    res = run(dict(node='r3-n01', image='debian-12', wait_timeout=60, wait_interval=2))
    assert res['failed'] and res['error_kind'] == 'timeout' and res['changed']
    assert res['msg'].startswith('the deploy of image debian-12 to node r3-n01 did not finish within 60 s; '
                                 'node r3-n01 is deploying; last report: writing image (1234 bytes written)')
    assert res['node']['state'] == 'deploying' and res['progress']['bytes_written'] == 1234
    assert sum(fake.clock.sleeps) == pytest.approx(60)


def test_timeout_before_the_node_ever_booted_says_so(fake, run):
    res = run(dict(node='r3-n01', image='debian-12', wait_timeout=10))
    assert res['failed'] and 'the deploy agent has not reported yet (did the node PXE boot?)' in res['msg']


def test_a_failed_deploy_fails_with_the_last_error_and_events(fake, run):
    agent(fake, 'r3-n01', [lambda: fake.report('r3-n01', 'writing image', 10),
                           lambda: fake.finish('r3-n01', ok=False, message='sha256 mismatch: got 00ff')])
    res = run(dict(node='r3-n01', image='debian-12', wait_interval=1))
    assert res['failed'] and res['error_kind'] == 'failed' and res['changed']
    assert res['msg'].startswith('deploying image debian-12 to node r3-n01 failed: sha256 mismatch: got 00ff; '
                                 'last events: ')
    assert res['node']['state'] == 'deploy_failed'
    assert any(e['kind'] == 'progress' for e in res['events'])


def test_deploy_failed_is_retried_or_refused(fake, run):
    fake.node('r3-n01').update(state='deploy_failed', last_error='sha256 mismatch', image='debian-12')
    refused = run(dict(node='r3-n01', image='debian-12', retry_failed=False))
    assert refused['failed'] and refused['msg'].startswith('the last deploy of node r3-n01 failed: sha256 mismatch')
    assert fake.writes() == []
    res = run(dict(node='r3-n01', image='debian-12', wait=False))
    assert res['changed'] and res['node']['state'] == 'deploying'


def test_check_mode_starts_nothing(fake, run):
    res = run(dict(node='r3-n01', image='debian-12'), check=True, diff=True)
    assert res['changed'] and res['node']['state'] == 'deploying'
    assert res['diff']['after'] == {'name': 'r3-n01', 'state': 'deploying', 'image': 'debian-12'}
    assert fake.writes() == [] and fake.node('r3-n01')['state'] == 'allocated'


def test_check_mode_refuses_a_node_that_is_not_allocated(fake, run):
    fake.add_node('r3-n02', state='ready')
    res = run(dict(node='r3-n02', image='debian-12'), check=True)
    assert res['failed'] and res['error_kind'] == 'illegal_transition'
    assert 'node r3-n02 is ready; only an allocated node' in res['msg']


def test_a_ready_node_is_refused_by_the_registry(fake, run):
    fake.add_node('r3-n02', state='ready')
    res = run(dict(node='r3-n02', image='debian-12'))
    assert res['failed'] and res['error_kind'] == 'illegal_transition' and res['status'] == 409
    assert 'deploying image debian-12 to node' in res['msg'] and 'is ready; cannot deploy it' in res['msg']


def test_another_image_on_a_deployed_node_is_refused(fake, run):
    fake.node('r3-n01').update(state='deployed', image='debian-11')
    res = run(dict(node='r3-n01', image='debian-12'))
    assert res['failed'] and 'node r3-n01 is deployed with image debian-11, not debian-12' in res['msg']
    assert 'release it' in res['msg']


def test_someone_elses_node_is_refused(fake, run):
    res = run(dict(node='r3-n01', owner='alice', image='debian-12'))
    assert res['failed'] and res['msg'].startswith('node r3-n01 is held by ci, not by alice')
    assert fake.writes() == []


def test_unknown_allocation(fake, run):
    res = run(dict(owner='ci', allocation='nope', image='debian-12'))
    assert res['failed'] and res['error_kind'] == 'not_found'
    assert res['msg'].startswith('owner ci holds no node as nope')


def test_unknown_image_is_the_services_clear_error(fake, run):
    res = run(dict(node='r3-n01', image='debian-99'))
    assert res['failed'] and 'image debian-99 is not in the catalog' in res['msg']


def test_allocation_needs_owner(fake, run):
    res = run(dict(allocation='builder1', image='debian-12'))
    assert res['failed'] and 'owner' in res['msg']


def test_user_data_string_is_sent_as_is(fake, run):
    run(dict(node='r3-n01', image='debian-12', user_data='#cloud-config\nruncmd: [true]\n', wait=False))
    body = [b for m, p, q, b in fake.requests if p.endswith('/deploy')][0]
    assert body['user_data'] == '#cloud-config\nruncmd: [true]\n'


def test_other_keys_or_user_data_for_a_deployed_node_are_named_in_a_warning(fake, run):
    args = dict(node='r3-n01', image='debian-12', ssh_keys=[KEY], user_data='#cloud-config\nruncmd: [true]\n',
                wait=False)
    run(args)
    fake.node('r3-n01')['state'] = 'deployed'
    same = run(args)
    assert not same['changed'] and same['warnings'] == []
    for changed, named in ((dict(ssh_keys=[KEY + '2']), 'ssh_keys'), (dict(user_data={'runcmd': ['false']}), 'user_data'),
                           (dict(hostname='other'), 'hostname')):
        res = run(dict(args, **changed))
        assert not res['changed'] and not res.get('failed'), res
        assert len(res['warnings']) == 1 and ('other %s than' % named) in res['warnings'][0], res['warnings']
        assert 'r3-n01' in res['warnings'][0] and 'release the node' in res['warnings'][0]
    assert [m for m, p in fake.writes()] == ['POST']   # the one deploy; nothing was redeployed
