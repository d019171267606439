# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The action plugin base of the BMC modules (plugins/plugin_utils/bmc_action.py).

The action plugins are built as the task executor builds them, with a mocked
task, connection and play context, and a real loader and templar; the BMCs
are the fake pyghmi commands of the ``lab`` fixture.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
from unittest.mock import MagicMock

import pytest

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from pyghmi import exceptions as pyghmi_exc

from ansible_collections.ingot.metal.plugins.action import bmc_boot, bmc_info, bmc_power
from ansible_collections.ingot.metal.plugins.plugin_utils import bmc_action

PASSWORD = 'HostVar-Pw-77'


def make_action(module, task_args, task_vars, transport='local', check_mode=False, diff=False):
    task = MagicMock()
    task.args = dict(task_args)
    task.check_mode = check_mode
    task.diff = diff
    task.async_val = 0
    task.action = module.ActionModule.MODULE
    connection = MagicMock()
    connection.transport = transport
    connection._shell.tmpdir = None
    loader = DataLoader()
    templar = Templar(loader=loader, variables=task_vars)
    return module.ActionModule(task=task, connection=connection, play_context=MagicMock(), loader=loader,
                               templar=templar, shared_loader_obj=None)


def run(module, task_args, task_vars, **kwargs):
    return make_action(module, task_args, task_vars, **kwargs).run(task_vars=task_vars)


def host_vars(host='10.0.0.21', **extra):
    v = {'inventory_hostname': 'node1', 'bmc_host': host, 'bmc_user': 'admin', 'bmc_password': PASSWORD}
    v.update(extra)
    return v


# ---------------------------------------------------------------- the three plugins
@pytest.mark.parametrize('module, op', [(bmc_power, 'power'), (bmc_boot, 'boot'), (bmc_info, 'info')])
def test_each_action_plugin_runs_its_operation(module, op):
    assert issubclass(module.ActionModule, bmc_action.BmcActionModule)
    assert module.ActionModule.OPERATION == op
    assert module.ActionModule.MODULE == 'ingot.metal.bmc_%s' % op


# ---------------------------------------------------------------- host variable defaults
def test_connection_options_come_from_host_variables(lab):
    m = lab.add('10.0.0.21', port=6230, password=PASSWORD)
    result = run(bmc_power, {'state': 'on'}, host_vars(bmc_port=6230))
    assert result['changed'] is True and result['power'] == 'on'
    assert m.power == 'on'
    assert lab.commands[0] == ('ipmi', {'bmc': '10.0.0.21', 'userid': b'admin', 'password': PASSWORD.encode(),
                                        'port': 6230})


def test_task_options_win_over_host_variables(lab):
    lab.add('10.0.0.22', user='root', password='task-level')
    result = run(bmc_info, {'bmc_host': '10.0.0.22', 'bmc_user': 'root', 'bmc_password': 'task-level',
                            'gather': ['power']}, host_vars())
    assert result['bmc_info'] == {'power': 'off'}, result
    assert lab.commands[0][1]['bmc'] == '10.0.0.22'


def test_templated_host_variables_are_templated(lab):
    from ansible.template import trust_as_template
    lab.add('10.0.0.24', password=PASSWORD)
    variables = host_vars(host=trust_as_template('{{ bmc_net }}.24'), bmc_net='10.0.0')
    result = run(bmc_info, {'gather': ['power']}, variables)
    assert result['bmc_info'] == {'power': 'off'}, result


def test_other_host_variables_are_left_alone(lab):
    lab.add('10.0.0.21', password=PASSWORD)
    result = run(bmc_info, {'gather': ['power']}, host_vars(ansible_host='192.0.2.1', bmc_unknown_option='x'))
    assert 'failed' not in result, result


def test_failures_name_the_inventory_host_and_the_bmc(lab):
    lab.add('10.0.0.21', password='not-this-one')
    result = run(bmc_power, {'state': 'on'}, host_vars())
    assert result['failed'] is True
    assert result['error_kind'] == 'auth'
    assert result['msg'].startswith('BMC node1 (10.0.0.21:623): ')


def test_no_bmc_host_anywhere_fails_clearly(lab):
    result = run(bmc_power, {'state': 'on'}, {'inventory_hostname': 'node1'})
    assert result['failed'] is True
    assert result['msg'] == 'ingot.metal.bmc_power: one of the following is required: bmc_host, bmcs'


def test_check_mode_and_diff_come_from_the_task(lab):
    m = lab.add('10.0.0.21', password=PASSWORD)
    result = run(bmc_power, {'state': 'on'}, host_vars(), check_mode=True)
    assert result['changed'] is True and m.power == 'off'
    assert 'diff' not in result
    result = run(bmc_power, {'state': 'on'}, host_vars(), diff=True)
    assert result['diff'] == {'before': {'power': 'off'}, 'after': {'power': 'on'}}
    assert m.power == 'on'


def test_info_never_returns_a_diff(lab):
    lab.add('10.0.0.21', password=PASSWORD)
    assert 'diff' not in run(bmc_info, {'gather': ['power']}, host_vars(), diff=True)


# ---------------------------------------------------------------- bmcs host names
def inventory(**hosts):
    return {'hostvars': hosts, 'inventory_hostname': 'localhost'}


def test_bmcs_host_names_are_resolved_from_hostvars(lab):
    lab.add('10.0.1.1', password='pw-one')
    lab.add('10.0.1.2', port=6230, user='root', password='pw-two')
    lab.add('10.0.1.3', password='shared')
    task_vars = inventory(
        node1={'bmc_host': '10.0.1.1', 'bmc_password': 'pw-one', 'ansible_host': '192.0.2.1'},
        node2={'bmc_host': '10.0.1.2', 'bmc_port': 6230, 'bmc_user': 'root', 'bmc_password': 'pw-two'})
    result = run(bmc_power, {'bmcs': ['node1', 'node2', {'name': 'extra', 'host': '10.0.1.3'}],
                             'bmc_user': 'admin', 'bmc_password': 'shared', 'state': 'on'}, task_vars)
    assert result.get('failed') is not True, result.get('msg')
    assert sorted(result['bmcs']) == ['extra', 'node1', 'node2']
    assert result['summary'] == {'total': 3, 'changed': 3, 'failed': 0}
    for blob in ('pw-one', 'pw-two', 'shared'):
        assert blob not in json.dumps(result)


def test_bmcs_ignore_the_delegating_hosts_own_bmc_variables(lab):
    lab.add('10.0.1.1', password='pw-one')
    task_vars = inventory(node1={'bmc_host': '10.0.1.1', 'bmc_user': 'admin', 'bmc_password': 'pw-one'})
    task_vars.update(bmc_host='10.9.9.9', bmc_password='not-used')  # e.g. localhost's own vars
    result = run(bmc_info, {'bmcs': ['node1'], 'gather': ['power']}, task_vars)
    assert result['bmcs']['node1']['bmc_info'] == {'power': 'off'}, result


def test_unknown_host_names_fail_clearly_before_contacting_anything(lab):
    lab.add('10.0.1.1', password='pw-one')
    task_vars = inventory(node1={'bmc_host': '10.0.1.1', 'bmc_user': 'admin', 'bmc_password': 'pw-one'})
    result = run(bmc_power, {'bmcs': ['node1', 'ghost2', 'ghost1'], 'state': 'on'}, task_vars)
    assert result['failed'] is True
    assert result['msg'] == 'bmcs names hosts that are not in the inventory: ghost1, ghost2'
    assert lab.commands == []


def test_a_known_host_without_bmc_host_is_reported_per_entry(lab):
    result = run(bmc_info, {'bmcs': ['node1'], 'gather': ['power']}, inventory(node1={'ansible_host': '192.0.2.1'}))
    assert result['failed'] is True
    assert result['failed_bmcs'] == ['bmcs[0]']
    assert 'BMC node1: ' in result['msg'] and 'host' in result['msg']


# ---------------------------------------------------------------- secrets
def test_password_is_scrubbed_from_validation_messages(lab):
    result = run(bmc_power, {'state': 'on', 'bmc_protocol': PASSWORD}, host_vars())
    assert result['failed'] is True
    assert 'bmc_protocol' in result['msg']
    assert PASSWORD not in json.dumps(result)


def test_fleet_entry_password_is_scrubbed_from_entry_messages(lab):
    result = run(bmc_info, {'bmcs': [{'name': 'n1', 'host': '10.0.1.1', 'password': 'entry-Pw-9',
                                      'protocol': 'entry-Pw-9'}]}, inventory())
    assert result['failed'] is True
    assert 'protocol' in result['bmcs']['bmcs[0]']['msg']
    assert 'entry-Pw-9' not in json.dumps(result)


def test_host_variable_password_of_a_resolved_host_is_scrubbed(lab):
    task_vars = inventory(node1={'bmc_host': '10.0.1.1', 'bmc_password': 'hv-Pw-5', 'bmc_cipher_suite': 'hv-Pw-5'})
    result = run(bmc_info, {'bmcs': ['node1']}, task_vars)
    assert result['failed'] is True
    assert 'hv-Pw-5' not in json.dumps(result)


def test_password_in_a_pyghmi_error_is_scrubbed(lab):
    lab.add('10.0.0.21', password=PASSWORD).login_error = RuntimeError('login failed for password %s' % PASSWORD)
    result = run(bmc_power, {'state': 'on'}, host_vars())
    assert result['failed'] is True
    assert PASSWORD not in json.dumps(result)


def test_a_numeric_password_from_the_inventory_works(lab):
    lab.add('10.0.0.21', password='12345678')
    result = run(bmc_power, {'state': 'on'}, host_vars(bmc_password=12345678))
    assert result['power'] == 'on'


# ---------------------------------------------------------------- not on the controller
def test_remote_connection_runs_the_module_with_the_host_defaults():
    action = make_action(bmc_power, {'state': 'on'}, host_vars(), transport='ssh')
    action._execute_module = MagicMock(return_value={'changed': True, 'power': 'on'})
    result = action.run(task_vars=host_vars())
    assert result == {'changed': True, 'power': 'on'}
    kwargs = action._execute_module.call_args.kwargs
    assert kwargs['module_name'] == 'ingot.metal.bmc_power'
    assert kwargs['module_args'] == {'state': 'on', 'bmc_host': '10.0.0.21', 'bmc_user': 'admin',
                                     'bmc_password': PASSWORD}


def test_remote_connection_cannot_resolve_host_names():
    action = make_action(bmc_power, {'bmcs': ['node1'], 'state': 'on'}, inventory(node1={}), transport='ssh')
    action._execute_module = MagicMock()
    result = action.run(task_vars=inventory(node1={}))
    assert result['failed'] is True
    assert 'delegate_to: localhost' in result['msg']
    action._execute_module.assert_not_called()


def test_remote_connection_passes_dict_entries_through():
    action = make_action(bmc_info, {'bmcs': [{'host': '10.0.1.1'}]}, inventory(), transport='ssh')
    action._execute_module = MagicMock(return_value={'changed': False, 'bmcs': {}})
    action.run(task_vars=inventory())
    assert action._execute_module.call_args.kwargs['module_args'] == {'bmcs': [{'host': '10.0.1.1'}]}


def test_a_pyghmi_login_failure_does_not_raise(lab):
    lab.add('10.0.0.21', password=PASSWORD).login_error = pyghmi_exc.IpmiException('timeout')
    result = run(bmc_info, {'bmc_retries': 0, 'gather': ['power']}, host_vars())
    assert result['failed'] is True and result['error_kind'] == 'unreachable'


# ---------------------------------------------------------------- the control arm of the benchmark
def test_in_process_off_runs_the_module_on_the_controller(lab):
    """ingot_bmc_in_process=false: a module process even on a local connection, host names resolved first."""
    m = lab.add('10.0.0.21', password=PASSWORD)
    tv = inventory(node1={'bmc_host': '10.0.0.21', 'bmc_password': PASSWORD})
    tv['ingot_bmc_in_process'] = False
    action = make_action(bmc_power, {'bmcs': ['node1'], 'state': 'on', 'bmc_user': 'admin'}, tv)
    action._execute_module = MagicMock(return_value={'changed': True, 'bmcs': {}})
    result = action.run(task_vars=tv)
    assert result['changed'] is True
    kwargs = action._execute_module.call_args.kwargs
    assert kwargs['module_name'] == 'ingot.metal.bmc_power'
    assert kwargs['module_args']['bmcs'] == [{'name': 'node1', 'host': '10.0.0.21', 'password': PASSWORD}]
    assert m.calls == [] and lab.commands == []      # nothing ran in this process


def test_in_process_is_the_default_on_the_controller(lab):
    lab.add('10.0.0.21', password=PASSWORD)
    action = make_action(bmc_power, {'state': 'on'}, host_vars())
    action._execute_module = MagicMock()
    assert action.run(task_vars=host_vars())['power'] == 'on'
    action._execute_module.assert_not_called()


def test_plain_turns_wrapped_values_into_builtins():
    class Tagged(str):
        pass

    class TaggedInt(int):
        pass
    value = {Tagged('bmcs'): [{Tagged('host'): Tagged('10.0.0.1'), 'port': TaggedInt(623), 'x': None,
                               'y': True, 'z': 1.5}]}
    plain = bmc_action._plain(value)
    assert plain == {'bmcs': [{'host': '10.0.0.1', 'port': 623, 'x': None, 'y': True, 'z': 1.5}]}
    entry = plain['bmcs'][0]
    assert [v.__class__ for v in (list(plain)[0], entry['host'], entry['port'])] == [str, str, int]
    assert entry['y'] is True
