# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a module's ``main()`` in-process and get its result.

``set_module_args`` hands the arguments to ``AnsibleModule`` (ansible-core
2.19's ``patch_module_args`` where it exists, the ``_ANSIBLE_ARGS`` bytes
before that). The result is taken where ``AnsibleModule`` would print it, after
its own no_log filtering, and raised as ``AnsibleExitJson`` or
``AnsibleFailJson``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import json

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes


class AnsibleExitJson(Exception):
    def __init__(self, result):
        super(AnsibleExitJson, self).__init__(result)
        self.result = result


class AnsibleFailJson(Exception):
    def __init__(self, result):
        super(AnsibleFailJson, self).__init__(result)
        self.result = result


@contextlib.contextmanager
def set_module_args(args):
    args = dict(args)
    args.setdefault('_ansible_remote_tmp', '/tmp')
    args.setdefault('_ansible_keep_remote_files', False)
    try:
        from ansible.module_utils.testing import patch_module_args  # ansible-core >= 2.19
    except ImportError:  # pragma: no cover - older ansible-core
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(basic, '_ANSIBLE_ARGS', to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': args})))
            yield
        return
    with patch_module_args(args):
        yield


def _record(self, result):
    raise (AnsibleFailJson if result.get('failed') else AnsibleExitJson)(result)


def _exit_json(self, **kwargs):  # pragma: no cover - older ansible-core
    kwargs.setdefault('changed', False)
    raise AnsibleExitJson(kwargs)


def _fail_json(self, msg, **kwargs):  # pragma: no cover - older ansible-core
    kwargs.update(failed=True, msg=msg)
    raise AnsibleFailJson(kwargs)


def capture_module_results(monkeypatch):
    """Capture module results (after AnsibleModule's own formatting) instead of printing them."""
    if hasattr(basic.AnsibleModule, '_record_module_result'):
        monkeypatch.setattr(basic.AnsibleModule, '_record_module_result', _record)
    else:  # pragma: no cover - older ansible-core
        monkeypatch.setattr(basic.AnsibleModule, 'exit_json', _exit_json)
        monkeypatch.setattr(basic.AnsibleModule, 'fail_json', _fail_json)


def run_module(module, args, expect='exit'):
    """Run ``module.main()`` with ``args``; return the result, checking it exited (or failed) as expected."""
    with set_module_args(args):
        with pytest.raises((AnsibleExitJson, AnsibleFailJson)) as e:
            module.main()
    wanted = AnsibleExitJson if expect == 'exit' else AnsibleFailJson
    assert isinstance(e.value, wanted), e.value.result
    return e.value.result
