# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The BMC modules in real playbooks (ansible-runner) against the lab's virtual BMCs (real IPMI 2.0).

Every test asserts the machine's real state - the virtual machine's state file, or ipmitool's answer -
not only what the module reported.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from ingot_lab.runner import REPO, run_playbook
from ingot_lab.testing import free_udp_ports, start_lab

pytestmark = pytest.mark.timeout(600)

PASSWORD = 'Bmc-Secret-pw-4711'


@pytest.fixture(scope='module')
def vlab(tmp_path_factory):
    with start_lab(tmp_path_factory.mktemp('vlab'), n=46, password=PASSWORD, nics=2, soft_off_delay=1.0) as lab:
        lab.unused = [b.name for b in lab.bmcs]
        yield lab


@pytest.fixture
def take(vlab):
    """Hand out BMCs that no other test has touched."""
    taken = []

    def _take(count=1):
        names = [vlab.unused.pop(0) for dummy in range(count)]
        taken.extend(names)
        return names

    yield _take
    vlab.clear_faults(taken)


def inventory(vlab, names, **overrides):
    hosts = {}
    for name in names:
        b = vlab.bmc(name)
        hosts[name] = {'bmc_host': b.host, 'bmc_port': b.port, 'bmc_user': b.user, 'bmc_password': b.password}
        hosts[name].update(overrides.get(name, {}))
    return {'all': {'children': {'rack': {'hosts': hosts}}}}


def per_host(*tasks):
    return [{'hosts': 'rack', 'gather_facts': False,
             'tasks': [dict(t, delegate_to='localhost') for t in tasks]}]


def fleet(*tasks):
    return [{'hosts': 'localhost', 'gather_facts': False, 'tasks': list(tasks)}]


def power(vlab, name):
    return vlab.machine_state(name)['power']


def ipmitool_power(vlab, name):
    out = vlab.bmc(name).ipmitool('power', 'status', check=True).stdout
    return 'on' if 'is on' in out else 'off'


def test_power_on_per_host_is_real_and_idempotent(vlab, take):
    names = take(3)
    inv = inventory(vlab, names)
    task = {'name': 'on', 'ingot.metal.bmc_power': {'state': 'on'}}
    r = run_playbook(per_host(task), inv, diff=True)
    assert r.status == 'successful', r.stdout
    assert r.count('changed') == 3
    for name in names:
        assert power(vlab, name) == 'on'
        assert ipmitool_power(vlab, name) == 'on'
        res = r.one('on', name).result
        assert res['diff'] == {'before': {'power': 'off'}, 'after': {'power': 'on'}}
    again = run_playbook(per_host(task), inv)
    assert again.status == 'successful', again.stdout
    assert again.count('changed') == 0


def test_check_mode_predicts_and_changes_nothing(vlab, take):
    (name,) = take(1)
    inv = inventory(vlab, [name])
    r = run_playbook(per_host({'name': 'on', 'ingot.metal.bmc_power': {'state': 'on'}}), inv, check=True)
    assert r.status == 'successful', r.stdout
    assert r.one('on').status == 'changed'
    assert r.one('on').result['power'] == 'on'
    assert power(vlab, name) == 'off', 'check mode powered the machine on'
    boot = run_playbook(per_host({'name': 'boot', 'ingot.metal.bmc_boot': {'device': 'pxe'}}), inv, check=True)
    assert boot.one('boot').status == 'changed'
    assert vlab.machine_state(name)['boot']['device'] != 'pxe'


def test_graceful_off_waits_for_the_os(vlab, take):
    (name,) = take(1)
    inv = inventory(vlab, [name])
    assert run_playbook(per_host({'name': 'on', 'ingot.metal.bmc_power': {'state': 'on'}}), inv).status == 'successful'
    r = run_playbook(per_host({'name': 'off', 'ingot.metal.bmc_power': {'state': 'off', 'graceful_timeout': 30}}), inv)
    assert r.status == 'successful', r.stdout
    res = r.one('off').result
    assert res['forced'] is False
    assert res['actions'] == ['soft off (ACPI)']
    assert power(vlab, name) == 'off'


def test_graceful_off_forced_after_timeout_or_refused(vlab, take):
    a, b = take(2)
    inv = inventory(vlab, [a, b])
    assert run_playbook(per_host({'name': 'on', 'ingot.metal.bmc_power': {'state': 'on'}}), inv).status == 'successful'
    forced = run_playbook(per_host({'name': 'off', 'ingot.metal.bmc_power': {
        'state': 'off', 'graceful_timeout': 0}}), inv, limit=a)
    res = forced.one('off', a).result
    assert forced.status == 'successful', forced.stdout
    assert res['forced'] is True and res['actions'][-1] == 'hard off after graceful_timeout'
    assert power(vlab, a) == 'off'
    refused = run_playbook(per_host({'name': 'off', 'ingot.metal.bmc_power': {
        'state': 'off', 'graceful_timeout': 0, 'force_after_timeout': False}}), inv, limit=b)
    res = refused.one('off', b)
    assert res.status == 'failed'
    assert 'graceful_timeout' in res.result['msg'] and b in res.result['msg']


def test_restart_power_cycles(vlab, take):
    (name,) = take(1)
    inv = inventory(vlab, [name])
    task = {'name': 'restart', 'ingot.metal.bmc_power': {'state': 'restarted', 'method': 'hard'}}
    assert run_playbook(per_host(task), inv).status == 'successful'
    boots = vlab.machine_state(name)['boot_count']
    r = run_playbook(per_host(task), inv)
    assert r.status == 'successful', r.stdout
    assert r.one('restart').result['actions'] == ['power cycle']
    assert power(vlab, name) == 'on'
    assert vlab.machine_state(name)['boot_count'] == boots + 1


def test_boot_device_next_boot_and_persistent(vlab, take):
    (name,) = take(1)
    inv = inventory(vlab, [name])
    pxe = {'name': 'boot', 'ingot.metal.bmc_boot': {'device': 'pxe', 'uefi': True}}
    r = run_playbook(per_host(pxe), inv, diff=True)
    assert r.status == 'successful', r.stdout
    state = vlab.machine_state(name)['boot']
    assert (state['device'], state['persistent'], state['uefi']) == ('pxe', False, True)
    assert 'Force PXE' in vlab.bmc(name).ipmitool('chassis', 'bootparam', 'get', '5', check=True).stdout
    assert run_playbook(per_host(pxe), inv).count('changed') == 0
    # A next-boot-only override is consumed by the boot; asking again is a change again.
    run_playbook(per_host({'name': 'on', 'ingot.metal.bmc_power': {'state': 'on'}}), inv)
    assert vlab.machine_state(name)['boot']['device'] != 'pxe'
    disk = {'name': 'boot', 'ingot.metal.bmc_boot': {'device': 'disk', 'persistent': True, 'uefi': False}}
    assert run_playbook(per_host(disk), inv).one('boot').status == 'changed'
    run_playbook(per_host({'name': 'rs', 'ingot.metal.bmc_power': {'state': 'restarted', 'method': 'hard'}}), inv)
    state = vlab.machine_state(name)['boot']
    assert (state['device'], state['persistent'], state['uefi']) == ('disk', True, False)
    assert run_playbook(per_host(disk), inv).count('changed') == 0


def test_unknown_boot_device_is_refused_clearly(vlab, take):
    (name,) = take(1)
    r = run_playbook(per_host({'name': 'boot', 'ingot.metal.bmc_boot': {'device': 'floppy'}}), inventory(vlab, [name]))
    res = r.one('boot')
    assert res.status == 'failed'
    assert 'device' in res.result['msg'] and 'pxe' in res.result['msg']


def test_info_reads_the_machine(vlab, take):
    (name,) = take(1)
    r = run_playbook(per_host({'name': 'info', 'ingot.metal.bmc_info': {}}), inventory(vlab, [name]))
    assert r.status == 'successful', r.stdout
    info = r.one('info').result['bmc_info']
    config = vlab.config(name)
    assert info['macs'] == [m.lower() for m in config['machine']['macs']]
    assert info['guid'] == config['guid']
    assert info['power'] == power(vlab, name)
    assert info['fru']['serial'] and info['fru']['manufacturer']
    assert info['device']['firmware_version']
    assert any(s['name'] for s in info['sensors'])
    assert r.one('info').result['unsupported'] == []


def test_fleet_form_drives_a_group_in_one_task(vlab, take):
    names = take(4)
    inv = inventory(vlab, names)
    task = {'name': 'fleet', 'ingot.metal.bmc_power': {'state': 'on', 'bmcs': "{{ groups['rack'] }}"}}
    r = run_playbook(fleet(task), inv)
    assert r.status == 'successful', r.stdout
    res = r.one('fleet').result
    assert res['summary'] == {'total': 4, 'changed': 4, 'failed': 0}
    assert all(power(vlab, n) == 'on' for n in names)
    assert run_playbook(fleet(task), inv).count('changed') == 0


def test_fleet_in_several_processes_on_real_bmcs(vlab, take):
    """bmc_processes=3: the BMCs are shared by the task's process and two forked ones; every BMC is driven
    once, a failure in a child is reported as in one process, and the machines are really on."""
    names = take(6)
    wrong = names[4]
    inv = inventory(vlab, names, **{wrong: {'bmc_password': 'not-the-Password-9'}})
    task = {'name': 'fleet', 'ingot.metal.bmc_power': {
        'state': 'on', 'bmcs': "{{ groups['rack'] }}", 'bmc_processes': 3}}
    r = run_playbook(fleet(task), inv)
    res = r.one('fleet').result
    assert res['processes'] == 3, res
    assert res['failed_bmcs'] == [wrong] and res['bmcs'][wrong]['error_kind'] == 'auth', res['bmcs'][wrong]
    assert res['summary'] == {'total': 6, 'changed': 5, 'failed': 1}
    assert [power(vlab, n) for n in names] == ['on' if n != wrong else 'off' for n in names]
    assert [ipmitool_power(vlab, n) for n in names if n != wrong] == ['on'] * 5
    assert 'not-the-Password-9' not in r.stdout
    again = run_playbook(fleet(task), inv).one('fleet').result
    assert again['summary'] == {'total': 6, 'changed': 0, 'failed': 1}


def test_fleet_keeps_going_past_failures(vlab, take):
    names = take(3)
    port = free_udp_ports(1)
    inv = inventory(vlab, names, **{names[0]: {'bmc_password': 'not-the-password'},
                                    names[1]: {'bmc_port': port, 'bmc_timeout': 4}})
    start = time.monotonic()
    r = run_playbook(fleet({'name': 'fleet', 'ingot.metal.bmc_power': {
        'state': 'on', 'bmcs': "{{ groups['rack'] }}"}}), inv)
    assert time.monotonic() - start < 60
    res = r.one('fleet').result
    assert r.one('fleet').status == 'failed'
    assert res['failed_bmcs'] == sorted(names[:2])
    assert res['bmcs'][names[0]]['error_kind'] == 'auth', res['bmcs'][names[0]]
    assert res['bmcs'][names[1]]['error_kind'] in ('timeout', 'unreachable'), res['bmcs'][names[1]]
    assert res['bmcs'][names[2]]['power'] == 'on' and power(vlab, names[2]) == 'on'
    assert power(vlab, names[0]) == 'off', 'a refused login must leave the machine untouched'
    assert '2 of 3 BMCs failed' in res['msg']


def test_wrong_password_fails_fast_and_is_never_printed(vlab, take):
    (name,) = take(1)
    wrong = 'Wrong-Pw-Zq81x'
    inv = inventory(vlab, [name], **{name: {'bmc_password': wrong}})
    start = time.monotonic()
    r = run_playbook(per_host({'name': 'on', 'ingot.metal.bmc_power': {'state': 'on'}}), inv, verbosity=3)
    res = r.one('on')
    assert res.status == 'failed'
    assert res.result['error_kind'] == 'auth'
    assert name in res.result['msg'] and 'bmc_password' in res.result['msg']
    assert time.monotonic() - start < 30
    assert wrong not in r.stdout and PASSWORD not in r.stdout
    assert power(vlab, name) == 'off'


def test_unknown_user_is_refused(vlab, take):
    (name,) = take(1)
    inv = inventory(vlab, [name], **{name: {'bmc_user': 'nobody', 'bmc_timeout': 10}})
    r = run_playbook(per_host({'name': 'info', 'ingot.metal.bmc_info': {'gather': ['power']}}), inv)
    res = r.one('info')
    assert res.status == 'failed'
    assert res.result['error_kind'] in ('auth', 'timeout')
    assert name in res.result['msg']


def test_unreachable_port_fails_within_timeout(vlab):
    port = free_udp_ports(1)
    inv = {'all': {'children': {'rack': {'hosts': {'ghost': {
        'bmc_host': '127.0.0.1', 'bmc_port': port, 'bmc_user': 'admin', 'bmc_password': PASSWORD,
        'bmc_timeout': 5}}}}}}
    start = time.monotonic()
    r = run_playbook(per_host({'name': 'info', 'ingot.metal.bmc_info': {'gather': ['power']}}), inv)
    elapsed = time.monotonic() - start
    res = r.one('info')
    assert res.status == 'failed'
    assert res.result['error_kind'] in ('timeout', 'unreachable')
    assert 'ghost' in res.result['msg'] and str(port) in res.result['msg']
    assert elapsed < 5 + 15


def test_packet_loss_and_slow_answers_are_survived(vlab, take):
    names = take(2)
    vlab.set_fault(names[0], drop=0.2)
    vlab.set_fault(names[1], delay=0.3)
    inv = inventory(vlab, names)
    for dummy in range(3):
        r = run_playbook(fleet({'name': 'fleet', 'ingot.metal.bmc_power': {
            'state': 'on', 'bmcs': "{{ groups['rack'] }}", 'bmc_timeout': 40}}), inv)
        assert r.status == 'successful', r.stdout
    assert all(power(vlab, n) == 'on' for n in names)


def test_module_runs_standalone_and_masks_the_password(vlab, take, tmp_path):
    """The module itself (not the action plugin), as Ansible runs it on a target host."""
    (name,) = take(1)
    b = vlab.bmc(name)
    args = {'ANSIBLE_MODULE_ARGS': {'bmc_host': b.host, 'bmc_port': b.port, 'bmc_user': b.user,
                                    'bmc_password': b.password, 'state': 'on', '_ansible_diff': True}}
    path = tmp_path / 'args.json'
    path.write_text(json.dumps(args))
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, '.build'))
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'plugins', 'modules', 'bmc_power.py'), str(path)],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    out = json.loads(proc.stdout)
    assert out['changed'] is True and out['power'] == 'on', out
    assert b.password not in proc.stdout
    assert out['invocation']['module_args']['bmc_password'] == 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'
    assert power(vlab, name) == 'on'


def test_community_general_modules_work_unchanged(vlab, take):
    (name,) = take(1)
    b = vlab.bmc(name)
    creds = {'name': b.host, 'port': b.port, 'user': b.user, 'password': b.password}
    r = run_playbook(per_host(
        {'name': 'cg power', 'community.general.ipmi_power': dict(creds, state='on')},
        {'name': 'cg boot', 'community.general.ipmi_boot': dict(creds, bootdev='network', state='present')},
    ), inventory(vlab, [name]))
    assert r.status == 'successful', r.stdout
    assert power(vlab, name) == 'on'
    assert vlab.machine_state(name)['boot']['device'] == 'pxe'


def test_verb_playbooks(vlab, take, tmp_path):
    names = take(2)
    inv = inventory(vlab, names)
    for verb, expected in (('start', 'on'), ('restart', 'on'), ('stop', 'off'), ('start', 'on'), ('kill', 'off')):
        r = run_playbook(os.path.join(REPO, 'playbooks', verb + '.yml'), inv, extravars={'name': 'rack'})
        assert r.status == 'successful', (verb, r.stdout)
        assert all(power(vlab, n) == expected for n in names), verb
    r = run_playbook(os.path.join(REPO, 'playbooks', 'inspect.yml'), inv, extravars={'name': names[0]})
    assert r.status == 'successful', r.stdout
    assert names[0] in r.stdout
    r = run_playbook(os.path.join(REPO, 'playbooks', 'start.yml'), inv, extravars={'name': 'nothing-like-this'})
    assert r.status == 'failed'
    assert 'No host of the inventory matches name=nothing-like-this' in r.stdout


# ------------------------------------------- boot read-back, numbers, one session per BMC, graceful off, state=status (virtual BMC)
def _collection():
    """The collection's BMC layer, imported from this checkout (for the tests that drive it directly)."""
    from ansible_collections.ingot.metal.plugins.module_utils import bmc, bmc_actions
    return bmc, bmc_actions


def test_persistent_boot_not_kept_by_the_bmc_fails_clearly(vlab, take):
    """A BMC that keeps a persistent override for the next boot only is not a success."""
    (name,) = take(1)
    vlab.set_fault(name, next_boot_only=True)
    inv = inventory(vlab, [name])
    task = {'name': 'boot', 'ingot.metal.bmc_boot': {'device': 'pxe', 'persistent': True}}
    for dummy in range(2):                        # not "changed" run after run: a failure each time
        r = run_playbook(per_host(task), inv)
        res = r.one('boot')
        assert res.status == 'failed', r.stdout
        assert name in res.result['msg'] and 'kept it for the next boot only' in res.result['msg']
        assert 'persistent=false' in res.result['msg']
    state = vlab.machine_state(name)['boot']
    assert state['device'] == 'pxe' and state['persistent'] is False
    out = vlab.bmc(name).ipmitool('chassis', 'bootparam', 'get', '5', check=True).stdout
    assert 'Options apply to only next boot' in out
    # next boot only, as this BMC keeps it: a success, and idempotent
    once = {'name': 'boot', 'ingot.metal.bmc_boot': {'device': 'pxe', 'persistent': False}}
    assert run_playbook(per_host(once), inv).status == 'successful'


def test_power_state_status_only_reads_and_agrees_with_ipmitool(vlab, take):
    """State=status, per host and in the fleet form."""
    a, b = take(2)
    inv = inventory(vlab, [a, b])
    assert run_playbook(per_host({'name': 'on', 'ingot.metal.bmc_power': {'state': 'on'}}), inv,
                        limit=a).status == 'successful'
    r = run_playbook(per_host({'name': 'status', 'ingot.metal.bmc_power': {'state': 'status'}}), inv)
    assert r.status == 'successful', r.stdout
    assert r.count('changed') == 0
    for name in (a, b):
        assert r.one('status', name).result['power'] == ipmitool_power(vlab, name) == power(vlab, name)
    r = run_playbook(fleet({'name': 'status', 'ingot.metal.bmc_power': {'state': 'status', 'bmcs': [a, b]}}), inv)
    res = r.one('status').result
    assert res['changed'] is False
    assert {n: res['bmcs'][n]['power'] for n in (a, b)} == {a: 'on', b: 'off'}
    assert (power(vlab, a), power(vlab, b)) == ('on', 'off')


def test_bmc_timeout_zero_is_refused(vlab, take):
    """bmc_timeout=0 is refused before any BMC is contacted."""
    (name,) = take(1)
    r = run_playbook(per_host({'name': 'on', 'ingot.metal.bmc_power': {'state': 'on', 'bmc_timeout': 0}}),
                     inventory(vlab, [name]))
    res = r.one('on')
    assert res.status == 'failed' and 'bmc_timeout=0' in res.result['msg'] and name in res.result['msg']
    assert power(vlab, name) == 'off'


def test_one_bmc_under_two_names_gets_one_session_at_a_time(vlab, take):
    """By address and by name, one BMC with a single session slot: both entries succeed."""
    (name,) = take(1)
    b = vlab.bmc(name)
    vlab.set_fault(name, max_sessions=1)
    entries = [{'name': 'by-address', 'host': '127.0.0.1', 'port': b.port},
               {'name': 'by-name', 'host': 'localhost', 'port': b.port}]
    task = {'name': 'info', 'ingot.metal.bmc_info': {
        'gather': ['power', 'guid', 'device'], 'bmc_user': b.user, 'bmc_password': b.password, 'bmc_retries': 0,
        'bmcs': entries}}
    for dummy in range(3):
        r = run_playbook(fleet(task), {'all': {'hosts': {}}})
        assert r.status == 'successful', r.stdout
        res = r.one('info').result
        assert res['bmcs']['by-address']['bmc_info']['guid'] == res['bmcs']['by-name']['bmc_info']['guid']


def test_a_bmc_that_stops_answering_during_a_graceful_off_is_not_forced(vlab, take):
    """Losing the BMC while waiting for the OS is an error, never a reason to cut the power."""
    (name,) = take(1)
    bmc, bmc_actions = _collection()
    b = vlab.bmc(name)
    b.ipmitool('power', 'on', check=True)
    client = bmc.BmcClient(b.host, user=b.user, password=b.password, port=b.port, timeout=2.0, retries=1, name=name)
    sent = []
    orig = client.power

    def power_then_lose_the_bmc(action):
        sent.append(action)
        orig(action)
        if action == 'shutdown':
            vlab.set_fault(name, drop=1.0)
    client.power = power_then_lose_the_bmc
    params = dict(state='off', method='graceful', graceful_timeout=30, force_after_timeout=True, wait=True,
                  wait_timeout=30)
    try:
        with pytest.raises(bmc.BmcError) as e:
            bmc_actions.op_power(client, params, check_mode=False)
    finally:
        vlab.clear_faults(name)
        client.close()
    assert sent == ['shutdown']
    assert 'stopped answering while waiting for the graceful shutdown' in e.value.message
    assert 'not forced off' in e.value.message and name in e.value.message
    assert vlab.machine_state(name)['last_power_change']['why'] == 'soft-off'


def test_a_login_that_finishes_late_is_logged_out(vlab, take):
    """A session whose login finished after the deadline does not keep the BMC's only slot."""
    (name,) = take(1)
    bmc, dummy = _collection()
    b = vlab.bmc(name)
    vlab.set_fault(name, delay=0.4, max_sessions=1)
    client = bmc.BmcClient(b.host, user=b.user, password=b.password, port=b.port, timeout=1.0, retries=0, name=name)
    with pytest.raises(bmc.BmcError) as e:
        client.get_power()
    assert e.value.kind == bmc.TIMEOUT
    vlab.set_fault(name, delay=0)
    time.sleep(4)                                   # the late login and its command finish meanwhile
    out = b.ipmitool('power', 'status', timeout=30)  # needs the single session slot
    assert out.returncode == 0, out.stderr
    assert 'Chassis Power is' in out.stdout
