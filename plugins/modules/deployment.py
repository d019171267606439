#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: deployment
short_description: Deploy an OS image to an allocated node and follow the deploy
version_added: 0.1.0
description:
  - Makes an allocated node V(deployed) with an image from the provisioner's catalog, SSH keys and cloud-init
    user-data. The registry moves the node to V(deploying), generates its SSH host keys (the public halves are
    returned, to be pinned) and a one-time deploy token; the node's next PXE boot runs the deploy agent, which
    writes the image, checks its sha256 while it streams, writes the cloud-init seed and reports.
  - This task does not power the node; set its boot device to PXE and power-cycle it through its BMC
    (M(ingot.metal.bmc_boot), M(ingot.metal.bmc_power)) after this task, with O(wait=false), then run this task
    again with O(wait=true) to follow the deploy to its end - or let the C(os_install) role do all of it.
  - A node already V(deployed) with the same image reports no change. A node in V(deploying) is followed, not
    deployed again. A node in V(deploy_failed) is deployed again (O(retry_failed)).
  - There is no C(absent) state - a deployed node cannot be undeployed in place; releasing it
    (M(ingot.metal.allocation) with C(state=released)) wipes it and puts it back in the pool.
author:
  - ingot.metal contributors (@ingot-metal)
extends_documentation_fragment:
  - ingot.metal.provisioner
  - ingot.metal.attributes
  - ingot.metal.attributes.actiongroup_provisioner
attributes:
  check_mode:
    support: full
    details: Reports whether a deploy would be started; does not wait.
  diff_mode:
    support: full
    details: Returns the node's state and image before and after.
  idempotent:
    support: full
    details: A node already deployed with the image is left as it is.
options:
  node:
    description:
      - Name (or id) of the node in the registry.
      - Mutually exclusive with O(allocation); one of the two is required.
    type: str
  allocation:
    description:
      - Name of the allocation that holds the node (the inventory host name), with O(owner).
    type: str
  owner:
    description:
      - Owner of the allocation. With O(node), the task refuses a node held by anyone else.
    type: str
  state:
    description:
      - V(deployed) is the only state; see the description for releasing a node.
    type: str
    default: deployed
    choices: [deployed]
  image:
    description:
      - Name of the image in the provisioner's catalog (M(ingot.metal.image)).
    type: str
    required: true
  ssh_keys:
    description:
      - Public SSH keys authorized for the default user of the image.
    type: list
    elements: str
    default: []
  user_data:
    description:
      - Extra cloud-init user-data. A string is passed as it is (start it with C(#cloud-config));
        a dict is sent as a C(#cloud-config) document.
    type: raw
  hostname:
    description:
      - Host name of the deployed system. The provisioner's default is the allocation name.
    type: str
  retry_failed:
    description:
      - Deploy again a node whose last deploy failed (V(deploy_failed)). With V(false) the task fails with the
        node's last error instead.
    type: bool
    default: true
  wait:
    description:
      - Follow the deploy until the node is V(deployed) (success) or V(deploy_failed) (the task fails with the
        node's last error and events).
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to follow the deploy at most. The task then fails with the node's state and last events; the deploy
        goes on in the provisioner, which ends it at its own C(deploy_timeout).
    type: int
    default: 1800
  wait_interval:
    description:
      - Seconds between two polls at first; polling slows down gently up to 10 seconds.
    type: float
    default: 2
notes:
  - On a node already V(deployed) with the image, O(ssh_keys) (when given), O(user_data) (when given, by its
    SHA-256) and O(hostname) are compared with what its deploy was given; when they differ the task reports no
    change and warns, naming those options, since a deployed node is not deployed again in place. To apply them,
    release the node and deploy it again.
seealso:
  - module: ingot.metal.allocation
  - module: ingot.metal.image
  - module: ingot.metal.bmc_power
  - module: ingot.metal.bmc_boot
'''

EXAMPLES = r'''
- name: Start the deploy of Debian 12 to the node of allocation builder1
  ingot.metal.deployment:
    provisioner_url: http://10.0.0.1:8080
    provisioner_token: "{{ vault_provisioner_token }}"
    owner: ci
    allocation: builder1
    image: debian-12
    ssh_keys: ["{{ lookup('ansible.builtin.file', '~/.ssh/id_ed25519.pub') }}"]
    user_data:
      packages: [curl]
    wait: false
  register: deploy

- name: PXE boot it through its BMC
  ingot.metal.bmc_boot:
    bmc_host: "{{ deploy.node.bmc.address }}"
    bmc_port: "{{ deploy.node.bmc.port }}"
    bmc_user: admin
    bmc_password: "{{ vault_bmc_password }}"
    device: pxe
  delegate_to: localhost

- name: Follow the deploy, 20 minutes at most
  ingot.metal.deployment:
    owner: ci
    allocation: builder1
    image: debian-12
    wait_timeout: 1200
  register: done

- name: Pin its SSH host key
  ansible.builtin.debug:
    msg: "{{ done.node.ip_address }} {{ done.node.ssh_host_keys.ed25519 }}"
'''

RETURN = r'''
node:
  description: The node's record after the task (in check mode, as it would be).
  returned: success, and on failure once the node is known
  type: dict
  sample:
    name: r3-n01
    state: deployed
    owner: ci
    allocation_name: builder1
    image: debian-12
    ip_address: 10.0.3.31
    ssh_host_keys: {ed25519: "ssh-ed25519 AAAAC3Nza..."}
events:
  description: The node's events since this task started the deploy (or since the deploy it followed started),
    oldest first - transitions and the deploy agent's progress reports.
  returned: when it waited
  type: list
  elements: dict
  sample:
    - {id: 41, time: "2026-01-05T10:00:02Z", kind: deploy, message: "deploy of debian-12 started", data: {}}
    - {id: 42, time: "2026-01-05T10:01:10Z", kind: agent_progress, message: "writing image",
       data: {status: progress, bytes_written: 524288000}}
progress:
  description: The last progress the deploy agent reported, if any.
  returned: when it waited
  type: dict
  sample: {message: "writing image", bytes_written: 524288000}
elapsed:
  description: Seconds spent following the deploy.
  returned: when it waited
  type: float
  sample: 94.2
error_kind:
  description: On failure, what kind of failure (failed, timeout, illegal_transition, not_found, invalid, auth, ...).
  returned: failure
  type: str
  sample: failed
'''

import hashlib
import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ingot.metal.plugins.module_utils.provisioner import (
    DEPLOY_FAILED, DEPLOYABLE, DEPLOYED, DEPLOYING, FAILED, ILLEGAL_TRANSITION, INVALID, NOT_FOUND, READY, RELEASE_FAILED,
    RELEASING, WAIT_SPEC, ProvisionerError, argument_spec, describe_node, diff_of, node_ident, run_module, wait_for,
)

DEPLOYMENT_SPEC = dict(
    node=dict(type='str'),
    allocation=dict(type='str'),
    owner=dict(type='str'),
    state=dict(type='str', default='deployed', choices=['deployed']),
    image=dict(type='str', required=True),
    ssh_keys=dict(type='list', elements='str', default=[], no_log=False),
    user_data=dict(type='raw'),
    hostname=dict(type='str'),
    retry_failed=dict(type='bool', default=True),
)
DEPLOYMENT_SPEC.update(WAIT_SPEC)
DEPLOYMENT_SPEC.update(wait_timeout=dict(type='int', default=1800))

RULES = dict(
    mutually_exclusive=[['node', 'allocation']],
    required_one_of=[['node', 'allocation']],
    required_by={'allocation': 'owner'},
)

DIFF_KEYS = ('name', 'state', 'image')


def find_node(client, params):
    if params.get('node'):
        node = client.get_node(params['node'])
        if params.get('owner') and node.get('owner') != params['owner']:
            raise ProvisionerError('node %s is held by %s, not by %s; it is not deployed'
                                   % (node.get('name'), node.get('owner') or 'nobody (it is %s)' % node.get('state'),
                                      params['owner']), INVALID,
                                   hint='allocate it first (ingot.metal.allocation), or check node and owner')
        return node
    owner, name = params['owner'], params['allocation']
    nodes = [n for n in client.list_nodes(owner=owner) if n.get('allocation_name') == name
             and n.get('state') not in (READY, RELEASING, RELEASE_FAILED)]
    if not nodes:
        raise ProvisionerError('owner %s holds no node as %s, so there is nothing to deploy to' % (owner, name),
                               NOT_FOUND, hint='allocate one first with ingot.metal.allocation')
    return nodes[0]


def user_data_text(value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return '#cloud-config\n' + json.dumps(value, indent=2, sort_keys=True) + '\n'
    raise ProvisionerError('user_data must be a string or a dict, not %s' % type(value).__name__, INVALID,
                           hint='give a #cloud-config document or a dict of cloud-config keys')


def _not_applied(client, node, params):
    """Warnings naming the options a deployed node was deployed with otherwise (they are not applied to it)."""
    if 'ssh_keys' not in node:   # a list answer: the node's own record says what the deploy was given
        node = client.get_node(node_ident(node))
    differ = []
    if params['ssh_keys'] and 'ssh_keys' in node \
            and [k.strip() for k in params['ssh_keys']] != [k.strip() for k in node.get('ssh_keys') or []]:
        differ.append('ssh_keys')
    user_data = user_data_text(params.get('user_data'))
    if user_data is not None and 'user_data_sha256' in node \
            and hashlib.sha256(user_data.encode('utf-8')).hexdigest() != node.get('user_data_sha256'):
        differ.append('user_data')
    if params.get('hostname') and node.get('hostname') and params['hostname'].lower() != node['hostname']:
        differ.append('hostname')
    if not differ:
        return []
    return ['node %s is already deployed with image %s and other %s than this task gives; they are NOT applied to '
            'a deployed node. To apply them, release the node (ingot.metal.allocation state=released) and '
            'deploy again.' % (node.get('name'), node.get('image'), ', '.join(differ))]


def _latest_event_id(client, node):
    events = client.node_events(node_ident(node))
    ids = [e.get('id') for e in events if isinstance(e.get('id'), int)]
    return max(ids) if ids else None


class Follower:
    """Polls the node and its new events; keeps the events and the last progress report."""

    def __init__(self, client, node, since, not_before=None):
        self.client = client
        self.ident = node_ident(node)
        self.since = since
        self.not_before = not_before
        self.events = []
        self.progress = None
        self.node = node

    def poll(self):
        node = self.node = self.client.get_node(self.ident)
        for event in self.client.node_events(self.ident, since=self.since):
            eid = event.get('id')
            if self.since is not None and isinstance(eid, int) and eid <= self.since:
                continue  # a service that reads ``since`` as a time may repeat the boundary
            if self.not_before and str(event.get('time') or '') < str(self.not_before):
                continue
            if isinstance(eid, int):
                self.since = eid
            self.events.append(event)
            data = event.get('data') or {}
            if 'bytes_written' in data or event.get('kind') in ('agent_progress', 'progress'):
                self.progress = dict(data, message=event.get('message'))
        return node


def _failure(node, follower, image):
    if node.get('state') != DEPLOY_FAILED:
        return None
    tail = [e.get('message') for e in follower.events[-3:] if e.get('message')]
    return 'deploying image %s to node %s failed: %s%s' % (
        image, node.get('name'), node.get('last_error') or 'no reason given',
        ('; last events: %s' % ' | '.join(tail)) if tail else '')


def ensure_deployed(client, params, check_mode):
    image = params['image']
    before = find_node(client, params)
    state = before.get('state')
    node = before
    changed = False
    if state == DEPLOYED:
        if before.get('image') not in (None, image):
            raise ProvisionerError('node %s is deployed with image %s, not %s'
                                   % (before.get('name'), before.get('image'), image), ILLEGAL_TRANSITION,
                                   hint='a deployed node is not deployed again in place; release it '
                                        '(ingot.metal.allocation state=released) and allocate and deploy again')
        return {'changed': False, 'node': before, 'diff': {'before': {}, 'after': {}},
                'warnings': _not_applied(client, before, params)}
    if state == DEPLOYING and before.get('image') not in (None, image):
        raise ProvisionerError('node %s is already being deployed with image %s, not %s'
                               % (before.get('name'), before.get('image'), image), ILLEGAL_TRANSITION,
                               hint='wait for that deploy to end, then release the node to deploy another image')
    if state == DEPLOY_FAILED and not params['retry_failed']:
        raise ProvisionerError('the last deploy of node %s failed: %s' % (before.get('name'),
                               before.get('last_error') or 'no reason given'), FAILED,
                               hint='set retry_failed=true to deploy again, or release the node')
    since = None
    if state != DEPLOYING:  # deploying: a deploy is running already, follow it
        if check_mode:
            if state not in DEPLOYABLE:
                raise ProvisionerError('node %s is %s; only an allocated node (or one whose deploy failed) is '
                                       'deployed' % (before.get('name'), state), ILLEGAL_TRANSITION,
                                       hint='allocate it first (ingot.metal.allocation)')
            node = dict(before, state=DEPLOYING, image=image)
        else:
            # The registry refuses any other state with its own message (node, state, what was asked).
            user_data = user_data_text(params.get('user_data'))
            since = _latest_event_id(client, before)
            node = client.deploy(node_ident(before), image, ssh_keys=params['ssh_keys'], user_data=user_data,
                                 hostname=params.get('hostname'))
        changed = True
    result = {'changed': changed, 'node': node, 'diff': diff_of(before, node, DIFF_KEYS) if changed
              else {'before': {}, 'after': {}}}
    if not params['wait'] or check_mode:
        return result
    # Following a deploy found running: its events start when the node entered deploying.
    follower = Follower(client, node, since, not_before=None if changed else before.get('state_changed_at'))
    try:
        node, result['elapsed'] = wait_for(
            follower.poll, lambda n: n.get('state') == DEPLOYED, params['wait_timeout'],
            'the deploy of image %s to node %s' % (image, node.get('name')),
            failed=lambda n: _failure(n, follower, image),
            describe=lambda n: describe_node(n) + _progress_text(follower),
            interval=params['wait_interval'])
    except ProvisionerError as e:
        e.partial = {'changed': changed, 'node': follower.node, 'events': follower.events,
                     'progress': follower.progress}
        raise
    result.update(node=node, events=follower.events, progress=follower.progress)
    if changed:
        result['diff'] = diff_of(before, node, DIFF_KEYS)
    return result


def _progress_text(follower):
    if not follower.progress:
        return '; the deploy agent has not reported yet (did the node PXE boot?)'
    p = follower.progress
    text = '; last report: %s' % (p.get('message') or 'progress')
    if p.get('bytes_written') is not None:
        text += ' (%s bytes written)' % p['bytes_written']
    return text


def main():
    module = AnsibleModule(argument_spec=argument_spec(DEPLOYMENT_SPEC), supports_check_mode=True, **RULES)
    run_module(module, ensure_deployed)


if __name__ == '__main__':
    main()
