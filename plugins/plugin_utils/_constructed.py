# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Constructed inventory (``compose``, ``groups``, ``keyed_groups``) made fast for thousands of hosts.

Private to the collection: it may change at any time; the ``ingot.metal.provisioner`` inventory uses it.

:class:`MemoizedConstructable` is ansible's ``Constructable`` with two speed-ups, both active only inside
:meth:`MemoizedConstructable.constructed_fast` and only where they apply; anywhere else the stock methods run:

* an expression is evaluated once per distinct value of the variables it reads (:func:`expression_reads`),
  unless it is not pure (lookups, magic variables, random filters...): then it is evaluated for every host;
* with ansible-core 2.19's templar, each expression is compiled once instead of at every evaluation, and group
  conditionals go through ``evaluate_conditional`` (without it, ansible's own ``_add_host_to_composed_groups``
  runs).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import copy
import json

from ansible.errors import AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import Constructable
from ansible.utils.vars import combine_vars

try:
    import jinja2
    from jinja2 import nodes as jinja_nodes
except ImportError:  # pragma: no cover - ansible-core always brings Jinja2
    jinja2 = None

# Evaluating a constructed expression costs about a millisecond in ansible-core 2.19 (it is compiled again every
# time), which for 10,000 hosts and a few expressions is most of the inventory's run time. An expression is a
# function of the variables it reads, so it is evaluated once per distinct value of what it reads (the parts of the
# variables it names: ``ingot_facts.memory_mib``, not all of ``ingot_facts``), and reused for every host with the
# same values. Expressions that call lookups, read magic variables or use a random filter are evaluated for every
# host, as ansible does.
_NOT_PURE_CALLS = frozenset(('lookup', 'query', 'q', 'now', 'lipsum', 'undef'))
_NOT_PURE_FILTERS = frozenset(('random', 'shuffle', 'password_hash', 'random_mac', 'comment'))
_MUTATORS = frozenset(('append', 'extend', 'insert', 'pop', 'popitem', 'remove', 'clear', 'update', 'setdefault',
                       'sort', 'reverse', 'add', 'discard'))
_MAGIC_NAMES = frozenset(('vars', 'hostvars', 'groups', 'group_names', 'inventory_hostname', 'omit', 'environment',
                          'play_hosts', 'ansible_play_hosts'))


def expression_reads(expression):
    """The variable paths an expression reads, as tuples of (kind, key) steps after a name; None if it must
    be evaluated for every host (not pure, magic variables, or not parsable here)."""
    if jinja2 is None or not isinstance(expression, str) or '{{' in expression or '{%' in expression:
        return None
    try:
        tree = jinja2.Environment().parse('{{ (%s) }}' % expression)
    except Exception:
        return None
    paths = set()

    def chain(node):
        steps = []
        while True:
            if isinstance(node, jinja_nodes.Getattr):
                steps.append(('attr', node.attr))
                node = node.node
            elif isinstance(node, jinja_nodes.Getitem) and isinstance(node.arg, jinja_nodes.Const) \
                    and isinstance(node.arg.value, (str, int)) and not isinstance(node.arg.value, bool):
                steps.append(('item', node.arg.value))
                node = node.node
            else:
                return node, list(reversed(steps))

    def visit(node):
        if isinstance(node, jinja_nodes.Call):
            callee = node.node
            if isinstance(callee, jinja_nodes.Name) and callee.name in _NOT_PURE_CALLS:
                raise ValueError(callee.name)
            if isinstance(callee, jinja_nodes.Getattr) and callee.attr in _MUTATORS:
                raise ValueError(callee.attr)
        if isinstance(node, (jinja_nodes.Filter, jinja_nodes.Test)) and node.name.rsplit('.', 1)[-1] in _NOT_PURE_FILTERS:
            raise ValueError(node.name)   # by its short name, or its FQCN (ansible.builtin.random)
        if isinstance(node, (jinja_nodes.Getattr, jinja_nodes.Getitem)):
            root, steps = chain(node)
            if isinstance(root, jinja_nodes.Name):
                if root.name in _MAGIC_NAMES:
                    raise ValueError(root.name)
                paths.add((root.name,) + tuple(steps))
                if isinstance(node, jinja_nodes.Getitem) and not steps:
                    visit(node.arg)
                return
        if isinstance(node, jinja_nodes.Name):
            if node.name in _MAGIC_NAMES:
                raise ValueError(node.name)
            paths.add((node.name,))
            return
        for child in node.iter_child_nodes():
            visit(child)

    try:
        visit(tree)
    except ValueError:
        return None
    return tuple(sorted(paths, key=repr))


def _read(variables, path):
    """What ``path`` reads from ``variables``: [steps resolved, value], or [] when the variable is undefined.

    Resolution stops where a step could mean something else than a key (``facts.items`` is dict.items), so the
    value then stands for everything the expression could see."""
    if path[0] not in variables:
        return []
    value = variables[path[0]]
    used = 0
    for kind, key in path[1:]:
        if isinstance(value, dict) and key in value and (kind == 'item' or not hasattr(dict, key)):
            value = value[key]
        elif isinstance(value, list) and kind == 'item' and isinstance(key, int) and -len(value) <= key < len(value):
            value = value[key]
        else:
            break
        used += 1
    return [used, value]


class MemoizedConstructable(Constructable):
    """``Constructable`` whose expressions are evaluated once per distinct input inside :meth:`constructed_fast`."""

    _memo = None
    _reads = None
    _composing = False

    @contextlib.contextmanager
    def constructed_fast(self):
        """Memoise the constructed expressions (and compile them once) for the hosts added inside this block."""
        self._memo, self._reads = {}, {}
        try:
            with self._compiled_once():
                yield
        finally:
            self._memo = self._reads = None

    def _memo_key(self, kind, expression, variables):
        reads = self._reads.get(expression, False)
        if reads is False:
            reads = self._reads[expression] = expression_reads(expression)
        if reads is None:
            return None
        try:
            return json.dumps([kind, expression] + [_read(variables, path) for path in reads], sort_keys=True)
        except (TypeError, ValueError):
            return None   # a value JSON cannot tell apart: evaluate

    def _memoized(self, kind, expression, variables, evaluate):
        key = self._memo_key(kind, expression, variables) if self._memo is not None else None
        if key is None:
            return evaluate()
        try:
            ok, value = self._memo[key]
        except KeyError:
            try:
                ok, value = True, evaluate()
            except Exception as e:  # the same error for every host that reads the same values
                ok, value = False, e
            self._memo[key] = (ok, value)
        if not ok:
            raise value
        if self._composing and isinstance(value, (dict, list)):
            return copy.deepcopy(value)   # becomes a host variable: each host gets its own
        return value

    def _set_composite_vars(self, compose, variables, host, strict=False):
        self._composing = True
        try:
            return super(MemoizedConstructable, self)._set_composite_vars(compose, variables, host, strict=strict)
        finally:
            self._composing = False

    def _compose(self, template, variables, *args, **kwargs):
        base = super(MemoizedConstructable, self)._compose
        try:
            use_extra = self.get_option('use_extra_vars')
        except Exception:
            use_extra = False
        if use_extra and self._vars:
            variables = combine_vars(variables, self._vars)
        return self._memoized('compose', template, variables, lambda: base(template, variables, *args, **kwargs))

    def _add_host_to_composed_groups(self, groups, variables, host, strict=False, fetch_hostvars=True):
        if not hasattr(self.templar, 'evaluate_conditional'):  # ansible-core < 2.19: as ansible does it
            return super(MemoizedConstructable, self)._add_host_to_composed_groups(
                groups, variables, host, strict=strict, fetch_hostvars=fetch_hostvars)
        if not groups or not isinstance(groups, dict):
            return
        if fetch_hostvars:
            variables = combine_vars(variables, self.inventory.get_host(host).get_vars())

        def evaluate(conditional):
            self.templar.available_variables = variables
            return self.templar.evaluate_conditional(conditional)

        for group_name, conditional in groups.items():
            group_name = self._sanitize_group_name(group_name)
            try:
                result = self._memoized('group', conditional, variables, lambda: evaluate(conditional))
            except Exception as e:
                if strict:
                    raise AnsibleParserError('Could not add host %s to group %s: %s' % (host, group_name, to_native(e)))
                continue
            if result:
                self.inventory.add_child(self.inventory.add_group(group_name), host)

    @contextlib.contextmanager
    def _compiled_once(self):
        """ansible-core 2.19 compiles an expression again for every evaluation; compile each one once here."""
        engine = getattr(self.templar, '_engine', None)
        compile_expression = getattr(engine, '_compile_expression', None)
        if compile_expression is None or '_compile_expression' in vars(engine):
            yield
            return
        compiled = {}

        def cached(expression, options):
            key = (str(expression), options)
            try:
                return compiled[key]
            except (KeyError, TypeError):
                pass
            result = compile_expression(expression, options)
            try:
                compiled[key] = result
            except TypeError:
                pass
            return result

        engine._compile_expression = cached
        try:
            yield
        finally:
            del engine._compile_expression
