# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Load the inventory plugin as ansible's plugin loader would, without the collection finder.

The unit tests import the collection as a plain package (tests/unit/conftest.py), so the
plugin's option definitions (its DOCUMENTATION with the doc fragments it extends) are
registered here the way ``PluginLoader._load_config_defs`` does it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
import yaml

from ansible import constants as C
from ansible.parsing.dataloader import DataLoader
from ansible.inventory.data import InventoryData
from ansible.plugins.loader import fragment_loader
from ansible.utils.plugin_docs import add_fragments

from ansible_collections.ingot.metal.plugins.doc_fragments import provisioner as provisioner_fragment
from ansible_collections.ingot.metal.plugins.inventory import provisioner as plugin_module
from ansible_collections.ingot.metal.tests.unit.plugins.module_utils.provisioner_fake import install

NAME = 'ingot.metal.provisioner'


class _Fragments:
    """fragment_loader for add_fragments: ansible's own fragments, and this collection's."""

    def get(self, name, *args, **kwargs):
        if name == 'ingot.metal.provisioner':
            fragment = provisioner_fragment.ModuleDocFragment
            fragment.ansible_name = name
            return fragment
        if name.startswith('ingot.metal.'):
            return None
        if name.startswith('ansible.builtin.'):
            name = name[len('ansible.builtin.'):]
        return fragment_loader.get(name, *args, **kwargs)


def register_options():
    doc = yaml.safe_load(plugin_module.DOCUMENTATION)
    add_fragments(doc, plugin_module.__file__, fragment_loader=_Fragments(), is_module=False)
    C.config.initialize_plugin_configuration_definitions('inventory', NAME, doc['options'])
    return doc['options']


@pytest.fixture(scope='session')
def plugin_options():
    return register_options()


@pytest.fixture
def fake(monkeypatch):
    return install(monkeypatch)


@pytest.fixture
def make_plugin(plugin_options, tmp_path):
    """``make_plugin(config)`` -> (plugin, inventory, parse): parse(cache=True) parses the config file."""

    def make(config, filename='lab.ingot.yml'):
        path = tmp_path / filename
        path.write_text(yaml.safe_dump(dict({'plugin': NAME}, **config)))
        plugin = plugin_module.InventoryModule()
        plugin._load_name = NAME
        inventory = InventoryData()
        loader = DataLoader()

        def parse(cache=True):
            plugin.parse(inventory, loader, str(path), cache=cache)
            inventory.reconcile_inventory()
            return inventory
        return plugin, inventory, parse

    return make
