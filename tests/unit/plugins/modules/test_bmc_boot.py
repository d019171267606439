# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ingot.metal.bmc_boot through AnsibleModule, against the fake pyghmi of the ``lab`` fixture."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible_collections.ingot.metal.plugins.modules import bmc_boot
from ansible_collections.ingot.metal.tests.unit.plugins.modules.utils import run_module

pytestmark = pytest.mark.usefixtures('module_results')

PASSWORD = 'Pw-0f-The-BMC'
HOST = '10.0.0.22'


def args(**kw):
    a = dict(bmc_host=HOST, bmc_user='admin', bmc_password=PASSWORD, device='pxe')
    a.update(kw)
    return a


def writes(machine):
    return [c[1:] for c in machine.calls if c[0] == 'set_bootdev']


def test_set_pxe_next_boot(lab):
    m = lab.add(HOST, password=PASSWORD)
    result = run_module(bmc_boot, args(uefi=True))
    assert result['changed'] is True
    assert result['boot'] == {'device': 'pxe', 'persistent': False, 'uefi': True}
    assert 'diff' not in result
    assert writes(m) == [('network', False, True)]
    assert m.boot == {'device': 'pxe', 'persistent': False, 'uefi': True}


def test_second_run_is_not_changed(lab):
    m = lab.add(HOST, password=PASSWORD)
    run_module(bmc_boot, args(device='disk', persistent=True))
    result = run_module(bmc_boot, args(device='disk', persistent=True))
    assert result['changed'] is False
    assert len(writes(m)) == 1


def test_check_mode(lab):
    m = lab.add(HOST, password=PASSWORD, boot={'device': 'disk', 'persistent': True, 'uefi': True})
    result = run_module(bmc_boot, args(device='cdrom', _ansible_check_mode=True))
    assert result['changed'] is True
    assert result['boot'] == {'device': 'cdrom', 'persistent': False, 'uefi': True}
    assert writes(m) == []


def test_diff_mode(lab):
    lab.add(HOST, password=PASSWORD, boot={'device': 'disk', 'persistent': True, 'uefi': False})
    result = run_module(bmc_boot, args(device='bios', _ansible_diff=True))
    assert result['diff'] == {'before': {'device': 'disk', 'persistent': True, 'uefi': False},
                              'after': {'device': 'bios', 'persistent': False, 'uefi': False}}


def test_default_removes_the_override(lab):
    m = lab.add(HOST, password=PASSWORD, boot={'device': 'pxe', 'persistent': False, 'uefi': True})
    result = run_module(bmc_boot, args(device='default'))
    assert result['changed'] is True
    assert result['boot']['device'] == 'default'
    assert writes(m)[0][0] == 'default'


def test_a_bmc_that_ignores_the_override_fails(lab):
    lab.add(HOST, password=PASSWORD, ignore_boot=True)
    result = run_module(bmc_boot, args(bmc_timeout=0.5), expect='fail')
    assert result['error_kind'] == 'unsupported'
    assert 'accepted boot device pxe but now reports default' in result['msg']


def test_device_is_checked(lab):
    result = run_module(bmc_boot, args(device='floppy'), expect='fail')
    assert 'device' in result['msg'] and 'floppy' in result['msg']


def test_mutually_exclusive_and_required(lab):
    assert 'mutually exclusive' in run_module(bmc_boot, args(bmcs=[]), expect='fail')['msg']
    assert 'one of the following is required' in run_module(bmc_boot, {'device': 'pxe'}, expect='fail')['msg']


def test_auth_failure(lab):
    lab.add(HOST, password='different')
    result = run_module(bmc_boot, args(), expect='fail')
    assert result['error_kind'] == 'auth'
    assert PASSWORD not in json.dumps(result)
