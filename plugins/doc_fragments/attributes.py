# -*- coding: utf-8 -*-
# Copyright (c) 2026, ingot.metal contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # The attributes every module documents, described once. A module extends
    # ``ingot.metal.attributes`` and gives each attribute its ``support`` (and ``details`` where its own
    # behaviour needs saying); a read-only module extends ``ingot.metal.attributes.info_module`` too.
    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
  idempotent:
    description:
      - When run twice in a row with the same arguments, the second run reports no change and changes nothing.
'''

    # ``ingot.metal.attributes.info_module``: a module that only reads.
    INFO_MODULE = r'''
options: {}
attributes:
  check_mode:
    support: full
    details: This module only reads; it runs the same in check mode.
  diff_mode:
    support: N/A
    details: This module changes nothing.
  idempotent:
    support: full
    details: This module changes nothing.
'''

    # ``ingot.metal.attributes.actiongroup_bmc``: the BMC modules.
    ACTIONGROUP_BMC = r'''
options: {}
attributes:
  action_group:
    description: Use C(group/ingot.metal.bmc) in C(module_defaults) to set the BMC connection options once.
    support: full
    membership:
      - ingot.metal.bmc
'''

    # ``ingot.metal.attributes.actiongroup_provisioner``: the provisioner modules.
    ACTIONGROUP_PROVISIONER = r'''
options: {}
attributes:
  action_group:
    description: Use C(group/ingot.metal.provisioner) in C(module_defaults) to set the provisioner connection options once.
    support: full
    membership:
      - ingot.metal.provisioner
'''
