# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin base of the BMC modules.

On the controller (a local connection, which ``delegate_to: localhost`` gives)
the operation runs inside Ansible's worker process: no module is built,
shipped or started per host, and pyghmi is already imported by the parent
process before it forks (the strategy loads this class there). On any other
connection the module is executed on that host as usual.

It also fills unset ``bmc_*`` options from the host's variables of the same
name, and resolves inventory host names given in ``bmcs``.

The variable ``ingot_bmc_in_process`` (default true) set to false runs the
module as a module even on the controller: the control arm of the fleet
benchmark, which separates the in-process gain from the protocol client's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.ingot.metal.plugins.module_utils import pyghmi_compat
from ansible_collections.ingot.metal.plugins.module_utils._secrets import mask_secrets
from ansible_collections.ingot.metal.plugins.module_utils.bmc import BMC_CONNECTION_SPEC, BMC_FLEET_ITEM_SPEC, HAS_PYGHMI
from ansible_collections.ingot.metal.plugins.module_utils.bmc_actions import ARG_RULES, READ_ONLY, argument_spec, execute

HOSTVAR_OPTIONS = tuple(sorted(BMC_CONNECTION_SPEC))
IN_PROCESS_VAR = 'ingot_bmc_in_process'


def _plain(value):
    """The value with Ansible's tagged or unsafe wrappers of templated data replaced by plain builtins.

    The operation deep-copies its arguments (argument validation does, once per task and once per fleet
    entry); a copy of a wrapped value costs a hundred times that of a plain one.
    """
    if isinstance(value, dict):
        return dict((_plain(k), _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return value if value.__class__ is str else ''.join((value,))
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


# One validator per operation, built once when Ansible's main process loads this plugin; the worker processes
# it forks for each host's task inherit them.
_VALIDATORS = dict((op, ArgumentSpecValidator(argument_spec(op), **ARG_RULES)) for op in READ_ONLY)
if HAS_PYGHMI:
    # Likewise the first-use work of the crypto and resolver libraries of every IPMI session (see warm_up).
    pyghmi_compat.warm_up()


def _validator(op):
    return _VALIDATORS[op]


class BmcActionModule(ActionBase):
    """Subclasses set ``OPERATION`` ('power', 'boot' or 'info') and ``MODULE``."""

    OPERATION = None
    MODULE = None
    TRANSFERS_FILES = False

    def _host_value(self, variables, key):
        if key not in variables:
            return None
        return self._templar.template(variables[key])

    def _with_host_defaults(self, args, task_vars):
        if args.get('bmcs') is not None:
            return args
        for key in HOSTVAR_OPTIONS:
            if args.get(key) is None:
                value = self._host_value(task_vars, key)
                if value is not None:
                    args[key] = value
        return args

    def _resolve_hosts(self, args, task_vars):
        """Turn inventory host names in ``bmcs`` into entries from their bmc_* variables."""
        hostvars = task_vars.get('hostvars', {})
        resolved = []
        for item in args['bmcs']:
            if not isinstance(item, str):
                resolved.append(item)
                continue
            if item not in hostvars:
                resolved.append({'name': item, 'host': None, '_unknown_host': True})
                continue
            hv = hostvars[item]
            entry = {'name': item}
            for key in BMC_FLEET_ITEM_SPEC:
                if key == 'name':
                    continue
                var = 'bmc_' + key
                if var in hv:
                    value = self._templar.template(hv[var])
                    if value is not None:
                        entry[key] = value
            resolved.append(entry)
        args['bmcs'] = resolved
        return args

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(BmcActionModule, self).run(tmp, task_vars)
        del tmp
        args = self._with_host_defaults(dict(self._task.args), task_vars)
        secrets = [args.get('bmc_password')]

        if self._connection.transport != 'local':
            # Not on the controller: run the module where the task runs.
            if args.get('bmcs') is not None and any(isinstance(i, str) for i in args['bmcs']):
                result.update(failed=True, msg='bmcs given as inventory host names can only be resolved when the '
                                               'task runs on the controller (delegate_to: localhost); give dicts')
                return result
            result.update(self._execute_module(module_name=self.MODULE, module_args=args, task_vars=task_vars))
            return result

        if args.get('bmcs') is not None:
            args = self._resolve_hosts(args, task_vars)
            unknown = [i['name'] for i in args['bmcs'] if isinstance(i, dict) and i.pop('_unknown_host', False)]
            if unknown:
                result.update(failed=True, msg='bmcs names hosts that are not in the inventory: %s'
                              % ', '.join(sorted(unknown)[:20]))
                return result
            for item in args['bmcs']:
                if isinstance(item, dict):
                    secrets.append(item.get('password'))

        if not boolean(self._host_value(task_vars, IN_PROCESS_VAR) if IN_PROCESS_VAR in task_vars else True,
                       strict=False):
            # Asked to run the module as a separate process on the controller.
            result.update(self._execute_module(module_name=self.MODULE, module_args=args, task_vars=task_vars))
            return mask_secrets(result, secrets)

        args = _plain(args)
        validation = _validator(self.OPERATION).validate(args)
        secrets.extend(str(v) for v in getattr(validation, '_no_log_values', ()) or ())
        if validation.error_messages:
            result.update(failed=True, msg='%s: %s' % (self.MODULE, '; '.join(validation.error_messages)))
            return mask_secrets(result, secrets)
        for warning in validation._warnings if hasattr(validation, '_warnings') else ():
            self._display.warning(str(warning.get('option') if isinstance(warning, dict) else warning))
        if not HAS_PYGHMI:
            result.update(failed=True, msg='%s needs the Python library pyghmi on the controller: '
                                           'pip install pyghmi==1.6.19' % self.MODULE)
            return result
        params = validation.validated_parameters
        name = None
        if args.get('bmcs') is None:
            name = '%s (%s:%s)' % (task_vars.get('inventory_hostname', params.get('bmc_host')),
                                   params.get('bmc_host'), params.get('bmc_port') or
                                   (623 if params.get('bmc_protocol') == 'ipmi' else 443))
        outcome = execute(self.OPERATION, params, check_mode=bool(self._task.check_mode), name=name)
        if not self._task.diff or READ_ONLY[self.OPERATION]:
            outcome.pop('diff', None)
        result.update(outcome)
        return mask_secrets(result, secrets)
