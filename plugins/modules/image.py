#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: image
short_description: Add or remove OS images in the provisioner's catalog
version_added: 0.1.0
description:
  - Makes an image entry of the provisioner's catalog (name, URL, sha256, format, size) look as described, or
    removes it. Deploys name the image (M(ingot.metal.deployment)); the deploy agent fetches it from the URL and
    checks its sha256 while it streams.
  - Reads the catalog first; a second run reports no change. An entry that differs is replaced in one update
    (C(PUT /api/v1/images/NAME)), so a refused replacement keeps the old entry. The provisioner refuses to replace
    or remove an image while a node is deploying it, naming those nodes.
  - Builds nothing; the C(os_image) role builds images and registers them with this module.
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
    details: Returns the catalog entry before and after.
  idempotent:
    support: full
options:
  name:
    description:
      - Name of the image in the catalog, for example V(debian-12).
    type: str
    required: true
  state:
    description:
      - V(present) adds or replaces the entry; V(absent) removes it.
    type: str
    default: present
    choices: [present, absent]
  url:
    description:
      - Where the deploy agent downloads the image from (the provisioner's image store, C(/images/<file>), or any
        HTTP server the nodes reach). Required to add an image.
    type: str
  sha256:
    description:
      - Hex SHA-256 of the image file. Required to add an image.
    type: str
  format:
    description:
      - V(tar) and V(tar.gz) are root file system archives unpacked onto the node's disk; V(raw) is a disk image
        written as it is.
    type: str
    choices: [tar, tar.gz, raw]
    default: tar.gz
  size:
    description:
      - Size of the image file in bytes, for progress reports.
    type: int
seealso:
  - module: ingot.metal.image_info
  - module: ingot.metal.deployment
'''

EXAMPLES = r'''
- name: Register the image the os_image role built
  ingot.metal.image:
    provisioner_url: http://10.0.0.1:8080
    provisioner_token: "{{ vault_provisioner_token }}"
    name: debian-12
    url: http://10.0.0.1:8080/images/debian-12.tar.gz
    sha256: "{{ built.sha256 }}"
    format: tar.gz
    size: "{{ built.size }}"

- name: Retire an image
  ingot.metal.image:
    name: debian-11
    state: absent
'''

RETURN = r'''
image:
  description: The catalog entry after the task (as it would be, in check mode); V(null) when absent.
  returned: success
  type: dict
  sample:
    name: debian-12
    url: http://10.0.0.1:8080/images/debian-12.tar.gz
    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    format: tar.gz
    size: 524288000
replaced:
  description: Whether an entry that differed was removed and added again.
  returned: success
  type: bool
  sample: false
error_kind:
  description: On failure, what kind of failure (invalid, conflict, auth, unreachable, ...).
  returned: failure
  type: str
  sample: invalid
'''

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ingot.metal.plugins.module_utils.provisioner import (
    IMAGE_FORMATS, INVALID, ProvisionerError, argument_spec, diff_of, run_module,
)

IMAGE_SPEC = dict(
    name=dict(type='str', required=True),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    url=dict(type='str'),
    sha256=dict(type='str'),
    format=dict(type='str', default='tar.gz', choices=list(IMAGE_FORMATS)),
    size=dict(type='int'),
)

FIELDS = ('name', 'url', 'sha256', 'format', 'size')
_SHA256 = re.compile(r'^[0-9a-f]{64}$')


def desired_image(params):
    if not params.get('url') or not params.get('sha256'):
        raise ProvisionerError('image %s needs url and sha256 to be in the catalog' % params['name'], INVALID,
                               hint='set url and sha256')
    sha = params['sha256'].strip().lower()
    if not _SHA256.match(sha):
        raise ProvisionerError('sha256 of image %s is not 64 hex digits: %r' % (params['name'], params['sha256']),
                               INVALID, hint='give the hex SHA-256 of the image file (sha256sum)')
    body = {'name': params['name'], 'url': params['url'], 'sha256': sha, 'format': params['format']}
    if params.get('size') is not None:
        body['size'] = params['size']
    return body


def differs(current, desired):
    return [k for k in FIELDS if k in desired and current.get(k) != desired[k]]


def ensure_image(client, params, check_mode):
    current = client.get_image(params['name'], missing_ok=True)
    if params['state'] == 'absent':
        if current is None:
            return {'changed': False, 'image': None, 'replaced': False, 'diff': {'before': {}, 'after': {}}}
        if not check_mode:
            client.delete_image(params['name'])
        return {'changed': True, 'image': None, 'replaced': False,
                'diff': {'before': dict((k, current.get(k)) for k in FIELDS), 'after': {}}}
    desired = desired_image(params)
    if current is not None and not differs(current, desired):
        return {'changed': False, 'image': current, 'replaced': False, 'diff': {'before': {}, 'after': {}}}
    image = desired
    if not check_mode:
        image = client.put_image(desired) if current is not None else client.create_image(desired)
    keys = FIELDS if current is None else ('name',) + tuple(differs(current, desired))
    return {'changed': True, 'image': image, 'replaced': current is not None,
            'diff': diff_of(current, image, keys) if current is not None
            else {'before': {}, 'after': dict((k, image.get(k)) for k in keys)}}


def main():
    module = AnsibleModule(argument_spec=argument_spec(IMAGE_SPEC), supports_check_mode=True,
                           required_if=[('state', 'present', ('url', 'sha256'))])
    run_module(module, ensure_image)


if __name__ == '__main__':
    main()
