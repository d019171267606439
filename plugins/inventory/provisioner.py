# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: provisioner
short_description: Nodes of the ingot.metal provisioner's registry, grouped by lifecycle state and pool
version_added: 0.1.0
description:
  - Reads every node of the provisioner's registry (in large pages, fetched concurrently) and makes one host of each.
  - A host is named after its allocation (V(builder1)), or after the node (V(r3-n01)) while it is not allocated.
    When two owners use the same allocation name, those hosts are named after their nodes, with a warning.
  - Hosts are grouped by lifecycle state (C(state_ready), C(state_deployed), ...) and pool (C(pool_rack3)); nodes in
    maintenance also go to C(maintenance). With O(bmc_power), also by live power state (C(power_on), C(power_off)).
  - Host variables - C(ansible_host) (the node's IP address, once deployed); C(bmc_host), C(bmc_port),
    C(bmc_protocol), C(bmc_system_id) (what the C(ingot.metal.bmc_*) modules read; never a password); C(ingot_node),
    C(ingot_node_id), C(ingot_state), C(ingot_maintenance), C(ingot_pool), C(ingot_tags), C(ingot_macs), C(ingot_facts),
    C(ingot_owner), C(ingot_allocation_name), C(ingot_image), C(ingot_ssh_host_keys) (to pin), C(ingot_docker_url)
    (once set), C(ingot_last_error) (when set), C(ingot_power) (with O(bmc_power)).
  - Every value from the registry is marked unsafe, so it is never templated, whatever it contains.
  - "The inventory source is a YAML file whose name ends in C(ingot.yml), C(ingot.yaml), C(provisioner.yml) or
    C(provisioner.yaml), with C(plugin: ingot.metal.provisioner)."
author:
  - ingot.metal contributors (@ingot-metal)
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
  - ingot.metal.provisioner.plugin
options:
  plugin:
    description: The name of this plugin; it marks the file as an inventory source of this plugin.
    type: str
    required: true
    choices: [ingot.metal.provisioner]
  states:
    description:
      - Only nodes in these lifecycle states. All nodes when empty.
    type: list
    elements: str
    default: []
  pools:
    description:
      - Only nodes of these pools. All pools when empty.
    type: list
    elements: str
    default: []
  owners:
    description:
      - Only nodes allocated to these owners. All nodes when empty.
    type: list
    elements: str
    default: []
  include_maintenance:
    description:
      - Include nodes in maintenance.
    type: bool
    default: true
  on_error:
    description:
      - What happens when the provisioner cannot list its nodes (it answers an error, such as a 500 or a 401, or
        does not answer).
      - V(fail) ends the run with the error (exit code 1). Ansible itself only warns about an inventory source
        that fails and goes on with an empty inventory, which would look like an empty rack.
      - V(warn) leaves it to Ansible (a warning, unless C(inventory_any_unparsed_is_failed) is set).
    type: str
    choices: [fail, warn]
    default: fail
  page_size:
    description:
      - Nodes per request. The pages after the first are fetched concurrently. One large page is faster than
        several small ones; the service may answer with fewer, and the rest is fetched in further pages.
    type: int
    default: 10000
  page_concurrency:
    description:
      - How many pages are fetched at once.
    type: int
    default: 4
  bmc_power:
    description:
      - Read each node's power state live from its BMC (concurrently, best effort) into C(ingot_power) and the groups
        C(power_on) and C(power_off). A BMC that does not answer within O(bmc_timeout) leaves C(ingot_power) V(null)
        and is counted in one warning. Never cached.
      - Needs the Python library pyghmi on the controller, and BMC credentials (O(bmc_user), O(bmc_password)).
    type: bool
    default: false
  bmc_user:
    description:
      - BMC user for O(bmc_power).
    type: str
    env:
      - name: INGOT_BMC_USER
  bmc_password:
    description:
      - BMC password for O(bmc_power). Never logged. Keep it in Ansible Vault or the environment.
    type: str
    env:
      - name: INGOT_BMC_PASSWORD
  bmc_timeout:
    description:
      - Seconds each BMC has to answer, login included.
    type: float
    default: 5
  bmc_concurrency:
    description:
      - How many BMCs are read at once.
    type: int
    default: 64
  bmc_deadline:
    description:
      - Seconds the whole power read may take; past it, power states are left unknown and the inventory goes on.
    type: float
    default: 60
  bmc_validate_certs:
    description:
      - Redfish BMCs only. Verify their TLS certificates. Set to V(false) only for a lab.
    type: bool
    default: true
notes:
  - With O(cache), the node list is cached per URL and filters; the live power state is read on every run.
  - Composed variables, groups and keyed groups see the host variables above. Without O(compose), O(groups) and
    O(keyed_groups) no template is evaluated at all, which keeps the plugin fast for tens of thousands of nodes.
seealso:
  - module: ingot.metal.node_info
  - module: ingot.metal.node
'''

EXAMPLES = r'''
# lab.ingot.yml - every node, grouped by state and pool
plugin: ingot.metal.provisioner
provisioner_url: http://10.0.0.1:8080
# provisioner_token from the environment: INGOT_PROVISIONER_TOKEN

---
# deployed.ingot.yml - only deployed nodes of rack3, live power, cached for five minutes, more groups
plugin: ingot.metal.provisioner
provisioner_url: https://provisioner.example.com
states: [deployed]
pools: [rack3]
bmc_power: true
bmc_user: admin
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/ingot-inventory
cache_timeout: 300
compose:
  ansible_user: "'debian'"
  docker_host: ingot_docker_url
groups:
  big: ingot_facts.memory_mib >= 65536
keyed_groups:
  - key: ingot_tags
    prefix: tag
  - key: ingot_owner
    prefix: owner
    default_value: none
strict: true
'''

import hashlib
import json
import os

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.ingot.metal.plugins.module_utils._secrets import mask_secrets
from ansible_collections.ingot.metal.plugins.module_utils.provisioner import DEPLOYED, ProvisionerClient, ProvisionerError
from ansible_collections.ingot.metal.plugins.plugin_utils._constructed import MemoizedConstructable


class InventoryFailed(SystemExit):
    """Ends the run with the message (exit code 1). Ansible catches every Exception of an inventory plugin and
    only warns, then runs with no hosts: a provisioner that answers an error must not look like an empty rack."""


# Cache plugins that give back exactly the plain JSON data they were given (no tags).
PLAIN_JSON_CACHES = ('jsonfile', 'ansible.builtin.jsonfile', 'memory', 'ansible.builtin.memory')

VALID_SUFFIXES = ('ingot.yml', 'ingot.yaml', 'provisioner.yml', 'provisioner.yaml')

# The fields of a node record the inventory uses; the rest is not cached.
KEPT_FIELDS = ('id', 'name', 'macs', 'state', 'maintenance', 'maintenance_reason', 'pool', 'tags', 'facts', 'bmc',
               'owner', 'allocation_name', 'image', 'ip_address', 'ssh_host_keys', 'docker_url', 'last_error')


try:
    from ansible.template import trust_as_template as _trust_as_template  # noqa: F401  ansible-core >= 2.19
    DATA_TAGGING = True
except ImportError:  # pragma: no cover - ansible-core < 2.19
    DATA_TAGGING = False


def make_unsafe(value):
    """Mark a value from the registry so that it is never templated.

    Before ansible-core 2.19 every string must be wrapped as ``AnsibleUnsafeText`` (``wrap_var``). From 2.19 on,
    Ansible templates only what is tagged ``TrustedAsTemplate``, so data is unsafe by default: the registry's
    values are plain JSON (never tagged; :func:`untagged` guarantees it for what comes back from a cache) and are
    handed over as they are. ``wrap_var`` would only copy them, at a cost of a second per 10,000 nodes.
    """
    if DATA_TAGGING:
        return value
    return wrap_var(value)


def untagged(data):
    """The same JSON data with every tag (trust above all) removed: what a cache plugin gives back may carry tags."""
    if not DATA_TAGGING:
        return data
    return json.loads(json.dumps(data))


def host_vars(node):
    """The host variables of one node record (not yet marked unsafe)."""
    hv = {
        'ingot_node': node.get('name'),
        'ingot_node_id': node.get('id'),
        'ingot_state': node.get('state'),
        'ingot_maintenance': bool(node.get('maintenance')),
        'ingot_pool': node.get('pool'),
        'ingot_tags': node.get('tags') or [],
        'ingot_macs': node.get('macs') or [],
        'ingot_facts': node.get('facts') or {},
        'ingot_owner': node.get('owner'),
        'ingot_allocation_name': node.get('allocation_name'),
        'ingot_image': node.get('image'),
        'ingot_ssh_host_keys': node.get('ssh_host_keys') or {},
    }
    bmc = node.get('bmc') or {}
    if bmc.get('address'):
        hv['bmc_host'] = bmc['address']
        if bmc.get('port') is not None:
            hv['bmc_port'] = bmc['port']
        if bmc.get('protocol'):
            hv['bmc_protocol'] = bmc['protocol']
        if bmc.get('system_id'):
            hv['bmc_system_id'] = bmc['system_id']
    if node.get('state') == DEPLOYED and node.get('ip_address'):
        hv['ansible_host'] = node['ip_address']
    if node.get('docker_url'):
        hv['ingot_docker_url'] = node['docker_url']
    if node.get('maintenance_reason'):
        hv['ingot_maintenance_reason'] = node['maintenance_reason']
    if node.get('last_error'):
        hv['ingot_last_error'] = node['last_error']
    return hv


def host_names(nodes):
    """Host name of each node: its allocation name, or its node name when unallocated or ambiguous."""
    counts = {}
    node_names = set()
    for node in nodes:
        node_names.add(node.get('name'))
        alloc = node.get('allocation_name')
        if alloc:
            counts[alloc] = counts.get(alloc, 0) + 1
    names, clashes = [], []
    for node in nodes:
        alloc = node.get('allocation_name')
        if alloc and counts[alloc] == 1 and (alloc not in node_names or alloc == node.get('name')):
            names.append(alloc)
        else:
            if alloc:
                clashes.append('%s (node %s of %s)' % (alloc, node.get('name'), node.get('owner')))
            names.append(node.get('name'))
    return names, clashes


class InventoryModule(BaseInventoryPlugin, MemoizedConstructable, Cacheable):

    NAME = 'ingot.metal.provisioner'

    # Tests and the benchmark may inject a client factory.
    client_factory = None

    def verify_file(self, path):
        return bool(super(InventoryModule, self).verify_file(path)) and str(path).endswith(VALID_SUFFIXES)

    # ------------------------------------------------------------ data
    def _client(self):
        factory = self.client_factory or ProvisionerClient
        try:
            return factory(self.get_option('provisioner_url'), token=self.get_option('provisioner_token'),
                           validate_certs=self.get_option('provisioner_validate_certs'),
                           ca_path=self.get_option('provisioner_ca_path'),
                           timeout=self.get_option('provisioner_timeout'),
                           retries=self.get_option('provisioner_retries'))
        except ProvisionerError as e:
            raise AnsibleParserError('ingot.metal.provisioner inventory: %s' % e.message)

    def _filters(self):
        return {
            'states': sorted(set(self.get_option('states') or [])),
            'pools': sorted(set(self.get_option('pools') or [])),
            'owners': sorted(set(self.get_option('owners') or [])),
            'include_maintenance': bool(self.get_option('include_maintenance')),
        }

    def cache_key(self):
        """One cache entry per provisioner URL and filters (never the token)."""
        material = json.dumps({'url': str(self.get_option('provisioner_url') or '').rstrip('/'),
                               'filters': self._filters()}, sort_keys=True)
        return 'ingot_metal_provisioner_%s' % hashlib.sha256(material.encode('utf-8')).hexdigest()[:20]

    def fetch_nodes(self):
        """Nodes matching the filters, reduced to the fields the inventory uses, sorted by name."""
        client = self._client()
        f = self._filters()
        # One value of a filter is asked of the service; several are applied here.

        def one(values):
            return values[0] if len(values) == 1 else None

        try:
            nodes = client.list_nodes(state=one(f['states']), pool=one(f['pools']), owner=one(f['owners']),
                                      page_size=self.get_option('page_size'),
                                      concurrency=self.get_option('page_concurrency'))
        except ProvisionerError as e:
            message = 'ingot.metal.provisioner inventory: %s' % e.message
            if self.get_option('on_error') == 'warn':
                raise AnsibleParserError(message)
            raise InventoryFailed(message)
        states, pools, owners = set(f['states']), set(f['pools']), set(f['owners'])
        kept = []
        for node in nodes:
            if not isinstance(node, dict) or not node.get('name'):
                continue
            if (states and node.get('state') not in states) or (pools and node.get('pool') not in pools) \
                    or (owners and node.get('owner') not in owners) \
                    or (node.get('maintenance') and not f['include_maintenance']):
                continue
            kept.append(dict((k, node.get(k)) for k in KEPT_FIELDS))
        kept.sort(key=lambda n: str(n['name']))
        return kept

    def read_power(self, nodes, names):
        """Live power of each host, read from the BMCs concurrently; ``{host: 'on'|'off'|None}``."""
        targets = []
        for node, name in zip(nodes, names):
            bmc = node.get('bmc') or {}
            if bmc.get('address'):
                entry = {'name': name, 'host': bmc['address']}
                if bmc.get('port') is not None:
                    entry['port'] = bmc['port']
                if bmc.get('protocol'):
                    entry['protocol'] = bmc['protocol']
                targets.append(entry)
        power = dict((name, None) for name in names)
        if not targets:
            return power
        try:
            from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
            from ansible_collections.ingot.metal.plugins.module_utils import bmc as bmc_utils
            from ansible_collections.ingot.metal.plugins.module_utils.bmc_actions import argument_spec, execute
        except ImportError as e:
            self.display.warning('ingot.metal.provisioner inventory: live power needs pyghmi (%s)' % to_native(e))
            return power
        if not bmc_utils.HAS_PYGHMI:
            self.display.warning('ingot.metal.provisioner inventory: live power needs the Python library pyghmi '
                                 'on the controller (pip install pyghmi==1.6.19); ingot_power left unknown')
            return power
        params = ArgumentSpecValidator(argument_spec('info')).validate({
            'bmcs': targets, 'gather': ['power'], 'bmc_user': self.get_option('bmc_user'),
            'bmc_password': self.get_option('bmc_password'), 'bmc_timeout': float(self.get_option('bmc_timeout')),
            'bmc_retries': 0, 'bmc_concurrency': int(self.get_option('bmc_concurrency')),
            # In this process (Ansible's own, inside a deadline thread): no fork.
            'bmc_processes': 1,
            'bmc_validate_certs': self.get_option('bmc_validate_certs'),
        }).validated_parameters
        try:
            outcome = bmc_utils.run_with_deadline(lambda: execute('info', params), float(self.get_option('bmc_deadline')),
                                                  name='ingot-inventory-power')
        except Exception as e:  # best effort: the inventory goes on without power states
            self.display.warning('ingot.metal.provisioner inventory: reading power from %d BMCs did not finish within '
                                 'bmc_deadline=%ss (%s); ingot_power left unknown'
                                 % (len(targets), self.get_option('bmc_deadline'), type(e).__name__))
            return power
        failed = []
        for name, res in (outcome.get('bmcs') or {}).items():
            if res.get('failed'):
                failed.append(name)
            else:
                power[name] = (res.get('bmc_info') or {}).get('power')
        if failed:
            first = mask_secrets(outcome['bmcs'][sorted(failed)[0]].get('msg') or '', [self.get_option('bmc_password')])
            self.display.warning('ingot.metal.provisioner inventory: %d of %d BMCs did not give their power state '
                                 '(ingot_power left unknown); first: %s' % (len(failed), len(targets), first))
        return power

    # ------------------------------------------------------------ inventory
    def populate(self, nodes, power=None):
        inventory = self.inventory
        add_host, add_child, set_variable = inventory.add_host, inventory.add_child, inventory.set_variable
        sanitize = self._sanitize_group_name
        compose = self.get_option('compose')
        groups = self.get_option('groups')
        keyed_groups = self.get_option('keyed_groups')
        strict = self.get_option('strict')
        constructed = bool(compose or groups or keyed_groups)
        known_groups = {}

        def group(name):
            got = known_groups.get(name)
            if got is None:
                got = known_groups[name] = inventory.add_group(sanitize(name))
            return got

        source = getattr(inventory, 'current_source', None)
        file_vars = {'inventory_file': source, 'inventory_dir': os.path.dirname(source) if source else None}
        names, clashes = host_names(nodes)
        if clashes:
            self.display.warning('ingot.metal.provisioner inventory: allocation names used by more than one owner, or '
                                 'equal to another node\'s name; those hosts are named after their nodes: %s'
                                 % ', '.join(sorted(clashes)[:10]))
        seen = set()
        for node, raw_name in zip(nodes, names):
            if raw_name in seen:
                continue
            seen.add(raw_name)
            hv = make_unsafe(host_vars(node))
            if power is not None:
                hv['ingot_power'] = make_unsafe(power.get(raw_name))
            host = add_host(make_unsafe(raw_name))
            for key, value in hv.items():
                set_variable(host, key, value)
            add_child(group('state_%s' % node.get('state')), host)
            if node.get('pool'):
                add_child(group('pool_%s' % node['pool']), host)
            if node.get('maintenance'):
                add_child(group('maintenance'), host)
            if power is not None and hv.get('ingot_power') in ('on', 'off'):
                add_child(group('power_%s' % hv['ingot_power']), host)
            if constructed:
                # what ansible's fetch_hostvars would add, without merging every host's variables again
                hv.update(file_vars)
                if compose:
                    self._set_composite_vars(compose, hv, host, strict=strict)
                    hv = inventory.get_host(host).get_vars()
                self._add_host_to_composed_groups(groups, hv, host, strict=strict, fetch_hostvars=False)
                self._add_host_to_keyed_groups(keyed_groups, hv, host, strict=strict, fetch_hostvars=False)

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)
        key = self.cache_key()
        use_cache = self.get_option('cache')
        nodes = None
        if use_cache and cache:
            try:
                nodes = self._cache[key]
            except KeyError:
                nodes = None
        if nodes is not None:
            if self.get_option('cache_plugin') not in PLAIN_JSON_CACHES:
                nodes = untagged(nodes)
        else:
            nodes = self.fetch_nodes()
            if use_cache:
                self._cache[key] = nodes
        power = None
        if self.get_option('bmc_power'):
            power = self.read_power(nodes, host_names(nodes)[0])
        try:
            with self.constructed_fast():
                self.populate(nodes, power)
        except AnsibleError:
            raise
        except Exception as e:
            raise AnsibleParserError('ingot.metal.provisioner inventory: cannot build the inventory from %s: %s'
                                     % (self.get_option('provisioner_url'), to_native(e)))
