# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The provisioner modules in real playbooks (ansible-runner) against the real service under uvicorn.

Each test checks what the modules said and the registry's real state, and runs again to see no change.
Deploys and wipes are driven from the node side by :class:`Agent` over the real protocol (iPXE script
with its one-time token, manifest, reports).
"""

import threading

import pytest

from ingot_lab.runner import run_playbook
from provisioner_service import Agent, Service

LOCAL = {'all': {'hosts': {'localhost': {'ansible_connection': 'local'}}}}
SHA = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'
KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJw8vJmKq2mK1Wq3n9s0x6u0mP5o2f0aWc4bq2d7kqj3 ci@controller'


@pytest.fixture(scope='module')
def service(tmp_path_factory):
    with Service(str(tmp_path_factory.mktemp('provisioner')), deploy_timeout=8) as svc:
        yield svc


def play(*tasks):
    return [{'name': 'provisioner', 'hosts': 'localhost', 'gather_facts': False, 'tasks': list(tasks)}]


def run(service, *tasks, **kwargs):
    result = run_playbook(play(*tasks), LOCAL, envvars=service.env(), **kwargs)
    return result


def ok(result):
    assert result.rc == 0, result.stdout[-4000:]
    return result


def failed_task(result, name):
    res = result.one(name)
    assert res.status == 'failed', (res.status, res.result)
    return res.result


def in_background(fn, *args, **kwargs):
    box = {}

    def target():
        try:
            box['result'] = fn(*args, **kwargs)
        except BaseException as e:  # reported by join()
            box['error'] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()

    def join(timeout=60):
        t.join(timeout)
        assert not t.is_alive(), 'the agent did not finish'
        if 'error' in box:
            raise box['error']
        return box.get('result')
    return join


NODES = [
    {'name': 'reg-01', 'macs': ['02:00:0a:fb:01:01'], 'bmc': {'address': '127.0.0.1', 'port': 6301},
     'pool': 'rack3', 'tags': ['ssd'], 'facts': {'cpus': 8, 'memory_mib': 16384, 'disk_gib': 100}},
    {'name': 'reg-02', 'macs': ['02:00:0A:FB:01:02'], 'bmc': {'address': '127.0.0.1', 'port': 6302},
     'pool': 'rack3', 'tags': [], 'facts': {'cpus': 4, 'memory_mib': 8192, 'disk_gib': 100}},
]


def register_task(nodes, **extra):
    return {'name': 'register', 'ingot.metal.node': dict({
        'name': '{{ item.name }}', 'macs': '{{ item.macs }}', 'bmc': '{{ item.bmc }}', 'pool': '{{ item.pool }}',
        'tags': '{{ item.tags }}', 'facts': '{{ item.facts }}'}, **extra), 'loop': nodes}


def test_register_update_and_remove_nodes(service):
    first = ok(run(service, register_task(NODES)))
    assert first.one('register').status == 'changed'
    rec = service.node('reg-02')
    assert rec['state'] == 'ready' and rec['macs'] == ['02:00:0a:fb:01:02'] and rec['pool'] == 'rack3'
    assert rec['bmc']['port'] == 6302 and rec['facts']['cpus'] == 4
    again = ok(run(service, register_task(NODES)))
    assert again.one('register').status == 'ok' and again.count('changed') == 0

    moved = [dict(n, pool='rack4') for n in NODES]
    checked = ok(run(service, register_task(moved), check=True, diff=True))
    assert checked.one('register').status == 'changed'
    assert service.node('reg-01')['pool'] == 'rack3'            # check mode changed nothing
    items = checked.one('register').result['results']
    assert items[0]['diff'] == {'before': {'name': 'reg-01', 'pool': 'rack3'},
                                'after': {'name': 'reg-01', 'pool': 'rack4'}}

    maint = {'name': 'maintenance', 'ingot.metal.node': {'name': 'reg-01', 'maintenance': True,
                                                         'maintenance_reason': 'DIMM errors'}}
    r = ok(run(service, maint))
    assert r.one('maintenance').status == 'changed'
    assert service.node('reg-01')['maintenance'] is True
    assert ok(run(service, maint)).count('changed') == 0

    info = ok(run(service, {'name': 'info', 'ingot.metal.node_info': {'pool': 'rack3', 'maintenance': True}}))
    assert [n['name'] for n in info.one('info').result['nodes']] == ['reg-01']

    gone = {'name': 'remove', 'ingot.metal.node': {'name': 'reg-02', 'state': 'absent'}}
    assert ok(run(service, gone)).one('remove').status == 'changed'
    assert service.node('reg-02') is None
    assert ok(run(service, gone)).count('changed') == 0


def test_discovered_node_is_enrolled(service):
    status, out = service.api('POST', '/discovery', {'macs': ['02:00:0a:fb:09:01'], 'facts': {'cpus': 2}})
    assert status == 201
    name = out['name']
    enroll = {'name': 'enroll', 'ingot.metal.node': {'name': name, 'pool': 'rack9', 'tags': ['new']}}
    assert ok(run(service, enroll)).one('enroll').status == 'changed'
    rec = service.node(name)
    assert rec['state'] == 'ready' and rec['pool'] == 'rack9' and rec['tags'] == ['new']
    assert ok(run(service, enroll)).count('changed') == 0


def test_allocate_with_constraints_no_node_available_and_release(service):
    service.register('alloc-small', '02:00:0a:fb:02:01', pool='alloc', facts={'cpus': 4, 'memory_mib': 8192})
    service.register('alloc-big', '02:00:0a:fb:02:02', pool='alloc', tags=['ssd'],
                     facts={'cpus': 16, 'memory_mib': 65536})
    allocate = {'name': 'allocate', 'ingot.metal.allocation': {
        'owner': 'ci', 'name': 'builder1', 'pool': 'alloc', 'tags': ['ssd'], 'min_cpus': 8}, 'register': 'got'}
    r = ok(run(service, allocate))
    assert r.one('allocate').status == 'changed' and r.one('allocate').result['node']['name'] == 'alloc-big'
    rec = service.node('alloc-big')
    assert (rec['state'], rec['owner'], rec['allocation_name']) == ('allocated', 'ci', 'builder1')
    assert ok(run(service, allocate)).count('changed') == 0

    none_left = {'name': 'too big', 'ingot.metal.allocation': {'owner': 'ci', 'name': 'builder2', 'pool': 'alloc',
                                                               'min_cpus': 64}, 'ignore_errors': True}
    r = run(service, none_left)
    res = failed_task(r, 'too big')
    assert res['error_kind'] == 'no_node_available'
    assert "allocating a node as 'builder2' for owner 'ci' with pool=alloc, min_cpus=64" in res['msg']
    assert 'no ready node outside maintenance matches' in res['msg']
    assert service.node('alloc-small')['state'] == 'ready'

    release = {'name': 'release', 'ingot.metal.allocation': {'owner': 'ci', 'name': 'builder1', 'state': 'released',
                                                             'wait': True}}
    r = ok(run(service, release))
    assert r.one('release').status == 'changed' and r.one('release').result['node']['state'] == 'ready'
    rec = service.node('alloc-big')
    assert rec['state'] == 'ready' and rec['owner'] is None
    assert ok(run(service, release)).count('changed') == 0


def test_image_catalog(service):
    image = {'name': 'image', 'ingot.metal.image': {'name': 'debian-12', 'url': 'debian-12.tar.gz', 'sha256': SHA,
                                                    'format': 'tar.gz', 'size': 3145728}}
    assert ok(run(service, image)).one('image').status == 'changed'
    assert service.api('GET', '/api/v1/images/debian-12')[1]['sha256'] == SHA
    assert ok(run(service, image)).count('changed') == 0
    changed = dict(image, **{'ingot.metal.image': dict(image['ingot.metal.image'], sha256='b' * 64)})
    r = ok(run(service, changed, diff=True))
    assert r.one('image').result['replaced'] and service.api('GET', '/api/v1/images/debian-12')[1]['sha256'] == 'b' * 64
    info = ok(run(service, {'name': 'info', 'ingot.metal.image_info': {}}))
    assert 'debian-12' in [i['name'] for i in info.one('info').result['images']]
    gone = {'name': 'gone', 'ingot.metal.image': {'name': 'debian-12', 'state': 'absent'}}
    assert ok(run(service, gone)).one('gone').status == 'changed'
    assert service.api('GET', '/api/v1/images/debian-12')[0] == 404
    assert ok(run(service, gone)).count('changed') == 0


def _deploy_setup(service, node, mac, owner, alloc):
    service.register(node, mac, pool='deploy-%s' % node)
    service.api('POST', '/api/v1/images', {'name': 'img-%s' % node, 'url': 'img.tar.gz', 'sha256': SHA,
                                           'format': 'tar.gz', 'size': 3145728}, expect=201)
    ok(run(service, {'name': 'allocate', 'ingot.metal.allocation': {'owner': owner, 'name': alloc,
                                                                    'pool': 'deploy-%s' % node}}))
    return 'img-%s' % node


def test_deploy_and_follow_it_then_release_with_wipe(service):
    image = _deploy_setup(service, 'dep-01', '02:00:0a:fb:03:01', 'ci', 'web1')
    agent = Agent(service, '02:00:0a:fb:03:01')
    done = in_background(agent.deploy, ip_address='10.0.3.31')
    deploy = {'name': 'deploy', 'ingot.metal.deployment': {
        'owner': 'ci', 'allocation': 'web1', 'image': image, 'ssh_keys': [KEY],
        'user_data': {'packages': ['curl']}, 'wait_timeout': 60, 'wait_interval': 0.5}}
    r = ok(run(service, deploy, diff=True))
    done()
    res = r.one('deploy')
    assert res.status == 'changed'
    node = res.result['node']
    assert node['state'] == 'deployed' and node['ip_address'] == '10.0.3.31'
    assert node['ssh_host_keys']['ed25519'].startswith('ssh-ed25519 ')
    kinds = [e['kind'] for e in res.result['events']]
    assert kinds.count('agent_progress') == 3 and 'agent_report' in kinds
    assert res.result['progress']['bytes_written'] == 3145728
    assert res.result['diff']['after'] == {'name': 'dep-01', 'state': 'deployed', 'image': image}
    # The seed the agent got carries the keys and the user-data
    assert KEY in agent.manifest['seed']['user-data'] and 'curl' in agent.manifest['seed']['user-data']
    assert ok(run(service, deploy)).count('changed') == 0
    # other keys and user-data for the deployed node: no change, and a warning naming both options
    other = {'name': 'deploy', 'ingot.metal.deployment': dict(
        deploy['ingot.metal.deployment'], ssh_keys=[KEY + 'x'], user_data={'packages': ['git']})}
    res = ok(run(service, other)).one('deploy')
    assert res.status == 'ok', res.result
    warning = ' '.join(res.result.get('warnings') or [])
    assert 'ssh_keys, user_data' in warning and 'NOT applied' in warning and 'dep-01' in warning, res.result

    info = ok(run(service, {'name': 'info', 'ingot.metal.node_info': {'owner': 'ci', 'allocation_name': 'web1'}}))
    assert info.one('info').result['nodes'][0]['state'] == 'deployed'

    wiped = in_background(Agent(service, '02:00:0a:fb:03:01').wipe)
    release = {'name': 'release', 'ingot.metal.allocation': {'owner': 'ci', 'name': 'web1', 'state': 'released',
                                                             'wait': True, 'wait_timeout': 60, 'wait_interval': 0.5}}
    r = ok(run(service, release))
    wiped()
    assert r.one('release').status == 'changed' and r.one('release').result['node']['state'] == 'ready'
    rec = service.node('dep-01')
    assert rec['state'] == 'ready' and rec['owner'] is None and rec['ip_address'] is None
    assert ok(run(service, release)).count('changed') == 0


def test_deploy_wait_is_bounded_and_a_service_timeout_is_a_clear_failure(service):
    image = _deploy_setup(service, 'dep-02', '02:00:0a:fb:03:02', 'ci', 'web2')
    short = {'name': 'short wait', 'ingot.metal.deployment': {
        'node': 'dep-02', 'owner': 'ci', 'image': image, 'wait_timeout': 2, 'wait_interval': 0.5},
        'ignore_errors': True}
    r = run(service, short)
    res = failed_task(r, 'short wait')
    assert res['error_kind'] == 'timeout' and res['changed']
    assert res['msg'].startswith('the deploy of image %s to node dep-02 did not finish within 2 s; node dep-02 is '
                                 'deploying; the deploy agent has not reported yet (did the node PXE boot?)' % image)
    assert service.node('dep-02')['state'] == 'deploying'

    # Nobody boots: the service's deploy_timeout (8 s) ends the deploy; following it fails with its reason.
    follow = {'name': 'follow', 'ingot.metal.deployment': {
        'node': 'dep-02', 'image': image, 'wait_timeout': 60, 'wait_interval': 0.5}, 'ignore_errors': True}
    r = run(service, follow)
    res = failed_task(r, 'follow')
    assert not res['changed'] and res['error_kind'] == 'failed'
    assert res['msg'].startswith('deploying image %s to node dep-02 failed: deploy timed out' % image)
    assert service.node('dep-02')['state'] == 'deploy_failed'

    # A failed deploy is deployed again; this time the agent reports a failure of its own.
    agent = Agent(service, '02:00:0a:fb:03:02')
    done = in_background(agent.deploy, fail='sha256 mismatch: got 00ff')
    r = run(service, dict(follow, name='retry'))
    done()
    res = failed_task(r, 'retry')
    assert res['changed'] and 'sha256 mismatch: got 00ff' in res['msg']
    assert any(e['kind'] == 'agent_progress' for e in res['events'])
    # retry_failed=false refuses instead
    refuse = {'name': 'refuse', 'ingot.metal.deployment': {'node': 'dep-02', 'image': image, 'retry_failed': False},
              'ignore_errors': True}
    res = failed_task(run(service, refuse), 'refuse')
    assert res['msg'].startswith('the last deploy of node dep-02 failed: deploy failed: sha256 mismatch')


def test_illegal_transitions_are_refused_with_the_registrys_words(service):
    service.register('ill-01', '02:00:0a:fb:04:01', pool='ill')
    service.api('POST', '/api/v1/images', {'name': 'img-ill', 'url': 'x.tar.gz', 'sha256': SHA, 'format': 'tar.gz'},
                expect=201)
    deploy = {'name': 'deploy', 'ingot.metal.deployment': {'node': 'ill-01', 'image': 'img-ill'},
              'ignore_errors': True}
    res = failed_task(run(service, deploy), 'deploy')
    assert res['error_kind'] == 'illegal_transition' and res['status'] == 409
    assert 'deploying image img-ill to node ill-01' in res['msg'] and 'ill-01' in res['msg'].split(':', 1)[1]
    checked = failed_task(run(service, deploy, check=True), 'deploy')
    assert checked['msg'].startswith('node ill-01 is ready; only an allocated node')


def test_wrong_token_and_unreachable_service(service):
    task = {'name': 'info', 'ingot.metal.node_info': {'provisioner_token': 'not-the-admin-token'},
            'ignore_errors': True}
    res = failed_task(run(service, task), 'info')
    assert res['error_kind'] == 'auth' and 'not-the-admin-token' not in str(res)
    task = {'name': 'down', 'ingot.metal.node_info': {'provisioner_url': 'http://127.0.0.1:9',
                                                      'provisioner_retries': 1}, 'ignore_errors': True}
    res = failed_task(run(service, task), 'down')
    assert res['error_kind'] == 'unreachable'
    assert res['msg'].startswith('the provisioner at http://127.0.0.1:9 refused the connection while listing nodes '
                                 '(after 2 attempts)')
