#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: node
short_description: Register, update and remove nodes in the provisioner's registry
version_added: 0.1.0
description:
  - Makes a node's record in the provisioner registry look as described - its MACs, BMC address, pool, tags,
    hardware facts, maintenance flag and Docker URL - or removes it.
  - Reads the record first and sends only what differs, so a second run reports no change. Options that are not
    set are left as they are.
  - A node found in V(discovered) (it PXE-booted unknown and registered itself) is enrolled, which makes it
    V(ready) for allocation, unless O(enrolled=false).
  - The lifecycle (allocate, deploy, release) is not set here; see M(ingot.metal.allocation) and
    M(ingot.metal.deployment).
author:
  - ingot.metal contributors (@ingot-metal)
extends_documentation_fragment:
  - ingot.metal.provisioner
  - ingot.metal.attributes
  - ingot.metal.attributes.actiongroup_provisioner
attributes:
  check_mode:
    support: full
    details: Reports what would change without changing anything.
  diff_mode:
    support: full
    details: Returns the record fields that change, before and after.
  idempotent:
    support: full
options:
  name:
    description:
      - Name of the node in the registry (or its id).
    type: str
    required: true
  state:
    description:
      - V(present) registers the node or updates its record; V(absent) removes it from the registry.
      - The registry removes only nodes that are V(discovered) or V(ready); see O(force).
    type: str
    default: present
    choices: [present, absent]
  macs:
    description:
      - MAC addresses of the node's NICs, the one that PXE-boots first. Compared without regard to order or case.
      - A node registered without MACs cannot PXE-boot until they are set.
    type: list
    elements: str
  bmc:
    description:
      - Where the node's BMC answers. Never a password; BMC credentials stay in Ansible variables.
      - Only the keys given are compared and changed.
    type: dict
    suboptions:
      address:
        description: Address (name or IP) of the BMC.
        type: str
      port:
        description: UDP port for IPMI, TCP port for Redfish.
        type: int
      protocol:
        description: How the BMC is driven.
        type: str
        choices: [ipmi, redfish]
  pool:
    description:
      - Pool the node belongs to (a rack, a site); allocations can ask for one.
    type: str
  tags:
    description:
      - Tags of the node (C(ssd), C(gpu)...); allocations can require them. The list replaces the node's tags;
        compared without regard to order.
    type: list
    elements: str
  facts:
    description:
      - Hardware facts (C(cpus), C(memory_mib), C(disk_gib), ...). Only the keys given are compared; they are merged
        into the facts the node reported.
    type: dict
  maintenance:
    description:
      - Whether the node is in maintenance - taken out of the pool; it is never allocated, and nothing automatic
        changes it.
    type: bool
  maintenance_reason:
    description:
      - Why the node is in maintenance, shown in listings.
    type: str
  docker_url:
    description:
      - The node's Docker endpoint (for example V(tcp://10.0.0.31:2376)), once Docker runs on it. An empty string clears it.
    type: str
  enrolled:
    description:
      - A new node is registered V(ready) (enrolled) or, with V(false), V(discovered).
      - An existing V(discovered) node is enrolled when V(true). An enrolled node is never moved back.
    type: bool
    default: true
  force:
    description:
      - With O(state=absent), remove the node even when it is allocated, deploying or deployed. Nothing is wiped.
    type: bool
    default: false
seealso:
  - module: ingot.metal.node_info
  - module: ingot.metal.allocation
  - module: ingot.metal.deployment
  - plugin: ingot.metal.provisioner
    plugin_type: inventory
'''

EXAMPLES = r'''
- name: Register a node of rack 3
  ingot.metal.node:
    provisioner_url: http://10.0.0.1:8080
    provisioner_token: "{{ vault_provisioner_token }}"
    name: r3-n01
    macs: ['02:00:0a:fb:00:11']
    bmc: {address: 10.0.3.101, port: 623, protocol: ipmi}
    pool: rack3
    tags: [ssd]
    facts: {cpus: 16, memory_mib: 65536, disk_gib: 960}

- name: Take a node out of the pool
  ingot.metal.node:
    name: r3-n01
    maintenance: true
    maintenance_reason: "DIMM errors, ticket 4711"

- name: Enroll every node that PXE-booted unknown, connection options set once
  module_defaults:
    group/ingot.metal.provisioner:
      provisioner_url: http://10.0.0.1:8080
      provisioner_token: "{{ vault_provisioner_token }}"
  block:
    - name: Find them
      ingot.metal.node_info:
        state: discovered
      register: found
    - name: Enroll them into rack3
      ingot.metal.node:
        name: "{{ item.name }}"
        pool: rack3
      loop: "{{ found.nodes }}"

- name: Remove a node from the registry
  ingot.metal.node:
    name: r3-n01
    state: absent
'''

RETURN = r'''
node:
  description: The node's record after the task (as it would be, in check mode); V(null) when absent.
  returned: success
  type: dict
  sample:
    id: 6c1c9e4e-3d55-4a3e-9a8b-0f1e2d3c4b5a
    name: r3-n01
    macs: ['02:00:0a:fb:00:11']
    state: ready
    maintenance: false
    pool: rack3
    tags: [ssd]
    facts: {cpus: 16, memory_mib: 65536, disk_gib: 960}
    bmc: {address: 10.0.3.101, port: 623, protocol: ipmi}
    owner: null
error_kind:
  description: On failure, what kind of failure (auth, unreachable, timeout, certificate, protocol, invalid, not_found,
    conflict, illegal_transition, server).
  returned: failure
  type: str
  sample: conflict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ingot.metal.plugins.module_utils.provisioner import (
    BMC_PROTOCOLS, DISCOVERED, INVALID, READY, REMOVABLE, ProvisionerError, argument_spec, diff_of, node_changes,
    node_ident, normalise_mac, run_module,
)

NODE_SPEC = dict(
    name=dict(type='str', required=True),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    macs=dict(type='list', elements='str'),
    bmc=dict(type='dict', options=dict(
        address=dict(type='str'),
        port=dict(type='int'),
        protocol=dict(type='str', choices=list(BMC_PROTOCOLS)),
    )),
    pool=dict(type='str'),
    tags=dict(type='list', elements='str'),
    facts=dict(type='dict'),
    maintenance=dict(type='bool'),
    maintenance_reason=dict(type='str'),
    docker_url=dict(type='str'),
    enrolled=dict(type='bool', default=True),
    force=dict(type='bool', default=False),
)

RECORD_FIELDS = ('state', 'macs', 'bmc', 'pool', 'tags', 'facts', 'maintenance', 'maintenance_reason', 'docker_url')


def _absent(client, params, current, check_mode):
    if current is None:
        return {'changed': False, 'node': None, 'diff': {'before': {}, 'after': {}}}
    if check_mode and current.get('state') not in REMOVABLE and not params['force']:
        raise ProvisionerError('node %s is %s; the registry removes only discovered or ready nodes'
                               % (current['name'], current.get('state')), INVALID,
                               hint='release it first (ingot.metal.allocation state=released), or set force=true')
    if not check_mode:
        client.delete_node(node_ident(current), force=params['force'])
    before = dict((k, current.get(k)) for k in ('name',) + RECORD_FIELDS)
    return {'changed': True, 'node': None, 'diff': {'before': before, 'after': {}}}


def _create(client, params, check_mode):
    body = {'name': params['name'], 'macs': [normalise_mac(m) for m in params.get('macs') or []],
            'state': READY if params['enrolled'] else DISCOVERED}
    for key in ('pool', 'tags', 'facts'):
        if params.get(key) is not None:
            body[key] = params[key]
    if params.get('bmc'):
        body['bmc'] = dict((k, v) for k, v in params['bmc'].items() if v is not None)
    # Not part of the registration body of the API: set right after it.
    later = dict((k, params[k]) for k in ('maintenance', 'maintenance_reason') if params.get(k) is not None)
    if params.get('docker_url'):
        later['docker_url'] = params['docker_url']
    if check_mode:
        node = dict(body)
        node.update(later)
        node.setdefault('maintenance', False)
    else:
        node = client.create_node(body)
        if later:
            try:
                node = client.update_node(node_ident(node), later)
            except ProvisionerError as e:
                e.partial = {'changed': True, 'node': node}
                raise
    keys = ('name',) + tuple(k for k in RECORD_FIELDS if node.get(k) is not None)
    return {'changed': True, 'node': node, 'diff': {'before': {}, 'after': dict((k, node.get(k)) for k in keys)}}


def _update(client, params, current, check_mode):
    node = current
    acted = False
    if params['enrolled'] and current.get('state') == DISCOVERED:
        acted = True
        if check_mode:
            node = dict(node, state=READY)
        else:
            node = client.enroll_node(node_ident(node), pool=params.get('pool'), tags=params.get('tags'))
    changes = node_changes(node, params)
    if changes:
        acted = True
        if check_mode:
            node = dict(node)
            node.update(changes)
        else:
            try:
                node = client.update_node(node_ident(node), changes)
            except ProvisionerError as e:
                if node is not current:
                    e.partial = {'changed': True, 'node': node}
                raise
    keys = ['name'] + [k for k in RECORD_FIELDS if current.get(k) != node.get(k)]
    return {'changed': acted, 'node': node,
            'diff': diff_of(current, node, keys) if acted else {'before': {}, 'after': {}}}


def ensure_node(client, params, check_mode):
    current = client.get_node(params['name'], missing_ok=True)
    if params['state'] == 'absent':
        return _absent(client, params, current, check_mode)
    if current is None:
        return _create(client, params, check_mode)
    return _update(client, params, current, check_mode)


def main():
    module = AnsibleModule(argument_spec=argument_spec(NODE_SPEC), supports_check_mode=True)
    run_module(module, ensure_node)


if __name__ == '__main__':
    main()
