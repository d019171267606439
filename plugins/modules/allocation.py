#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: allocation
short_description: Allocate a node from the provisioner's pool, or release it
version_added: 0.1.0
description:
  - An allocation is a node held by an O(owner) under a O(name) (the Docker host's name, for example V(builder1)).
  - V(allocated) claims one V(ready) node matching the constraints, atomically - two tasks at once never get the same
    node. If the owner already holds a node under that name, that node is returned and nothing changes.
  - V(released) gives the node back. A node that was only allocated goes back to V(ready) at once; a deployed (or
    failed) node is wiped first (V(releasing)), then becomes V(ready).
author:
  - ingot.metal contributors (@ingot-metal)
extends_documentation_fragment:
  - ingot.metal.provisioner
  - ingot.metal.attributes
  - ingot.metal.attributes.actiongroup_provisioner
attributes:
  check_mode:
    support: full
    details: Reports what would change; predicts a missing node from the ready nodes' records.
  diff_mode:
    support: full
    details: Returns the allocation's node, state and owner before and after.
  idempotent:
    support: full
    details: A second run returns the node the owner already holds under that name.
options:
  owner:
    description:
      - Who holds the node (a user, a team, a pipeline).
    type: str
    required: true
  name:
    description:
      - Name of the allocation, unique per owner; the dynamic inventory names the host after it.
    type: str
    required: true
  state:
    description:
      - V(allocated) holds a node under O(owner) and O(name); V(released) gives it back.
    type: str
    default: allocated
    choices: [allocated, released]
  pool:
    description:
      - Only a node of this pool.
    type: str
  tags:
    description:
      - Only a node that has all these tags.
    type: list
    elements: str
  min_cpus:
    description:
      - Only a node with at least this many CPUs (its C(cpus) fact).
    type: int
  min_memory_mib:
    description:
      - Only a node with at least this much memory in MiB (its C(memory_mib) fact).
    type: int
  min_disk_gib:
    description:
      - Only a node with at least this much disk in GiB (its C(disk_gib) fact).
    type: int
  wipe:
    description:
      - With O(state=released), erase the disk of a node that has been deployed to (the deploy agent boots in wipe
        mode). A node that was only allocated has nothing written to it and is released at once either way.
    type: bool
    default: true
  wait:
    description:
      - With O(state=allocated), when no node is available, keep trying until one is (another allocation is released,
        a node is enrolled) or O(wait_timeout) runs out. Without it, the task fails at once with the service's
        message.
      - With O(state=released), wait until the wipe has finished and the node is V(ready) again.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait at most. The task then fails with where things stood.
    type: int
    default: 900
  wait_interval:
    description:
      - Seconds between two polls at first; polling slows down gently up to 10 seconds.
    type: float
    default: 2
notes:
  - A node in maintenance is never allocated. Constraints are checked only when a node is allocated; a node already
    held under O(owner) and O(name) is kept, with a warning if it no longer matches them.
seealso:
  - module: ingot.metal.deployment
  - module: ingot.metal.node_info
'''

EXAMPLES = r'''
- name: A node with 8 CPUs and an SSD from rack3, for Docker host builder1
  ingot.metal.allocation:
    provisioner_url: http://10.0.0.1:8080
    provisioner_token: "{{ vault_provisioner_token }}"
    owner: ci
    name: builder1
    pool: rack3
    tags: [ssd]
    min_cpus: 8
  register: alloc

- name: Its BMC
  ansible.builtin.debug:
    msg: "{{ alloc.node.name }} - BMC {{ alloc.node.bmc.address }}"

- name: Give it back, wiped, and wait until it is ready again
  ingot.metal.allocation:
    owner: ci
    name: builder1
    state: released
    wait: true
'''

RETURN = r'''
node:
  description:
    - The allocated node's record (for O(state=released), the record after the release was accepted, or V(null)
      when nothing was allocated). In check mode, V(null) when a node would be allocated.
  returned: success
  type: dict
  sample:
    name: r3-n01
    state: allocated
    owner: ci
    allocation_name: builder1
    pool: rack3
    bmc: {address: 10.0.3.101, port: 623, protocol: ipmi}
candidates:
  description: In check mode, how many ready nodes match the constraints now.
  returned: check mode, O(state=allocated), when a node would be allocated
  type: int
  sample: 3
elapsed:
  description: Seconds spent waiting.
  returned: when it waited
  type: float
  sample: 12.5
error_kind:
  description: On failure, what kind of failure (no_node_available, illegal_transition, timeout, auth, unreachable, ...).
  returned: failure
  type: str
  sample: no_node_available
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ingot.metal.plugins.module_utils.provisioner import (
    ALLOCATED, HELD, ILLEGAL_TRANSITION, NO_NODE_AVAILABLE, READY, RELEASABLE, RELEASE_FAILED, RELEASING, WAIT_SPEC,
    ProvisionerError, argument_spec, describe_constraints, describe_node, diff_of, node_ident, satisfies, run_module,
    wait_for,
)

ALLOCATION_SPEC = dict(
    owner=dict(type='str', required=True),
    name=dict(type='str', required=True),
    state=dict(type='str', default='allocated', choices=['allocated', 'released']),
    pool=dict(type='str'),
    tags=dict(type='list', elements='str'),
    min_cpus=dict(type='int'),
    min_memory_mib=dict(type='int'),
    min_disk_gib=dict(type='int'),
    wipe=dict(type='bool', default=True),
)
ALLOCATION_SPEC.update(WAIT_SPEC)
ALLOCATION_SPEC.update(wait=dict(type='bool', default=False))

DIFF_KEYS = ('name', 'state', 'owner', 'allocation_name')
CONSTRAINTS = ('pool', 'tags', 'min_cpus', 'min_memory_mib', 'min_disk_gib')


def find_allocation(client, owner, name):
    """The nodes the registry lists under (owner, name), held ones first."""
    nodes = [n for n in client.list_nodes(owner=owner) if n.get('allocation_name') == name]
    return sorted(nodes, key=lambda n: (n.get('state') not in HELD, str(n.get('name'))))


def _allocated(client, params, check_mode):
    owner, name = params['owner'], params['name']
    constraints = dict((k, params.get(k)) for k in CONSTRAINTS if params.get(k) not in (None, []))
    held = [n for n in find_allocation(client, owner, name) if n.get('state') in HELD]
    if held:
        node = held[0]
        result = {'changed': False, 'node': node, 'diff': {'before': {}, 'after': {}}}
        if not satisfies(dict(node, state=READY, maintenance=False), constraints):
            result['warnings'] = ['node %s, held by %s as %s, does not match the constraints%s any more; it is kept'
                                  % (node.get('name'), owner, name, describe_constraints(constraints))]
        return result
    if check_mode:
        count = sum(1 for n in client.list_nodes(state=READY, pool=params.get('pool')) if satisfies(n, constraints))
        if not count and not params['wait']:
            raise ProvisionerError('no ready node matches an allocation as %r for owner %r%s'
                                   % (name, owner, describe_constraints(constraints)), NO_NODE_AVAILABLE,
                                   hint='register or release nodes, relax the constraints, or set wait=true')
        after = {'name': None, 'state': ALLOCATED, 'owner': owner, 'allocation_name': name}
        return {'changed': True, 'node': None, 'candidates': count, 'diff': {'before': {}, 'after': after}}

    def attempt():
        try:
            return client.allocate(owner, name, constraints)
        except ProvisionerError as e:
            if e.kind == NO_NODE_AVAILABLE and params['wait']:
                attempt.last = e
                return None
            raise

    attempt.last = None
    result = {}
    got = attempt()
    if got is None:
        got, result['elapsed'] = wait_for(
            attempt, lambda v: v is not None, params['wait_timeout'],
            'waiting for a node for %r of owner %r%s' % (name, owner, describe_constraints(constraints)),
            describe=lambda v: 'the last answer was: %s' % (attempt.last.detail or attempt.last.message),
            interval=params['wait_interval'])
    node, created = got
    result.update(changed=bool(created), node=node,
                  diff={'before': {}, 'after': dict((k, node.get(k)) for k in DIFF_KEYS)} if created
                  else {'before': {}, 'after': {}})
    return result


def _released(client, params, check_mode):
    owner, name = params['owner'], params['name']
    found = [n for n in find_allocation(client, owner, name) if n.get('state') != READY]
    if not found:
        return {'changed': False, 'node': None, 'diff': {'before': {}, 'after': {}}}
    before = found[0]
    state = before.get('state')
    result = {'changed': False, 'node': before, 'diff': {'before': {}, 'after': {}}}
    if state != RELEASING:  # releasing: already on its way back, nothing to ask
        if not check_mode:
            # The registry refuses a state it cannot release from (deploying), with its own message.
            after = client.release(node_ident(before), wipe=params['wipe'])
        elif state in RELEASABLE:
            after = dict(before, state=READY if state == ALLOCATED else RELEASING)
            if state == ALLOCATED:
                after.update(owner=None, allocation_name=None)
        else:
            raise ProvisionerError('node %s (held by %s as %s) is %s and cannot be released now'
                                   % (before.get('name'), owner, name, state), ILLEGAL_TRANSITION,
                                   hint='wait for the deploy to end (ingot.metal.deployment), then release it')
        result.update(changed=True, node=after, diff=diff_of(before, after, DIFF_KEYS))
    node = result['node']
    if params['wait'] and not check_mode and node.get('state') != READY:
        last = [node]

        def poll():
            last[0] = client.get_node(node_ident(before))
            return last[0]

        try:
            node, result['elapsed'] = wait_for(
                poll,
                lambda n: n.get('state') == READY or n.get('owner') not in (None, owner),
                params['wait_timeout'], 'releasing node %s (%s of %s)' % (before.get('name'), name, owner),
                failed=lambda n: ('releasing node %s failed: %s' % (n.get('name'), n.get('last_error') or 'no reason given')
                                  if n.get('state') == RELEASE_FAILED else None),
                describe=describe_node, interval=params['wait_interval'])
        except ProvisionerError as e:
            e.partial = {'changed': result['changed'], 'node': last[0]}
            raise
        result['node'] = node
        if result['changed']:
            result['diff'] = diff_of(before, node, DIFF_KEYS)
    return result


def ensure_allocation(client, params, check_mode):
    if params['state'] == 'allocated':
        return _allocated(client, params, check_mode)
    return _released(client, params, check_mode)


def main():
    module = AnsibleModule(argument_spec=argument_spec(ALLOCATION_SPEC), supports_check_mode=True)
    run_module(module, ensure_allocation)


if __name__ == '__main__':
    main()
