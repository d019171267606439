#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: bmc_info
short_description: Read facts from machines' BMCs (IPMI or Redfish)
version_added: 0.1.0
description:
  - Reads, without changing anything, what a BMC knows of its machine - device id and firmware, system GUID,
    FRU (vendor, product, serial), power state, boot override, sensors, and the machine's NIC MACs where the
    BMC reports them.
  - A section the BMC does not implement is returned as V(null) and listed in RV(unsupported); wrong
    credentials or an unreachable BMC fail the task.
  - Reads one BMC, or a whole fleet inside one task with O(bmcs).
author:
  - ingot.metal contributors (@ingot-metal)
extends_documentation_fragment:
  - ingot.metal.bmc
  - ingot.metal.attributes
  - ingot.metal.attributes.info_module
  - ingot.metal.attributes.actiongroup_bmc
options:
  gather:
    description:
      - Which sections to read. Reading sensors is the slowest part on most BMCs.
    type: list
    elements: str
    default: [all]
    choices: [all, device, guid, power, boot, fru, macs, sensors]
notes:
  - Over IPMI, host NIC MACs come from FRU custom fields of the form C(MAC:xx:xx:xx:xx:xx:xx) (the lab's
    virtual BMCs and several vendors write them there); over Redfish, from the system's EthernetInterfaces.
seealso:
  - module: ingot.metal.bmc_power
  - module: ingot.metal.bmc_boot
'''

EXAMPLES = r'''
- name: Everything the BMC knows
  ingot.metal.bmc_info:
  delegate_to: localhost
  register: facts

- name: Power state of a whole group, one task
  ingot.metal.bmc_info:
    bmcs: "{{ groups['rack3'] }}"
    gather: [power]
  run_once: true
  delegate_to: localhost
  register: fleet

- name: Show the machines that are on
  ansible.builtin.debug:
    msg: "{{ fleet.bmcs | dict2items | selectattr('value.bmc_info.power', 'equalto', 'on') | map(attribute='key') }}"
'''

RETURN = r'''
bmc_info:
  description: The facts read (single BMC form). A section not gathered is absent; one unsupported is null.
  returned: success, single BMC form
  type: dict
  contains:
    device:
      description: Device id, firmware and IPMI version, manufacturer and product ids.
      type: dict
    guid:
      description: System GUID.
      type: str
    power:
      description: V(on) or V(off).
      type: str
    boot:
      description: Boot override (device, persistent, uefi).
      type: dict
    fru:
      description: Manufacturer, product, serial, part number, board and custom fields.
      type: dict
    macs:
      description: Host NIC MAC addresses, lower case.
      type: list
      elements: str
    sensors:
      description: Sensor readings (name, type, value, unit, health, states).
      type: list
      elements: dict
  sample: {"power": "on", "boot": {"device": "disk", "persistent": true, "uefi": false}, "macs": ["02:00:0a:fb:00:11"]}
unsupported:
  description: Sections this BMC does not implement.
  returned: success, single BMC form
  type: list
  elements: str
  sample: []
error_kind:
  description: On failure, what kind of failure (auth, unreachable, timeout, unsupported, insecure, protocol, invalid, certificate).
  returned: failure
  type: str
  sample: auth
bmcs:
  description: Fleet form. Per BMC name, its result (bmc_info, unsupported, failed, msg, error_kind).
  returned: fleet form
  type: dict
  sample: {"node1": {"changed": false, "failed": false, "bmc_info": {"power": "on"}}}
processes:
  description: Fleet form. How many processes drove the BMCs (see O(bmc_processes)).
  returned: fleet form
  type: int
  sample: 2
failed_bmcs:
  description: Fleet form. Names of the BMCs that failed.
  returned: fleet form
  type: list
  elements: str
  sample: []
summary:
  description: Fleet form. Counts of BMCs in total, changed and failed.
  returned: fleet form
  type: dict
  sample: {"total": 200, "changed": 0, "failed": 0}
'''

from ansible_collections.ingot.metal.plugins.module_utils.bmc_actions import run_module


def main():
    run_module('info')


if __name__ == '__main__':
    main()
