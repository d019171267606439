# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # The BMC connection options, shared by every BMC module.
    DOCUMENTATION = r'''
options:
  bmc_host:
    description:
      - Address (name or IP) of the BMC.
      - >-
        When the task runs on the controller (C(delegate_to: localhost) or C(connection: local)) and this
        option is not set, the action plugin takes it from the host variable C(bmc_host), and likewise
        every other C(bmc_*) option from the host variable of the same name.
      - Mutually exclusive with O(bmcs); one of the two is required.
    type: str
  bmc_port:
    description:
      - UDP port for IPMI, TCP port for Redfish.
      - Defaults to V(623) for IPMI and V(443) for Redfish.
    type: int
  bmc_user:
    description:
      - User name on the BMC.
    type: str
  bmc_password:
    description:
      - Password of O(bmc_user). Never logged nor returned. Keep it in Ansible Vault.
    type: str
  bmc_protocol:
    description:
      - V(ipmi) is IPMI 2.0 over LAN (RMCP+, C(lanplus)); V(redfish) is Redfish over HTTPS.
    type: str
    default: ipmi
    choices: [ipmi, redfish]
  bmc_cipher_suite:
    description:
      - IPMI cipher suite to propose. V(3) is RAKP-HMAC-SHA1 with HMAC-SHA1-96 integrity and AES-CBC-128.
        V(17) uses SHA-256 and falls back to suite 3 if the BMC refuses it.
      - Cipher suite 0 (no authentication) is never used.
    type: int
    default: 3
    choices: [3, 17]
  bmc_allow_ipmi15:
    description:
      - Allow a session over plain IPMI 1.5 when the BMC offers nothing better. Off by default because
        IPMI 1.5 protects credentials poorly.
    type: bool
    default: false
  bmc_timeout:
    description:
      - Deadline in seconds for each BMC operation (login included), retries included.
        A BMC that does not answer within it fails with a clear message; nothing waits longer.
      - Must be greater than 0.
    type: float
    default: 20
  bmc_retries:
    description:
      - How many times a lost exchange is retried, with exponential backoff, within O(bmc_timeout).
        Authentication failures are never retried.
      - From 0 to 100.
    type: int
    default: 2
  bmc_min_command_interval:
    description:
      - Minimum interval in seconds between two commands to the same BMC (address and port) from this task,
        a rate limit that protects slow BMCs (Ironic's C(min_command_interval)). V(0) turns it off.
      - From 0 to 60.
    type: float
    default: 0.1
  bmc_system_id:
    description:
      - Redfish only. The ComputerSystem to drive when the BMC manages more than one, as its id
        (for example V(System.Embedded.1)) or its path (V(/redfish/v1/Systems/1)).
      - Without it a BMC with several systems is refused, since the system to act on would be a guess.
      - The C(ingot.metal.provisioner) inventory sets the host variable C(bmc_system_id) from the node's
        BMC record.
    type: str
  bmc_validate_certs:
    description:
      - Redfish only. Verify the BMC's TLS certificate (against the system CAs, or O(bmc_ca_path)).
      - Set to V(false) only for a lab.
    type: bool
    default: true
  bmc_ca_path:
    description:
      - Redfish only. PEM file of the CA that signed the BMC's certificate.
    type: path
  bmc_cert_fingerprint:
    description:
      - Redfish only. SHA-256 fingerprint (hex, colons allowed) of the BMC's certificate, pinned instead of a CA.
    type: str
  bmcs:
    description:
      - The fleet form. A list of BMCs driven concurrently inside this one task, instead of one task per host.
      - Each entry is a dict with C(host) (required) and optional C(name), C(port), C(user), C(password),
        C(protocol), C(cipher_suite), C(allow_ipmi15), C(timeout), C(retries), C(validate_certs), C(ca_path),
        C(cert_fingerprint), C(system_id), C(min_command_interval); the task's C(bmc_*) options are the
        defaults for every entry.
      - Entries that reach the same BMC (address and port) under different names are driven one after the
        other, never at once, each with its own options (cipher suite included).
      - >-
        When the task runs on the controller, an entry may also be an inventory host name; its C(bmc_*) host
        variables are then used, so C(bmcs: "{{ groups['rack3'] }}") drives a whole group.
      - Results are returned per BMC in RV(bmcs); the task fails if any BMC failed, after all were tried.
    type: list
    elements: raw
  bmc_concurrency:
    description:
      - In the fleet form, how many BMCs are driven at once, in all its processes together. From 1 to 1024.
    type: int
    default: 32
  bmc_processes:
    description:
      - In the fleet form, how many processes share the BMCs. An IPMI session costs CPU (its crypto and
        packets are handled in Python), and one process uses one core at most, so a large fleet on a
        controller with several cores is driven by several processes, forked from the task's own.
      - C(0), the default, chooses one process per 50 BMCs (counting BMCs reached at the same address and
        port once), at most one per core this process may run on. C(1) drives every BMC inside the task's own
        process. From 0 to 64.
      - Entries that reach the same BMC always share a process. A process that ends without a result (killed,
        out of memory) fails each of its BMCs with a message that says their state is unknown.
    type: int
    default: 0
notes:
  - Requires the Python library C(pyghmi) on the host that runs the task (normally the controller);
    this collection is tested with pyghmi 1.6.19 and patches known races of that version at run time.
  - >-
    The fleet form (O(bmcs)) is the fast way to drive hundreds of BMCs: one task, all sessions concurrent,
    in as many processes as O(bmc_processes) gives. The per-host form with C(delegate_to: localhost) runs in
    the controller without shipping a module, and is still several times faster than a module per host.
  - >-
    On the controller the action plugin runs the operation inside Ansible's worker process; set the variable
    C(ingot_bmc_in_process=false) to run it as an ordinary module process instead (to compare, or to debug).
'''
