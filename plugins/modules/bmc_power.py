#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: bmc_power
short_description: Set the power state of machines through their BMC (IPMI or Redfish)
version_added: 0.1.0
description:
  - Brings a machine to the desired power state V(on) or V(off), or restarts it, through its BMC, and waits
    until the BMC reports the state.
  - Reads the power state first and acts only on a difference, so a second run reports no change.
  - Turning off is graceful by default (an ACPI soft-off request, so the OS shuts down cleanly); if the OS has
    not shut down within O(graceful_timeout), the machine is forced off unless O(force_after_timeout=false).
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
    details: Reports what would change without acting.
  diff_mode:
    support: full
    details: Returns the power state before and after.
  idempotent:
    support: partial
    details: O(state=restarted) restarts the machine and reports a change on every run; the other states act only on a difference.
options:
  state:
    description:
      - V(on) powers on; V(off) powers off (see O(method)); V(restarted) restarts a machine that is on and
        powers on one that is off. V(restarted) always reports a change.
      - V(status) only reads the power state (returned in RV(power), or per BMC in RV(bmcs)); it never
        acts and never reports a change. M(ingot.metal.bmc_info) with O(ingot.metal.bmc_info#module:gather=power)
        reads it too.
    type: str
    required: true
    choices: ['on', 'off', restarted, status]
  method:
    description:
      - How to turn off, for O(state=off) and O(state=restarted).
      - V(graceful) asks the OS to shut down (ACPI soft-off) and waits up to O(graceful_timeout).
      - V(hard) cuts the power at once; for V(restarted) it is a power cycle.
    type: str
    default: graceful
    choices: [graceful, hard]
  graceful_timeout:
    description:
      - Seconds to wait for a graceful shutdown to finish. V(0) or more.
      - If the BMC stops answering while it waits, the task fails and the machine is never forced off;
        only a BMC that keeps reporting the machine on shows that the OS did not shut down.
    type: int
    default: 300
  force_after_timeout:
    description:
      - When a graceful shutdown has not finished within O(graceful_timeout), cut the power (hard off).
        With V(false) the task fails instead, and the machine is left as it is.
    type: bool
    default: true
  wait:
    description:
      - Wait until the BMC reports the requested state. A graceful shutdown always waits.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for the BMC to report the requested state after a power on or hard off. V(0) or more.
    type: int
    default: 120
seealso:
  - module: ingot.metal.bmc_boot
  - module: ingot.metal.bmc_info
'''

EXAMPLES = r'''
- name: Power on one machine, BMC details from its host variables (bmc_host, bmc_user, bmc_password)
  ingot.metal.bmc_power:
    state: 'on'
  delegate_to: localhost

- name: Graceful off, forced after two minutes
  ingot.metal.bmc_power:
    bmc_host: 10.0.0.21
    bmc_user: admin
    bmc_password: "{{ vault_bmc_password }}"
    state: 'off'
    graceful_timeout: 120
  delegate_to: localhost

- name: Fleet form - every BMC of group rack3 in one task (the fast way for hundreds of BMCs)
  ingot.metal.bmc_power:
    bmcs: "{{ groups['rack3'] }}"
    state: 'on'
  run_once: true
  delegate_to: localhost

- name: Only read the power state (never acts)
  ingot.metal.bmc_power:
    state: status
  delegate_to: localhost
  register: bmc_power_now

- name: Fleet form with explicit entries and shared credentials
  ingot.metal.bmc_power:
    bmc_user: admin
    bmc_password: "{{ vault_bmc_password }}"
    bmcs:
      - {name: node1, host: 10.0.0.21}
      - {name: node2, host: 10.0.0.22, port: 6230}
    state: restarted
    method: hard
'''

RETURN = r'''
power:
  description: The power state after the task (single BMC form); with O(state=status), the state read.
  returned: success, single BMC form
  type: str
  sample: 'on'
actions:
  description: What was sent to the BMC, in order.
  returned: success, single BMC form
  type: list
  elements: str
  sample: ['soft off (ACPI)']
forced:
  description: Whether a graceful shutdown timed out and the machine was forced off.
  returned: success, single BMC form
  type: bool
  sample: false
error_kind:
  description: On failure, what kind of failure (auth, unreachable, timeout, unsupported, insecure, protocol, invalid, certificate).
  returned: failure
  type: str
  sample: auth
bmcs:
  description: Fleet form. Per BMC name, the result of that BMC (changed, failed, power, msg, error_kind).
  returned: fleet form
  type: dict
  sample: {"node1": {"changed": true, "failed": false, "power": "on"}}
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
  sample: {"total": 200, "changed": 3, "failed": 0}
'''

from ansible_collections.ingot.metal.plugins.module_utils.bmc_actions import run_module


def main():
    run_module('power')


if __name__ == '__main__':
    main()
