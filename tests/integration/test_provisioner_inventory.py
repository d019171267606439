# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ingot.metal.provisioner inventory plugin through ansible-inventory and ansible-playbook, against the
real service under uvicorn: the registered nodes in the graph, grouped by state and pool, host variables,
constructed groups, the cache, and registry values that are never templated."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from ingot_lab.runner import ansible_env, run_playbook, unwrap_unsafe as unwrap
from provisioner_service import Agent, Service

BIN = os.path.dirname(sys.executable)
SHA = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'
EVIL = "{{ lookup('pipe', 'id') }}"


def populate(service):
    for i in range(1, 4):
        service.register('inv-%02d' % i, '02:00:0a:fb:05:%02x' % i, pool='rack3', tags=['ssd'] if i == 1 else [],
                         bmc={'address': '127.0.0.1', 'port': 6400 + i, 'protocol': 'ipmi'},
                         facts={'cpus': 4 * i, 'memory_mib': 8192 * i, 'disk_gib': 100})
    service.register('inv-web', '02:00:0a:fb:05:10', pool='rack4',
                     bmc={'address': '127.0.0.1', 'port': 6410, 'protocol': 'ipmi'}, facts={'cpus': 16})
    service.register('inv-evil', '02:00:0a:fb:05:11', pool='rack4', facts={'note': EVIL, 'cpus': 1})
    service.api('PATCH', '/api/v1/nodes/inv-evil', {'maintenance': True, 'maintenance_reason': EVIL}, expect=200)
    service.api('POST', '/api/v1/images', {'name': 'debian-12', 'url': 'd.tar.gz', 'sha256': SHA, 'format': 'tar.gz',
                                           'size': 1024}, expect=201)
    service.api('POST', '/api/v1/allocations', {'owner': 'ci', 'name': 'web1', 'pool': 'rack4', 'min_cpus': 8},
                expect=201)
    service.api('POST', '/api/v1/nodes/inv-web/deploy', {'image': 'debian-12', 'ssh_keys': []}, expect=200)
    Agent(service, '02:00:0a:fb:05:10').deploy(ip_address='10.0.4.31', steps=1, step_seconds=0)
    service.api('PATCH', '/api/v1/nodes/inv-web', {'docker_url': 'tcp://10.0.4.31:2376'}, expect=200)
    service.api('POST', '/api/v1/allocations', {'owner': 'ci', 'name': 'builder1', 'pool': 'rack3', 'min_cpus': 12},
                expect=201)


@pytest.fixture(scope='module')
def service(tmp_path_factory):
    with Service(str(tmp_path_factory.mktemp('provisioner'))) as svc:
        populate(svc)
        yield svc


def source(tmp_path, service, name='lab.ingot.yml', **extra):
    path = tmp_path / name
    config = {'plugin': 'ingot.metal.provisioner', 'provisioner_url': service.url}
    config.update(extra)
    path.write_text(yaml.safe_dump(config))
    return str(path)


def inventory(service, path, *args, env=None):
    full_env = dict(os.environ, **ansible_env({'INGOT_PROVISIONER_TOKEN': service.token}))
    full_env.update(env or {})
    proc = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', path] + list(args), env=full_env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert 'Unable to parse' not in proc.stderr and 'Failed to parse' not in proc.stderr, proc.stderr
    return proc.stdout


def listing(service, path):
    raw = json.loads(inventory(service, path, '--list'))
    return raw, unwrap(raw)


def test_graph_shows_the_registered_nodes_by_state_and_pool(service, tmp_path):
    graph = inventory(service, source(tmp_path, service), '--graph')
    lines = [line.strip() for line in graph.splitlines()]

    def group(name):
        start = lines.index('|--@%s:' % name)
        out = []
        for line in lines[start + 1:]:
            if not line.startswith('|  |--'):
                break
            out.append(line[len('|  |--'):])
        return sorted(out)

    assert group('state_ready') == ['inv-01', 'inv-02', 'inv-evil']
    assert group('state_allocated') == ['builder1']
    assert group('state_deployed') == ['web1']
    assert group('pool_rack3') == ['builder1', 'inv-01', 'inv-02']
    assert group('pool_rack4') == ['inv-evil', 'web1']
    assert group('maintenance') == ['inv-evil']


def test_hostvars_and_constructed_groups(service, tmp_path):
    path = source(tmp_path, service, compose={'docker_host': "ingot_docker_url | default('none')"},
                  keyed_groups=[{'key': 'ingot_tags', 'prefix': 'tag'}],
                  groups={'big': 'ingot_facts.cpus >= 12'}, strict=True)
    raw, data = listing(service, path)
    hv = data['_meta']['hostvars']
    web = hv['web1']
    assert web['ansible_host'] == '10.0.4.31' and web['ingot_state'] == 'deployed'
    assert (web['bmc_host'], web['bmc_port'], web['bmc_protocol']) == ('127.0.0.1', 6410, 'ipmi')
    assert web['ingot_node'] == 'inv-web' and web['ingot_owner'] == 'ci' and web['ingot_image'] == 'debian-12'
    assert web['ingot_ssh_host_keys']['ed25519'].startswith('ssh-ed25519 ')
    assert web['ingot_docker_url'] == web['docker_host'] == 'tcp://10.0.4.31:2376'
    assert 'ansible_host' not in hv['builder1'] and hv['builder1']['ingot_node'] == 'inv-03'
    assert hv['inv-01']['ingot_macs'] == ['02:00:0a:fb:05:01']
    assert data['tag_ssd']['hosts'] == ['inv-01']
    assert sorted(data['big']['hosts']) == ['builder1', 'web1']
    assert hv['inv-01']['docker_host'] == 'none'
    assert not any('password' in key for host in hv.values() for key in host)


def test_filters(service, tmp_path):
    data = listing(service, source(tmp_path, service, states=['deployed', 'allocated'], include_maintenance=False))[1]
    assert sorted(data['_meta']['hostvars']) == ['builder1', 'web1']
    data = listing(service, source(tmp_path, service, pools=['rack4'], name='r4.provisioner.yml'))[1]
    assert sorted(data['_meta']['hostvars']) == ['inv-evil', 'web1']


def test_registry_values_are_never_templated(service, tmp_path):
    path = source(tmp_path, service)
    raw, data = listing(service, path)
    evil = raw['_meta']['hostvars']['inv-evil']
    # ansible-core 2.19+ shows what is not trusted as a template; older versions print plain strings
    wrapped = isinstance(evil['ingot_state'], dict)
    if wrapped:
        assert evil['ingot_maintenance_reason'] == {'__ansible_unsafe': EVIL}
        assert evil['ingot_facts']['note'] == {'__ansible_unsafe': EVIL}
        assert all(isinstance(v, dict) for k, v in raw['_meta']['hostvars']['web1'].items()
                   if k in ('ansible_host', 'bmc_host', 'ingot_docker_url', 'ingot_node'))
    assert data['_meta']['hostvars']['inv-evil']['ingot_maintenance_reason'] == EVIL
    assert data['_meta']['hostvars']['inv-evil']['ingot_facts']['note'] == EVIL
    play = [{'hosts': 'inv-evil', 'gather_facts': False, 'connection': 'local', 'tasks': [
        {'name': 'show', 'ansible.builtin.debug': {'msg': '{{ ingot_facts.note }} | {{ ingot_maintenance_reason }}'}},
        {'name': 'var', 'ansible.builtin.debug': {'var': 'ingot_maintenance_reason'}},
    ]}]
    result = run_playbook(play, path, envvars={'INGOT_PROVISIONER_TOKEN': service.token})
    assert result.rc == 0, result.stdout[-3000:]
    assert result.one('show').result['msg'] == '%s | %s' % (EVIL, EVIL)
    assert result.one('var').result['ingot_maintenance_reason'] == EVIL
    assert 'uid=' not in result.stdout


def test_an_error_answer_ends_the_run_instead_of_an_empty_rack(service, tmp_path):
    path = source(tmp_path, service, provisioner_retries=0)
    env = dict(os.environ, **ansible_env({'INGOT_PROVISIONER_TOKEN': 'a-wrong-token-0123456789'}))
    for args in (['--list'], ['--graph']):
        proc = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', path] + args, env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 1, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
        assert 'ingot.metal.provisioner inventory: ' in proc.stderr and '401' in proc.stderr, proc.stderr[-3000:]
        assert 'a-wrong-token' not in proc.stderr + proc.stdout and not proc.stdout.strip()


def test_cached_inventory_is_served_without_the_service(tmp_path):
    with Service(str(tmp_path / 'svc')) as svc:
        svc.register('cached-01', '02:00:0a:fb:06:01', pool='rack5')
        path = source(tmp_path, svc, cache=True, cache_plugin='ansible.builtin.jsonfile',
                      cache_connection=str(tmp_path / 'cache'), cache_timeout=600)
        live = listing(svc, path)[0]
    # the service is gone: the cache answers, with the same (unsafe) values
    cached = listing(svc, path)[0]
    assert cached == live and cached['pool_rack5']['hosts'] == ['cached-01']
    # --flush-cache asks the service again, which is gone: a clear error
    full_env = dict(os.environ, **ansible_env({'INGOT_PROVISIONER_TOKEN': svc.token}))
    proc = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', path, '--list', '--flush-cache'],
                          env=full_env, capture_output=True, text=True, timeout=300, check=False)
    assert 'refused the connection while listing nodes' in proc.stderr


def test_live_power_from_the_lab_bmcs(tmp_path):
    """bmc_power: the power state read over real IPMI from the lab's virtual BMCs, concurrently, best effort."""
    from ingot_lab.testing import free_udp_ports, start_lab

    password = 'lab-Pw-7731'
    with start_lab(tmp_path / 'lab', n=3, password=password) as lab, Service(str(tmp_path / 'svc')) as svc:
        for i, bmc in enumerate(lab.bmcs):
            svc.register('pw-%02d' % i, '02:00:0a:fb:07:%02x' % i, pool='power',
                         bmc={'address': bmc.host, 'port': bmc.port, 'protocol': 'ipmi'})
        dead_port = free_udp_ports(1)
        svc.register('pw-dead', '02:00:0a:fb:07:99', pool='power',
                     bmc={'address': '127.0.0.1', 'port': dead_port, 'protocol': 'ipmi'})
        lab.bmcs[1].ipmitool('power', 'on', check=True)
        path = source(tmp_path, svc, bmc_power=True, bmc_user='admin', bmc_timeout=3)
        full_env = dict(os.environ, **ansible_env({'INGOT_PROVISIONER_TOKEN': svc.token,
                                                   'INGOT_BMC_PASSWORD': password}))
        proc = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', path, '--list'], env=full_env,
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        data = unwrap(json.loads(proc.stdout))
        hv = data['_meta']['hostvars']
        assert [hv['pw-%02d' % i]['ingot_power'] for i in range(3)] == ['off', 'on', 'off']
        assert hv['pw-dead']['ingot_power'] is None
        assert data['power_on']['hosts'] == ['pw-01']
        assert sorted(data['power_off']['hosts']) == ['pw-00', 'pw-02']
        assert '1 of 4 BMCs did not give their power state' in proc.stderr
        assert password not in proc.stderr and password not in proc.stdout
