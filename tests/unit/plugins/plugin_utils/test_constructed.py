# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The constructed speed-ups (plugins/plugin_utils/_constructed.py) fall back to ansible's own methods wherever
they do not apply: outside ``constructed_fast``, without ansible-core 2.19's templar, for impure expressions."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.parsing.dataloader import DataLoader
from ansible.plugins.inventory import Constructable
from ansible.template import Templar

from ansible_collections.ingot.metal.plugins.plugin_utils._constructed import MemoizedConstructable

try:
    from ansible.template import trust_as_template as _t     # ansible-core >= 2.19: config expressions are trusted
except ImportError:  # pragma: no cover - ansible-core < 2.19
    def _t(expression):
        return expression


class Plugin(MemoizedConstructable):
    """The smallest plugin that constructs: a templar, no options but ``use_extra_vars`` unset."""

    def __init__(self, templar=None):
        self.templar = templar if templar is not None else Templar(loader=DataLoader())
        self._vars = {}

    def get_option(self, name):
        raise KeyError(name)


def test_outside_constructed_fast_nothing_is_memoised():
    plugin = Plugin()
    assert plugin._compose(_t('ingot_pool ~ "-x"'), {'ingot_pool': 'rack3'}) == 'rack3-x'
    assert plugin._memo is None
    with plugin.constructed_fast():
        assert plugin._compose(_t('ingot_pool ~ "-x"'), {'ingot_pool': 'rack3'}) == 'rack3-x'
        assert len(plugin._memo) == 1
    assert plugin._memo is None and plugin._reads is None


def test_an_impure_expression_is_evaluated_for_every_host():
    plugin = Plugin()
    with plugin.constructed_fast():
        plugin._compose(_t('ingot_tags | shuffle'), {'ingot_tags': ['a', 'b']})
        plugin._compose(_t('ingot_pool'), {'ingot_pool': 'rack3'})
        assert [k for k in plugin._memo if 'shuffle' in k] == []
        assert len(plugin._memo) == 1


def test_without_evaluate_conditional_ansibles_own_group_method_runs(monkeypatch):
    calls = []

    def stock(self, groups, variables, host, strict=False, fetch_hostvars=True):
        calls.append((groups, host, strict, fetch_hostvars))
    monkeypatch.setattr(Constructable, '_add_host_to_composed_groups', stock)

    class OldTemplar(object):       # ansible-core < 2.19: no evaluate_conditional, no _engine
        pass
    plugin = Plugin(OldTemplar())
    with plugin.constructed_fast():  # nothing to compile once either: no error
        plugin._add_host_to_composed_groups({'big': 'x > 1'}, {'x': 2}, 'h1', strict=True, fetch_hostvars=False)
    assert calls == [({'big': 'x > 1'}, 'h1', True, False)]


def test_the_compile_once_patch_is_removed_afterwards():
    plugin = Plugin()
    engine = getattr(plugin.templar, '_engine', None)
    if engine is None or not hasattr(engine, '_compile_expression'):   # ansible-core < 2.19: nothing to patch
        with plugin.constructed_fast():
            assert str(plugin._compose(_t('1 + 1'), {})) == '2'
        return
    with plugin.constructed_fast():
        assert '_compile_expression' in vars(engine)
        assert plugin._compose(_t('1 + 1'), {}) == 2
    assert '_compile_expression' not in vars(engine)
