# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ingot.metal.bmc_power through AnsibleModule, against the fake pyghmi of the ``lab`` fixture."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from pyghmi import exceptions as pyghmi_exc

from ansible_collections.ingot.metal.plugins.modules import bmc_power
from ansible_collections.ingot.metal.tests.unit.plugins.modules.utils import run_module

pytestmark = pytest.mark.usefixtures('module_results')

PASSWORD = 'Pw-0f-The-BMC'
HOST = '10.0.0.21'


def args(**kw):
    a = dict(bmc_host=HOST, bmc_user='admin', bmc_password=PASSWORD, state='on')
    a.update(kw)
    return a


def chassis_controls(machine):
    return [c[3][0] for c in machine.calls if c[0] == 'xraw_command' and c[1:3] == (0, 2)]


def test_power_on(lab):
    m = lab.add(HOST, password=PASSWORD, power='off')
    result = run_module(bmc_power, args())
    assert result['changed'] is True
    assert result['power'] == 'on'
    assert result['actions'] == ['on']
    assert result['forced'] is False
    assert 'diff' not in result
    assert m.power == 'on'
    assert chassis_controls(m) == [1]


def test_second_run_is_not_changed(lab):
    m = lab.add(HOST, password=PASSWORD, power='off')
    run_module(bmc_power, args())
    result = run_module(bmc_power, args())
    assert result['changed'] is False
    assert chassis_controls(m) == [1]


def test_check_mode(lab):
    m = lab.add(HOST, password=PASSWORD, power='on')
    result = run_module(bmc_power, args(state='off', _ansible_check_mode=True))
    assert result['changed'] is True
    assert result['power'] == 'off'
    assert chassis_controls(m) == []
    assert m.power == 'on'


def test_diff_mode(lab):
    lab.add(HOST, password=PASSWORD, power='on')
    result = run_module(bmc_power, args(state='off', method='hard', _ansible_diff=True))
    assert result['diff'] == {'before': {'power': 'on'}, 'after': {'power': 'off'}}


def test_restarted_hard_is_a_power_cycle(lab):
    m = lab.add(HOST, password=PASSWORD, power='on')
    result = run_module(bmc_power, args(state='restarted', method='hard'))
    assert result['changed'] is True
    assert chassis_controls(m) == [2]


def test_bmc_host_and_bmcs_are_mutually_exclusive(lab):
    m = lab.add(HOST, password=PASSWORD)
    result = run_module(bmc_power, args(bmcs=[{'host': HOST}]), expect='fail')
    assert 'mutually exclusive' in result['msg'] and 'bmc_host' in result['msg'] and 'bmcs' in result['msg']
    assert m.calls == []


def test_bmc_host_or_bmcs_is_required(lab):
    result = run_module(bmc_power, {'state': 'on'}, expect='fail')
    assert 'one of the following is required: bmc_host, bmcs' in result['msg']


def test_state_is_checked(lab):
    result = run_module(bmc_power, args(state='reboot'), expect='fail')
    assert 'state' in result['msg'] and 'reboot' in result['msg']


def test_password_is_never_in_the_result(lab):
    lab.add(HOST, password=PASSWORD)
    result = run_module(bmc_power, args(_ansible_diff=True))
    assert result['invocation']['module_args']['bmc_password'] != PASSWORD
    assert PASSWORD not in json.dumps(result)


def test_password_in_a_pyghmi_error_is_never_in_the_result(lab):
    lab.add(HOST, password=PASSWORD).login_error = pyghmi_exc.IpmiException(
        'Incorrect password provided: %s' % PASSWORD)
    result = run_module(bmc_power, args(), expect='fail')
    assert PASSWORD not in json.dumps(result)


@pytest.mark.parametrize('setup, kind', [
    (lambda m: setattr(m, 'password', 'other'), 'auth'),
    (lambda m: setattr(m, 'login_error', pyghmi_exc.IpmiException('timeout')), 'unreachable'),
    (lambda m: setattr(m, 'login_error', pyghmi_exc.IpmiException(
        'the BMC offers only IPMI 1.5 (no RMCP+ authentication); refused ...')), 'insecure'),
])
def test_bmc_errors_fail_with_error_kind(lab, setup, kind):
    setup(lab.add(HOST, password=PASSWORD))
    result = run_module(bmc_power, args(bmc_retries=0), expect='fail')
    assert result['failed'] is True
    assert result['changed'] is False
    assert result['error_kind'] == kind
    assert result['msg'].startswith('BMC %s:623: ' % HOST)


def test_fleet_form(lab):
    for i in (1, 2):
        lab.add('10.0.1.%d' % i, password=PASSWORD)
    result = run_module(bmc_power, {'bmc_user': 'admin', 'bmc_password': PASSWORD, 'state': 'on', '_ansible_diff': True,
                                    'bmcs': [{'name': 'n1', 'host': '10.0.1.1'}, {'name': 'n2', 'host': '10.0.1.2'}]})
    assert result['summary'] == {'total': 2, 'changed': 2, 'failed': 0}
    assert result['diff']['after'] == {'n1': {'power': 'on'}, 'n2': {'power': 'on'}}
    assert PASSWORD not in json.dumps(result)


def test_fleet_form_failure_fails_the_module(lab):
    lab.add('10.0.1.1', password=PASSWORD)
    result = run_module(bmc_power, {'bmc_user': 'admin', 'bmc_password': PASSWORD, 'state': 'on', 'bmc_retries': 0,
                                    'bmcs': [{'name': 'n1', 'host': '10.0.1.1'}, {'name': 'n2', 'host': '10.0.1.2'}]},
                        expect='fail')
    assert result['failed_bmcs'] == ['n2']
    assert result['bmcs']['n1']['power'] == 'on'
    assert result['msg'].startswith('1 of 2 BMCs failed: BMC n2: ')


def test_fleet_entry_password_is_never_in_the_result(lab):
    lab.add('10.0.1.1', password='entry-only-S3cret')
    result = run_module(bmc_power, {'bmc_user': 'admin', 'state': 'on',
                                    'bmcs': [{'name': 'n1', 'host': '10.0.1.1', 'password': 'entry-only-S3cret'}]})
    assert result['summary']['failed'] == 0
    assert 'entry-only-S3cret' not in json.dumps(result)
