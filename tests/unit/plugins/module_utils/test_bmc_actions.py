# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The BMC operations (power, boot, info) and ``execute``, single and fleet form.

The operations run against ``FakeClient`` (a machine simulated on a virtual
clock); ``execute`` runs the real ``BmcClient`` against the fake pyghmi
commands of the ``lab`` fixture.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import signal

import pytest

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.ingot.metal.plugins.module_utils import bmc_actions
from ansible_collections.ingot.metal.plugins.module_utils.bmc import AUTH, TIMEOUT, UNREACHABLE, UNSUPPORTED, BmcError
from ansible_collections.ingot.metal.plugins.module_utils.bmc_actions import (
    ARG_RULES, INFO_SECTIONS, argument_spec, execute, op_boot, op_info, op_power,
)
from ansible_collections.ingot.metal.tests.unit.fakes import FakeClient

PASSWORD = 'fleet-S3cret'


class VirtualTime:
    """Stands in for the ``time`` module inside bmc_actions.py: sleeping only moves a virtual clock."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def vtime(monkeypatch):
    clock = VirtualTime()
    monkeypatch.setattr(bmc_actions, 'time', clock)
    return clock


def params(op, **args):
    """Module parameters as AnsibleModule would hand them over: validated, with defaults."""
    result = ArgumentSpecValidator(argument_spec(op), **ARG_RULES).validate(args)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


def power_params(**args):
    args.setdefault('bmc_host', '10.0.0.21')
    return params('power', **args)


def boot_params(**args):
    args.setdefault('bmc_host', '10.0.0.21')
    return params('boot', **args)


# ================================================================ op_power
# before, state, method -> changed, power requests sent, actions reported, power after
POWER_CASES = [
    ('off', 'on', 'graceful', True, ['on'], ['on'], 'on'),
    ('off', 'on', 'hard', True, ['on'], ['on'], 'on'),
    ('on', 'on', 'graceful', False, [], [], 'on'),
    ('on', 'on', 'hard', False, [], [], 'on'),
    ('on', 'off', 'graceful', True, ['shutdown'], ['soft off (ACPI)'], 'off'),
    ('on', 'off', 'hard', True, ['off'], ['hard off'], 'off'),
    ('off', 'off', 'graceful', False, [], [], 'off'),
    ('off', 'off', 'hard', False, [], [], 'off'),
    ('on', 'restarted', 'graceful', True, ['shutdown', 'on'], ['soft off (ACPI)', 'on'], 'on'),
    ('on', 'restarted', 'hard', True, ['cycle'], ['power cycle'], 'on'),
    ('off', 'restarted', 'graceful', True, ['on'], ['on'], 'on'),
    ('off', 'restarted', 'hard', True, ['on'], ['on'], 'on'),
]
POWER_IDS = ['%s-%s-%s' % c[:3] for c in POWER_CASES]


@pytest.mark.parametrize('before, state, method, changed, sent, actions, after', POWER_CASES, ids=POWER_IDS)
def test_op_power(before, state, method, changed, sent, actions, after):
    client = FakeClient(power=before)
    result = op_power(client, power_params(state=state, method=method), check_mode=False)
    assert result == {'changed': changed, 'actions': actions, 'forced': False, 'power': after,
                      'diff': {'before': {'power': before}, 'after': {'power': after}}}
    assert client.actions_sent() == sent
    assert client.state == after  # the machine really is there


@pytest.mark.parametrize('before, state, method, changed, sent, actions, after', POWER_CASES, ids=POWER_IDS)
def test_op_power_check_mode_never_acts_and_predicts_the_result(before, state, method, changed, sent, actions, after):
    client = FakeClient(power=before)
    predicted = op_power(client, power_params(state=state, method=method), check_mode=True)
    assert client.actions_sent() == []
    assert [c for c in client.calls if c[0] != 'get_power'] == []
    assert client.state == before

    real = op_power(FakeClient(power=before), power_params(state=state, method=method), check_mode=False)
    assert predicted['changed'] == real['changed'] == changed
    assert predicted['power'] == real['power'] == after
    assert predicted['diff'] == real['diff']
    assert predicted['actions'] == []


@pytest.mark.parametrize('state', ['on', 'off'])
@pytest.mark.parametrize('method', ['graceful', 'hard'])
@pytest.mark.parametrize('before', ['on', 'off'])
def test_op_power_is_idempotent(before, state, method):
    client = FakeClient(power=before)
    p = power_params(state=state, method=method)
    op_power(client, p, check_mode=False)
    sent = len(client.actions_sent())
    second = op_power(client, p, check_mode=False)
    assert second['changed'] is False
    assert second['actions'] == []
    assert len(client.actions_sent()) == sent  # no call to power
    assert second['diff'] == {'before': {'power': state}, 'after': {'power': state}}


def test_restarted_always_reports_a_change():
    for before in ('on', 'off'):
        client = FakeClient(power=before)
        for dummy in range(2):
            assert op_power(client, power_params(state='restarted'), check_mode=False)['changed'] is True


def test_graceful_off_waits_for_the_os_within_graceful_timeout():
    client = FakeClient(power='on', shutdown_seconds=20)
    result = op_power(client, power_params(state='off', graceful_timeout=30), check_mode=False)
    assert result['forced'] is False
    assert client.actions_sent() == ['shutdown']
    assert ('wait_power', 'off', 30) in client.calls
    assert client.state == 'off'


def test_graceful_off_timing_out_is_forced_when_force_after_timeout():
    client = FakeClient(power='on', shutdown_seconds=None)  # the OS never shuts down
    result = op_power(client, power_params(state='off', graceful_timeout=30, wait_timeout=60), check_mode=False)
    assert result['changed'] is True
    assert result['forced'] is True
    assert result['actions'] == ['soft off (ACPI)', 'hard off after graceful_timeout']
    assert client.actions_sent() == ['shutdown', 'off']
    waits = [c for c in client.calls if c[0] == 'wait_power']
    assert waits == [('wait_power', 'off', 30), ('wait_power', 'off', 60)]
    assert result['power'] == 'off'
    assert client.state == 'off'


def test_graceful_off_timing_out_fails_clearly_without_force():
    client = FakeClient(power='on', shutdown_seconds=None)
    with pytest.raises(BmcError) as e:
        op_power(client, power_params(state='off', graceful_timeout=30, force_after_timeout=False), check_mode=False)
    assert e.value.kind == TIMEOUT
    assert 'graceful_timeout=30' in str(e.value)
    assert 'force_after_timeout' in e.value.hint
    assert str(e.value).startswith('BMC %s: ' % client.name)
    assert client.actions_sent() == ['shutdown']  # never forced
    assert client.state == 'on'


def test_graceful_off_is_not_forced_when_the_bmc_stops_answering():
    class Unreachable(FakeClient):
        def wait_power(self, state, timeout, interval=1.0):
            raise BmcError(self.name, UNREACHABLE, 'did not answer')

    client = Unreachable(power='on')
    with pytest.raises(BmcError) as e:
        op_power(client, power_params(state='off'), check_mode=False)
    assert e.value.kind == UNREACHABLE
    assert client.actions_sent() == ['shutdown']


def test_graceful_restart_of_a_hung_os_forces_off_then_powers_on():
    client = FakeClient(power='on', shutdown_seconds=None)
    result = op_power(client, power_params(state='restarted', graceful_timeout=10), check_mode=False)
    assert result['forced'] is True
    assert client.actions_sent() == ['shutdown', 'off', 'on']
    assert result['actions'] == ['soft off (ACPI)', 'hard off after graceful_timeout', 'on']
    assert client.state == 'on'


def test_graceful_restart_of_a_hung_os_without_force_leaves_it_on():
    client = FakeClient(power='on', shutdown_seconds=None)
    with pytest.raises(BmcError) as e:
        op_power(client, power_params(state='restarted', graceful_timeout=10, force_after_timeout=False), False)
    assert e.value.kind == TIMEOUT
    assert client.actions_sent() == ['shutdown']


def test_hard_restart_waits_for_the_machine_to_come_back():
    client = FakeClient(power='on', cycle_seconds=4)
    result = op_power(client, power_params(state='restarted', method='hard', wait_timeout=30), check_mode=False)
    assert result['power'] == 'on'
    assert ('wait_power', 'on', 30) in client.calls
    assert client.state == 'on'


def test_without_wait_on_and_hard_off_do_not_wait_and_report_what_the_bmc_says():
    client = FakeClient(power='off')
    result = op_power(client, power_params(state='on', wait=False), check_mode=False)
    assert not [c for c in client.calls if c[0] == 'wait_power']
    assert result['power'] == 'on'
    client = FakeClient(power='on')
    result = op_power(client, power_params(state='off', method='hard', wait=False), check_mode=False)
    assert not [c for c in client.calls if c[0] == 'wait_power']
    assert result['power'] == 'off'


def test_without_wait_hard_restart_reports_the_state_read_back():
    client = FakeClient(power='on', cycle_seconds=4)
    result = op_power(client, power_params(state='restarted', method='hard', wait=False), check_mode=False)
    assert client.actions_sent() == ['cycle']
    assert result['power'] == 'off'  # still in the off half of the cycle


def test_graceful_off_always_waits_even_without_wait():
    client = FakeClient(power='on', shutdown_seconds=3)
    result = op_power(client, power_params(state='off', wait=False), check_mode=False)
    assert ('wait_power', 'off', 300) in client.calls
    assert result['power'] == 'off'


# ================================================================ op_boot
def test_op_boot_no_change_when_already_set():
    client = FakeClient(boot={'device': 'pxe', 'persistent': False, 'uefi': True})
    for uefi in (None, True):
        result = op_boot(client, boot_params(device='pxe', persistent=False, uefi=uefi), check_mode=False)
        assert result['changed'] is False
        assert result['boot'] == {'device': 'pxe', 'persistent': False, 'uefi': True}
        assert result['diff']['before'] == result['diff']['after']
    assert not [c for c in client.calls if c[0] == 'set_boot']


def test_op_boot_changes_persistence():
    client = FakeClient(boot={'device': 'pxe', 'persistent': False, 'uefi': True})
    result = op_boot(client, boot_params(device='pxe', persistent=True), check_mode=False)
    assert result['changed'] is True
    assert [c for c in client.calls if c[0] == 'set_boot'] == [('set_boot', 'pxe', True, True)]
    assert result['boot'] == {'device': 'pxe', 'persistent': True, 'uefi': True}


def test_op_boot_without_uefi_keeps_the_current_mode():
    for mode in (True, False):
        client = FakeClient(boot={'device': 'disk', 'persistent': True, 'uefi': mode})
        result = op_boot(client, boot_params(device='pxe'), check_mode=False)
        assert [c for c in client.calls if c[0] == 'set_boot'] == [('set_boot', 'pxe', False, mode)]
        assert result['boot']['uefi'] is mode


def test_op_boot_explicit_uefi_changes_the_mode():
    client = FakeClient(boot={'device': 'pxe', 'persistent': False, 'uefi': True})
    result = op_boot(client, boot_params(device='pxe', uefi=False), check_mode=False)
    assert result['changed'] is True
    assert [c for c in client.calls if c[0] == 'set_boot'] == [('set_boot', 'pxe', False, False)]


def test_op_boot_diff_is_before_and_read_back():
    client = FakeClient(boot={'device': 'disk', 'persistent': True, 'uefi': False})
    result = op_boot(client, boot_params(device='cdrom', uefi=True), check_mode=False)
    assert result['diff'] == {'before': {'device': 'disk', 'persistent': True, 'uefi': False},
                              'after': {'device': 'cdrom', 'persistent': False, 'uefi': True}}
    assert [c[0] for c in client.calls] == ['get_boot', 'set_boot', 'get_boot']


def test_op_boot_check_mode_predicts_without_writing():
    p = boot_params(device='bios', persistent=True)
    client = FakeClient(boot={'device': 'disk', 'persistent': False, 'uefi': True})
    predicted = op_boot(client, p, check_mode=True)
    assert not [c for c in client.calls if c[0] == 'set_boot']
    assert client.boot == {'device': 'disk', 'persistent': False, 'uefi': True}
    real = op_boot(FakeClient(boot={'device': 'disk', 'persistent': False, 'uefi': True}), p, check_mode=False)
    assert predicted == real


def test_op_boot_read_back_mismatch_is_an_error():
    client = FakeClient(boot={'device': 'disk', 'persistent': True, 'uefi': False}, ignore_boot=True, timeout=5)
    with pytest.raises(BmcError) as e:
        op_boot(client, boot_params(device='pxe'), check_mode=False)
    assert e.value.kind == UNSUPPORTED
    assert 'accepted boot device pxe but now reports disk' in str(e.value)
    assert str(e.value).startswith('BMC %s: ' % client.name)


def test_op_boot_waits_for_a_bmc_that_applies_the_change_late(vtime):
    client = FakeClient(boot={'device': 'disk', 'persistent': True, 'uefi': False}, boot_lag=2, timeout=5)
    result = op_boot(client, boot_params(device='pxe'), check_mode=False)
    assert result['boot']['device'] == 'pxe'
    assert [c[0] for c in client.calls].count('get_boot') == 4


def test_op_boot_default_removes_an_override():
    client = FakeClient(boot={'device': 'pxe', 'persistent': False, 'uefi': True})
    result = op_boot(client, boot_params(device='default'), check_mode=False)
    assert result['changed'] is True
    assert [c for c in client.calls if c[0] == 'set_boot'] == [('set_boot', 'default', True, True)]


def test_op_boot_default_when_there_is_no_override():
    client = FakeClient(boot={'device': 'default', 'persistent': True, 'uefi': None})
    for persistent in (False, True):
        result = op_boot(client, boot_params(device='default', persistent=persistent), check_mode=False)
        assert result['changed'] is False
    assert not [c for c in client.calls if c[0] == 'set_boot']


def test_op_boot_without_uefi_leaves_an_unknown_mode_alone_over_redfish(lab):
    m = lab.add('10.0.0.40', protocol='redfish', password=PASSWORD)   # no override: the BMC reports no mode
    result = execute('boot', boot_params(bmc_host='10.0.0.40', bmc_protocol='redfish', bmc_validate_certs=False,
                                         bmc_user='admin', bmc_password=PASSWORD, device='pxe'))
    assert result['changed'] is True, result
    assert [c for c in m.calls if c[0] == 'set_bootdev'] == [('set_bootdev', 'network', False, None)]


# ================================================================ op_info
def test_op_info_collects_every_section():
    client = FakeClient(power='on', boot={'device': 'pxe', 'persistent': False, 'uefi': True})
    result = op_info(client, params('info', bmc_host='h'), check_mode=False)
    info = result['bmc_info']
    assert set(info) == set(INFO_SECTIONS)
    assert result['changed'] is False
    assert result['unsupported'] == []
    assert info['power'] == 'on'
    assert info['boot'] == {'device': 'pxe', 'persistent': False, 'uefi': True}
    assert info['macs'] == ['02:00:0a:fb:00:11']
    assert 'macs' not in info['fru']  # listed once, at the top
    assert info['fru']['serial'] == 'SN-1'
    assert 'diff' not in result
    assert [c for c in client.calls if c[0] == 'fru'] == [('fru',)]  # macs reuse the FRU read


def test_op_info_gathers_only_what_was_asked():
    client = FakeClient()
    result = op_info(client, params('info', bmc_host='h', gather=['power', 'boot']), check_mode=False)
    assert set(result['bmc_info']) == {'power', 'boot'}
    assert sorted(c[0] for c in client.calls) == ['get_boot', 'get_power']


def test_op_info_unsupported_sections_are_null_and_listed():
    client = FakeClient(failures={
        'sensors': BmcError('n1', UNSUPPORTED, 'does not support reading the sensors'),
        'guid': BmcError('n1', UNSUPPORTED, 'does not support reading the system GUID'),
    })
    result = op_info(client, params('info', bmc_host='h'), check_mode=False)
    assert result['bmc_info']['sensors'] is None
    assert result['bmc_info']['guid'] is None
    assert result['unsupported'] == ['guid', 'sensors']
    assert result['bmc_info']['power'] == 'off'


def test_op_info_unsupported_fru_makes_macs_unsupported_too():
    client = FakeClient(failures={'fru': BmcError('n1', UNSUPPORTED, 'no FRU')})
    result = op_info(client, params('info', bmc_host='h', gather=['fru', 'macs']), check_mode=False)
    assert result['bmc_info'] == {'fru': None, 'macs': None}
    assert result['unsupported'] == ['fru', 'macs']


@pytest.mark.parametrize('kind', [AUTH, UNREACHABLE, TIMEOUT])
def test_op_info_fails_on_anything_but_unsupported(kind):
    client = FakeClient(failures={'device_id': BmcError('n1', kind, 'nope')})
    with pytest.raises(BmcError) as e:
        op_info(client, params('info', bmc_host='h'), check_mode=False)
    assert e.value.kind == kind


def test_op_info_is_the_same_in_check_mode():
    p = params('info', bmc_host='h')
    assert op_info(FakeClient(), p, check_mode=True) == op_info(FakeClient(), p, check_mode=False)


# ================================================================ execute, single BMC
@pytest.fixture
def fake_clients(monkeypatch):
    """execute() builds FakeClients; returns the list of (client, params, name) it built."""
    built = []
    template = {}

    def factory(p, name=None):
        client = FakeClient(name=name or p['bmc_host'], **template)
        built.append((client, p, name))
        return client
    monkeypatch.setattr(bmc_actions, 'client_from_params', factory)
    factory.template = template
    factory.built = built
    return factory


def test_execute_single_runs_the_operation_and_closes_the_client(fake_clients):
    result = execute('power', power_params(state='on'), check_mode=False, name='node1 (10.0.0.21:623)')
    assert result['changed'] is True
    assert result['diff'] == {'before': {'power': 'off'}, 'after': {'power': 'on'}}
    client, name = fake_clients.built[0][0], fake_clients.built[0][2]
    assert name == 'node1 (10.0.0.21:623)'
    assert client.closed


def test_execute_single_failure_is_a_result_not_an_exception(fake_clients):
    fake_clients.template.update(power='on', shutdown_seconds=None)
    result = execute('power', power_params(state='off', force_after_timeout=False, graceful_timeout=5))
    assert result['failed'] is True
    assert result['changed'] is False
    assert result['error_kind'] == TIMEOUT
    assert 'graceful_timeout=5' in result['msg']
    assert fake_clients.built[0][0].closed


def test_execute_info_has_no_diff(fake_clients):
    result = execute('info', params('info', bmc_host='h'))
    assert 'diff' not in result
    assert result['changed'] is False


def test_execute_single_against_the_fake_pyghmi(lab):
    m = lab.add('10.0.0.21', password=PASSWORD)
    result = execute('power', power_params(state='on', bmc_user='admin', bmc_password=PASSWORD), name='node1')
    assert result['changed'] is True and result['power'] == 'on'
    assert m.power == 'on'
    assert ('logout',) in m.calls


def test_execute_single_without_host_is_invalid():
    result = execute('info', dict(params('info', bmcs=[]), bmcs=None))
    assert result['failed'] is True
    assert result['error_kind'] == 'invalid'


# ================================================================ execute, fleet form
def fleet(op, bmcs, **args):
    args.setdefault('bmc_user', 'admin')
    args.setdefault('bmc_password', PASSWORD)
    args.setdefault('bmc_retries', 0)
    return params(op, bmcs=bmcs, **args)


def test_fleet_some_failing(lab):
    for i in range(1, 5):
        lab.add('10.0.1.%d' % i, password=PASSWORD)
    lab.add('10.0.1.5', password='another')                        # wrong password
    # 10.0.1.6: nothing answers
    bmcs = [{'name': 'n%d' % i, 'host': '10.0.1.%d' % i} for i in range(1, 7)]
    result = execute('power', fleet('power', bmcs, state='on'))
    assert result['failed'] is True
    assert result['failed_bmcs'] == ['n5', 'n6']
    assert result['msg'].startswith('2 of 6 BMCs failed: ')
    assert 'BMC n5: ' in result['msg'] and 'BMC n6: ' in result['msg']
    assert result['bmcs']['n5']['error_kind'] == AUTH
    assert result['bmcs']['n6']['error_kind'] == UNREACHABLE
    for name in ('n1', 'n2', 'n3', 'n4'):
        assert result['bmcs'][name] == {'changed': True, 'failed': False, 'actions': ['on'], 'forced': False,
                                        'power': 'on'}
    assert result['summary'] == {'total': 6, 'changed': 4, 'failed': 2}
    assert result['changed'] is True
    assert sorted(result['diff']['before']) == ['n1', 'n2', 'n3', 'n4']
    assert result['diff']['after']['n1'] == {'power': 'on'}
    assert all(lab.machines[('10.0.1.%d' % i, 623)].power == 'on' for i in range(1, 5))
    assert PASSWORD not in json.dumps(result)


def test_fleet_all_fine(lab):
    for i in range(1, 4):
        lab.add('10.0.2.%d' % i, password=PASSWORD, power='on')
    result = execute('power', fleet('power', [{'host': '10.0.2.%d' % i} for i in range(1, 4)], state='on'))
    assert 'failed' not in result and 'msg' not in result
    assert result['changed'] is False
    assert result['failed_bmcs'] == []
    assert result['summary'] == {'total': 3, 'changed': 0, 'failed': 0}
    assert sorted(result['bmcs']) == ['10.0.2.1', '10.0.2.2', '10.0.2.3']


def test_fleet_invalid_entries_are_reported_one_by_one(lab):
    lab.add('10.0.3.1', password=PASSWORD)
    bmcs = ['node-a', 42, {'name': 'nohost', 'port': 6230}, {'host': '10.0.3.9', 'bogus': 1},
            {'host': '10.0.3.1'}, {'host': '10.0.3.8', 'protocol': 'telnet'}]
    result = execute('info', fleet('info', bmcs, gather=['power']))
    r = result['bmcs']
    assert sorted(r) == ['10.0.3.1', 'bmcs[0]', 'bmcs[1]', 'bmcs[2]', 'bmcs[3]', 'bmcs[5]']
    for key in ('bmcs[0]', 'bmcs[1]', 'bmcs[2]', 'bmcs[3]', 'bmcs[5]'):
        assert r[key]['failed'] is True and r[key]['error_kind'] == 'invalid', key
    assert 'must be a dict' in r['bmcs[0]']['msg'] and 'got str' in r['bmcs[0]']['msg']
    assert 'got int' in r['bmcs[1]']['msg']
    assert r['bmcs[2]']['msg'].startswith('BMC nohost: ') and 'host' in r['bmcs[2]']['msg']
    assert 'bogus' in r['bmcs[3]']['msg']
    assert 'telnet' in r['bmcs[5]']['msg']
    assert r['10.0.3.1']['failed'] is False
    assert r['10.0.3.1']['bmc_info'] == {'power': 'off'}
    assert result['summary'] == {'total': 6, 'changed': 0, 'failed': 5}
    assert not [c for c in lab.calls if c[0] in ('10.0.3.9', '10.0.3.8')]  # invalid entries never contacted


def test_fleet_entry_names(lab):
    lab.add('10.0.4.1', port=6230, password=PASSWORD)
    lab.add('10.0.4.2', password=PASSWORD)
    result = execute('info', fleet('info', [{'host': '10.0.4.1', 'port': 6230}, {'host': '10.0.4.2'}],
                                   gather=['power']))
    assert sorted(result['bmcs']) == ['10.0.4.1:6230', '10.0.4.2']


def test_fleet_entries_override_the_task_options(lab):
    lab.add('10.0.5.1', password=PASSWORD)
    lab.add('10.0.5.2', user='root', password='own-password')
    bmcs = [{'name': 'a', 'host': '10.0.5.1'}, {'name': 'b', 'host': '10.0.5.2', 'user': 'root',
                                                'password': 'own-password'}]
    result = execute('info', fleet('info', bmcs, gather=['power']))
    assert result['summary']['failed'] == 0, result.get('msg')


def test_fleet_more_than_ten_failures_are_summarised(lab):
    bmcs = [{'name': 'dead%02d' % i, 'host': '10.0.6.%d' % i} for i in range(12)]
    result = execute('info', fleet('info', bmcs, gather=['power']))
    assert result['msg'].startswith('12 of 12 BMCs failed: ')
    assert result['msg'].endswith('(and 2 more, see failed_bmcs)')
    assert result['msg'].count('BMC dead') == 10
    assert len(result['failed_bmcs']) == 12


def test_fleet_check_mode_never_acts(lab):
    for i in range(1, 4):
        lab.add('10.0.7.%d' % i, password=PASSWORD, power='off')
    result = execute('power', fleet('power', [{'host': '10.0.7.%d' % i} for i in range(1, 4)], state='on'),
                     check_mode=True)
    assert result['summary'] == {'total': 3, 'changed': 3, 'failed': 0}
    assert not [c for c in lab.calls if c[1] == 'xraw_command' and c[2:4] == (0, 2)]
    assert all(m.power == 'off' for m in lab.machines.values())


def test_fleet_info_has_no_diff(lab):
    lab.add('10.0.8.1', password=PASSWORD)
    result = execute('info', fleet('info', [{'host': '10.0.8.1'}], gather=['power', 'boot']))
    assert 'diff' not in result
    expected = {'power': 'off', 'boot': {'device': 'default', 'persistent': True, 'uefi': None}}
    assert result['bmcs']['10.0.8.1']['bmc_info'] == expected


def test_fleet_an_internal_error_does_not_lose_the_other_results(lab, monkeypatch):
    for i in range(1, 4):
        lab.add('10.0.9.%d' % i, password=PASSWORD)
    real = bmc_actions.OPERATIONS['info']

    def buggy(client, p, check_mode):
        if client.host == '10.0.9.2':
            raise RuntimeError('a bug')
        return real(client, p, check_mode)
    monkeypatch.setitem(bmc_actions.OPERATIONS, 'info', buggy)
    result = execute('info', fleet('info', [{'host': '10.0.9.%d' % i} for i in range(1, 4)], gather=['power']))
    assert result['failed_bmcs'] == ['10.0.9.2']
    assert result['bmcs']['10.0.9.2']['error_kind'] == 'internal'
    assert result['bmcs']['10.0.9.1']['bmc_info'] == {'power': 'off'}
    assert result['bmcs']['10.0.9.3']['bmc_info'] == {'power': 'off'}


@pytest.mark.parametrize('concurrency', [1, 3])
def test_fleet_concurrency_is_respected(lab, concurrency):
    for i in range(12):
        lab.add('10.0.10.%d' % i, password=PASSWORD, delay=0.005)
    lab.rendezvous = concurrency  # the first calls wait until that many are in flight
    result = execute('info', fleet('info', [{'host': '10.0.10.%d' % i} for i in range(12)], gather=['power'],
                                   bmc_concurrency=concurrency))
    assert result['summary'] == {'total': 12, 'changed': 0, 'failed': 0}
    assert lab.max_in_flight == concurrency


def _pid_of_each(monkeypatch, die_in_child=None):
    """Make the info operation answer with the pid of the process that ran it (and kill a child that gets the
    BMC ``die_in_child``)."""
    parent = os.getpid()

    def where(client, p, check_mode):
        if client.host == die_in_child and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return {'changed': False, 'bmc_info': {'pid': os.getpid()}}
    monkeypatch.setitem(bmc_actions.OPERATIONS, 'info', where)
    return parent


def test_fleet_in_processes_runs_every_bmc_once_and_keeps_one_bmc_in_one_process(lab, monkeypatch):
    parent = _pid_of_each(monkeypatch)
    entries = [{'host': '10.0.11.%d' % i} for i in range(1, 7)]
    entries.append({'host': '10.0.11.1', 'name': 'again'})   # the same BMC under another name
    result = execute('info', fleet('info', entries, bmc_processes=3))
    assert result['processes'] == 3
    assert result['summary'] == {'total': 7, 'changed': 0, 'failed': 0}
    pids = dict((n, r['bmc_info']['pid']) for n, r in result['bmcs'].items())
    assert len(set(pids.values())) == 3 and parent in pids.values()
    assert pids['again'] == pids['10.0.11.1']


def test_fleet_in_processes_gives_the_same_results_as_in_one(lab):
    for i in range(1, 9):
        lab.add('10.0.12.%d' % i, password=PASSWORD, power='on' if i % 2 else 'off')
    lab.add('10.0.12.9', password='another')
    entries = [{'host': '10.0.12.%d' % i} for i in range(1, 10)]
    one = execute('power', fleet('power', entries, state='on', bmc_processes=1), check_mode=True)
    many = execute('power', fleet('power', entries, state='on', bmc_processes=4), check_mode=True)
    assert (one['processes'], many['processes']) == (1, 4)
    for result in (one, many):
        del result['processes']
    assert many == one
    assert many['failed_bmcs'] == ['10.0.12.9'] and many['bmcs']['10.0.12.9']['error_kind'] == AUTH
    assert many['summary'] == {'total': 9, 'changed': 4, 'failed': 1}


def test_fleet_a_process_that_dies_fails_its_bmcs_and_loses_no_other_result(lab, monkeypatch):
    parent = _pid_of_each(monkeypatch, die_in_child='10.0.13.2')
    entries = [{'host': '10.0.13.%d' % i} for i in range(1, 5)]
    result = execute('info', fleet('info', entries, bmc_processes=2))
    # shares: 10.0.13.1 and .3 here, .2 and .4 in the child, which is killed at .2
    assert result['failed_bmcs'] == ['10.0.13.2', '10.0.13.4']
    for name in result['failed_bmcs']:
        r = result['bmcs'][name]
        assert r['error_kind'] == 'internal'
        assert r['msg'].startswith('BMC %s: the process of the fleet that drove it' % name)
        assert 'was killed by signal %d' % signal.SIGKILL in r['msg'] and 'unknown' in r['msg']
    assert [result['bmcs'][n]['bmc_info']['pid'] for n in ('10.0.13.1', '10.0.13.3')] == [parent, parent]
    assert '2 of 4 BMCs failed' in result['msg']


def test_fleet_runs_here_what_it_could_not_fork(lab, monkeypatch):
    parent = _pid_of_each(monkeypatch)
    real_fork, forks = os.fork, []

    def fork_once():
        if forks:
            raise OSError(11, 'Resource temporarily unavailable')
        forks.append(1)
        return real_fork()
    monkeypatch.setattr(os, 'fork', fork_once)
    entries = [{'host': '10.0.14.%d' % i} for i in range(1, 7)]
    result = execute('info', fleet('info', entries, bmc_processes=3))
    assert result['processes'] == 2
    assert result['summary'] == {'total': 6, 'changed': 0, 'failed': 0}
    pids = dict((n, r['bmc_info']['pid']) for n, r in result['bmcs'].items())
    # shares: .1 .4 here, .2 .5 in the child, .3 .6 not forked: here too
    assert [pids['10.0.14.%d' % i] == parent for i in range(1, 7)] == [True, False, True, True, False, True]


@pytest.mark.parametrize('asked, groups, cores, expected', [
    (0, 200, 2, 2), (0, 200, 8, 4), (0, 99, 8, 1), (0, 100, 8, 2), (0, 49, 8, 1), (0, 5000, 128, 64),
    (None, 200, 2, 2), (3, 10, 1, 3), (5, 2, 8, 2), (1, 500, 8, 1), (2, 1, 8, 1),
])
def test_fleet_processes(monkeypatch, asked, groups, cores, expected):
    monkeypatch.setattr(bmc_actions, '_usable_cores', lambda: cores)
    assert bmc_actions.fleet_processes(asked, groups) == expected


def test_fleet_processes_stay_one_once_this_process_has_ipmi_sessions(monkeypatch):
    monkeypatch.setattr(bmc_actions, '_pyghmi_sessions_started', lambda: True)
    assert bmc_actions.fleet_processes(4, 200) == 1


def test_fleet_of_nothing():
    result = execute('info', params('info', bmcs=[]))
    assert result['bmcs'] == {} and result['summary'] == {'total': 0, 'changed': 0, 'failed': 0}
    assert 'failed' not in result


# ================================= boot read-back, numbers, one session per BMC, command interval, graceful off, state=status
def test_boot_persistent_not_kept_by_the_bmc_fails_clearly():
    """A BMC that silently keeps next-boot only is not reported as a success (and not 'changed' forever)."""
    client = FakeClient(boot={'device': 'disk', 'persistent': True, 'uefi': False}, keeps={'persistent': False})
    with pytest.raises(BmcError) as e:
        op_boot(client, boot_params(device='pxe', persistent=True), check_mode=False)
    assert e.value.kind == UNSUPPORTED
    assert 'for every boot (persistent) but kept it for the next boot only' in e.value.message
    assert 'persistent=false' in e.value.hint
    assert e.value.message.startswith('BMC %s: ' % client.name)


def test_boot_uefi_mode_not_kept_by_the_bmc_fails_clearly():
    client = FakeClient(boot={'device': 'disk', 'persistent': True, 'uefi': False}, keeps={'uefi': False})
    with pytest.raises(BmcError) as e:
        op_boot(client, boot_params(device='pxe', persistent=True, uefi=True), check_mode=False)
    assert 'in UEFI mode but reports legacy BIOS mode' in e.value.message


def test_boot_kept_as_asked_is_a_change_once():
    client = FakeClient(boot={'device': 'disk', 'persistent': True, 'uefi': False})
    p = boot_params(device='pxe', persistent=True)
    assert op_boot(client, p, check_mode=False)['changed'] is True
    assert op_boot(client, p, check_mode=False)['changed'] is False


@pytest.mark.parametrize('option, value', [
    ('bmc_timeout', 0), ('bmc_timeout', -1), ('bmc_timeout', float('nan')), ('bmc_timeout', float('inf')),
    ('bmc_retries', -1), ('bmc_concurrency', 0), ('bmc_concurrency', -4), ('bmc_processes', -1), ('bmc_processes', 65), ('bmc_port', 0), ('bmc_port', 70000),
    ('bmc_min_command_interval', -0.5), ('graceful_timeout', -1), ('wait_timeout', -5),
])
def test_out_of_range_timeouts_and_counts_are_refused(lab, option, value):
    """Every timeout and count is validated, before any BMC is contacted."""
    lab.add('10.0.9.1', password=PASSWORD)
    result = execute('power', power_params(bmc_host='10.0.9.1', bmc_user='admin', bmc_password=PASSWORD,
                                           state='on', **{option: value}))
    assert result['failed'] is True and result['error_kind'] == 'invalid'
    assert option in result['msg'] and 'out of range' in result['msg']
    assert lab.calls == [] and lab.commands == []


def test_out_of_range_entry_option_fails_that_entry_only(lab):
    for i in (1, 2):
        lab.add('10.0.9.%d' % (10 + i), password=PASSWORD)
    result = execute('power', fleet('power', [{'name': 'a', 'host': '10.0.9.11', 'timeout': 0},
                                              {'name': 'b', 'host': '10.0.9.12'}], state='on'))
    assert result['failed_bmcs'] == ['a']
    assert 'bmc_timeout=0' in result['bmcs']['a']['msg']
    assert result['bmcs']['b']['power'] == 'on'


def test_state_status_only_reads(lab):
    """State=status reads the power state, never acts, never changes."""
    m = lab.add('10.0.9.21', password=PASSWORD, power='on')
    result = execute('power', power_params(bmc_host='10.0.9.21', bmc_user='admin', bmc_password=PASSWORD,
                                           state='status'))
    assert result['power'] == 'on' and result['changed'] is False and result['actions'] == []
    assert [c[0] for c in m.calls if c[0] != 'login'] == ['xraw_command', 'logout']
    assert m.calls[1][1:] == (0, 1, ())          # Get Chassis Status only
    m.power = 'off'
    result = execute('power', fleet('power', [{'name': 'x', 'host': '10.0.9.21'}], state='status'))
    assert result['bmcs']['x']['power'] == 'off' and result['changed'] is False
    assert m.power == 'off'


def test_fleet_serialises_one_bmc_under_two_names(lab):
    """The same address and port under two names never gets two sessions at once."""
    m = lab.add('10.0.9.31', password=PASSWORD, delay=0.05)
    lab.add('10.0.9.32', password=PASSWORD, delay=0.05)
    lab.rendezvous = 2
    bmcs = [{'name': 'a', 'host': '10.0.9.31'}, {'name': 'b', 'host': '10.0.9.31', 'port': 623},
            {'name': 'c', 'host': '10.0.9.31'}, {'name': 'other', 'host': '10.0.9.32'}]
    result = execute('power', fleet('power', bmcs, state='on', bmc_min_command_interval=0))
    assert result['summary'] == {'total': 4, 'changed': 2, 'failed': 0}   # the first of a, b, c and other
    assert m.power == 'on'
    # one BMC: its entries one after the other; the other BMC in parallel with them
    assert lab.max_in_flight == 2
    per_bmc = [c[1] for c in lab.calls if c[0] == '10.0.9.31']
    assert per_bmc.count('xraw_command') == 5   # a: read, power on, read back; b and c: one read each
    power_on = [c for c in lab.calls if c[0] == '10.0.9.31' and c[1] == 'xraw_command' and c[3] == 2]
    assert len(power_on) == 1


def test_min_command_interval_spaces_the_commands_to_one_bmc(lab):
    """A minimum interval between commands to one BMC (Ironic's min_command_interval)."""
    import time as real_time
    m = lab.add('10.0.9.41', password=PASSWORD)
    stamps = []
    orig = m.power_action

    def power_action(action):
        stamps.append(real_time.monotonic())
        return orig(action)
    m.power_action = power_action
    bmcs = [{'name': 'a', 'host': '10.0.9.41'}, {'name': 'b', 'host': '10.0.9.41'}]
    start = real_time.monotonic()
    result = execute('info', fleet('info', bmcs, gather=['power', 'guid', 'device'], bmc_min_command_interval=0.2))
    took = real_time.monotonic() - start
    assert result['summary']['failed'] == 0
    # 2 entries x 3 commands, each at least 0.2 s after the previous one to that BMC
    assert took >= 5 * 0.2 - 0.05, took


def test_a_bmc_that_stops_answering_during_a_graceful_off_is_never_forced():
    """No answer while waiting for the OS is not 'the OS did not shut down'."""
    client = FakeClient(power='on', shutdown_seconds=None)
    orig_power = client.power

    def power(action):
        orig_power(action)
        if action == 'shutdown':
            client.failures['get_power'] = BmcError(client.name, TIMEOUT, 'no answer within 1.0 s while reading')
    client.power = power
    with pytest.raises(BmcError) as e:
        op_power(client, power_params(state='off', graceful_timeout=30), check_mode=False)
    assert client.actions_sent() == ['shutdown']          # never 'off'
    assert e.value.kind == UNREACHABLE
    assert 'stopped answering while waiting for the graceful shutdown' in e.value.message
    assert 'not forced off' in e.value.message
    assert client.state == 'on'
