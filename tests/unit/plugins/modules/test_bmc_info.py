# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ingot.metal.bmc_info through AnsibleModule, against the fake pyghmi of the ``lab`` fixture."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from pyghmi import exceptions as pyghmi_exc

from ansible_collections.ingot.metal.plugins.modules import bmc_info
from ansible_collections.ingot.metal.tests.unit.plugins.modules.utils import run_module

pytestmark = pytest.mark.usefixtures('module_results')

PASSWORD = 'Pw-0f-The-BMC'
HOST = '10.0.0.23'


def args(**kw):
    a = dict(bmc_host=HOST, bmc_user='admin', bmc_password=PASSWORD)
    a.update(kw)
    return a


def test_everything(lab):
    m = lab.add(HOST, password=PASSWORD, power='on')
    result = run_module(bmc_info, args())
    info = result['bmc_info']
    assert result['changed'] is False
    assert result['unsupported'] == []
    assert set(info) == {'device', 'guid', 'power', 'boot', 'fru', 'macs', 'sensors'}
    assert info['power'] == 'on'
    assert info['guid'] == str(m.guid)
    assert info['device']['firmware_version'] == '1.02'
    assert info['fru']['serial'] == 'SN-%s' % HOST
    assert [s['name'] for s in info['sensors']] == ['CPU Temp', 'Fan 1']
    assert info['macs'] == ['02:00:0a:fb:00:11', '02:00:0a:fb:00:12']  # FRU custom fields MAC:...
    assert 'macs' not in info['fru']
    # read-only: nothing but reads were sent
    assert not [c for c in m.calls if c[0] == 'set_bootdev' or (c[0] == 'xraw_command' and c[1:3] == (0, 2))]


def test_gather(lab):
    lab.add(HOST, password=PASSWORD)
    result = run_module(bmc_info, args(gather=['power', 'boot']))
    assert result['bmc_info'] == {'power': 'off', 'boot': {'device': 'default', 'persistent': True, 'uefi': None}}


def test_unsupported_section_is_null(lab):
    m = lab.add(HOST, password=PASSWORD)
    m.errors['get_sensor_data'] = pyghmi_exc.IpmiException('Invalid command', code=0xc1)
    result = run_module(bmc_info, args(gather=['power', 'sensors']))
    assert result['bmc_info'] == {'power': 'off', 'sensors': None}
    assert result['unsupported'] == ['sensors']


def test_check_mode_reads_the_same(lab):
    lab.add(HOST, password=PASSWORD)
    assert run_module(bmc_info, args(_ansible_check_mode=True, gather=['power']))['bmc_info'] == {'power': 'off'}


def test_no_diff_even_in_diff_mode(lab):
    lab.add(HOST, password=PASSWORD)
    assert 'diff' not in run_module(bmc_info, args(_ansible_diff=True, gather=['power']))


def test_auth_failure_fails(lab):
    lab.add(HOST, password='different')
    result = run_module(bmc_info, args(), expect='fail')
    assert result['error_kind'] == 'auth'
    assert result['msg'].startswith('BMC %s:623: ' % HOST)
    assert PASSWORD not in json.dumps(result)


def test_gather_is_checked(lab):
    result = run_module(bmc_info, args(gather=['everything']), expect='fail')
    assert 'gather' in result['msg']


def test_fleet_form_without_diff(lab):
    lab.add('10.0.1.1', password=PASSWORD, power='on')
    result = run_module(bmc_info, {'bmc_user': 'admin', 'bmc_password': PASSWORD, 'gather': ['power'],
                                   '_ansible_diff': True, 'bmcs': [{'name': 'n1', 'host': '10.0.1.1'}]})
    assert result['bmcs']['n1']['bmc_info'] == {'power': 'on'}
    assert 'diff' not in result
