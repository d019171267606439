# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # The provisioner connection options. Modules take their environment fallbacks in the argument
    # spec (module_utils/provisioner.py); plugins (the inventory) declare them with ``env:``, hence
    # two renderings of the same options (ansible-test wants each as a plain string literal).

    # For modules: ``extends_documentation_fragment: [ingot.metal.provisioner]``.
    DOCUMENTATION = r'''
options:
  provisioner_url:
    description:
      - Base URL of the provisioner service, for example V(http://10.0.0.1:8080).
      - If not set, the environment variable E(INGOT_PROVISIONER_URL) is used.
    type: str
  provisioner_token:
    description:
      - The admin bearer token of the provisioner service. Never logged nor returned. Keep it in Ansible Vault.
      - If not set, the environment variable E(INGOT_PROVISIONER_TOKEN) is used.
    type: str
  provisioner_validate_certs:
    description:
      - For an V(https://) URL, verify the service's TLS certificate (against the system CAs,
        or O(provisioner_ca_path)). Set to V(false) only for a lab.
    type: bool
    default: true
    aliases: [validate_certs]
  provisioner_ca_path:
    description:
      - PEM file of the CA that signed the service's certificate.
    type: path
  provisioner_timeout:
    description:
      - Seconds to wait for each answer of the service. Nothing waits longer for one request.
    type: float
    default: 30
  provisioner_retries:
    description:
      - How many times a request is sent again, with exponential backoff, when the service cannot be reached or
        answers with a server error (5xx). A refusal (4xx) is never retried. A request that changes something is
        retried only when it cannot have been applied (connection refused, 502/503/504) or is idempotent.
    type: int
    default: 3
notes:
  - Errors of the service are turned into messages that name the node, image or allocation, what was asked,
    what the service said, and what to do.
'''

    # For plugins: ``extends_documentation_fragment: [ingot.metal.provisioner.plugin]``.
    PLUGIN = r'''
options:
  provisioner_url:
    description:
      - Base URL of the provisioner service, for example V(http://10.0.0.1:8080).
      - If not set, the environment variable E(INGOT_PROVISIONER_URL) is used.
    type: str
    env:
      - name: INGOT_PROVISIONER_URL
  provisioner_token:
    description:
      - The admin bearer token of the provisioner service. Never logged nor returned. Keep it in Ansible Vault.
      - If not set, the environment variable E(INGOT_PROVISIONER_TOKEN) is used.
    type: str
    env:
      - name: INGOT_PROVISIONER_TOKEN
  provisioner_validate_certs:
    description:
      - For an V(https://) URL, verify the service's TLS certificate (against the system CAs,
        or O(provisioner_ca_path)). Set to V(false) only for a lab.
    type: bool
    default: true
    aliases: [validate_certs]
  provisioner_ca_path:
    description:
      - PEM file of the CA that signed the service's certificate.
    type: path
  provisioner_timeout:
    description:
      - Seconds to wait for each answer of the service. Nothing waits longer for one request.
    type: float
    default: 30
  provisioner_retries:
    description:
      - How many times a request is sent again, with exponential backoff, when the service cannot be reached or
        answers with a server error (5xx). A refusal (4xx) is never retried. A request that changes something is
        retried only when it cannot have been applied (connection refused, 502/503/504) or is idempotent.
    type: int
    default: 3
notes:
  - Errors of the service are turned into messages that name the node, image or allocation, what was asked,
    what the service said, and what to do.
'''
