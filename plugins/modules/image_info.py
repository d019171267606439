#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: image_info
short_description: Read the provisioner's image catalog
version_added: 0.1.0
description:
  - Returns one image entry of the provisioner's catalog, or all of them, without changing anything.
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
      - Name of one image. An image that is not in the catalog gives an empty RV(images), not a failure.
    type: str
seealso:
  - module: ingot.metal.image
'''

EXAMPLES = r'''
- name: The whole catalog
  ingot.metal.image_info:
    provisioner_url: http://10.0.0.1:8080
    provisioner_token: "{{ vault_provisioner_token }}"
  register: catalog

- name: Is debian-12 there?
  ingot.metal.image_info:
    name: debian-12
  register: deb
'''

RETURN = r'''
images:
  description: The catalog entries, sorted by name.
  returned: success
  type: list
  elements: dict
  sample:
    - name: debian-12
      url: http://10.0.0.1:8080/images/debian-12.tar.gz
      sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      format: tar.gz
      size: 524288000
error_kind:
  description: On failure, what kind of failure (auth, unreachable, timeout, certificate, protocol, server).
  returned: failure
  type: str
  sample: unreachable
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ingot.metal.plugins.module_utils.provisioner import argument_spec, run_module


def read_images(client, params, check_mode):
    if params.get('name'):
        image = client.get_image(params['name'], missing_ok=True)
        images = [image] if image is not None else []
    else:
        images = client.list_images()
    return {'changed': False, 'images': sorted(images, key=lambda i: str(i.get('name')))}


def main():
    module = AnsibleModule(argument_spec=argument_spec(dict(name=dict(type='str'))), supports_check_mode=True)
    run_module(module, read_images)


if __name__ == '__main__':
    main()
