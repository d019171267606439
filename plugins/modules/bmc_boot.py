#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: bmc_boot
short_description: Set the boot device of machines through their BMC (IPMI or Redfish)
version_added: 0.1.0
description:
  - Sets the boot device override (PXE, disk, CD-ROM, BIOS setup, or none), for the next boot only or
    persistently, in UEFI or legacy mode.
  - Reads the current override first and writes only on a difference, then reads it back and compares the
    whole override (device, persistent or next boot only, UEFI or legacy when the BMC reports it) with what
    was asked. A BMC that did not keep it (many keep every override for the next boot only) fails the task
    with a message naming what it kept, instead of reporting a change on every run.
  - Drives one BMC, or a whole fleet inside one task with O(bmcs).
author:
  - ingot.metal contributors (@ingot-metal)
extends_documentation_fragment:
  - ingot.metal.bmc
  - ingot.metal.attributes
  - ingot.metal.attributes.actiongroup_bmc
attributes:
  check_mode:
    support: full
    details: Reports what would change without writing.
  diff_mode:
    support: full
    details: Returns the boot override before and after.
  idempotent:
    support: full
options:
  device:
    description:
      - V(pxe) network boot, V(disk) the local disk, V(cdrom) optical or virtual media, V(bios) the firmware
        setup, V(default) removes any override so the machine follows its own boot order.
    type: str
    required: true
    choices: [pxe, disk, cdrom, bios, default]
  persistent:
    description:
      - Keep the override for every boot. With V(false) (the default) it applies to the next boot only,
        after which a BMC clears it.
    type: bool
    default: false
  uefi:
    description:
      - Request UEFI (V(true)) or legacy BIOS (V(false)) boot. When not set, the current mode is kept.
    type: bool
notes:
  - Real firmware does not always honour a persistent override given through IPMI; the module fails when the
    BMC's read-back differs from what was asked (set O(persistent=false) and set the device before each boot
    for such a BMC).
seealso:
  - module: ingot.metal.bmc_power
'''

EXAMPLES = r'''
- name: PXE boot on the next boot only, then power cycle
  delegate_to: localhost
  block:
    - name: Boot from the network next time
      ingot.metal.bmc_boot:
        device: pxe
        uefi: true
    - name: Restart
      ingot.metal.bmc_power:
        state: restarted
        method: hard

- name: Disk, for good, on a whole group in one task
  ingot.metal.bmc_boot:
    bmcs: "{{ groups['rack3'] }}"
    device: disk
    persistent: true
  run_once: true
  delegate_to: localhost
'''

RETURN = r'''
boot:
  description: The boot override after the task.
  returned: success, single BMC form
  type: dict
  contains:
    device:
      description: pxe, disk, cdrom, bios, default (or usb).
      type: str
    persistent:
      description: Whether the override applies to every boot.
      type: bool
    uefi:
      description: UEFI mode, if the BMC reports it.
      type: bool
  sample: {"device": "pxe", "persistent": false, "uefi": true}
error_kind:
  description: On failure, what kind of failure (auth, unreachable, timeout, unsupported, insecure, protocol, invalid, certificate).
  returned: failure
  type: str
  sample: unreachable
bmcs:
  description: Fleet form. Per BMC name, the result of that BMC (changed, failed, boot, msg, error_kind).
  returned: fleet form
  type: dict
  sample: {"node1": {"changed": true, "failed": false, "boot": {"device": "pxe", "persistent": false, "uefi": false}}}
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
  sample: {"total": 10, "changed": 10, "failed": 0}
'''

from ansible_collections.ingot.metal.plugins.module_utils.bmc_actions import run_module


def main():
    run_module('boot')


if __name__ == '__main__':
    main()
