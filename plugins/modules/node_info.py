#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: node_info
short_description: Read nodes from the provisioner's registry
version_added: 0.1.0
description:
  - Returns the registry records of one node, or of every node matching the filters, without changing anything.
  - Optionally returns each node's event log (registration, transitions, deploy agent reports).
author:
  - ingot.metal contributors (@ingot-metal)
extends_documentation_fragment:
  - ingot.metal.provisioner
  - ingot.metal.attributes
  - ingot.metal.attributes.info_module
  - ingot.metal.attributes.actiongroup_provisioner
options:
  name:
    description:
      - Name (or id) of one node. A node that is not registered gives an empty RV(nodes), not a failure.
      - Without it, every node matching the filters is returned.
    type: str
  state:
    description:
      - Only nodes in this lifecycle state.
    type: str
    choices: [discovered, ready, allocated, deploying, deployed, deploy_failed, releasing, release_failed]
  pool:
    description:
      - Only nodes of this pool.
    type: str
  owner:
    description:
      - Only nodes allocated to this owner.
    type: str
  allocation_name:
    description:
      - Only the node allocated under this name (with O(owner), the node of one allocation).
    type: str
  tags:
    description:
      - Only nodes that have all these tags.
    type: list
    elements: str
  maintenance:
    description:
      - Only nodes in maintenance (V(true)) or out of it (V(false)).
    type: bool
  events:
    description:
      - Also return each node's event log in its C(events) key. One more request per node; meant for one node or
        a few.
    type: bool
    default: false
seealso:
  - module: ingot.metal.node
  - plugin: ingot.metal.provisioner
    plugin_type: inventory
'''

EXAMPLES = r'''
- name: Ready nodes of rack3 with SSDs
  ingot.metal.node_info:
    provisioner_url: http://10.0.0.1:8080
    provisioner_token: "{{ vault_provisioner_token }}"
    state: ready
    pool: rack3
    tags: [ssd]
  register: ready

- name: How many
  ansible.builtin.debug:
    msg: "{{ ready.nodes | length }} nodes ready in rack3"

- name: One node with its events, to see why a deploy failed
  ingot.metal.node_info:
    name: r3-n01
    events: true
  register: one
'''

RETURN = r'''
nodes:
  description: The matching node records, sorted by name.
  returned: success
  type: list
  elements: dict
  sample:
    - id: 6c1c9e4e-3d55-4a3e-9a8b-0f1e2d3c4b5a
      name: r3-n01
      macs: ['02:00:0a:fb:00:11']
      state: deployed
      maintenance: false
      pool: rack3
      tags: [ssd]
      facts: {cpus: 16, memory_mib: 65536, disk_gib: 960}
      bmc: {address: 10.0.3.101, port: 623, protocol: ipmi}
      owner: alice
      allocation_name: builder1
      image: debian-12
      ip_address: 10.0.3.31
      ssh_host_keys: {ed25519: "ssh-ed25519 AAAAC3Nza..."}
      docker_url: null
      last_error: null
error_kind:
  description: On failure, what kind of failure (auth, unreachable, timeout, certificate, protocol, server).
  returned: failure
  type: str
  sample: auth
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ingot.metal.plugins.module_utils.provisioner import STATES, argument_spec, run_module

INFO_SPEC = dict(
    name=dict(type='str'),
    state=dict(type='str', choices=list(STATES)),
    pool=dict(type='str'),
    owner=dict(type='str'),
    allocation_name=dict(type='str'),
    tags=dict(type='list', elements='str'),
    maintenance=dict(type='bool'),
    events=dict(type='bool', default=False),
)


def _matches(node, params):
    for key in ('state', 'pool', 'owner', 'allocation_name', 'maintenance'):
        if params.get(key) is not None and node.get(key) != params[key]:
            return False
    if params.get('tags') and not set(params['tags']) <= set(node.get('tags') or []):
        return False
    return True


def read_nodes(client, params, check_mode):
    if params.get('name'):
        node = client.get_node(params['name'], missing_ok=True)
        nodes = [node] if node is not None else []
    else:
        nodes = client.list_nodes(state=params.get('state'), pool=params.get('pool'), owner=params.get('owner'))
    nodes = sorted((n for n in nodes if _matches(n, params)), key=lambda n: str(n.get('name')))
    if params['events']:
        for node in nodes:
            node['events'] = client.node_events(node.get('id') or node['name'])
    return {'changed': False, 'nodes': nodes}


def main():
    module = AnsibleModule(argument_spec=argument_spec(INFO_SPEC), supports_check_mode=True)
    run_module(module, read_nodes)


if __name__ == '__main__':
    main()
